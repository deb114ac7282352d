#!/usr/bin/env bash
# `aicache serve` on a Redis that stops answering (issue 10): /healthz must
# stay fast while every worker is blocked on the store, because /healthz is
# answered on the I/O threads and never waits for a worker.
#
#   bench/serve_redis_stopped.sh [AICACHE_BINARY]   (default: build/tools/aicache/aicache)
#
# Target (issue 10): with Redis stopped (SIGSTOP) and every worker blocked on
# it, /healthz p99 under 10 ms.
#
# Setup: a redis-server of its own on a free loopback port (no persistence),
# `aicache serve` on it (REDIS_URL) with its defaults (16 workers, Redis
# command timeout 1 s, retried once), access log off; one value stored at
# /v1/kv/bench. Each round measures /healthz with `wrk -t1 -c4` (HEALTH_*)
# twice: with Redis running and nothing else, then with Redis stopped by
# SIGSTOP while `wrk -t1 -c64` (BLOCKERS connections, more than the
# workers) holds GET /v1/kv/bench requests open, so that every worker waits
# on Redis and the rest queue; /v1/stats (on the operations pool, which may
# itself wait on Redis) confirms the workers are busy. Redis is continued
# (SIGCONT) after each round.
#
# Environment: DURATION (10s), ROUNDS (3), BLOCKERS (64), HEALTH_CONNECTIONS
# (4), STRICT=1 to exit 1 when the target is missed. Prints a table, then one
# JSON line starting with {"bench":"serve_redis_stopped".
set -euo pipefail
# shellcheck source=wrk_figures.sh
. "$(dirname "$0")/wrk_figures.sh"
# shellcheck source=serve_common.sh
. "$(dirname "$0")/serve_common.sh"

aicache=${1:-build/tools/aicache/aicache}
duration=${DURATION:-10s}
rounds=${ROUNDS:-3}
blockers=${BLOCKERS:-64}
health_connections=${HEALTH_CONNECTIONS:-4}
target_p99_ms=10

die() { echo "serve_redis_stopped: $*" >&2; exit 1; }
[ -x "$aicache" ] || die "$aicache is not an executable (build the aicache_cli target, or pass its path)"
aicache=$(realpath "$aicache")  # it runs from a scratch directory
for tool in wrk curl redis-server; do
  command -v "$tool" > /dev/null || die "$tool is needed (apt-get install wrk curl redis-server)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/aicache-redis-stopped.XXXXXX")
redis_pid=""
aicache_pid=""
blocker_pid=""
cleanup() {
  # A stopped Redis must be continued, or SIGTERM stays pending.
  if [ -n "$redis_pid" ]; then kill -CONT "$redis_pid" 2> /dev/null || true; fi
  for pid in $blocker_pid $aicache_pid $redis_pid; do
    kill "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# ---- redis-server -----------------------------------------------------------------

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  --dir "$work" --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
for _ in $(seq 1 100); do port_in_use "$redis_port" && break; sleep 0.1; done
port_in_use "$redis_port" || die "redis-server did not start: $(tail -n 20 "$work/redis.log")"

# ---- aicache serve on it ------------------------------------------------------------

port=$(free_port)
start_serve "$aicache" "$work" "$port" "REDIS_URL=redis://127.0.0.1:$redis_port/0"
base="http://127.0.0.1:$port"
wait_http "$base/healthz" "$aicache_pid" || die "aicache serve did not start: $(tail -n 20 "$work/serve.log")"

path=/v1/kv/bench
put_value "$base$path" '{"model":"gpt-4o-mini","temperature":0.7}' || die "cannot store a value"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base$path")
[ "$code" = 200 ] || die "GET $path answered $code (is the store Redis?)"

# ---- measurement ------------------------------------------------------------------

# measure_health NAME: wrk on /healthz; appends to the lists NAME_rps, NAME_p50, NAME_p99, NAME_errors.
measure_health() {
  local name=$1 out rps p50 p99 errors v list
  out=$(wrk -t1 -c"$health_connections" -d"$duration" --latency "$base/healthz")
  wrk_read "$out" || die "wrk failed"
  rps=$wrk_rps p50=$wrk_p50 p99=$wrk_p99 errors=$wrk_errors
  for v in rps p50 p99 errors; do
    list="${name}_$v"
    printf -v "$list" '%s' "${!list:-} ${!v}"
  done
  printf '  %-16s /healthz %8s req/s  p50 %7.3f ms  p99 %7.3f ms  errors %d\n' "$name" "$rps" "$p50" "$p99" "$errors"
}

workers=""
loadavg=$(cut -d' ' -f1 /proc/loadavg)
echo "/healthz: wrk -t1 -c$health_connections -d$duration --latency; blockers: wrk -t1 -c$blockers GET $path; $(nproc) cores, load average $loadavg before the run"
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds"
  measure_health running

  kill -STOP "$redis_pid"
  seconds=$(( ${duration%s} + 30 ))
  wrk -t1 -c"$blockers" -d"${seconds}s" --timeout 30s "$base$path" > "$work/blockers.txt" 2>&1 &
  blocker_pid=$!
  sleep 1
  # /v1/stats reads the store's figures too: it waits for Redis's timeout.
  stats=$(curl -s -m 10 "$base/v1/stats" || true)
  workers=$(json_field workers "$stats")
  busy=$(json_field workers_busy "$stats")
  queued=$(json_field queued "$stats")
  echo "  redis stopped: workers busy ${busy:-?} of ${workers:-?}, ${queued:-?} queued"
  [ -n "$busy" ] && [ -n "$workers" ] && [ "$busy" -ge "$workers" ] ||
    echo "serve_redis_stopped: not every worker is blocked (stats: $stats)" >&2
  busy_list="${busy_list:-} ${busy:-0}"
  queued_list="${queued_list:-} ${queued:-0}"
  measure_health stopped
  stats=$(curl -s -m 10 "$base/v1/stats" || true)
  busy_after=$(json_field workers_busy "$stats")
  busy_after_list="${busy_after_list:-} ${busy_after:-0}"

  kill "$blocker_pid" 2> /dev/null || true
  wait "$blocker_pid" 2> /dev/null || true
  blocker_pid=""
  kill -CONT "$redis_pid"
  # The store recovers once Redis answers again.
  for _ in $(seq 1 50); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$base$path")" = 200 ] && break
    sleep 0.2
  done
  sleep 1
done

for name in running stopped; do
  for v in rps p50 p99 errors; do
    list="${name}_$v"
    printf -v "m_${name}_$v" '%s' "$(median "${!list}")"
  done
done
verdict=$(awk -v p="$m_stopped_p99" -v e="$m_stopped_errors" -v t="$target_p99_ms" \
  'BEGIN { print ((p < t && e == 0) ? "met" : "MISSED") }')
printf '\nmedians of %d rounds\n%-46s %9s %8s %8s %7s %s\n' "$rounds" scenario "req/s" "p50 ms" "p99 ms" errors target
printf '%-46s %9.0f %8.3f %8.3f %7d\n' "Redis running, /healthz alone" \
  "$m_running_rps" "$m_running_p50" "$m_running_p99" "$m_running_errors"
printf '%-46s %9.0f %8.3f %8.3f %7d %s\n' "Redis stopped, $blockers requests on $path" \
  "$m_stopped_rps" "$m_stopped_p50" "$m_stopped_p99" "$m_stopped_errors" "$verdict"
echo "workers busy when Redis was stopped:$busy_list of ${workers:-?} (after the measurement:$busy_after_list); queued:$queued_list"
echo "target: /healthz p99 < $target_p99_ms ms with Redis stopped and every worker blocked"
printf '{"bench":"serve_redis_stopped","health_wrk":{"threads":1,"connections":%d,"duration":"%s"},"blockers":%d,"rounds":%d,"cores":%d,"loadavg_before":%s,"workers":%s,' \
  "$health_connections" "$duration" "$blockers" "$rounds" "$(nproc)" "$loadavg" "${workers:-null}"
printf '"running":{"rps":%s,"p50_ms":%s,"p99_ms":%s,"errors":%s},' "$m_running_rps" "$m_running_p50" "$m_running_p99" "$m_running_errors"
printf '"stopped":{"rps":%s,"p50_ms":%s,"p99_ms":%s,"errors":%s,"workers_busy":[%s]},' "$m_stopped_rps" "$m_stopped_p50" "$m_stopped_p99" "$m_stopped_errors" \
  "$(tr -s ' ' ',' <<< "${busy_list# }")"
printf '"target":{"p99_ms":%s,"result":"%s"}}\n' "$target_p99_ms" "$verdict"
if [ "${STRICT:-0}" = 1 ] && [ "$verdict" != met ]; then exit 1; fi
