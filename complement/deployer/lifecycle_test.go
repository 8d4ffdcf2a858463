package deployer

import (
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/matrix-org/complement/helpers"
)

// The lifecycle methods no MSC2923 or selected upstream test calls (pause)
// or whose promises are easy to break (stop keeps data, destroy leaves
// nothing), checked against one real homeserver.
func TestDeployerLifecycle(t *testing.T) {
	if err := setup(); err != nil {
		t.Fatal(err)
	}
	// Fresh even when COMPLEMENT_ENABLE_DIRTY_RUNS=1: Destroy must really end it.
	d := deployFresh(t, 1, false, nil)
	destroyed := false
	defer func() {
		if !destroyed {
			d.Destroy(t)
		}
	}()
	alice := d.Register(t, "hs1", helpers.RegistrationOpts{LocalpartSuffix: "alice"})
	versions := alice.BaseURL + "/_matrix/client/versions"
	// A short timeout: a paused server accepts connections but never answers.
	quick := &http.Client{Timeout: 2 * time.Second}
	answers := func() bool {
		res, err := quick.Get(versions)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}

	d.PauseServer(t, "hs1")
	if answers() {
		t.Fatal("a paused homeserver answered")
	}
	d.UnpauseServer(t, "hs1")
	if !answers() {
		t.Fatal("an unpaused homeserver did not answer")
	}

	d.StopServer(t, "hs1")
	if answers() {
		t.Fatal("a stopped homeserver answered")
	}
	d.StartServer(t, "hs1")
	// The account survived: its database is kept across a stop.
	d.Login(t, "hs1", alice, helpers.LoginOpts{Password: alice.Password})

	dir := d.ContainerID(t, "hs1")
	d.Destroy(t)
	destroyed = true
	if answers() {
		t.Error("a destroyed homeserver answered")
	}
	if _, err := os.Stat(dir); !keepDirs() && !os.IsNotExist(err) {
		t.Errorf("Destroy left %s behind (stat: %v)", dir, err)
	}
}
