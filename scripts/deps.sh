#!/usr/bin/env bash
# Installs what building and testing loopbot needs, from Debian's packages,
# only if something is missing. Usage: scripts/deps.sh [build|test]
set -euo pipefail
what=${1:-build}

pkgs=(build-essential cmake pkg-config libevent-dev libmbedtls-dev libsqlite3-dev)
if [ "$what" = test ]; then
  # cmocka for unit tests; mosquitto clients and libmosquitto drive the
  # integration tests; python3 runs them; clang builds the libFuzzer targets.
  pkgs+=(libcmocka-dev libmosquitto-dev mosquitto-clients mosquitto python3 openssl clang libclang-rt-14-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# A mirror mid-sync can fail one index (often a foreign architecture's)
# while every package we need is still there: go on and let install decide.
$sudo apt-get update -qq || echo "apt-get update reported errors; trying the install anyway" >&2
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
