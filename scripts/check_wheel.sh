#!/usr/bin/env bash
# Build the wheel, install it into a fresh environment and use it as a user would: import every
# public name and run `dualexpert --help`. The fresh environment borrows the already installed
# dependencies from .venv (a .pth line), so nothing is downloaded; the project itself comes
# only from the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
.venv/bin/python -m pip wheel --no-deps --no-build-isolation -q -w "$WORK/dist" . >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log"; exit 1; }
python3 -m venv "$WORK/env"
DEPS=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
SITE=$("$WORK/env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$DEPS" >"$SITE/_dualexpert_deps.pth"
"$WORK/env/bin/python" -m pip install -q --no-deps "$WORK"/dist/dualexpert-*.whl
cd "$WORK"  # away from the source tree, so only the installed wheel can be imported
"$WORK/env/bin/python" - <<'PY'
import importlib, pkgutil
import dualexpert
assert "site-packages" in dualexpert.__file__, dualexpert.__file__
for name in dualexpert.__all__:
    getattr(dualexpert, name)
mods = [m.name for m in pkgutil.walk_packages(dualexpert.__path__, "dualexpert.")]
for m in mods:
    importlib.import_module(m)
print(f"wheel: {len(dualexpert.__all__)} public names and {len(mods)} modules import")
PY
"$WORK/env/bin/dualexpert" --help >/dev/null
echo "wheel: dualexpert --help runs from the installed wheel"
