#!/usr/bin/env bash
# Installs the built library into a temporary prefix, then, as a user's
# project would, with find_package(aicache CONFIG):
#   1. builds and runs a consumer of everything (aicache::aicache);
#   2. builds and runs one of aicache::core alone (memory store and
#      AssistantCache) and checks that it needs none of hiredis, libcurl,
#      OpenSSL, toml++ or Boost;
#   3. checks which targets each component brings, and that an unknown
#      component is refused with its name.
# The libraries are installed as built (static by default): the core
# consumer is linked with --no-as-needed, so every shared library that
# aicache::core's link interface brings is a NEEDED entry of the program,
# and libaicache_core.a itself is checked for references to those libraries.
set -euo pipefail
build_dir=$1
source_dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "check_install: $*" >&2; exit 1; }

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
prefix_args=(-DCMAKE_PREFIX_PATH="$work/prefix")

# 1. Everything.
cmake -S "$source_dir/consumer" -B "$work/build" "${prefix_args[@]}" >/dev/null
cmake --build "$work/build" >/dev/null
"$work/build/consumer"

# 2. aicache::core alone.
cmake -S "$source_dir/core_consumer" -B "$work/core" "${prefix_args[@]}" >/dev/null
cmake --build "$work/core" >/dev/null
"$work/core/core_consumer"
forbidden='hiredis|curl|ssl|crypto|toml|boost'
needed=$(readelf -d "$work/core/core_consumer" | grep NEEDED || true)
if grep -Ei "$forbidden" <<<"$needed"; then
  fail "a program linking only aicache::core needs the libraries above"
fi
echo "core_consumer needs only:" $(sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' <<<"$needed")
core_lib=$(find "$work/prefix" -name 'libaicache_core.*' | head -n 1)
[[ -n $core_lib ]] || fail "libaicache_core is not installed"
if nm -uC "$core_lib" 2>/dev/null | grep -E 'redis[A-Z]|curl_|toml::|boost::|SSL_|EVP_'; then
  fail "$core_lib refers to the symbols above"
fi

# 3. Each component finds what it needs and nothing else.
find_components() {  # COMPONENTS EXPECT FORBID
  cmake -S "$source_dir/find_components" -B "$work/find-${1//;/-}" "${prefix_args[@]}" \
        -DCOMPONENTS="$1" -DEXPECT="$2" -DFORBID="$3" >"$work/find.log" 2>&1 ||
    { cat "$work/find.log" >&2; fail "find_package(aicache COMPONENTS $1)"; }
}
find_components "core" "core" "PkgConfig::HIREDIS;OpenSSL::SSL;CURL::libcurl;PkgConfig::TOMLPP;Boost::headers"
find_components "redis" "core;redis" "CURL::libcurl;PkgConfig::TOMLPP;Boost::headers"
find_components "tokens" "core;tokens" "PkgConfig::HIREDIS;PkgConfig::TOMLPP;Boost::headers"
find_components "config" "core;redis;tokens;config" "Boost::headers"
# The server needs core and tokens only: neither hiredis nor toml++.
find_components "server" "core;tokens;server" "PkgConfig::HIREDIS;PkgConfig::TOMLPP;Boost::headers"
# With every component loaded, aicache::aicache is defined too.
find_components "server;config" "core;redis;tokens;config;server;aicache" "Boost::headers"
if cmake -S "$source_dir/find_components" -B "$work/find-unknown" "${prefix_args[@]}" \
         -DCOMPONENTS="core;nosuch" -DEXPECT=core >"$work/unknown.log" 2>&1; then
  fail "find_package(aicache COMPONENTS core nosuch) succeeded"
fi
grep -q 'aicache has no component "nosuch"' "$work/unknown.log" ||
  { cat "$work/unknown.log" >&2; fail "an unknown component is not named in the error"; }
echo "components: core, redis, tokens, config, server each found alone; unknown refused"
