package deployer

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/complement"
	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/ct"
	"github.com/matrix-org/complement/helpers"
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

// defaultPassword is what Register uses when a test gives none; Complement's
// tests log in again with client.Password, so any valid password will do.
const defaultPassword = "complement_meets_min_password_req"

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
	dir        string
	servers    map[string]*homeserver // by hs name
	order      []string               // hs names, hs1 first
	rt         *federationRoundTripper
	startLimit time.Duration
	release    func() // frees the address slot; called once by Destroy

	localparts atomic.Int64
	tokensMu   sync.Mutex
	tokens     map[string]string // user ID -> access token, for AppServiceUser

	destroyOnce sync.Once
}

func (d *deployment[C]) GetConfig() C { return d.config }

func (d *deployment[C]) RoundTripper() http.RoundTripper { return d.rt }

// Network is the Docker network of a container deployment; processes have none.
func (d *deployment[C]) Network() string { return "" }

func (d *deployment[C]) server(t ct.TestLike, hsName string) *homeserver {
	t.Helper()
	hs, ok := d.servers[hsName]
	if !ok {
		ct.Fatalf(t, "deployer: no homeserver %q in this deployment (have %v)", hsName, d.order)
	}
	return hs
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

func (d *deployment[C]) newClient(t ct.TestLike, hsName string) *client.CSAPI {
	t.Helper()
	return &client.CSAPI{
		BaseURL:          d.server(t, hsName).addr.clientURL(),
		Client:           client.NewLoggedClient(t, hsName, nil),
		SyncUntilTimeout: syncUntilTimeout,
		Debug:            d.debug,
	}
}

func (d *deployment[C]) UnauthenticatedClient(t ct.TestLike, hsName string) *client.CSAPI {
	t.Helper()
	return d.newClient(t, hsName)
}

func (d *deployment[C]) Register(t ct.TestLike, hsName string, opts helpers.RegistrationOpts) *client.CSAPI {
	t.Helper()
	c := d.newClient(t, hsName)
	c.Password = opts.Password
	if c.Password == "" {
		c.Password = defaultPassword
	}
	// Unique within the deployment, which has a database of its own.
	localpart := fmt.Sprintf("user-%d", d.localparts.Add(1))
	if opts.LocalpartSuffix != "" {
		localpart += "-" + opts.LocalpartSuffix
	}
	if opts.IsAdmin {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterSharedSecret(t, localpart, c.Password, true)
	} else {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterUser(t, localpart, c.Password)
	}
	d.tokensMu.Lock()
	d.tokens[c.UserID] = c.AccessToken
	d.tokensMu.Unlock()
	return c
}

func (d *deployment[C]) Login(t ct.TestLike, hsName string, existing *client.CSAPI, opts helpers.LoginOpts) *client.CSAPI {
	t.Helper()
	localpart, _, ok := strings.Cut(strings.TrimPrefix(existing.UserID, "@"), ":")
	if !ok || !strings.HasPrefix(existing.UserID, "@") {
		ct.Fatalf(t, "deployer: Login: client has no valid user ID: %q", existing.UserID)
	}
	c := d.newClient(t, hsName)
	c.Password = existing.Password
	if opts.Password != "" {
		c.Password = opts.Password
	}
	var loginOpts []client.LoginOpt
	if opts.DeviceID != "" {
		loginOpts = append(loginOpts, client.WithDeviceID(opts.DeviceID))
	}
	c.UserID, c.AccessToken, c.DeviceID = c.LoginUser(t, localpart, c.Password, loginOpts...)
	return c
}

// AppServiceUser returns a client for a user whose token this deployment
// knows. No application services are configured, so only users registered
// through this deployment qualify.
func (d *deployment[C]) AppServiceUser(t ct.TestLike, hsName, userID string) *client.CSAPI {
	t.Helper()
	d.tokensMu.Lock()
	token, ok := d.tokens[userID]
	d.tokensMu.Unlock()
	if !ok {
		ct.Fatalf(t, "deployer: no application services here, and %s was not registered through this deployment", userID)
	}
	c := d.newClient(t, hsName)
	c.UserID, c.AccessToken = userID, token
	return c
}

// forEachServer runs fn for every homeserver at once and joins the errors.
func (d *deployment[C]) forEachServer(fn func(*homeserver) error) error {
	errs := make([]error, len(d.order))
	var wg sync.WaitGroup
	for i, name := range d.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(d.servers[name])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Restart stops every homeserver, then starts them all again on the same
// directories and ports, so clients keep working and state must persist.
func (d *deployment[C]) Restart(t ct.TestLike) error {
	t.Helper()
	if err := d.forEachServer((*homeserver).stop); err != nil {
		t.Errorf("deployer: Restart: %s", err)
		return err
	}
	err := d.forEachServer(func(hs *homeserver) error { return hs.start(d.startLimit) })
	if err != nil {
		t.Errorf("deployer: Restart: %s", err)
	}
	return err
}

func (d *deployment[C]) StopServer(t ct.TestLike, hsName string) {
	t.Helper()
	if err := d.server(t, hsName).stop(); err != nil {
		ct.Fatalf(t, "deployer: StopServer %s: %s", hsName, err)
	}
}

func (d *deployment[C]) StartServer(t ct.TestLike, hsName string) {
	t.Helper()
	if err := d.server(t, hsName).start(d.startLimit); err != nil {
		ct.Fatalf(t, "deployer: StartServer %s: %s", hsName, err)
	}
}

func (d *deployment[C]) PauseServer(t ct.TestLike, hsName string) {
	t.Helper()
	if err := d.server(t, hsName).setPaused(true); err != nil {
		ct.Fatalf(t, "deployer: PauseServer %s: %s", hsName, err)
	}
}

func (d *deployment[C]) UnpauseServer(t ct.TestLike, hsName string) {
	t.Helper()
	if err := d.server(t, hsName).setPaused(false); err != nil {
		ct.Fatalf(t, "deployer: UnpauseServer %s: %s", hsName, err)
	}
}

// Destroy prints the servers' logs if the test failed (or
// COMPLEMENT_ALWAYS_PRINT_SERVER_LOGS=1), stops every process and deletes the
// deployment's directory. Calling it again does nothing.
func (d *deployment[C]) Destroy(t ct.TestLike) {
	t.Helper()
	d.destroyOnce.Do(func() {
		if d.printLogs || t.Failed() {
			d.printServerLogs(t)
		}
		if err := d.shutdown(); err != nil {
			t.Errorf("deployer: Destroy: %s", err)
		}
	})
}

// shutdown stops the processes, removes the files and frees the addresses.
func (d *deployment[C]) shutdown() error {
	defer forget(d)
	defer d.release()
	err := d.forEachServer((*homeserver).stop)
	if keepDirs() {
		return err
	}
	return errors.Join(err, os.RemoveAll(d.dir))
}

// printServerLogs logs the end of each homeserver's log and output; the
// whole files are in the directory when ROOM_CONNECT_KEEP_TEST_DIRS is set.
func (d *deployment[C]) printServerLogs(t ct.TestLike) {
	t.Helper()
	names := append([]string(nil), d.order...)
	sort.Strings(names)
	for _, name := range names {
		hs := d.servers[name]
		t.Logf("==== %s (%s) homeserver.log, last %d lines (%s) ====\n%s",
			name, hs.addr.serverName, logTailLines, hs.files.log(), tail(hs.logText(), logTailLines))
		t.Logf("==== %s (%s) stdout/stderr, last 40 lines ====\n%s",
			name, hs.addr.serverName, hs.outputTail(40))
	}
}

// logTailLines bounds what a failure prints: enough for the requests around
// the failure, not the whole start-up.
const logTailLines = 300
