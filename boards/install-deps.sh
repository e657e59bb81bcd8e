#!/usr/bin/env bash
# Installs what building and testing loopbot for one board needs, from
# Debian 12's packages, only if something is missing.
#
#   boards/install-deps.sh BOARD      (linux-host rpi-arm64 rpi-armhf rpi-armv6 beaglebone)
#
# A cross board gets: the Debian cross compiler for its triple, the board's
# multiarch -dev packages (libevent, mbedTLS, cmocka) installed as
# PACKAGE:ARCH beside the host's, qemu-user to run the cross-built tests, and
# the host tools (cmake, pkg-config, python3, mosquitto-clients,
# libmosquitto-dev for the host). The libmosquitto test client is a client,
# not part of the broker, so it is built for the host even in a cross build
# (see docs/cross-compiling.md): that needs libmosquitto-dev for amd64 only.
#
# libevent is special: Debian 12's libevent-dev is not Multi-Arch: same (its
# event2/event-config.h differs per architecture), so apt would REMOVE the
# build machine's libevent-dev to install libevent-dev:ARCH. Instead its
# .deb (with libevent-core's and -extra's) is fetched with `apt-get download` and unpacked
# into /opt/loopbot-cross/TRIPLE, which boards/cmake/debian-cross.cmake puts
# first on the include and pkg-config paths. Nothing of the build machine's
# own packages changes.
set -euo pipefail
cd "$(dirname "$0")/.."
board=${1:-}
case "$board" in
  linux-host) exec scripts/deps.sh test ;;
  rpi-arm64) arch=arm64 triple=aarch64-linux-gnu ;;
  rpi-armhf | beaglebone) arch=armhf triple=arm-linux-gnueabihf ;;
  rpi-armv6) arch=armel triple=arm-linux-gnueabi ;;
  *)
    echo "usage: $0 linux-host|rpi-arm64|rpi-armhf|rpi-armv6|beaglebone" >&2
    exit 2
    ;;
esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# Host side: the build tools, the integration-test clients and qemu-user.
# qemu-user-static would do as well; the plain one is enough because the
# toolchain file runs tests through CMAKE_CROSSCOMPILING_EMULATOR
# (qemu-ARCH -L /usr/TRIPLE), so no binfmt registration is needed.
pkgs=(build-essential cmake pkg-config python3 mosquitto-clients libmosquitto-dev
      qemu-user "gcc-$triple" "libc6-dev-$arch-cross"
      "libmbedtls-dev:$arch" "libcmocka-dev:$arch"
      dpkg-dev file)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  echo "Adding dpkg architecture $arch"
  $sudo dpkg --add-architecture "$arch"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  # A mirror caught mid-sync fails one index ("File has unexpected size"):
  # try again, then go on with what was fetched; the install says if a
  # package really cannot be found.
  for try in 1 2 3; do
    $sudo apt-get update -qq && break
    echo "apt-get update failed (try $try); retrying in 10 s" >&2
    sleep 10
  done
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libevent for the target, unpacked beside the system (see the top).
devroot=/opt/loopbot-cross/$triple
want=$(apt-cache policy "libevent-dev:$arch" | awk '/Candidate:/ {print $2}')
if [ -z "$want" ] || [ "$want" = "(none)" ]; then
  echo "no libevent-dev:$arch in the package lists (apt-get update?)" >&2
  exit 1
fi
# SQLite likewise: libsqlite3-dev is Multi-Arch: same, so PACKAGE:ARCH must
# be the very version the build machine has; when a mirror serves the
# host's security update but not the target's, it cannot be installed.
# Unpacked, any version of the target's does.
sqlite_want=$(apt-cache policy "libsqlite3-dev:$arch" | awk '/Candidate:/ {print $2}')
if [ -z "$sqlite_want" ] || [ "$sqlite_want" = "(none)" ]; then
  echo "no libsqlite3-dev:$arch in the package lists (apt-get update?)" >&2
  exit 1
fi
if [ "$(cat "$devroot/.libevent-version" 2>/dev/null)" != "$want extra sqlite $sqlite_want" ]; then
  echo "Unpacking libevent-dev:$arch $want and libsqlite3-dev:$arch $sqlite_want into $devroot"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "libevent-dev:$arch=$want" "libevent-core-2.1-7:$arch=$want" \
      "libevent-extra-2.1-7:$arch=$want" "libsqlite3-dev:$arch=$sqlite_want" \
      "libsqlite3-0:$arch=$sqlite_want")
  $sudo rm -rf "$devroot"
  $sudo mkdir -p "$devroot"
  for deb in "$tmp"/*.deb; do $sudo dpkg-deb -x "$deb" "$devroot"; done
  rm -rf "$tmp"
  # Point the .pc files at the unpacked tree. libevent_core and _extra
  # (evhttp) are used; the other libevent*.so links dangle, harmlessly.
  $sudo sed -i "s|^prefix=.*|prefix=$devroot/usr|" "$devroot/usr/lib/$triple/pkgconfig/"*.pc
  echo "$want extra sqlite $sqlite_want" | $sudo tee "$devroot/.libevent-version" >/dev/null
fi
