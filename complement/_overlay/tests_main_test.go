// This file is not part of this module's build. scripts/complement.sh swaps it
// in for the main_test.go of an upstream Complement test package with
// `go test -overlay`, so that package's tests run against Synapse processes
// with this project's module instead of Docker containers.

package tests

import (
	"fmt"
	"os"
	"testing"

	"github.com/matrix-org/complement"
	"github.com/matrix-org/complement/ct"

	"synapse-room-connect/complement/deployer"
)

func TestMain(m *testing.M) {
	if err := deployer.PrepareEnvironment(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	complement.TestMain(m, "fed",
		complement.WithDeployment(func(t ct.TestLike, numServers int) complement.Deployment {
			return deployer.Deploy(t, numServers)
		}),
		complement.WithCleanup(deployer.Cleanup),
	)
}
