# linux-host: the build machine itself (native gcc, no emulator). Kept as a
# toolchain file so every board is chosen the same way and gets its
# defaults.cmake; the flags stay the distribution's (no -march=native: the
# .deb built here must run on any machine of the same architecture).
set(LOOPBOT_BOARD linux-host)
set(LOOPBOT_BOARD ${LOOPBOT_BOARD} CACHE STRING "Target board (boards/<board>)")
include(${CMAKE_CURRENT_LIST_DIR}/defaults.cmake)
