#!/usr/bin/env bash
# clang-tidy, with the checks of .clang-tidy, over every public header (one translation unit that
# includes them all, for the machine's own ISA, so the widest kernels are seen) and the quanto tool.
# Fails on any finding. Environment: CLANG_TIDY (default clang-tidy), TIDY_ARCH (default -march=native).
set -euo pipefail
cd "$(dirname "$0")/.."
tidy=${CLANG_TIDY:-clang-tidy}
if ! command -v "$tidy" >/dev/null; then
  echo "tidy.sh: $tidy not found (apt-get install clang-tidy)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  for h in $(cd include && find quanto -name '*.hpp' -not -path 'quanto/cuda/*' | sort); do
    echo "#include \"$h\""
  done
  echo "int main() {}"
} >"$work/all_headers.cpp"
flags=(-std=c++20 -Iinclude -I/usr/include/eigen3 ${TIDY_ARCH:--march=native})
run() {  # clang-tidy's count of the warnings it suppressed (system headers, other checks) is noise
  "$tidy" --quiet --config-file=.clang-tidy "$@" 2> >(grep -v ' warnings generated\.$' >&2)
}
# the two translation units at the same time (clang-tidy is one thread each)
run "$work/all_headers.cpp" -- "${flags[@]}" &
headers=$!
status=0
run tools/quanto/main.cpp -- "${flags[@]}" || status=$?
wait "$headers" || status=$?
[ "$status" -eq 0 ] || exit "$status"
echo "tidy.sh: no findings"
