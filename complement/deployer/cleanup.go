package deployer

import (
	"fmt"
	"os"
	"sync"
)

// live holds every deployment not yet shut down, so Cleanup can end what a
// test left running.
var (
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
	sharedMu.Lock()
	shared = nil
	sharedMu.Unlock()
	for _, d := range leftovers {
		if err := d.shutdown(); err != nil {
			fmt.Fprintf(os.Stderr, "deployer: cleanup: %s\n", err)
		}
	}
	stopNXDomainServer()
	if baseDir != "" && !keepDirs() {
		if err := os.RemoveAll(baseDir); err != nil {
			fmt.Fprintf(os.Stderr, "deployer: cleanup: %s\n", err)
		}
	}
}
