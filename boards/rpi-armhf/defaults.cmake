# rpi-armhf: same boards and memory as rpi-arm64 (Zero 2 W: 512 MB); the
# 32-bit build needs a little less per connection (smaller pointers).
set(LOOPBOT_DEFAULT_MAX_CONNECTIONS 20000 CACHE STRING "Default max_connections (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES 1000 CACHE STRING "Default max_queued_messages per client (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_BYTES 1048576 CACHE STRING "Default max_queued_bytes per client (0 = unlimited)")
