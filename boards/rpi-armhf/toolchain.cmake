# rpi-armhf: the same boards as rpi-arm64 (Pi 2, 3, 4, 5, Zero 2 W) running
# a 32-bit hard-float OS. Built with Debian's armhf toolchain (ARMv7-A,
# VFPv3-D16 baseline, Thumb-2): its ABI is the one Raspberry Pi OS 32-bit
# uses, so the binary runs there too, on ARMv7 and later CPUs only (not on
# a Pi Zero/Zero W/Pi 1: see rpi-armv6).
#
# NEON + VFPv4 are in every ARMv7+ Pi (Cortex-A7/A53/A72/A76). Tests run on
# qemu's cortex-a7 model (Pi 2), the oldest of them.
set(LOOPBOT_BOARD rpi-armhf)
set(LOOPBOT_CROSS_TRIPLE arm-linux-gnueabihf)
set(LOOPBOT_CROSS_PROCESSOR armv7l)
set(LOOPBOT_QEMU qemu-arm)
set(LOOPBOT_QEMU_CPU cortex-a7)
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -mthumb -mtune=cortex-a53")
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/debian-cross.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/defaults.cmake)
