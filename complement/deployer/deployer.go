// Package deployer runs Complement tests against Synapse homeservers that are
// plain local processes with this project's module loaded: no Docker.
//
// Deploy(t, n) starts n fresh Synapse processes (SQLite, a config, signing
// key and federation certificate generated here), waits until each answers
// /health and the module's info endpoint, and returns a complement.Deployment;
// with COMPLEMENT_ENABLE_DIRTY_RUNS=1 the tests of a binary share one. See
// planAddresses for how homeservers are named and reached.
package deployer

import (
	"errors"
	"os"
	"sync"
	"time"

	"github.com/matrix-org/complement/ct"
)

// syncUntilTimeout is how long MustSyncUntil waits; Complement's 5 s is tight
// for federation round trips on a loaded two-core machine.
const syncUntilTimeout = 15 * time.Second

// slotWait bounds how long a named-mode Deploy waits for the previous
// deployment of the same test binary to be destroyed.
const slotWait = 5 * time.Minute

// namedSlot is held by the deployment using the fixed named-mode addresses.
var namedSlot = make(chan struct{}, 1)

// Deploy starts numServers homeservers ("hs1".."hsN") and fails the test if
// they do not become healthy. The caller must Destroy the deployment.
//
// With COMPLEMENT_ENABLE_DIRTY_RUNS=1, as in Complement's own deployer, every
// test of the binary shares one deployment instead, grown to the most servers
// any test asked for, and Cleanup ends it.
func Deploy(t ct.TestLike, numServers int) Deployment {
	t.Helper()
	mustSetUp(t, numServers)
	if pkg.Config.EnableDirtyRuns {
		return deployShared(t, numServers)
	}
	return deployFresh(t, numServers, false, nil)
}

// DeployWithModuleConfig is Deploy with the module configured by
// moduleConfig (its homeserver.yaml keys, e.g. "fallback_mode") instead of
// its defaults. The homeservers are always fresh, even with
// COMPLEMENT_ENABLE_DIRTY_RUNS=1, since a shared deployment has one config.
func DeployWithModuleConfig(t ct.TestLike, numServers int, moduleConfig map[string]any) Deployment {
	t.Helper()
	mustSetUp(t, numServers)
	return deployFresh(t, numServers, false, moduleConfig)
}

// mustSetUp runs the once-per-binary setup and checks numServers.
func mustSetUp(t ct.TestLike, numServers int) {
	t.Helper()
	if numServers < 1 {
		ct.Fatalf(t, "deployer: Deploy needs at least one homeserver, got %d", numServers)
	}
	if err := setup(); err != nil {
		ct.Fatalf(t, "deployer: %s", err)
	}
}

// growable is a deployment that can gain servers; see deployment.grow.
type growable interface {
	Deployment
	grow(n int) error
}

var (
	sharedMu sync.Mutex
	shared   growable
)

func deployShared(t ct.TestLike, numServers int) Deployment {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		shared = deployFresh(t, numServers, true, nil)
		return shared
	}
	if err := shared.grow(numServers); err != nil {
		ct.Fatalf(t, "deployer: adding homeservers to the shared deployment: %s", err)
	}
	return shared
}

// deployFresh starts new homeservers; a nil moduleConfig is the module's defaults.
func deployFresh(t ct.TestLike, numServers int, dirty bool, moduleConfig jsonObject) growable {
	t.Helper()
	addrs, exclusive, err := planAddresses(numServers)
	if err != nil {
		ct.Fatalf(t, "deployer: %s", err)
	}
	release := func() {}
	if exclusive {
		if err := startNXDomainServer(); err != nil {
			ct.Fatalf(t, "deployer: DNS for the private namespace on %s: %s", nxdomainAddr, err)
		}
		select {
		case namedSlot <- struct{}{}:
			// Once: a failed start and a later Cleanup may both release.
			release = sync.OnceFunc(func() { <-namedSlot })
		case <-time.After(slotWait):
			ct.Fatalf(t, "deployer: the previous deployment of this test binary was not destroyed within %s", slotWait)
		}
	}
	d, err := newDeployment(pkg.Config, addrs, release, moduleConfig)
	if err != nil {
		release()
		ct.Fatalf(t, "deployer: %s", err)
	}
	d.dirty = dirty
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
func newDeployment[C any](config C, addrs []address, release func(), moduleConfig jsonObject) (*deployment[C], error) {
	dir, err := os.MkdirTemp(baseDir, "deployment-")
	if err != nil {
		return nil, err
	}
	d := &deployment[C]{
		config:     config,
		debug:      pkg.Config.DebugLoggingEnabled,
		printLogs:  pkg.Config.AlwaysPrintServerLogs,
		dir:        dir,
		startLimit: spawnTimeout(),
		release:    release,
		module:     moduleConfig,
		servers:    make(map[string]*homeserver, len(addrs)),
		tokens:     map[string]string{},
	}
	if err := d.add(addrs); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	return d, nil
}
