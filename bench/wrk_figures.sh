# shellcheck shell=bash
# Reads figures out of the text `wrk --latency` prints. Sourced by the serve
# benchmarks:
#
#   out=$(wrk -t2 -c32 -d10s --latency "$url")
#   rps=$(wrk_requests_per_second "$out")
#   p99=$(wrk_percentile_ms "$out" 99%)
#   errors=$(wrk_errors "$out")
#
# or all at once: wrk_read "$out" || die "...", then $wrk_rps (rounded),
# $wrk_p50, $wrk_p99 (ms) and $wrk_errors.

# Requests per second, as printed.
wrk_requests_per_second() { awk '/^Requests\/sec:/ {print $2}' <<< "$1"; }

# wrk_percentile_ms OUT 99%: that latency percentile in ms ("1.23ms", "850.00us", "1.02s").
wrk_percentile_ms() {
  awk -v want="$2" '$1 == want {
    v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000;
    printf "%.3f", v }' <<< "$1"
}

# Non-2xx/3xx responses plus socket errors (connect, read, write, timeout).
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {
    for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { sub(/,/, "", $i); n += $i } }
    END {print n + 0}' <<< "$1"
}

# wrk_read OUT: sets wrk_rps (rounded to a whole number), wrk_p50, wrk_p99
# (ms) and wrk_errors; fails, saying so with OUT, if wrk printed no figures.
wrk_read() {
  wrk_rps=$(wrk_requests_per_second "$1")
  wrk_p50=$(wrk_percentile_ms "$1" 50%)
  wrk_p99=$(wrk_percentile_ms "$1" 99%)
  wrk_errors=$(wrk_errors "$1")
  if [ -z "$wrk_rps" ] || [ -z "$wrk_p99" ]; then
    printf 'could not read wrk'"'"'s output:\n%s\n' "$1" >&2
    return 1
  fi
  wrk_rps=$(printf '%.0f' "$wrk_rps")
}
