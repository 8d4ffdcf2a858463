package deployer

import (
	"errors"
	"os"

	"github.com/matrix-org/complement/ct"
)

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
//
// A shared (dirty) deployment outlives the test: Destroy only prints the logs
// of a failed test and puts back any server the test stopped or paused, and
// Cleanup ends it after the last test.
func (d *deployment[C]) Destroy(t ct.TestLike) {
	t.Helper()
	if d.dirty {
		if d.printLogs || t.Failed() {
			d.printServerLogs(t)
		}
		resume := func(hs *homeserver) error { return hs.resume(d.startLimit) }
		if err := d.forEachServer(resume); err != nil {
			t.Errorf("deployer: Destroy: %s", err)
		}
		return
	}
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
	for _, hs := range d.homeservers() {
		name := hs.addr.hsName
		t.Logf("==== %s (%s) homeserver.log, last %d lines (%s) ====\n%s",
			name, hs.addr.serverName, logTailLines, hs.files.log(), tail(hs.logText(), logTailLines))
		t.Logf("==== %s (%s) stdout/stderr, last 40 lines ====\n%s",
			name, hs.addr.serverName, hs.outputTail(40))
	}
}

// logTailLines bounds what a failure prints: enough for the requests around
// the failure, not the whole start-up.
const logTailLines = 300
