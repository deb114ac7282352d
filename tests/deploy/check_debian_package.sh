#!/usr/bin/env bash
# ctest DebianPackage: `cpack -G DEB` in the build tree makes the server package; it holds
# /usr/bin/aicache, the systemd unit, the commented /etc/aicache/aicache.toml (a conffile)
# and the docs, and nothing for developers; the unpacked binary runs. Skipped (77) without
# dpkg-deb.
set -euo pipefail
build_dir=${1:?usage: check_debian_package.sh BUILD_DIR}
command -v dpkg-deb >/dev/null || { echo "dpkg-deb not installed: skipped"; exit 77; }
fail() { echo "check_debian_package: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$build_dir" && cpack -G DEB -B "$work/out" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log"; fail "cpack failed"; }
deb=$(ls "$work"/out/*.deb)
[[ $(echo "$deb" | wc -l) -eq 1 ]] || fail "expected one .deb, got: $deb"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$work/contents"
for path in /usr/bin/aicache /usr/lib/systemd/system/aicache.service /etc/aicache/aicache.toml \
            /usr/share/doc/aicache/operations.md /usr/share/doc/aicache/configuration.md \
            /usr/share/doc/aicache/prometheus/aicache-alerts.yml; do
  grep -qx "$path" "$work/contents" || { cat "$work/contents"; fail "missing $path"; }
done
! grep -q '/include/\|\.a$\|/cmake/' "$work/contents" || fail "developer files in the package"
dpkg-deb -I "$deb" conffiles | grep -qx /etc/aicache/aicache.toml || fail "aicache.toml is no conffile"
dpkg-deb -f "$deb" Depends | grep -q libhiredis || fail "no Depends"
dpkg-deb -x "$deb" "$work/root"
"$work/root/usr/bin/aicache" --version | grep -q '^aicache ' || fail "the unpacked binary does not run"
# The example configuration, commented out, loads as it is.
(cd "$work" && "$work/root/usr/bin/aicache" --config "$work/root/etc/aicache/aicache.toml" stats \
   >/dev/null) || fail "the example configuration does not load"
echo "$(basename "$deb"): $(wc -l < "$work/contents") paths, verified"
