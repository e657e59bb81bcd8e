# beaglebone: BeagleBone Black / Green (TI AM335x, Cortex-A8 with NEON,
# 512 MB) running Debian armhf, which is what BeagleBoard.org ships.
set(LOOPBOT_BOARD beaglebone)
set(LOOPBOT_CROSS_TRIPLE arm-linux-gnueabihf)
set(LOOPBOT_CROSS_PROCESSOR armv7l)
set(LOOPBOT_QEMU qemu-arm)
set(LOOPBOT_QEMU_CPU cortex-a8)
set(CMAKE_C_FLAGS_INIT "-mcpu=cortex-a8 -mfpu=neon -mfloat-abi=hard -mthumb")
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/debian-cross.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/defaults.cmake)
