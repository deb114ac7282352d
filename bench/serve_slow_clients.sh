#!/usr/bin/env bash
# `aicache serve` answering well-behaved clients while others misbehave
# (issue 6): wrk on 32 keep-alive connections GETs a cached value, first
# alone, then beside 200 and 1,000 connections that send their request one
# byte every 100 ms (cut off by the request deadline and reopened at once)
# plus 50 connections a second that send half a request and leave.
#
#   bench/serve_slow_clients.sh [AICACHE_BINARY [SLOW_CLIENTS_BINARY]]
#     (defaults: build/tools/aicache/aicache, build/bench/slow_clients)
#
# Reports per scenario: wrk's requests/s, p50 and p99, errors; the server's
# peak resident memory and threads (sampled from /proc every 0.2 s), its
# connection figures from /v1/stats; and what the misbehaving clients did.
# Environment: DURATION (10s), CONNECTIONS (32), THREADS (2),
# REQUEST_TIMEOUT (AICACHE_REQUEST_TIMEOUT for the server, 10). Installs
# wrk and curl with apt-get if missing (not part of CI). Prints a table, then
# one JSON line starting with {"bench":"serve_slow_clients".
set -euo pipefail
# shellcheck source=wrk_figures.sh
. "$(dirname "$0")/wrk_figures.sh"

aicache=${1:-build/tools/aicache/aicache}
slow_clients=${2:-build/bench/slow_clients}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
request_timeout=${REQUEST_TIMEOUT:-10}

die() { echo "serve_slow_clients: $*" >&2; exit 1; }
[ -x "$aicache" ] || die "$aicache is not an executable"
[ -x "$slow_clients" ] || die "$slow_clients is not an executable (build the slow_clients target)"
aicache=$(realpath "$aicache")  # it runs from a scratch directory
if ! command -v wrk > /dev/null || ! command -v curl > /dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk curl > /dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/aicache-slow-bench.XXXXXX")
aicache_pid=""
sampler_pid=""
cleanup() {
  for pid in $sampler_pid $aicache_pid; do kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 40000))
(
  cd "$work"
  unset REDIS_URL REDIS_HOST REDIS_PORT REDIS_DB REDIS_PASSWORD AICACHE_CONFIG AICACHE_API_TOKEN
  export AICACHE_REQUEST_TIMEOUT=$request_timeout
  exec "$aicache" serve --listen "127.0.0.1:$port" --no-access-log
) > "$work/serve.log" 2>&1 &
aicache_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -s -o /dev/null "$base/healthz" && break; sleep 0.1; done
curl -s -o /dev/null "$base/healthz" || die "aicache serve did not start: $(tail -n 20 "$work/serve.log")"

path=/v1/kv/bench
curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
  --data-binary '{"model":"gpt-4o-mini","temperature":0.7,"system_prompt":"You are a helpful assistant."}' \
  "$base$path"

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

json_field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<< "$2"; }

results=()
printf '%-34s %10s %9s %9s %7s %9s %8s %9s %9s\n' scenario "req/s" "p50 ms" "p99 ms" errors "peak RSS" threads "cut off" "timeouts"
for scenario in "0 0" "200 50" "1000 50"; do
  read -r slow abandon <<< "$scenario"
  seconds=$(( ${duration%s} + 4 ))
  : > "$work/slow.json"
  if [ "$slow" -gt 0 ]; then
    "$slow_clients" --port="$port" --slow="$slow" --interval-ms=100 --abandon-per-s="$abandon" \
      --seconds="$seconds" > "$work/slow.json" &
    slow_pid=$!
    sleep 2  # let the misbehaving connections open before measuring
  fi
  before=$(curl -s "$base/v1/stats")
  sample & sampler_pid=$!
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "$base$path")
  during=$(curl -s "$base/v1/stats")
  kill "$sampler_pid"; wait "$sampler_pid" 2> /dev/null || true; sampler_pid=""
  [ "$slow" -gt 0 ] && wait "$slow_pid"
  read -r peak_rss peak_threads < "$work/peak"
  rps=$(printf '%.0f' "$(wrk_requests_per_second "$out")")
  p50=$(wrk_percentile_ms "$out" 50%)
  p99=$(wrk_percentile_ms "$out" 99%)
  errors=$(wrk_errors "$out")
  timeouts=$(( $(json_field timed_out_total "$during") - $(json_field timed_out_total "$before") ))
  open=$(json_field open "$during")
  cut_off=$(json_field cut_off "$(cat "$work/slow.json")"); cut_off=${cut_off:-0}
  clients=null
  [ -s "$work/slow.json" ] && clients=$(tr -d '\n' < "$work/slow.json")
  name="$slow trickling + $abandon/s abandoning"
  printf '%-34s %10s %9s %9s %7s %6d MB %8s %9s %9s\n' "$name" "$rps" "$p50" "$p99" "$errors" \
    "$(( peak_rss / 1024 ))" "$peak_threads" "$cut_off" "$timeouts"
  results+=("{\"slow\":$slow,\"abandon_per_s\":$abandon,\"rps\":$rps,\"p50_ms\":$p50,\"p99_ms\":$p99,\"errors\":$errors,\"peak_rss_kb\":$peak_rss,\"peak_threads\":$peak_threads,\"open_connections\":$open,\"server_timeouts\":$timeouts,\"clients\":$clients}")
  sleep 1
done
echo "wrk -t$threads -c$connections -d$duration --latency GET $path; request timeout ${request_timeout} s; $(nproc) cores"
printf '{"bench":"serve_slow_clients","wrk":{"threads":%d,"connections":%d,"duration":"%s"},"request_timeout_s":%d,"scenarios":[%s]}\n' \
  "$threads" "$connections" "$duration" "$request_timeout" "$(IFS=,; echo "${results[*]}")"
