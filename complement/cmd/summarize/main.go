// Command summarize reads `go test -json` events on stdin and prints what a
// person needs from a long Complement run: one line per finished top-level
// test, the full output of each failed test (server logs included), go test's
// per-package ok/FAIL lines, and a closing "N passed, N failed, N skipped"
// line. It exits 1 if any test or package failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

type key struct{ pkg, test string }

type summary struct {
	out                     io.Writer
	output                  map[key]*strings.Builder // buffered until we know the result
	passed, failed, skipped int
	failedPackages          int
}

func (s *summary) buffer(k key) *strings.Builder {
	b, ok := s.output[k]
	if !ok {
		b = &strings.Builder{}
		s.output[k] = b
	}
	return b
}

// topLevel is the test a (sub)test belongs to; its output is shown with it.
func topLevel(test string) string {
	name, _, _ := strings.Cut(test, "/")
	return name
}

func (s *summary) handle(e event) {
	k := key{e.Package, topLevel(e.Test)}
	if e.Action == "output" {
		s.buffer(k).WriteString(e.Output)
		return
	}
	if e.Test != "" && e.Test != k.test {
		return // subtest results are part of their top-level test's output
	}
	switch e.Action {
	case "pass", "fail", "skip":
	default:
		return
	}
	if e.Test == "" {
		s.packageDone(e)
		return
	}
	switch e.Action {
	case "pass":
		s.passed++
	case "skip":
		s.skipped++
	case "fail":
		s.failed++
		fmt.Fprint(s.out, s.buffer(k).String())
	}
	fmt.Fprintf(s.out, "--- %s: %s %s (%.1fs)\n", strings.ToUpper(e.Action), shortPackage(e.Package), e.Test, e.Elapsed)
	delete(s.output, k)
}

// packageDone prints go test's own closing lines for a package ("ok pkg
// 12.3s", "FAIL pkg 12.3s"), and whatever else the package printed outside
// any test when it failed: a build error, a panic in TestMain.
func (s *summary) packageDone(e event) {
	k := key{e.Package, ""}
	if e.Action == "fail" {
		s.failedPackages++
	}
	for _, line := range strings.SplitAfter(s.buffer(k).String(), "\n") {
		// The test binary's bare PASS/FAIL is repeated by the lines after it.
		if line == "PASS\n" || line == "FAIL\n" || line == "" {
			continue
		}
		if e.Action == "fail" || strings.HasPrefix(line, "ok ") {
			fmt.Fprint(s.out, line)
		}
	}
	delete(s.output, k)
}

func shortPackage(pkg string) string {
	return pkg[strings.LastIndex(pkg, "/")+1:]
}

func main() {
	s := &summary{out: os.Stdout, output: map[key]*strings.Builder{}}
	scanner := bufio.NewScanner(os.Stdin)
	// Synapse log excerpts make single output lines long.
	scanner.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for scanner.Scan() {
		line := scanner.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// Not an event (go command errors before any test ran): show as is.
			fmt.Fprintln(s.out, string(line))
			continue
		}
		s.handle(e)
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "summarize:", err)
		os.Exit(2)
	}
	fmt.Fprintf(s.out, "complement: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	if s.failed > 0 || s.failedPackages > 0 {
		os.Exit(1)
	}
}
