# beaglebone: 512 MB like a Zero 2 W, but one Cortex-A8 core at 1 GHz:
# CPU, not memory, limits it first, so fewer connections than rpi-armhf.
set(LOOPBOT_DEFAULT_MAX_CONNECTIONS 10000 CACHE STRING "Default max_connections (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES 500 CACHE STRING "Default max_queued_messages per client (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_BYTES 524288 CACHE STRING "Default max_queued_bytes per client (0 = unlimited)")
