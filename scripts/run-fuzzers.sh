#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang 16 in build-fuzz/ and
# runs each for a bounded time on a copy of its seed corpus.
#
#   scripts/run-fuzzers.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 20; TARGETs default to all of them. Up to
# $(nproc) targets run at once. Generated inputs and crash files stay in
# build-fuzz/fuzz-work/<target>/ (never in the source tree; each run starts
# again from tests/fuzz/corpus/). Exits non-zero if a target finds a crash, a
# leak, a timeout or runs out of memory, and prints the input that did it;
# reproduce with build-fuzz/tests/fuzz/<target> <that file>.
#
# Needs clang-16 and libclang-rt-16-dev (installed with apt-get if missing);
# clang 14 cannot compile libstdc++ 12's <expected> (see CMakeLists.txt).
set -euo pipefail

seconds="${1:-20}"
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"
fuzz_src="$root/tests/fuzz"
all_targets=(fuzz_dotenv fuzz_config_toml fuzz_keys fuzz_json fuzz_platform_responses fuzz_routes
             fuzz_http)
targets=("${all_targets[@]}")
if (( $# > 0 )); then targets=("$@"); fi

if ! command -v clang++-16 >/dev/null ||
   ! ls /usr/lib/llvm-16/lib/clang/16/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1; then
  echo "== installing clang-16 and libclang-rt-16-dev"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-16 libclang-rt-16-dev
fi

echo "== configuring and building $build"
build_start=$SECONDS
CC=clang-16 CXX=clang++-16 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DAICACHE_BUILD_FUZZERS=ON -DAICACHE_BUILD_TESTS=OFF -DAICACHE_BUILD_BENCHMARKS=OFF \
  -DAICACHE_BUILD_TOOLS=OFF -DAICACHE_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
echo "== built in $((SECONDS - build_start)) s"

# Flags of single targets. fuzz_http: the service keeps state from one input
# to the next (stored entries, worker threads, connections), so libFuzzer's
# check after each input that every allocation was freed always fires, and
# the whole-heap leak scan it then runs divides the speed by five.
# LeakSanitizer still checks the process when the run ends.
declare -A target_flags=([fuzz_http]="-detect_leaks=0")

# run_target NAME: one bounded run; its log is fuzz-work/NAME/log, its exit
# status fuzz-work/NAME/status.
run_target() {
  local name="$1" work="$build/fuzz-work/$1"
  rm -rf "$work"
  mkdir -p "$work/corpus"
  cp -r "$fuzz_src/corpus/$name/." "$work/corpus/"
  local dict=()
  [[ -f "$fuzz_src/$name.dict" ]] && dict=("-dict=$fuzz_src/$name.dict")
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: ASan's
  # quarantine needs room, more than 2 GiB is a leak or a blow-up.
  local flags=()
  read -r -a flags <<<"${target_flags[$name]:-}"
  local status=0
  (cd "$work" && "$build/tests/fuzz/$name" -max_total_time="$seconds" -timeout=10 \
     -rss_limit_mb=2048 "${dict[@]}" "${flags[@]}" -artifact_prefix="$work/" corpus \
     >"$work/log" 2>&1) ||
    status=$?
  echo "$status" >"$work/status"
}

echo "== running ${#targets[@]} targets, $seconds s each, up to $(nproc) at a time"
for name in "${targets[@]}"; do
  while (( $(jobs -rp | wc -l) >= $(nproc) )); do wait -n || true; done
  run_target "$name" &
done
wait

failed=0
summary=()
for name in "${targets[@]}"; do
  work="$build/fuzz-work/$name"
  status=ok
  if [[ "$(cat "$work/status" 2>/dev/null)" != 0 ]]; then status=FAILED; failed=1; fi
  # The last stats line: "#123456	DONE   cov: 445 ft: 2115 corp: 501/68Kb ... exec/s: 28257 ..."
  stats="$(grep -E '^#[0-9]+' "$work/log" | tail -n 1 || true)"
  runs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$stats")"
  cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$stats")"
  ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$stats")"
  rate="$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$stats")"
  corpus="$(find "$work/corpus" -type f | wc -l)"
  summary+=("$(printf '%-24s %-6s %10s %8s %6s %6s %7s' "$name" "$status" "${runs:-?}" \
              "${rate:-?}" "${cov:-?}" "${ft:-?}" "$corpus")")
  if [[ "$status" != ok ]]; then
    echo "== $name FAILED; the end of $work/log:"
    tail -n 40 "$work/log"
    for artifact in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* \
                    "$work"/slow-unit-*; do
      [[ -e "$artifact" ]] && echo "== $name: failing input: $artifact"
    done
  fi
done

echo "== summary ($seconds s per target; logs in $build/fuzz-work/<target>/log)"
printf '%-24s %-6s %10s %8s %6s %6s %7s\n' target status execs exec/s cov ft corpus
printf '%s\n' "${summary[@]}"
exit "$failed"
