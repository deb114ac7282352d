#!/usr/bin/env bash
# `aicache serve` answering well-behaved clients while others misbehave
# (issues 6 and 10): wrk on 32 keep-alive connections GETs a cached value,
# first alone, then beside 200, 1,000 and 10,000 connections that send their
# request one byte every 100 ms (cut off by the request deadline and
# reopened at once) plus 50 connections a second that send half a request
# and leave.
#
#   bench/serve_slow_clients.sh [AICACHE_BINARY [SLOW_CLIENTS_BINARY]]
#     (defaults: build/tools/aicache/aicache, build/bench/slow_clients)
#
# Targets (issue 10): beside 1,000 and 10,000 trickling connections the good
# clients' p99 stays under 5 ms, and at 10,000 the server's peak resident
# memory stays under 200 MB.
#
# Reports per scenario (medians of ROUNDS runs, each on a fresh server): wrk's requests/s, p50 and
# p99, errors; the server's peak resident memory and threads (sampled from
# /proc every 0.2 s), its connection figures from /v1/stats (open when wrk
# ends, over capacity, timed out); and what the misbehaving clients did.
# The server runs with its defaults (one I/O thread per core, 16 workers)
# except max_connections: MAX_CONNECTIONS (default: the largest scenario plus
# 1,000), so that wrk's connections find room beside the trickling ones (at
# the default 10,000, 10,000 trickling connections fill the server and wrk's
# are answered 503: that measures the limit, not the good clients).
# Environment: DURATION (10s), CONNECTIONS (32), THREADS (2), ROUNDS (3),
# SCENARIOS ("0 200 1000 10000": trickling connections per scenario),
# ABANDON_PER_S (50), REQUEST_TIMEOUT (AICACHE_REQUEST_TIMEOUT for the
# server, 10), STRICT=1 to exit 1 when a target is missed, PIN=1 to run the
# server on CPU 0 and wrk and the misbehaving clients on the others (THREADS
# then defaults to 1; see serve_bench.sh). Raises its own
# open-file limit to the hard one (the tool and the server need one
# descriptor per connection). Installs wrk and curl with apt-get if missing
# (not part of CI). Prints a table, then one JSON line starting with
# {"bench":"serve_slow_clients".
set -euo pipefail
# shellcheck source=wrk_figures.sh
. "$(dirname "$0")/wrk_figures.sh"
# shellcheck source=serve_common.sh
. "$(dirname "$0")/serve_common.sh"

aicache=${1:-build/tools/aicache/aicache}
slow_clients=${2:-build/bench/slow_clients}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
pin_from_env
[ "$pinned" = 1 ] && threads=${THREADS:-1}
rounds=${ROUNDS:-3}
scenarios=${SCENARIOS:-0 200 1000 10000}
abandon_per_s=${ABANDON_PER_S:-50}
request_timeout=${REQUEST_TIMEOUT:-10}
target_p99_ms=5
target_rss_mb=200
targeted_from=1000    # the p99 target applies from this many trickling connections
rss_target_at=10000   # the memory target applies at this many and beyond

die() { echo "serve_slow_clients: $*" >&2; exit 1; }
[ -x "$aicache" ] || die "$aicache is not an executable"
[ -x "$slow_clients" ] || die "$slow_clients is not an executable (build the slow_clients target)"
aicache=$(realpath "$aicache")  # it runs from a scratch directory
if ! command -v wrk > /dev/null || ! command -v curl > /dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk curl > /dev/null
fi
# One descriptor per connection, for slow_clients (which raises its own too)
# and the server (which raises its soft limit towards max_connections + 256).
ulimit -n "$(ulimit -Hn)"
max_slow=0
for s in $scenarios; do [ "$s" -gt "$max_slow" ] && max_slow=$s; done
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((max_slow + 300)) ] ||
  echo "serve_slow_clients: open-file limit $(ulimit -n) is short of $max_slow connections" >&2

max_connections=${MAX_CONNECTIONS:-$((max_slow + 1000))}

work=$(mktemp -d "${TMPDIR:-/tmp}/aicache-slow-bench.XXXXXX")
aicache_pid=""
sampler_pid=""
slow_pid=""
cleanup() {
  for pid in $sampler_pid $slow_pid $aicache_pid; do kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

path=/v1/kv/bench
# A fresh server for every measured run, so that one scenario's memory (kept
# by the allocator) does not show in the next one's peak.
start_server() {
  port=$(free_port)
  start_serve "$aicache" "$work" "$port" \
    "AICACHE_REQUEST_TIMEOUT=$request_timeout" "AICACHE_MAX_CONNECTIONS=$max_connections"
  base="http://127.0.0.1:$port"
  wait_http "$base/healthz" "$aicache_pid" || die "aicache serve did not start: $(tail -n 20 "$work/serve.log")"
  put_value "$base$path" \
    '{"model":"gpt-4o-mini","temperature":0.7,"system_prompt":"You are a helpful assistant."}' ||
    die "cannot store a value"
}
stop_server() {
  kill "$aicache_pid" 2> /dev/null || true
  wait "$aicache_pid" 2> /dev/null || true
  aicache_pid=""
}

# Peak VmRSS (kB) and Threads of the server, sampled until killed.
sample() {
  local peak_rss=0 peak_threads=0 rss threads
  trap 'echo "$peak_rss $peak_threads" > "$work/peak"; exit 0' TERM
  while :; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$aicache_pid/status")
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$aicache_pid/status")
    [ "$rss" -gt "$peak_rss" ] && peak_rss=$rss
    [ "$threads" -gt "$peak_threads" ] && peak_threads=$threads
    sleep 0.2
  done
}

stats() { curl -s -m 5 "$base/v1/stats"; }
max_of() { tr ' ' '\n' <<< "$1" | grep . | sort -g | tail -n 1; }

# run_scenario SLOW: one measured run; appends to the lists r_*_SLOW.
run_scenario() {
  local slow=$1 before during out open clients rps p50 p99 errors peak_rss peak_threads
  : > "$work/slow.json"
  start_server
  if [ "$slow" -gt 0 ]; then
    ${client_prefix[@]+"${client_prefix[@]}"} "$slow_clients" --port="$port" --slow="$slow" --interval-ms=100 --abandon-per-s="$abandon_per_s" \
      --seconds=600 > "$work/slow.json" &
    slow_pid=$!
    # Measure once the misbehaving connections are open (up to 20 s).
    for _ in $(seq 1 100); do
      open=$(json_field open "$(stats)")
      [ "${open:-0}" -ge "$slow" ] && break
      sleep 0.2
    done
    sleep 1
  fi
  before=$(stats)
  sample & sampler_pid=$!
  out=$(${client_prefix[@]+"${client_prefix[@]}"} wrk -t"$threads" -c"$connections" -d"$duration" --latency "$base$path")
  during=$(stats)
  kill "$sampler_pid"; wait "$sampler_pid" 2> /dev/null || true; sampler_pid=""
  if [ -n "$slow_pid" ]; then
    kill -TERM "$slow_pid"; wait "$slow_pid" || die "slow_clients failed"; slow_pid=""
  fi
  read -r peak_rss peak_threads < "$work/peak"
  wrk_read "$out" || die "wrk failed"
  rps=$wrk_rps p50=$wrk_p50 p99=$wrk_p99 errors=$wrk_errors
  delta() { echo $(( $(json_field "$1" "$during") - $(json_field "$1" "$before") )); }
  clients=null
  [ -s "$work/slow.json" ] && clients=$(tr -d '\n' < "$work/slow.json")
  printf '  %6d trickling: %8s req/s  p50 %7.3f ms  p99 %8.3f ms  errors %d  RSS %d MB  threads %d  open %s\n' \
    "$slow" "$rps" "$p50" "$p99" "$errors" "$((peak_rss / 1024))" "$peak_threads" "$(json_field open "$during")"
  local v
  for v in rps p50 p99 errors peak_rss peak_threads; do
    local list="r_${v}_$slow"
    printf -v "$list" '%s' "${!list:-} ${!v}"
  done
  printf -v "r_open_$slow" '%s' "$(json_field open "$during")"
  printf -v "r_timeouts_$slow" '%s' "$(delta timed_out_total)"
  printf -v "r_over_capacity_$slow" '%s' "$(delta over_capacity_total)"
  printf -v "r_clients_$slow" '%s' "$clients"
  io_threads=$(sed -n 's/.*"io":\([0-9]*\).*/\1/p' <<< "$during")
  workers=$(json_field workers "$during")
  stop_server
  sleep 1
}

loadavg=$(cut -d' ' -f1 /proc/loadavg)
echo "wrk -t$threads -c$connections -d$duration --latency GET $path; $(nproc) cores, load average $loadavg before the run${PIN:+, PIN=$PIN}"
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds"
  for slow in $scenarios; do run_scenario "$slow"; done
done

verdict() {  # verdict SLOW P99 PEAK_RSS_KB
  awk -v s="$1" -v p="$2" -v r="$3" -v tp="$target_p99_ms" -v tr="$target_rss_mb" \
      -v from="$targeted_from" -v at="$rss_target_at" 'BEGIN {
    if (s < from) { print "-"; exit }
    print ((p < tp && (s < at || r / 1024 < tr)) ? "met" : "MISSED") }'
}

results=()
missed=0
printf '\nmedians of %d rounds (peak RSS and threads: the highest)\n' "$rounds"
printf '%-32s %9s %8s %9s %6s %9s %7s %7s %9s %8s %s\n' scenario "req/s" "p50 ms" "p99 ms" errors "peak RSS" threads open "503 cap" timeouts target
for slow in $scenarios; do
  for v in rps p50 p99 errors; do
    list="r_${v}_$slow"
    printf -v "m_$v" '%s' "$(median "${!list}")"
  done
  list="r_peak_rss_$slow"; m_rss=$(max_of "${!list}")
  list="r_peak_threads_$slow"; m_threads=$(max_of "${!list}")
  open_v="r_open_$slow"; timeouts_v="r_timeouts_$slow"; cap_v="r_over_capacity_$slow"; clients_v="r_clients_$slow"
  abandon=$abandon_per_s
  [ "$slow" -gt 0 ] || abandon=0
  v=$(verdict "$slow" "$m_p99" "$m_rss")
  [ "$v" = MISSED ] && missed=1
  printf '%-32s %9.0f %8.3f %9.3f %6s %6d MB %7d %7s %9s %8s %s\n' "$slow trickling + $abandon/s abandoning" \
    "$m_rps" "$m_p50" "$m_p99" "$m_errors" "$((m_rss / 1024))" "$m_threads" "${!open_v}" "${!cap_v}" "${!timeouts_v}" "$v"
  results+=("{\"slow\":$slow,\"abandon_per_s\":$abandon,\"rps\":$m_rps,\"p50_ms\":$m_p50,\"p99_ms\":$m_p99,\"errors\":$m_errors,\"peak_rss_kb\":$m_rss,\"peak_threads\":$m_threads,\"open_connections\":${!open_v},\"over_capacity\":${!cap_v},\"server_timeouts\":${!timeouts_v},\"target\":\"$v\",\"clients\":${!clients_v}}")
done
echo "server: max_connections $max_connections, request timeout ${request_timeout} s, $io_threads I/O threads, $workers workers; open, 503 and timeouts: the last round's"
echo "targets: p99 < $target_p99_ms ms from $targeted_from trickling connections; peak RSS < $target_rss_mb MB at $rss_target_at"
printf '{"bench":"serve_slow_clients","wrk":{"threads":%d,"connections":%d,"duration":"%s"},"rounds":%d,"cores":%d,"loadavg_before":%s,"request_timeout_s":%d,"server":{"max_connections":%d,"io_threads":%s,"workers":%s},"targets":{"p99_ms":%s,"rss_mb":%s},"scenarios":[%s]}\n' \
  "$threads" "$connections" "$duration" "$rounds" "$(nproc)" "$loadavg" "$request_timeout" "$max_connections" "${io_threads:-null}" "${workers:-null}" \
  "$target_p99_ms" "$target_rss_mb" "$(IFS=,; echo "${results[*]}")"
if [ "${STRICT:-0}" = 1 ] && [ "$missed" = 1 ]; then exit 1; fi
