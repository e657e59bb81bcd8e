# linux-host: a PC or server. Today's built-in defaults (mosquitto's): no
# connection limit, 1000 queued messages per client, no byte limit.
# 0 means "keep the built-in default". Override with -D on the command line.
set(LOOPBOT_DEFAULT_MAX_CONNECTIONS 0 CACHE STRING "Default max_connections (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES 1000 CACHE STRING "Default max_queued_messages per client (0 = unlimited)")
set(LOOPBOT_DEFAULT_MAX_QUEUED_BYTES 0 CACHE STRING "Default max_queued_bytes per client (0 = unlimited)")
