// Package deployer runs Complement tests against Synapse homeservers that are
// plain local processes with this project's module loaded: no Docker.
//
// Each Deploy(t, n) starts n fresh Synapse processes (SQLite, a config, signing
// key and federation certificate generated here), waits until each answers
// /health and the module's info endpoint, and returns a complement.Deployment.
// See planAddresses for how homeservers are named and reached.
package deployer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/matrix-org/complement"
	"github.com/matrix-org/complement/ct"
)

const (
	// KeepDirsEnv keeps every homeserver directory (config, database, logs)
	// after the tests, as the project's Python harness does.
	KeepDirsEnv = "ROOM_CONNECT_KEEP_TEST_DIRS"
	// spawnTimeoutEnv is Complement's own start-up timeout setting.
	spawnTimeoutEnv = "COMPLEMENT_SPAWN_HS_TIMEOUT_SECS"
	// baseImageEnv is required by Complement's config even though no image is used.
	baseImageEnv = "COMPLEMENT_BASE_IMAGE"
)

// defaultSpawnTimeout replaces Complement's 30 s default when the variable is
// unset: that default is for prebuilt containers, while a cold Python start of
// three homeservers at once on two busy cores can take longer.
const defaultSpawnTimeout = 2 * time.Minute

// syncUntilTimeout is how long MustSyncUntil waits; Complement's 5 s is tight
// for federation round trips on a loaded two-core machine.
const syncUntilTimeout = 15 * time.Second

// slotWait bounds how long a named-mode Deploy waits for the previous
// deployment of the same test binary to be destroyed.
const slotWait = 5 * time.Minute

var (
	setupOnce sync.Once
	setupErr  error
	// pkg supplies Complement's per-package config: its CA, its hostname as
	// seen by homeservers, and the COMPLEMENT_* switches.
	pkg     *complement.TestPackage
	baseDir string
	python  string

	// namedSlot is held by the deployment using the fixed named-mode addresses.
	namedSlot = make(chan struct{}, 1)

	liveMu sync.Mutex
	live   = map[shutdowner]struct{}{}
)

type shutdowner interface{ shutdown() error }

func remember(d shutdowner) {
	liveMu.Lock()
	defer liveMu.Unlock()
	live[d] = struct{}{}
}

func forget(d shutdowner) {
	liveMu.Lock()
	defer liveMu.Unlock()
	delete(live, d)
}

func keepDirs() bool {
	v := os.Getenv(KeepDirsEnv)
	return v != "" && v != "0"
}

// PrepareEnvironment must run before complement.TestMain. It gives the test
// binary a private temporary directory, because Complement's mock federation
// servers write their certificate and key to fixed names in it and test
// binaries of different packages run at the same time; and it sets
// COMPLEMENT_BASE_IMAGE if unset, which Complement's config insists on
// although nothing here uses an image.
func PrepareEnvironment() error {
	if os.Getenv(baseImageEnv) == "" {
		if err := os.Setenv(baseImageEnv, "synapse-room-connect:processes"); err != nil {
			return err
		}
	}
	if baseDir != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "complement-synapse-")
	if err != nil {
		return err
	}
	baseDir = dir
	return os.Setenv("TMPDIR", dir)
}

// setup runs once per test binary, at the first Deploy.
func setup() error {
	setupOnce.Do(func() {
		if setupErr = PrepareEnvironment(); setupErr != nil {
			return
		}
		if python, setupErr = pythonPath(); setupErr != nil {
			return
		}
		// NewTestPackage is Complement's public way to get its config. It also
		// makes a Docker client, which only ever fails quietly here.
		if pkg, setupErr = complement.NewTestPackage("process-deployer"); setupErr != nil {
			return
		}
		// Homeservers reach Complement's mock servers by this name. Outside the
		// private namespace nothing resolves "host.docker.internal", so use
		// the loopback address itself, which Synapse contacts directly.
		host := pkg.Config.HostnameRunningComplement
		if _, ok := loopbackIP(host); !ok && net.ParseIP(host) == nil {
			pkg.Config.HostnameRunningComplement = "127.0.0.1"
		}
	})
	return setupErr
}

func spawnTimeout() time.Duration {
	if os.Getenv(spawnTimeoutEnv) == "" {
		return defaultSpawnTimeout
	}
	return pkg.Config.SpawnHSTimeout
}

// Deploy starts numServers homeservers ("hs1".."hsN") and fails the test if
// they do not become healthy. The caller must Destroy the deployment.
func Deploy(t ct.TestLike, numServers int) Deployment {
	t.Helper()
	if numServers < 1 {
		ct.Fatalf(t, "deployer: Deploy needs at least one homeserver, got %d", numServers)
	}
	if err := setup(); err != nil {
		ct.Fatalf(t, "deployer: %s", err)
	}
	addrs, exclusive, err := planAddresses(numServers)
	if err != nil {
		ct.Fatalf(t, "deployer: %s", err)
	}
	release := func() {}
	if exclusive {
		select {
		case namedSlot <- struct{}{}:
			// Once: a failed start and a later Cleanup may both release.
			release = sync.OnceFunc(func() { <-namedSlot })
		case <-time.After(slotWait):
			ct.Fatalf(t, "deployer: the previous deployment of this test binary was not destroyed within %s", slotWait)
		}
	}
	d, err := newDeployment(pkg.Config, addrs, release)
	if err != nil {
		release()
		ct.Fatalf(t, "deployer: %s", err)
	}
	d.debug = pkg.Config.DebugLoggingEnabled
	d.printLogs = pkg.Config.AlwaysPrintServerLogs
	remember(d)
	if err := d.forEachServer(func(hs *homeserver) error { return hs.start(d.startLimit) }); err != nil {
		d.printServerLogs(t)
		ct.Fatalf(t, "deployer: starting %d homeserver(s): %s", numServers, errors.Join(err, d.shutdown()))
	}
	t.Logf("deployer: %d homeserver(s) up in %s", numServers, d.dir)
	return d
}

// newDeployment writes the files of every homeserver; nothing runs yet.
// C is inferred from config; see deployment for why.
func newDeployment[C any](config C, addrs []address, release func()) (*deployment[C], error) {
	dir, err := os.MkdirTemp(baseDir, "deployment-")
	if err != nil {
		return nil, err
	}
	d := &deployment[C]{
		config:     config,
		dir:        dir,
		servers:    make(map[string]*homeserver, len(addrs)),
		rt:         newFederationRoundTripper(addrs, pkg.Config.HostnameRunningComplement),
		startLimit: spawnTimeout(),
		release:    release,
		tokens:     map[string]string{},
	}
	ca := certificateAuthority{cert: pkg.Config.CACertificate, key: pkg.Config.CAPrivateKey}
	for _, addr := range addrs {
		hs, err := newHomeserver(dir, python, addr, ca, jsonObject{})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("%s: %w", addr.hsName, err), os.RemoveAll(dir))
		}
		d.servers[addr.hsName] = hs
		d.order = append(d.order, addr.hsName)
	}
	return d, nil
}

// Cleanup stops whatever deployments a test left running and removes this
// test binary's directory. Pass it to complement.TestMainWithCleanup (or
// WithCleanup) so it runs before the binary exits.
func Cleanup() {
	liveMu.Lock()
	leftovers := make([]shutdowner, 0, len(live))
	for d := range live {
		leftovers = append(leftovers, d)
	}
	liveMu.Unlock()
	for _, d := range leftovers {
		if err := d.shutdown(); err != nil {
			fmt.Fprintf(os.Stderr, "deployer: cleanup: %s\n", err)
		}
	}
	if baseDir != "" && !keepDirs() {
		if err := os.RemoveAll(baseDir); err != nil {
			fmt.Fprintf(os.Stderr, "deployer: cleanup: %s\n", err)
		}
	}
}
