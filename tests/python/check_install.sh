#!/usr/bin/env bash
# `cmake --install` puts the Python package where Debian's python3 finds it:
# installs the build into a staging root (DESTDIR), checks that the package's
# directory is one of python3's site directories for the configured prefix,
# and imports the staged package from a clean directory.
# Usage: check_install.sh BUILD_DIR PYTHON PREFIX PACKAGE_DIR (relative to PREFIX)
set -euo pipefail
build_dir=$1 python=$2 prefix=$3 package_dir=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Only the package (component python): the libraries are checked by
# tests/install/check_install.sh.
DESTDIR="$work/root" cmake --install "$build_dir" --component python >/dev/null
site_dir="$prefix/$package_dir"
"$python" - "$site_dir" <<'PY'
import site, sys
wanted = sys.argv[1]
dirs = site.getsitepackages()
assert wanted in dirs, f"{wanted} is not one of python3's site directories {dirs}"
PY
staged="$work/root$site_dir"
[[ -f $staged/aicache/__init__.py && -f $staged/aicache/__init__.pyi && -f $staged/aicache/py.typed ]] ||
  { echo "check_install: the package is not complete in $staged" >&2; ls -R "$staged" >&2; exit 1; }
cd "$work"
PYTHONPATH="$staged" "$python" - "$staged" <<'PY'
import sys
import aicache, aicache.django
assert aicache.__file__.startswith(sys.argv[1]), aicache.__file__
cache = aicache.AssistantCache()
cache.set_access_token("wechat", "wx1", "token")
assert cache.get_access_token("wechat", "wx1") == "token"
print("installed package imports from", aicache.__file__)
PY
