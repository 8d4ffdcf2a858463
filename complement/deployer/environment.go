package deployer

import (
	"os"
	"sync"
	"time"

	"github.com/matrix-org/complement"
)

const (
	// KeepDirsEnv keeps every homeserver directory (config, database, logs)
	// after the tests, as the project's Python harness does.
	KeepDirsEnv = "ROOM_CONNECT_KEEP_TEST_DIRS"
	// WithoutModuleEnv=1 starts plain Synapse without the module: a baseline
	// that tells a regression caused by the module from a test that fails
	// against this Synapse release anyway.
	WithoutModuleEnv = "ROOM_CONNECT_WITHOUT_MODULE"
	// spawnTimeoutEnv is Complement's own start-up timeout setting.
	spawnTimeoutEnv = "COMPLEMENT_SPAWN_HS_TIMEOUT_SECS"
	// baseImageEnv is required by Complement's config even though no image is used.
	baseImageEnv = "COMPLEMENT_BASE_IMAGE"
)

// defaultSpawnTimeout replaces Complement's 30 s default when the variable is
// unset: that default is for prebuilt containers, while a cold Python start of
// three homeservers at once on two busy cores can take longer.
const defaultSpawnTimeout = 2 * time.Minute

var (
	setupOnce sync.Once
	setupErr  error
	// pkg supplies Complement's per-package config: its CA, its hostname as
	// seen by homeservers, and the COMPLEMENT_* switches.
	pkg     *complement.TestPackage
	baseDir string
	python  string
)

func keepDirs() bool { return envFlag(KeepDirsEnv) }

func withoutModule() bool { return envFlag(WithoutModuleEnv) }

func envFlag(name string) bool {
	v := os.Getenv(name)
	return v != "" && v != "0"
}

// PrepareEnvironment must run before complement.TestMain. It gives the test
// binary a private temporary directory, because Complement's mock federation
// servers write their certificate and key to fixed names in it and test
// binaries of different packages run at the same time; and it sets
// COMPLEMENT_BASE_IMAGE if unset, which Complement's config insists on
// although nothing here uses an image.
func PrepareEnvironment() error {
	if os.Getenv(baseImageEnv) == "" {
		if err := os.Setenv(baseImageEnv, "synapse-room-connect:processes"); err != nil {
			return err
		}
	}
	if baseDir != "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "complement-synapse-")
	if err != nil {
		return err
	}
	baseDir = dir
	return os.Setenv("TMPDIR", dir)
}

// setup runs once per test binary, at the first Deploy.
func setup() error {
	setupOnce.Do(func() {
		if setupErr = PrepareEnvironment(); setupErr != nil {
			return
		}
		if python, setupErr = pythonPath(); setupErr != nil {
			return
		}
		// NewTestPackage is Complement's public way to get its config. It also
		// makes a Docker client, which only ever fails quietly here.
		if pkg, setupErr = complement.NewTestPackage("process-deployer"); setupErr != nil {
			return
		}
		// Homeservers reach Complement's mock servers by this name. Outside the
		// private namespace nothing resolves "host.docker.internal"; use
		// "localhost", not 127.0.0.1: Synapse applies ip_range_whitelist to
		// resolved names but blocks a loopback IP literal server name.
		if _, ok := loopbackIP(pkg.Config.HostnameRunningComplement); !ok {
			pkg.Config.HostnameRunningComplement = "localhost"
		}
	})
	return setupErr
}

func spawnTimeout() time.Duration {
	if os.Getenv(spawnTimeoutEnv) == "" {
		return defaultSpawnTimeout
	}
	return pkg.Config.SpawnHSTimeout
}
