#!/usr/bin/env bash
# Installs what aicache needs to build and test, from Debian 12's packages only.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

packages=(
  g++ cmake make pkg-config git ca-certificates
  libhiredis-dev libcurl4-openssl-dev nlohmann-json3-dev
  # TLS to Redis (rediss://), and the openssl CLI that makes the TLS tests'
  # certificates.
  libssl-dev openssl
  # Boost.Beast and Boost.Asio (header-only): the service's HTTP transport.
  libboost1.74-dev
  libcli11-dev libfmt-dev libspdlog-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  redis-server redis-tools
  # The Python package (python/) and its tests: Debian's python3 and pybind11,
  # Django and django-redis (the backend's compatibility tests), pytest.
  python3-dev pybind11-dev python3-pybind11 python3-django python3-django-redis python3-pytest
  # The dashboard's end-to-end test: headless Chromium, and curl for the API.
  chromium curl
  # promtool, for the alert rules' checks and unit tests (deploy/prometheus).
  prometheus
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
