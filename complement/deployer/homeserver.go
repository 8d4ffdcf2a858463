package deployer

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long Synapse gets to shut down cleanly before SIGKILL.
const stopGrace = 20 * time.Second

// homeserver is one Synapse process and its directory (config, keys, SQLite
// database, logs). The directory outlives restarts, so state persists.
type homeserver struct {
	addr       address
	files      homeserverFiles
	python     string
	withModule bool

	mu      sync.Mutex
	process *synapseProcess // nil while stopped
	paused  bool
}

// newHomeserver writes everything Synapse needs into a new directory under
// base; a nil moduleConfig leaves the module out (see WithoutModuleEnv).
func newHomeserver(base, python string, addr address, ca certificateAuthority, moduleConfig jsonObject) (*homeserver, error) {
	dir, err := os.MkdirTemp(base, addr.hsName+"-")
	if err != nil {
		return nil, err
	}
	files := homeserverFiles{dir: dir}
	if err := os.Mkdir(files.mediaStore(), 0o700); err != nil {
		return nil, err
	}
	if err := writeSigningKey(files.signingKey()); err != nil {
		return nil, err
	}
	if err := ca.issueServerCertificate(files.tlsCert(), files.tlsKey(), addr.serverHost(), addr.host); err != nil {
		return nil, err
	}
	config, err := homeserverConfig(addr, files, moduleConfig)
	if err != nil {
		return nil, err
	}
	if err := writeJSON(files.config(), config); err != nil {
		return nil, err
	}
	if err := writeJSON(files.logConfig(), logConfig(files)); err != nil {
		return nil, err
	}
	return &homeserver{addr: addr, files: files, python: python, withModule: moduleConfig != nil}, nil
}

// spawn starts the process without waiting for it, so several homeservers of
// a deployment can start at once.
func (hs *homeserver) spawn() error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.process != nil && hs.process.running() {
		return fmt.Errorf("%s is already running", hs.addr.hsName)
	}
	p, err := startSynapse(hs.python, hs.files.dir, hs.files.config(), hs.files.output())
	if err != nil {
		return err
	}
	hs.process, hs.paused = p, false
	return nil
}

func (hs *homeserver) waitHealthy(timeout time.Duration) error {
	hs.mu.Lock()
	p := hs.process
	hs.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s was never started", hs.addr.hsName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	probes := []string{"/health"}
	if hs.withModule {
		// The module registers its endpoints during start-up, so a 200 here
		// proves Synapse loaded it, not merely that Synapse is up.
		probes = append(probes, moduleInfoPath)
	}
	if err := p.waitHealthy(ctx, hs.addr.clientURL(), probes...); err != nil {
		return fmt.Errorf("%s (%s): %w\n%s", hs.addr.hsName, hs.addr.serverName, err, hs.outputTail(30))
	}
	return nil
}

func (hs *homeserver) start(timeout time.Duration) error {
	if err := hs.spawn(); err != nil {
		return err
	}
	return hs.waitHealthy(timeout)
}

// stop shuts Synapse down; stopping a stopped homeserver does nothing.
func (hs *homeserver) stop() error {
	hs.mu.Lock()
	p := hs.process
	hs.process, hs.paused = nil, false
	hs.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop(stopGrace)
}

// setPaused freezes (SIGSTOP) or resumes (SIGCONT) every process of the
// homeserver, keeping its memory and sockets, like `docker pause`.
func (hs *homeserver) setPaused(paused bool) error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.process == nil || !hs.process.running() {
		return fmt.Errorf("%s is not running", hs.addr.hsName)
	}
	sig := syscall.SIGCONT
	if paused {
		sig = syscall.SIGSTOP
	}
	if err := hs.process.signalGroup(sig); err != nil {
		return err
	}
	hs.paused = paused
	return nil
}

// resume makes a stopped or paused homeserver run again, so a shared
// deployment is whole for the next test.
func (hs *homeserver) resume(timeout time.Duration) error {
	hs.mu.Lock()
	stopped := hs.process == nil || !hs.process.running()
	paused := hs.paused
	hs.mu.Unlock()
	switch {
	case stopped:
		return hs.start(timeout)
	case paused:
		return hs.setPaused(false)
	}
	return nil
}

// logText is everything Synapse has logged so far, across restarts.
func (hs *homeserver) logText() string {
	data, err := os.ReadFile(hs.files.log())
	if err != nil {
		return ""
	}
	return string(data)
}

func (hs *homeserver) outputTail(lines int) string {
	data, _ := os.ReadFile(hs.files.output())
	return tail(string(data), lines)
}

// tail is the last n lines of text.
func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
