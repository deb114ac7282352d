# shellcheck shell=bash
# Helpers shared by the serve benchmarks (sourced, beside wrk_figures.sh).

# port_in_use PORT: something listens on 127.0.0.1:PORT.
port_in_use() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# A loopback port nothing listens on, below the ephemeral range: one in it
# may be the local port of some connection (thousands, in these benchmarks),
# and binding it would fail.
free_port() {
  local p low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2> /dev/null || echo 32768)
  while :; do
    p=$((10000 + RANDOM % (low - 10000)))
    port_in_use "$p" || { echo "$p"; return; }
  done
}

# wait_http URL PID: until URL answers (10 s at most), or the process died.
wait_http() {
  local _
  for _ in $(seq 1 100); do
    kill -0 "$2" 2> /dev/null || return 1
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

# median "A B C ...": the median of space-separated numbers.
median() { tr ' ' '\n' <<< "$1" | grep . | sort -g | awk '{ v[NR] = $1 } END {
  print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# json_field NAME JSON: the number after "NAME": (the last one, if repeated).
json_field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<< "$2"; }

# start_serve AICACHE DIR PORT [VAR=VALUE...]: `aicache serve` on
# 127.0.0.1:PORT from DIR (it reads DIR/aicache.toml if there is one), in an
# environment cleared of this project's settings but for VAR=VALUE, access
# log off unless ACCESS_LOG=on (then in DIR/serve.log), run under the
# command in the array server_prefix if the caller set one (taskset -c 0).
# Sets aicache_pid; the caller waits for it (wait_http) and kills it.
start_serve() {
  local binary=$1 dir=$2 port=$3
  shift 3
  local log_flag=--no-access-log
  [ "${ACCESS_LOG:-off}" = on ] && log_flag=""
  (
    cd "$dir" || exit 1
    while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AICACHE_|REDIS_)')
    exec ${server_prefix[@]+"${server_prefix[@]}"} env "$@" "$binary" serve \
      --listen "127.0.0.1:$port" $log_flag
  ) > "$dir/serve.log" 2>&1 &
  aicache_pid=$!
}

# put_value URL JSON: stores JSON at URL (a PUT), or says why not and fails.
put_value() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data-binary "$2" "$1")
  case "$code" in
    200 | 201 | 204) ;;
    *) echo "PUT $1 answered $code" >&2; return 1 ;;
  esac
}

# pin_from_env: with PIN=1, sets server_prefix=(taskset -c 0) for the server
# under test and client_prefix (taskset on the other CPUs) for the load
# generators, so they do not compete for a core; otherwise both empty. Also
# sets pinned=1 or 0.
pin_from_env() {
  server_prefix=()
  client_prefix=()
  pinned=0
  [ "${PIN:-0}" = 1 ] || return 0
  local cpus
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || { echo "PIN=1 needs 2 CPUs or more" >&2; exit 1; }
  server_prefix=(taskset -c 0)
  client_prefix=(taskset -c "1-$((cpus - 1))")
  pinned=1
}
