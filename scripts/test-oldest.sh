#!/usr/bin/env bash
# The integration tests that matter most for compatibility (handshake, ferry,
# expansion, workers) against the OLDEST Synapse release the module supports,
# in its own virtualenv (.venv-oldest). `make test` covers the newest release.
#
#   scripts/test-oldest.sh [PYTEST_ARGS...]   extra arguments replace the test list
#
# The oldest release is read from pyproject.toml's `matrix-synapse>=X` bound, so
# moving the window there moves this run with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

oldest="$(sed -n 's/^ *"matrix-synapse>=\([0-9][0-9.]*\)[",].*/\1/p' pyproject.toml | head -n 1)"
if [[ -z "$oldest" ]]; then
    echo "could not read the oldest supported Synapse from pyproject.toml" >&2
    exit 1
fi

# PostgreSQL and Redis for the worker tests, as `make test` installs them.
bash scripts/test.sh --system

venv=.venv-oldest
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating $venv"
    python3 -m venv "$venv"
fi
log "installing the project with Synapse $oldest"
# txredisapi 1.6 broke Synapse's Redis connection (its factory lost
# startedConnecting); later Synapse releases cap it below 1.6, older ones do not,
# so an admin on an older release needs the same cap (docs/admin.md).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -e '.[test]' "matrix-synapse[postgres,redis]==$oldest" 'txredisapi<1.6'
# The distribution's version: synapse.__version__ appends git details when run
# inside a git checkout.
installed="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("matrix-synapse"))')"
if [[ "$installed" != "$oldest" ]]; then
    echo "expected Synapse $oldest in $venv, found $installed" >&2
    exit 1
fi

tests=(tests/test_handshake.py tests/test_ferry.py tests/test_expansion.py tests/test_workers.py
    tests/test_bridge_portal.py)
[[ $# -gt 0 ]] && tests=("$@")

log "pytest against Synapse $installed: ${tests[*]}"
# The harness starts Synapse with this interpreter, so the servers run $oldest too.
status=0
"$venv/bin/pytest" -q "${tests[@]}" || status=$?
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests: that is a failure here, not a pass" >&2
fi
exit $status
