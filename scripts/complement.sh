#!/usr/bin/env bash
# Complement tests against Synapse processes with the module, no Docker:
# this project's MSC2923 tests (complement/tests/msc2923), the selection of
# Complement's own tests listed in complement/UPSTREAM.md, and the process
# deployer's own tests.
#
#   scripts/complement.sh                  everything
#   COMPLEMENT_RUN='^TestMSC2923' scripts/complement.sh   only tests matching a go test -run pattern
#
# Assumes .venv holds Synapse and the module (scripts/test.sh creates it), or
# ROOM_CONNECT_PYTHON names another interpreter. Needs Go, and root with
# unshare(1) and ip(8): each test binary runs in a network namespace of its own
# (complement/isolate.sh). Prints one line per test, the output of failed tests
# (with the homeservers' logs), and a closing "N passed, N failed" line.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*" >&2; }
die() {
    printf 'complement.sh: %s\n' "$*" >&2
    exit 1
}

if [[ -z "${ROOM_CONNECT_PYTHON:-}" && ! -x .venv/bin/python ]]; then
    die "no .venv/bin/python: run scripts/test.sh --lint first, or set ROOM_CONNECT_PYTHON"
fi
command -v go >/dev/null || die "needs Go (go command not found)"
for tool in unshare ip; do
    command -v "$tool" >/dev/null || die "needs $tool (util-linux, iproute2) for per-test network namespaces"
done
[[ "$(id -u)" -eq 0 ]] || die "needs root, to give each test binary its own network namespace"

# Complement's config insists on an image name; nothing uses it here.
export COMPLEMENT_BASE_IMAGE="${COMPLEMENT_BASE_IMAGE:-synapse-room-connect:processes}"
export COMPLEMENT_SPAWN_HS_TIMEOUT_SECS="${COMPLEMENT_SPAWN_HS_TIMEOUT_SECS:-120}"
# Upstream tests share one deployment per package, as in Synapse's own
# Complement runs; starting Synapse per test would take most of the time
# budget. The MSC2923 tests always get fresh homeservers.
export COMPLEMENT_ENABLE_DIRTY_RUNS="${COMPLEMENT_ENABLE_DIRTY_RUNS:-1}"

cd complement
log "fetching Go modules"
go mod download

# Upstream test packages run from a copy of the pinned Complement, because the
# go command refuses -overlay for files in the module cache. The copy stays
# pristine: our TestMain files replace upstream's through -overlay only.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
upstream=$(go list -m -f '{{.Dir}}' github.com/matrix-org/complement)
cp -r "$upstream" "$work/complement"
chmod -R u+w "$work/complement"
cp go.mod "$work/go.mod"
cp go.sum "$work/go.sum"
go mod edit -modfile="$work/go.mod" -replace="github.com/matrix-org/complement=$work/complement"
cat >"$work/overlay.json" <<EOF
{"Replace": {
  "$work/complement/test_main.go": "$PWD/_overlay/test_main.go",
  "$work/complement/tests/csapi/main_test.go": "$PWD/_overlay/csapi_main_test.go",
  "$work/complement/tests/main_test.go": "$PWD/_overlay/tests_main_test.go"
}}
EOF

# The upstream selection: the test names in UPSTREAM.md's "Selection" table.
selection=$(awk '/^## Selection/ {on = 1; next} /^## / {on = 0} on && /^\| `/ {print}' UPSTREAM.md |
    awk -F'|' '{gsub(/[ `]/, "", $3); print $3}' | paste -sd'|' -)
[[ -n "$selection" ]] || die "no tests found in the Selection table of complement/UPSTREAM.md"
run="${COMPLEMENT_RUN:-^(TestDeployer.*|TestMSC2923.*|$selection)\$}"

log "building"
go build -o "$work/summarize" ./cmd/summarize
go vet ./...

log "running the deployer's own tests, the MSC2923 tests and the upstream selection"
set +e
# synapse_blacklist tells Complement which homeserver this is, so tests that
# upstream marks as failing on Synapse skip themselves.
go test -json -count=1 -timeout 20m -p 2 -tags synapse_blacklist \
    -modfile="$work/go.mod" -overlay="$work/overlay.json" -exec "$PWD/isolate.sh" \
    -run "$run" \
    ./deployer/ \
    ./tests/msc2923/ \
    github.com/matrix-org/complement/tests/csapi \
    github.com/matrix-org/complement/tests |
    "$work/summarize"
statuses=("${PIPESTATUS[@]}")
set -e
# go test's own status covers failures the summary cannot see (a build error).
if [[ "${statuses[0]}" -ne 0 || "${statuses[1]}" -ne 0 ]]; then
    exit 1
fi
