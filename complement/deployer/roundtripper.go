package deployer

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
)

// federationRoundTripper routes requests that Complement's mock servers and
// federation clients address to a server name ("hs1", "localhost:38123") to
// that homeserver's federation listener, and requests to Complement's own
// hostname back to loopback.
type federationRoundTripper struct {
	targets        map[string]string // server name or hs name -> host:port
	complementHost string            // Complement's hostname as homeservers see it
	transport      http.RoundTripper
}

func newFederationRoundTripper(addrs []address, complementHost string) *federationRoundTripper {
	targets := make(map[string]string, 2*len(addrs))
	for _, a := range addrs {
		targets[a.hsName] = a.federationHostPort()
		targets[a.serverName] = a.federationHostPort()
	}
	return &federationRoundTripper{
		targets:        targets,
		complementHost: complementHost,
		transport: &http.Transport{
			// Homeserver certificates come from Complement's CA but name the
			// server, not the loopback address dialled; verifying would only
			// test this file.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback test traffic
		},
	}
}

func (rt *federationRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	target, ok := rt.targets[req.URL.Host]
	if !ok {
		target, ok = rt.targets[req.URL.Hostname()]
	}
	if !ok && req.URL.Hostname() == rt.complementHost {
		port := req.URL.Port()
		if port == "" {
			port = "8448"
		}
		target, ok = net.JoinHostPort("127.0.0.1", port), true
	}
	if !ok {
		return nil, fmt.Errorf("deployer: no homeserver in this deployment is called %q", req.URL.Host)
	}
	// A RoundTripper must not modify the caller's request.
	routed := req.Clone(req.Context())
	routed.URL.Scheme = "https"
	routed.URL.Host = target
	// Keep the Host header: it is the server name the request was meant for.
	routed.Host = req.URL.Host
	return rt.transport.RoundTrip(routed)
}
