#!/usr/bin/env bash
# ctest PrometheusRules: the alert rules parse (promtool check rules) and fire as their unit
# tests say on synthetic series (promtool test rules). Skipped (77) without promtool
# (Debian: apt-get install prometheus; scripts/install-deps.sh installs it).
set -euo pipefail
dir=${1:?usage: check_prometheus_rules.sh DEPLOY_PROMETHEUS_DIR}
if ! command -v promtool >/dev/null; then
  echo "promtool not installed (apt-get install prometheus): skipped"
  exit 77
fi
cd "$dir"
promtool check rules aicache-alerts.yml
promtool test rules aicache-alerts.test.yml
