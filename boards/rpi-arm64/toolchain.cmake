# rpi-arm64: Raspberry Pi 3, 4, 5 and Zero 2 W running a 64-bit OS
# (Raspberry Pi OS 64-bit or Debian arm64). Cortex-A53 (Pi 3, Zero 2 W),
# A72 (Pi 4), A76 (Pi 5).
#
# ARMv8-A with CRC32 is what all four have; tuned for the A53 because the
# in-order core gains most from scheduling, while the out-of-order A72/A76
# barely notice. Tests run on qemu's cortex-a53 model.
set(LOOPBOT_BOARD rpi-arm64)
set(LOOPBOT_CROSS_TRIPLE aarch64-linux-gnu)
set(LOOPBOT_CROSS_PROCESSOR aarch64)
set(LOOPBOT_QEMU qemu-aarch64)
set(LOOPBOT_QEMU_CPU cortex-a53)
set(CMAKE_C_FLAGS_INIT "-march=armv8-a+crc -mtune=cortex-a53")
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/debian-cross.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/defaults.cmake)
