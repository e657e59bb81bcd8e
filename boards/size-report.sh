#!/usr/bin/env bash
# For each board's build (build-<board>, from `cmake --preset <board>` and a
# build), prints the stripped size of the broker and its resident memory
# right after start with that board's defaults.
#
#   boards/size-report.sh [BOARD...]      (default: every board built)
#
# ARM builds run under qemu-user, so their RSS is qemu's: the emulator, its
# translated-code cache and the guest's pages together. The script also
# measures qemu's own baseline (the same qemu idling in a tiny static guest
# program that only sleeps) and prints it, and the difference, which is
# the closest this machine gets to the figure on the board. Measure on the
# board itself for the real number: `grep VmRSS /proc/$(pidof loopbot)/status`.
set -euo pipefail
cd "$(dirname "$0")/.."
boards=("$@")
[ ${#boards[@]} -gt 0 ] || boards=(linux-host rpi-arm64 rpi-armhf rpi-armv6 beaglebone)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listening() { # port pid
  for _ in $(seq 200); do
    kill -0 "$2" 2>/dev/null || return 1
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" \
      2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# The board's qemu command, as its toolchain file builds it (the emulator
# is a toolchain variable, not cached).
tc_get() { sed -n "s/^set($2 \([^ )]*\))$/\1/p" "boards/$1/toolchain.cmake"; }
emulator() {
  local q cpu triple
  q=$(tc_get "$1" LOOPBOT_QEMU)
  [ -n "$q" ] || return 0
  cpu=$(tc_get "$1" LOOPBOT_QEMU_CPU)
  triple=$(tc_get "$1" LOOPBOT_CROSS_TRIPLE)
  echo "$q ${cpu:+-cpu $cpu} -L /usr/$triple"
}

cache_get() { sed -n "s/^$2:[A-Z]*=//p" "$1/CMakeCache.txt" | head -1; }

printf '%-11s %-8s %10s %10s %12s %12s %s\n' board arch "stripped" "RSS kB" "qemu base" "RSS-base" "defaults (max_connections/queued msgs/queued bytes)"
for b in "${boards[@]}"; do
  dir=build-$b
  bin=$dir/broker/loopbot
  if [ ! -x "$bin" ]; then
    printf '%-11s (not built: cmake --preset %s && cmake --build --preset %s)\n' "$b" "$b" "$b"
    continue
  fi
  emu=$(emulator "$b")
  strip=$(cache_get "$dir" CMAKE_STRIP)
  [ -n "$strip" ] || strip=strip
  cp "$bin" "$work/loopbot-$b"
  "$strip" "$work/loopbot-$b"
  size=$(stat -c %s "$work/loopbot-$b")
  arch=$(file -b "$bin" | sed -n 's/.*LSB [a-z ]*executable, \([^,]*\),.*/\1/p' | sed 's/ARM aarch64/aarch64/; s/^ARM$/arm32/')
  defaults="$(cache_get "$dir" LOOPBOT_DEFAULT_MAX_CONNECTIONS)/$(cache_get "$dir" LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES)/$(cache_get "$dir" LOOPBOT_DEFAULT_MAX_QUEUED_BYTES)"
  [ "$defaults" != "//" ] || defaults="built-in"
  static=$(cache_get "$dir" LOOPBOT_STATIC)

  port=$(free_port)
  printf 'listener %s 127.0.0.1\nlog_dest none\n' "$port" > "$work/$b.conf"
  # shellcheck disable=SC2086
  $emu "$bin" -c "$work/$b.conf" >/dev/null 2>&1 &
  pid=$!
  pids+=("$pid")
  if ! wait_listening "$port" "$pid"; then
    printf '%-11s %-8s %10s  did not start\n' "$b" "$arch" "$size"
    continue
  fi
  sleep 0.3
  rss=$(rss_kb "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true

  base="-" diff="-"
  if [ -n "$emu" ]; then
    # qemu's baseline: the same emulator running a static guest that only
    # sleeps (built with the board's compiler; a static guest loads no
    # shared libraries, so this is qemu plus almost nothing).
    cc=$(tc_get "$b" LOOPBOT_CROSS_TRIPLE)-gcc
    printf '#include <unistd.h>\nint main(void){sleep(30);return 0;}\n' > "$work/idle.c"
    "$cc" -O2 -static -o "$work/idle-$b" "$work/idle.c"
    # shellcheck disable=SC2086
    $emu "$work/idle-$b" &
    ipid=$!
    pids+=("$ipid")
    sleep 1
    base=$(rss_kb "$ipid")
    kill "$ipid"; wait "$ipid" 2>/dev/null || true
    diff=$((rss - base))
  fi
  printf '%-11s %-8s %10s %10s %12s %12s %s%s\n' "$b" "$arch" "$size" "$rss" "$base" "$diff" "$defaults" \
    "$([ "$static" = ON ] && echo ' (static)')"
done
echo
echo "stripped: bytes of the broker after strip; RSS: VmRSS right after start (no clients)."
echo "ARM rows ran under qemu-user: 'qemu base' is qemu's own RSS idling in a static"
echo "program, 'RSS-base' the estimate for the broker on the board (shared libraries"
echo "counted as far as they are touched)."
