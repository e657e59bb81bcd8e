# rpi-armv6: Raspberry Pi Zero, Zero W and Pi 1 (ARM1176JZF-S: ARMv6 with
# VFPv2). What reaches them honestly (docs/raspberry-pi.md):
#  - Debian's armel toolchain and libraries (arm-linux-gnueabi). Debian
#    armel is ARMv5TE with the soft-float ABI: it runs on ARMv6, but its
#    dynamic linker and libraries are not Raspberry Pi OS's.
#  - So a dynamically linked armel loopbot runs on Debian armel on the Pi,
#    and a static one (-DLOOPBOT_STATIC=ON) runs on Raspberry Pi OS 32-bit
#    as well, because a static binary brings its own C library and the
#    kernel does not care about the float ABI.
#  - What does not: Debian armhf is ARMv7 (illegal instructions on a Pi
#    Zero); Raspberry Pi OS's armhf is ARMv6 hard-float and has no Debian
#    cross toolchain or multiarch libraries.
# -mfloat-abi=softfp keeps the armel calling convention while using the VFP
# unit inside functions. Tests run on qemu's arm1176 model, so an ARMv7
# instruction fails them.
set(LOOPBOT_BOARD rpi-armv6)
set(LOOPBOT_CROSS_TRIPLE arm-linux-gnueabi)
set(LOOPBOT_CROSS_PROCESSOR armv6l)
set(LOOPBOT_QEMU qemu-arm)
set(LOOPBOT_QEMU_CPU arm1176)
set(CMAKE_C_FLAGS_INIT "-mcpu=arm1176jzf-s -mfpu=vfp -mfloat-abi=softfp -marm")
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/debian-cross.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/defaults.cmake)
