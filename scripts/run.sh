#!/usr/bin/env bash
# Builds loopbot and runs it. With no arguments it uses the built-in default
# configuration (listen on 127.0.0.1 and ::1 port 1883, anonymous allowed,
# like mosquitto 2.x without a config file). Arguments are passed to loopbot,
# e.g. scripts/run.sh -c /etc/loopbot/loopbot.conf
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOPBOT_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target loopbot
exec build/broker/loopbot "$@"
