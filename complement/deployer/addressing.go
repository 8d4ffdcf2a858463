package deployer

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// address is where one homeserver of a deployment listens and what it is called.
type address struct {
	hsName     string // the name tests use: "hs1", "hs2", ...
	serverName string // its Matrix server name
	host       string // the loopback IP its listeners bind to
	clientPort int
	fedPort    int
}

func (a address) clientURL() string {
	return "http://" + net.JoinHostPort(a.host, strconv.Itoa(a.clientPort))
}

// serverHost is the server name without its port: the name a certificate
// for the federation listener must carry.
func (a address) serverHost() string {
	host, _, err := net.SplitHostPort(a.serverName)
	if err != nil {
		return a.serverName
	}
	return host
}

func (a address) federationHostPort() string {
	return net.JoinHostPort(a.host, strconv.Itoa(a.fedPort))
}

// Ports of a named homeserver: 8448 is where Synapse federates with a server
// name that has no port, once the name has no .well-known delegation and no
// SRV record (see startNXDomainServer); 8008 is Synapse's usual client port.
const (
	namedClientPort     = 8008
	namedFederationPort = 8448
)

// planAddresses picks addresses for n homeservers, in one of two modes.
//
// Named: "hs1".."hsN" resolve to distinct loopback IPs (scripts/complement.sh
// runs the tests in a private network and mount namespace whose /etc/hosts says
// so). Server names are then exactly "hs1", "hs2", ..., which upstream tests
// of the pinned Complement hard-code in room "via" lists, and homeservers find
// each other as on Complement's Docker network. Ports are fixed, so
// only one deployment can run at a time: exclusive is true.
//
// Loopback: otherwise every homeserver is "localhost:<federation port>" on
// 127.0.0.1 with free ports, which Synapse federates with directly. This runs
// anywhere without privileges, but upstream tests that name "hs1" as a server
// cannot pass in it.
func planAddresses(n int) (addrs []address, exclusive bool, err error) {
	if _, ok := loopbackIP("hs1"); ok {
		for i := 1; i <= n; i++ {
			hsName := fmt.Sprintf("hs%d", i)
			ip, ok := loopbackIP(hsName)
			if !ok {
				return nil, false, fmt.Errorf("hs1 resolves to a loopback address but %s does not: add it to /etc/hosts next to hs1", hsName)
			}
			addrs = append(addrs, address{
				hsName:     hsName,
				serverName: hsName,
				host:       ip,
				clientPort: namedClientPort,
				fedPort:    namedFederationPort,
			})
		}
		return addrs, true, nil
	}
	for i := 1; i <= n; i++ {
		clientPort, err := freePort()
		if err != nil {
			return nil, false, err
		}
		fedPort, err := freePort()
		if err != nil {
			return nil, false, err
		}
		addrs = append(addrs, address{
			hsName:     fmt.Sprintf("hs%d", i),
			serverName: fmt.Sprintf("localhost:%d", fedPort),
			host:       "127.0.0.1",
			clientPort: clientPort,
			fedPort:    fedPort,
		})
	}
	return addrs, false, nil
}

// loopbackIP resolves name and returns its address if that is a loopback one.
// Anything else (no such name, a real network address) means "not set up for
// named mode": binding to a non-loopback address is never wanted here.
func loopbackIP(name string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", name)
	if err != nil || len(ips) == 0 || !ips[0].IsLoopback() {
		return "", false
	}
	return ips[0].String(), true
}

// freePort asks the kernel for an unused loopback port. Another process can
// take it before Synapse binds it; start-up then fails loudly rather than
// silently talking to the wrong server.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
