#!/usr/bin/env bash
# A bounded libFuzzer run of every parser of untrusted bytes (tests/fuzz), with ASan + UBSan.
#
#   scripts/fuzz.sh [--merge] [fuzz_safetensors|fuzz_qmap|fuzz_shard_index ...]
#
# Configures tests/fuzz as a project of its own in $FUZZ_BUILD_DIR (default build-fuzz) with
# clang++, builds only the fuzz targets, then runs them all at the same time for $FUZZ_SECONDS seconds
# (default 30), each from a copy of its committed corpus (tests/fuzz/corpus/<target>) so that
# the corpus is left as it is; with --merge, the inputs that add coverage are merged back into it.
# Fails (exit 1) when any target crashes, leaks, hits UB, times out (-timeout=10) or goes over
# -rss_limit_mb=2048; the reproducer is kept in $FUZZ_BUILD_DIR/artifacts. Prints the executions
# and the coverage of each target.
#
# Environment: FUZZ_SECONDS, FUZZ_BUILD_DIR, FUZZ_JOBS (build parallelism, default: nproc),
# FUZZ_CXX (default clang++).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
build=${FUZZ_BUILD_DIR:-build-fuzz}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
cxx=${FUZZ_CXX:-clang++}
all_targets=(fuzz_safetensors fuzz_qmap fuzz_shard_index)

merge=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --merge) merge=1 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    fuzz_safetensors | fuzz_qmap | fuzz_shard_index) targets+=("$arg") ;;
    *) echo "fuzz.sh: unknown argument '$arg' (targets: ${all_targets[*]})" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

if ! command -v "$cxx" >/dev/null; then
  echo "fuzz.sh: $cxx not found; libFuzzer needs Clang (apt-get install clang)" >&2
  exit 2
fi

start=$(date +%s)
flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all"
# Ninja builds the (independent, one-TU) targets in parallel; Make builds the named targets one after
# the other. A build folder keeps the generator it was configured with.
generator=()
[ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S tests/fuzz -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE= \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DQUANTO_BUILD_FUZZERS=ON -DQUANTO_BUILD_BENCH=OFF -DQUANTO_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --parallel "$jobs" --target "${targets[@]}"
built=$(date +%s)
echo "fuzz.sh: configured and built in $((built - start)) s"

artifacts="$build/artifacts"
mkdir -p "$artifacts"
work=$(mktemp -d "${TMPDIR:-/tmp}/quanto-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"

# One target's run: its log, its status in $work/$t.status. The targets run at the same time (each is
# one process; on a 2-core machine three of them share the cores for the same wall time), so the step
# takes FUZZ_SECONDS rather than FUZZ_SECONDS per target.
fuzz_one() {
  local t=$1 status=0
  mkdir -p "$work/$t"
  cp -R "tests/fuzz/corpus/$t/." "$work/$t/"
  "$build/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -dict="tests/fuzz/dict/$t.dict" -artifact_prefix="$artifacts/$t-" "$work/$t" >"$build/$t.log" 2>&1 || status=$?
  echo "$status" >"$work/$t.status"
}
pids=()
for t in "${targets[@]}"; do
  echo "fuzz.sh: $t for $seconds s (log: $build/$t.log)"
  fuzz_one "$t" &
  pids+=($!)
done
wait "${pids[@]}" || true

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="tests/fuzz/corpus/$t"
  log="$build/$t.log"
  status=$(cat "$work/$t.status" 2>/dev/null || echo 255)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$done_line" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$done_line" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
  rate=$(echo "$done_line" | sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p')
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    summary+=("$(printf '%-18s FAILED (exit %s) after %s executions; see %s' "$t" "$status" "${execs:-?}" "$log")")
    echo "fuzz.sh: $t FAILED (exit $status). The end of its log:" >&2
    tail -n 40 "$log" >&2
    ls -1 "$artifacts/$t-"* 2>/dev/null | sed 's/^/  reproducer: /' >&2 || true
    echo "  replay it: $build/$t <reproducer>, or ${t}_replay <reproducer> in any build" >&2
  else
    summary+=("$(printf '%-18s %10s execs  %6s exec/s  cov %5s  ft %6s  corpus %s' "$t" "${execs:-?}" \
      "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
  fi
  if [ "$merge" -eq 1 ] && [ "$status" -eq 0 ]; then
    "$build/$t" -merge=1 -rss_limit_mb=2048 -timeout=10 "$corpus" "$work/$t" >>"$log" 2>&1
    echo "fuzz.sh: merged new coverage into $corpus ($(ls "$corpus" | wc -l) files, $(du -sk "$corpus" | cut -f1) KB)"
  fi
done

echo
echo "fuzz.sh: ${#targets[@]} target(s), ${seconds} s each, $(($(date +%s) - start)) s in all"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (reproducers in $artifacts)" >&2
  exit 1
fi
