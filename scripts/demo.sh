#!/usr/bin/env bash
# One command from a fresh clone to a running demo homeserver:
# virtualenv, the module and Synapse, then demo/run.py (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/python -m demo.run
