# rpi-arm64: the smallest board here is the Zero 2 W with 512 MB. An idle
# MQTT connection costs a few KB (its session in loopbot, its socket in the
# kernel), so 20,000 of them fit in ~150 MB and leave the rest to the OS;
# each slow subscriber's queue is bounded at 1000 messages / 1 MiB, so 100
# stuck clients cost at most 100 MiB.
set(LOOPBOT_DEFAULT_MAX_CONNECTIONS 20000 CACHE STRING "Default max_connections (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES 1000 CACHE STRING "Default max_queued_messages per client (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_BYTES 1048576 CACHE STRING "Default max_queued_bytes per client (0 = unlimited)")
