package deployer

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// PythonEnv names the interpreter that runs Synapse. Relative paths are taken
// from the complement/ directory, so the value means the same thing whichever
// package directory `go test` runs a test binary in.
const PythonEnv = "ROOM_CONNECT_PYTHON"

// defaultPython is the project's virtualenv, which scripts/test.sh creates with
// Synapse and the module (editable) installed.
const defaultPython = "../.venv/bin/python"

// complementDir is the complement/ directory of this checkout. It is taken from
// this source file's compile-time path because upstream test packages run with
// their working directory inside the Go module cache.
func complementDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(filepath.Dir(file))
}

// pythonPath resolves the interpreter and checks that it exists, so a missing
// virtualenv fails with a hint instead of an exec error deep in a test.
func pythonPath() (string, error) {
	path := os.Getenv(PythonEnv)
	if path == "" {
		path = defaultPython
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(complementDir(), path)
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no Python interpreter for Synapse at %s (set %s, or run scripts/test.sh --lint to create .venv): %w", path, PythonEnv, err)
	}
	return path, nil
}
