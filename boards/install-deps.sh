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
      "libevent-dev:$arch" "libmbedtls-dev:$arch" "libcmocka-dev:$arch"
      dpkg-dev file)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  echo "Adding dpkg architecture $arch"
  $sudo dpkg --add-architecture "$arch"
fi
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
