#!/usr/bin/env bash
# The project's whole check, runnable on a fresh Debian machine as root:
# system packages the tests need, the virtualenv, lint, types, the layer
# contract, then the tests.
#
#   scripts/test.sh [PYTEST_ARGS...]   everything; extra arguments go to pytest
#   scripts/test.sh --lint             stop after ruff and mypy
#   scripts/test.sh --system           only install the system packages (PostgreSQL, Redis)
#
# The tests start their own PostgreSQL and Redis on free loopback ports, so a
# system-wide instance (running or not) is never used.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

lint_only=0
system_only=0
if [[ "${1:-}" == "--lint" ]]; then
    lint_only=1
    shift
elif [[ "${1:-}" == "--system" ]]; then
    system_only=1
    shift
fi

have_postgres() {
    local dir
    if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/initdb" ]]; then
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" && -x "$dir/postgres" ]] && return 0
    done
    return 1
}

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "need root to run: $*" >&2
        return 1
    fi
}

install_system_packages() {
    local packages=()
    have_postgres || packages+=(postgresql)
    command -v redis-server >/dev/null || packages+=(redis-server)
    if [[ ${#packages[@]} -eq 0 ]]; then
        return 0
    fi
    log "installing ${packages[*]}"
    # Keep apt from starting the packages' system services: the tests never use
    # them, and a stray server is one more thing to go wrong. Only added when the
    # machine has no policy of its own, and removed again afterwards.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        added_policy=1
    fi
    local status=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || status=$?
    if [[ $status -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${packages[@]}" >/dev/null || status=$?
    fi
    if [[ $added_policy -eq 1 ]]; then
        as_root rm -f "$policy"
    fi
    return $status
}

if [[ $lint_only -eq 0 ]]; then
    install_system_packages
fi
if [[ $system_only -eq 1 ]]; then
    exit 0
fi

if [[ ! -x .venv/bin/python ]]; then
    log "creating .venv"
    python3 -m venv .venv
fi
log "installing the project and its test dependencies"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
# This run covers the newest published Synapse (test-oldest.sh the oldest
# supported). Synapse has no upper bound in pyproject.toml, so the install
# above keeps whatever release an existing .venv holds; upgrade it explicitly,
# and only it, so a release newer than NEWEST_TESTED is tested the day it is
# out (lint tools stay where they are).
log "upgrading Synapse to the newest release"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade \
    'matrix-synapse[postgres,redis]'

# matrix-js-sdk for tests/test_js_sdk_client.py, pinned by its package-lock.json.
if [[ $lint_only -eq 0 ]]; then
    if [[ ! -d tests/js/node_modules || tests/js/package-lock.json -nt tests/js/node_modules ]]; then
        log "installing matrix-js-sdk (npm ci in tests/js)"
        (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi

log "ruff check"
.venv/bin/ruff check .
log "ruff format --check"
.venv/bin/ruff format --check .
log "mypy --strict"
.venv/bin/mypy --strict synapse_room_connect
log "lint-imports (the layer contract in pyproject.toml)"
.venv/bin/lint-imports

if [[ $lint_only -eq 1 ]]; then
    exit 0
fi

# Complement (Go, black-box) runs in the full check; a targeted pytest run skips it.
[[ $# -gt 0 ]] || { log "complement"; bash scripts/complement.sh; }

log "pytest"
status=0
.venv/bin/pytest -q --durations=15 "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests: check PYTEST_ARGS; that is a failure, not a pass" >&2
fi
exit $status
