#!/usr/bin/env bash
# Build the wheel and sdist, check them, and run the demo against the wheel
# installed beside Synapse in a fresh virtualenv (no test extras, no checkout on
# the path), so a file missing from the package fails here rather than on a
# homeserver.
#
#   scripts/check-package.sh            build into a temporary directory
#   DIST_DIR=dist scripts/check-package.sh   ...and keep the files in dist/
#
# `build` and `twine` live in a throwaway virtualenv: they are tools for this
# step, not dependencies of the module.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dist="${DIST_DIR:-$work/dist}"
mkdir -p "$dist"
pip_quiet=(--quiet --disable-pip-version-check)

log "building the wheel and sdist (the wheel is built from the sdist)"
python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install "${pip_quiet[@]}" build twine
rm -f "$dist"/synapse_room_connect-*
"$work/tools/bin/python" -m build --outdir "$dist" . >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2
    exit 1
}
wheels=("$dist"/synapse_room_connect-*.whl)
sdists=("$dist"/synapse_room_connect-*.tar.gz)
if [[ ${#wheels[@]} -ne 1 || ${#sdists[@]} -ne 1 ]]; then
    echo "expected one wheel and one sdist in $dist" >&2
    exit 1
fi

log "twine check"
"$work/tools/bin/twine" check --strict "${wheels[0]}" "${sdists[0]}"

log "every file of the package is in the wheel"
git ls-files synapse_room_connect | "$work/tools/bin/python" -c '
import sys, zipfile
wanted = {line.strip() for line in sys.stdin if line.strip()}
have = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = sorted(wanted - have)
if missing:
    sys.exit("missing from the wheel: " + ", ".join(missing))
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in have):
    sys.exit("the licence text (LICENSE) is missing from the wheel")
print(f"{len(wanted)} files, py.typed included" if "synapse_room_connect/py.typed" in wanted
      else "py.typed is not tracked in git")
' "${wheels[0]}"

log "installing the wheel beside Synapse in a fresh virtualenv (no test extras)"
python3 -m venv "$work/run"
"$work/run/bin/python" -m pip install "${pip_quiet[@]}" "${wheels[0]}"
"$work/run/bin/python" -c 'import synapse; print("Synapse", synapse.__version__)'

log "the demo against the installed wheel"
DEMO_ONCE=1 DEMO_PYTHON="$work/run/bin/python" bash scripts/demo.sh | tee "$work/demo.log"
# The demo names the copy of the module it imported: it must be the wheel's.
if ! grep -q "from $work/run/lib/python[0-9.]*/site-packages/synapse_room_connect/" "$work/demo.log"; then
    echo "the demo did not use the installed wheel" >&2
    exit 1
fi
