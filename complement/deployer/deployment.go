package deployer

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/complement"
	"github.com/matrix-org/complement/ct"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Deployment is Complement's Deployment, plus what these process-based
// homeservers can offer beyond it.
type Deployment interface {
	complement.Deployment
	// GetFullyQualifiedHomeserverName is the Matrix server name of hsName:
	// "hs1" in named mode, "localhost:<port>" in loopback mode.
	GetFullyQualifiedHomeserverName(t ct.TestLike, hsName string) spec.ServerName
	// ServerLog is everything hsName's Synapse has logged so far.
	ServerLog(t ct.TestLike, hsName string) string
}

// deployment implements Deployment for homeservers that are local processes.
//
// It is generic only because complement.Deployment's GetConfig returns a type
// from Complement's internal/config package, which code outside the complement
// module cannot name; C is inferred from the value, so the method exists
// without the type ever being written here.
type deployment[C any] struct {
	config     C
	debug      bool
	printLogs  bool // COMPLEMENT_ALWAYS_PRINT_SERVER_LOGS
	dirty      bool // shared by every test of the binary; see deployShared
	dir        string
	startLimit time.Duration
	release    func()     // frees the address slot; called once by shutdown
	module     jsonObject // the module's config; nil is its defaults

	mu      sync.RWMutex           // guards servers, order and rt, which grow can extend
	servers map[string]*homeserver // by hs name
	order   []string               // hs names, hs1 first
	rt      *federationRoundTripper

	localparts atomic.Int64
	tokensMu   sync.Mutex
	tokens     map[string]string // user ID -> access token, for AppServiceUser

	destroyOnce sync.Once
}

func (d *deployment[C]) GetConfig() C { return d.config }

func (d *deployment[C]) RoundTripper() http.RoundTripper {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.rt
}

// Network is the Docker network of a container deployment; processes have none.
func (d *deployment[C]) Network() string { return "" }

func (d *deployment[C]) server(t ct.TestLike, hsName string) *homeserver {
	t.Helper()
	d.mu.RLock()
	hs, ok := d.servers[hsName]
	names := d.order
	d.mu.RUnlock()
	if !ok {
		ct.Fatalf(t, "deployer: no homeserver %q in this deployment (have %v)", hsName, names)
	}
	return hs
}

// homeservers is every homeserver, hs1 first.
func (d *deployment[C]) homeservers() []*homeserver {
	d.mu.RLock()
	defer d.mu.RUnlock()
	all := make([]*homeserver, 0, len(d.order))
	for _, name := range d.order {
		all = append(all, d.servers[name])
	}
	return all
}

// add writes the files of a homeserver for each address; nothing runs yet.
func (d *deployment[C]) add(addrs []address) error {
	ca := certificateAuthority{cert: pkg.Config.CACertificate, key: pkg.Config.CAPrivateKey}
	moduleConfig := jsonObject{} // the module's defaults
	for k, v := range d.module {
		moduleConfig[k] = v
	}
	if withoutModule() {
		moduleConfig = nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, addr := range addrs {
		hs, err := newHomeserver(d.dir, python, addr, ca, moduleConfig)
		if err != nil {
			return fmt.Errorf("%s: %w", addr.hsName, err)
		}
		d.servers[addr.hsName] = hs
		d.order = append(d.order, addr.hsName)
	}
	all := make([]address, 0, len(d.order))
	for _, name := range d.order {
		all = append(all, d.servers[name].addr)
	}
	d.rt = newFederationRoundTripper(all, pkg.Config.HostnameRunningComplement)
	return nil
}

// grow starts homeservers until there are at least n, for a shared
// deployment that a test asks for more servers than earlier tests did.
func (d *deployment[C]) grow(n int) error {
	addrs, _, err := planAddresses(n)
	if err != nil {
		return err
	}
	d.mu.RLock()
	var missing []address
	for _, addr := range addrs {
		if _, ok := d.servers[addr.hsName]; !ok {
			missing = append(missing, addr)
		}
	}
	d.mu.RUnlock()
	if len(missing) == 0 {
		return nil
	}
	if err := d.add(missing); err != nil {
		return err
	}
	var errs []error
	for _, addr := range missing {
		d.mu.RLock()
		hs := d.servers[addr.hsName]
		d.mu.RUnlock()
		errs = append(errs, hs.start(d.startLimit))
	}
	return errors.Join(errs...)
}

func (d *deployment[C]) GetFullyQualifiedHomeserverName(t ct.TestLike, hsName string) spec.ServerName {
	t.Helper()
	return spec.ServerName(d.server(t, hsName).addr.serverName)
}

func (d *deployment[C]) ServerLog(t ct.TestLike, hsName string) string {
	t.Helper()
	return d.server(t, hsName).logText()
}

// ContainerID names the container of a Docker deployment. Here it is the
// homeserver's directory, which holds what a container would: config,
// database and logs.
func (d *deployment[C]) ContainerID(t ct.TestLike, hsName string) string {
	t.Helper()
	return d.server(t, hsName).files.dir
}

// forEachServer runs fn for every homeserver at once and joins the errors.
func (d *deployment[C]) forEachServer(fn func(*homeserver) error) error {
	all := d.homeservers()
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, hs := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(hs)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
