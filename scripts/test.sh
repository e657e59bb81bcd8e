#!/usr/bin/env bash
# Builds and runs every test layer:
#   1. normal build: unit (cmocka), fuzz corpus replay, integration (real
#      binary driven by mosquitto_pub/sub, libmosquitto and raw sockets);
#   2. ASan + UBSan build of the same suite (aborts on the first report);
#   3. clang libFuzzer build, each target run for FUZZ_SECONDS (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-30}

echo "== normal build"
cmake -S . -B build -DLOOPBOT_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DLOOPBOT_WERROR=ON -DLOOPBOT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")

echo "== libFuzzer build (${fuzz_seconds}s per target)"
CC=clang cmake -S . -B build-fuzz -DLOOPBOT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$jobs"
for bin in build-fuzz/tests/fuzz/*-libfuzzer; do
  name=$(basename "$bin" -libfuzzer)
  work=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$name/." "$work/"
  "$bin" -max_total_time="$fuzz_seconds" -print_final_stats=0 "$work" 2>"$work.log" \
    || { tail -50 "$work.log"; echo "fuzz target $name failed"; exit 1; }
  echo "fuzz $name: $(grep -c . <(ls "$work")) corpus entries, no crash in ${fuzz_seconds}s"
  rm -rf "$work" "$work.log"
done
echo "all test layers passed"
