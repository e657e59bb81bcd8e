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
# 4. Boards (docs/cross-compiling.md): each board in LOOPBOT_BOARDS is
#    cross-built and its whole suite (unit, fuzz corpus, integration) run
#    under qemu-user; rpi-armhf also runs unit + fuzz with
#    -fsanitize=alignment. Default in CI: the two Raspberry Pi presets
#    (measured on 2 cores: ~2 min each, ~1 min for the alignment build);
#    locally only when LOOPBOT_BOARDS is set, e.g.
#      LOOPBOT_BOARDS="rpi-arm64 rpi-armhf rpi-armv6 beaglebone" scripts/test.sh
#    Then the host's .deb is built, inspected and unpacked, and its broker run.
boards=${LOOPBOT_BOARDS-${CI:+rpi-arm64 rpi-armhf}}
for b in $boards; do
  echo "== board $b (cross build, tests under qemu-user)"
  t0=$SECONDS
  boards/install-deps.sh "$b"
  cmake --workflow --preset "$b" --fresh
  if [ "$b" = rpi-armhf ]; then
    cmake --workflow --preset rpi-armhf-alignment --fresh
  fi
  echo "board $b: $((SECONDS - t0)) s"
done
if [ -n "$boards" ]; then
  echo "== .deb for this machine"
  (cd build && cpack -G DEB >/dev/null)
  deb=$(ls build/loopbot_*.deb | head -1)
  dpkg-deb --info "$deb"
  dpkg-deb --contents "$deb"
  root=$(mktemp -d)
  dpkg-deb -x "$deb" "$root"
  dpkg-deb -e "$deb" "$root/DEBIAN"
  for f in usr/sbin/loopbot etc/loopbot/loopbot.conf lib/systemd/system/loopbot.service \
           DEBIAN/postinst DEBIAN/prerm DEBIAN/postrm DEBIAN/conffiles; do
    [ -e "$root/$f" ] || { echo "missing in $deb: $f"; exit 1; }
  done
  "$root/usr/sbin/loopbot" --version
  # The shipped configuration (its /etc paths moved into the scratch root)
  # loads and keeps the broker local only; on a free port here, so a broker
  # already on 1883 does not matter.
  sed "s|/etc/loopbot|$root/etc/loopbot|g" "$root/etc/loopbot/loopbot.conf" >"$root/test.conf"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  timeout --preserve-status -s TERM 3 "$root/usr/sbin/loopbot" \
      -c "$root/test.conf" -p "$port" >"$root/run.log" 2>&1 \
    || { cat "$root/run.log"; echo "the packaged broker failed with the packaged config"; exit 1; }
  grep -q "local only mode" "$root/run.log" \
    || { cat "$root/run.log"; echo "the packaged config is not local only"; exit 1; }
  rm -rf "$root"
  echo "package $deb: ok"
fi
echo "all test layers passed"
