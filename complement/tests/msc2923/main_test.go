package msc2923_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/matrix-org/complement"

	"synapse-room-connect/complement/deployer"
)

// TestMain runs Complement's package set-up with homeservers from the process
// deployer; each test asks deployer.Deploy for its own fresh homeservers.
func TestMain(m *testing.M) {
	// Fresh homeservers per test, even when the upstream packages run beside
	// these share theirs: these tests restart servers and read their logs.
	if err := os.Setenv("COMPLEMENT_ENABLE_DIRTY_RUNS", "0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := deployer.PrepareEnvironment(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	complement.TestMainWithCleanup(m, "msc2923", deployer.Cleanup)
}
