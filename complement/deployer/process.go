package deployer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// synapseProcess is one running `python -m synapse.app.homeserver`.
type synapseProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been reaped
	err    error         // the exit status, valid after exited is closed
}

// startSynapse spawns Synapse with stdout and stderr appended to outputPath.
func startSynapse(python, dir, configPath, outputPath string) (*synapseProcess, error) {
	out, err := os.OpenFile(outputPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// A marker per start keeps output from before a restart readable.
	fmt.Fprintf(out, "\n=== %s starting Synapse\n", time.Now().Format(time.RFC3339))
	cmd := exec.Command(python, "-m", "synapse.app.homeserver", "-c", configPath)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so pause and stop reach every process it forks.
		Setpgid: true,
		// Killed by the kernel if the test binary dies without cleaning up
		// (a panic, a timeout, SIGKILL), so no Synapse outlives its test run.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting %s: %w", python, err)
	}
	p := &synapseProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *synapseProcess) pid() int { return p.cmd.Process.Pid }

func (p *synapseProcess) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// signalGroup sends sig to the process group, ignoring a group that is gone.
func (p *synapseProcess) signalGroup(sig syscall.Signal) error {
	if !p.running() {
		return nil
	}
	if err := syscall.Kill(-p.pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to Synapse (pid %d): %w", sig, p.pid(), err)
	}
	return nil
}

// stop asks Synapse to shut down and kills it if it has not within grace.
// A paused process is resumed first: a stopped process never handles SIGTERM.
func (p *synapseProcess) stop(grace time.Duration) error {
	if err := p.signalGroup(syscall.SIGTERM); err != nil {
		return err
	}
	if err := p.signalGroup(syscall.SIGCONT); err != nil {
		return err
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	if err := p.signalGroup(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.exited
	return nil
}

// waitHealthy polls each path on the client listener until all answer 200,
// the process exits, or the deadline passes. Start-up has no event to wait
// on, so this is a poll with a short interval.
func (p *synapseProcess) waitHealthy(ctx context.Context, baseURL string, paths ...string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	ready := func(path string) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+path, nil)
		if err != nil {
			return false
		}
		res, err := client.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	allReady := func() bool {
		for _, path := range paths {
			if !ready(path) {
				return false
			}
		}
		return true
	}
	for {
		if allReady() {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("Synapse exited while starting: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("Synapse was not healthy at %s in time: %w", baseURL, ctx.Err())
		case <-tick.C:
		}
	}
}

// moduleInfoPath is the module's unauthenticated info endpoint.
const moduleInfoPath = "/_synapse/client/org.matrix.msc2923/info"
