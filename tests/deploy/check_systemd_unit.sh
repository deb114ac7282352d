#!/usr/bin/env bash
# ctest SystemdUnit: deploy/systemd/aicache.service passes `systemd-analyze verify`, with its
# ExecStart pointed at the binary just built (verify checks that the command exists and is
# executable). Skipped (77) without systemd-analyze.
set -euo pipefail
unit=${1:?usage: check_systemd_unit.sh UNIT_FILE AICACHE_BINARY}
binary=${2:?usage: check_systemd_unit.sh UNIT_FILE AICACHE_BINARY}
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze not installed: skipped"
  exit 77
fi
grep -q '^ExecStart=/usr/bin/aicache ' "$unit" || { echo "ExecStart is not /usr/bin/aicache"; exit 1; }
for setting in DynamicUser=yes ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes \
               Restart=on-failure StateDirectory=aicache ConfigurationDirectory=aicache \
               EnvironmentFile=-/etc/aicache/aicache.env; do
  grep -qx "$setting" "$unit" || { echo "missing: $setting"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/bin/aicache|$binary|" "$unit" > "$tmp/aicache.service"
# verify prints warnings and errors; any output is a failure.
out=$(systemd-analyze verify "$tmp/aicache.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "$out"; exit 1; fi
echo "aicache.service: verified"
