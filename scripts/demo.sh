#!/usr/bin/env bash
# One command from a fresh clone to a running demo homeserver:
# virtualenv, the module and Synapse, then demo/run.py (Ctrl-C stops it).
#
#   scripts/demo.sh                 runs until Ctrl-C
#   DEMO_ONCE=1 scripts/demo.sh     stops by itself; exit 0 only if messages crossed
#   DEMO_PYTHON=/path/venv/bin/python scripts/demo.sh
#                                   use that environment as it is (installs nothing):
#                                   CI points it at a virtualenv holding the built wheel
#
# The demo needs only the module and Synapse: SQLite, no PostgreSQL or Redis.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n "${DEMO_PYTHON:-}" ]]; then
    # Run from a directory holding only demo/ and harness/, so the module is the
    # installed one rather than the checkout's synapse_room_connect/.
    root="$(pwd)"
    run_dir="$(mktemp -d)"
    trap 'rm -rf "$run_dir"' EXIT
    ln -s "$root/demo" "$root/harness" "$run_dir/"
    cd "$run_dir"
    env -u PYTHONPATH "$DEMO_PYTHON" -m demo.run
    exit $?
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/python -m demo.run
