// This file is not part of this module's build. scripts/complement.sh swaps it
// in for test_main.go of the pinned Complement with `go test -overlay`.
//
// The pinned Complement predates Complement's custom-deployment hook
// (complement.WithDeployment), so its Deploy always starts Docker containers.
// This file keeps the API of the file it replaces (TestMain,
// TestMainWithCleanup, OldDeploy, Deploy) and adds WithCleanup and
// WithDeployment, so that upstream test packages, given a TestMain of ours,
// deploy through the process deployer. Drop it once the pin moves to a
// Complement that has the hook.

package complement

import (
	"fmt"
	"os"
	"testing"

	"github.com/matrix-org/complement/b"
	"github.com/matrix-org/complement/ct"
)

var (
	testPackage *TestPackage
	// deployHook, when set, makes Deploy use it instead of Docker.
	deployHook func(t ct.TestLike, numServers int) Deployment
)

// Option adjusts TestMain.
type Option func(*mainOptions)

type mainOptions struct {
	cleanup    func()
	deployment func(t ct.TestLike, numServers int) Deployment
}

// WithCleanup runs fn after the tests, before the process exits.
func WithCleanup(fn func()) Option {
	return func(o *mainOptions) { o.cleanup = fn }
}

// WithDeployment makes Deploy call fn instead of starting containers.
func WithDeployment(fn func(t ct.TestLike, numServers int) Deployment) Option {
	return func(o *mainOptions) { o.deployment = fn }
}

// TestMain sets up the package's Complement config, runs the tests, cleans up
// and exits with the tests' status.
func TestMain(m *testing.M, namespace string, opts ...Option) {
	var o mainOptions
	for _, opt := range opts {
		opt(&o)
	}
	deployHook = o.deployment
	var err error
	testPackage, err = NewTestPackage(namespace)
	if err != nil {
		fmt.Printf("Error: %s", err)
		os.Exit(1)
	}
	code := m.Run()
	if o.cleanup != nil {
		o.cleanup()
	}
	testPackage.Cleanup()
	os.Exit(code)
}

// TestMainWithCleanup is TestMain with a cleanup function.
func TestMainWithCleanup(m *testing.M, namespace string, cleanup func()) {
	TestMain(m, namespace, WithCleanup(cleanup))
}

// OldDeploy deploys a blueprint, which needs Docker images.
func OldDeploy(t ct.TestLike, blueprint b.Blueprint) Deployment {
	t.Helper()
	if testPackage == nil {
		ct.Fatalf(t, "OldDeploy: testPackage not set, did you forget to call complement.TestMain?")
	}
	if deployHook != nil {
		ct.Fatalf(t, "OldDeploy: blueprint %q needs Docker, which a custom deployment does not use", blueprint.Name)
	}
	return testPackage.OldDeploy(t, blueprint)
}

// Deploy deploys numServers homeservers through the custom deployment if one
// was given, else through Docker.
func Deploy(t ct.TestLike, numServers int) Deployment {
	t.Helper()
	if testPackage == nil {
		ct.Fatalf(t, "Deploy: testPackage not set, did you forget to call complement.TestMain?")
	}
	if deployHook != nil {
		return deployHook(t, numServers)
	}
	return testPackage.Deploy(t, numServers)
}
