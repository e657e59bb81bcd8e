# rpi-armv6: Pi Zero / Zero W have 512 MB, a Pi 1 model A 256 MB, and a
# single 700 MHz-1 GHz ARM11 core. 2000 connections and 256 KiB per slow
# client keep the worst case of a few dozen stuck subscribers in the tens
# of MB on the 256 MB board.
set(LOOPBOT_DEFAULT_MAX_CONNECTIONS 2000 CACHE STRING "Default max_connections (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES 200 CACHE STRING "Default max_queued_messages per client (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_BYTES 262144 CACHE STRING "Default max_queued_bytes per client (0 = unlimited)")
