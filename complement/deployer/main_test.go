package deployer

import (
	"os"
	"testing"
)

// TestMain ends whatever the tests left running and removes their files.
func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}
