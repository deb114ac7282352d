#!/usr/bin/env bash
# `aicache serve` on Redis with the near cache, on Redis without it, and on
# the memory store: wrk on GET /v1/kv/{key} (a hit), in turn, ROUNDS times.
#
#   bench/serve_near_bench.sh [AICACHE_BINARY]   (default: build/tools/aicache/aicache)
#
# Target (issue 14): on Redis with the near cache, at least 90 % of the same
# route's requests/s on the memory store. Environment: DURATION (10s),
# CONNECTIONS (32), THREADS (2), ROUNDS (3; medians reported). The
# redis-server (no persistence) runs on a free loopback port in a temp dir.
set -euo pipefail
# shellcheck source=wrk_figures.sh
. "$(dirname "$0")/wrk_figures.sh"
# shellcheck source=serve_common.sh
. "$(dirname "$0")/serve_common.sh"
aicache=$(realpath "${1:-build/tools/aicache/aicache}")
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}

dir=$(mktemp -d)
redis_pid=""
aicache_pid=""
cleanup() {
  [ -n "$aicache_pid" ] && kill "$aicache_pid" 2> /dev/null && wait "$aicache_pid" 2> /dev/null
  [ -n "$redis_pid" ] && kill "$redis_pid" 2> /dev/null && wait "$redis_pid" 2> /dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$dir" > "$dir/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done

value='{"user_id":1001,"model":"gpt-4","temperature":0.7,"system_prompt":"You are a helpful assistant for order tracking."}'

# run NAME ENV...: one serve process, one PUT, a warm-up, then wrk; prints req/s and p99.
run() {
  local name=$1 port out
  shift
  port=$(free_port)
  start_serve "$aicache" "$dir" "$port" "$@"
  wait_http "http://127.0.0.1:$port/healthz" "$aicache_pid" || { cat "$dir/serve.log"; exit 1; }
  put_value "http://127.0.0.1:$port/v1/kv/near_bench" "$value"
  wrk -t"$threads" -c"$connections" -d2s "http://127.0.0.1:$port/v1/kv/near_bench" > /dev/null
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency "http://127.0.0.1:$port/v1/kv/near_bench")
  wrk_read "$out"
  [ "$wrk_errors" = 0 ] || { echo "$name: $wrk_errors errors" >&2; exit 1; }
  kill "$aicache_pid"
  wait "$aicache_pid" 2> /dev/null || true
  aicache_pid=""
  echo "$wrk_rps $wrk_p99"
}

near_rps="" plain_rps="" memory_rps="" near_p99="" plain_p99="" memory_p99=""
for round in $(seq 1 "$rounds"); do
  read -r r p < <(run near "REDIS_URL=redis://127.0.0.1:$redis_port/0")
  near_rps+=" $r" near_p99+=" $p"
  read -r r p < <(run plain "REDIS_URL=redis://127.0.0.1:$redis_port/0" AICACHE_NEAR_CACHE_MAX_BYTES=0)
  plain_rps+=" $r" plain_p99+=" $p"
  read -r r p < <(run memory)
  memory_rps+=" $r" memory_p99+=" $p"
  echo "round $round: near$near_rps / redis$plain_rps / memory$memory_rps req/s" >&2
done
n=$(median "$near_rps") p=$(median "$plain_rps") m=$(median "$memory_rps")
printf '%-28s %12s %10s\n' "GET /v1/kv (hit)" "req/s" "p99 ms"
printf '%-28s %12s %10s\n' "Redis + near cache" "$n" "$(median "$near_p99")"
printf '%-28s %12s %10s\n' "Redis, no near cache" "$p" "$(median "$plain_p99")"
printf '%-28s %12s %10s\n' "memory store" "$m" "$(median "$memory_p99")"
ratio=$(awk -v a="$n" -v b="$m" 'BEGIN { printf "%.3f", a / b }')
echo "near / memory = $ratio (target >= 0.90)"
echo "{\"bench\":\"serve_near\",\"near_rps\":$n,\"redis_rps\":$p,\"memory_rps\":$m,\"ratio\":$ratio}"
