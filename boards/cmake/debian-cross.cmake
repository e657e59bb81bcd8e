# Shared base for cross-compiling loopbot with Debian 12's cross toolchains
# (gcc-<triple> + multiarch -dev packages, no sysroot). A board's
# toolchain.cmake sets these, then includes this file:
#
#   LOOPBOT_CROSS_TRIPLE     GNU triple, e.g. aarch64-linux-gnu
#   LOOPBOT_CROSS_PROCESSOR  CMAKE_SYSTEM_PROCESSOR, e.g. aarch64
#   LOOPBOT_QEMU             qemu-user program, e.g. qemu-aarch64
#   LOOPBOT_QEMU_CPU         optional: qemu -cpu model, so the tests fail on
#                            an instruction the board's CPU does not have
#
# and puts its CPU flags in CMAKE_C_FLAGS_INIT, so -DCMAKE_C_FLAGS=... from
# the user adds to them instead of replacing them.
#
# Where things are found (boards/install-deps.sh installs them):
#  - compiler:  /usr/bin/<triple>-gcc
#  - libraries: /usr/lib/<triple> (multiarch, PACKAGE:ARCH), searched by the
#    cross gcc itself; the C library is /usr/<triple> (libc6-dev-ARCH-cross)
#  - pkg-config: PKG_CONFIG_LIBDIR=/usr/lib/<triple>/pkgconfig:/usr/share/pkgconfig
#    so the build machine's .pc files are never seen
#  - libevent: Debian 12's libevent-dev is not Multi-Arch: same (its
#    event2/event-config.h differs per architecture), so installing
#    libevent-dev:ARCH would remove the build machine's libevent-dev.
#    install-deps.sh unpacks it instead into LOOPBOT_CROSS_DEVROOT
#    (/opt/loopbot-cross/<triple>), whose include/ and pkgconfig/ come first.
#  - tests run through CMAKE_CROSSCOMPILING_EMULATOR: qemu-<arch> -L /usr/<triple>
#    (no binfmt_misc registration needed).
if(NOT LOOPBOT_CROSS_TRIPLE OR NOT LOOPBOT_CROSS_PROCESSOR OR NOT LOOPBOT_QEMU)
  message(FATAL_ERROR "debian-cross.cmake: set LOOPBOT_CROSS_TRIPLE, LOOPBOT_CROSS_PROCESSOR "
                      "and LOOPBOT_QEMU before including it")
endif()
set(_triple ${LOOPBOT_CROSS_TRIPLE})

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${LOOPBOT_CROSS_PROCESSOR})
set(CMAKE_LIBRARY_ARCHITECTURE ${_triple})

find_program(_loopbot_cross_cc ${_triple}-gcc)
if(NOT _loopbot_cross_cc)
  message(FATAL_ERROR "${_triple}-gcc not found: run boards/install-deps.sh ${LOOPBOT_BOARD}")
endif()
set(CMAKE_C_COMPILER ${_loopbot_cross_cc})
# CMake finds the matching <triple>-ar, -strip, -objcopy from the compiler's
# name, so CPack and strip use the target's binutils.

set(LOOPBOT_CROSS_DEVROOT /opt/loopbot-cross/${_triple} CACHE PATH
    "Where install-deps.sh unpacked the target's libevent-dev")
set(_pc /usr/lib/${_triple}/pkgconfig:/usr/share/pkgconfig)
if(EXISTS ${LOOPBOT_CROSS_DEVROOT}/usr/lib/${_triple}/pkgconfig)
  set(_pc ${LOOPBOT_CROSS_DEVROOT}/usr/lib/${_triple}/pkgconfig:${_pc})
endif()
set(ENV{PKG_CONFIG_LIBDIR} ${_pc})
unset(ENV{PKG_CONFIG_PATH})
unset(ENV{PKG_CONFIG_SYSROOT_DIR})

# 32-bit ARM: 64-bit off_t, so a log file may pass 2 GB and readdir works
# under qemu-user (a 64-bit host kernel hands out 64-bit directory cookies
# that the 32-bit readdir rejects with EOVERFLOW: the fuzz corpus replay
# found 0 files). time_t stays 32-bit (-D_TIME_BITS=64 would change
# libevent's struct timeval ABI, which Debian 12 built with 32-bit time_t);
# the broker's own clock is uint64_t milliseconds (platform_now_ms).
if(_triple MATCHES "^arm-linux-gnueabi")
  string(APPEND CMAKE_C_FLAGS_INIT " -D_FILE_OFFSET_BITS=64")
endif()

find_program(_loopbot_qemu ${LOOPBOT_QEMU})
if(_loopbot_qemu)
  set(_emu ${_loopbot_qemu})
  if(LOOPBOT_QEMU_CPU)
    list(APPEND _emu -cpu ${LOOPBOT_QEMU_CPU})
  endif()
  list(APPEND _emu -L /usr/${_triple})
  set(CMAKE_CROSSCOMPILING_EMULATOR ${_emu})
else()
  message(WARNING "${LOOPBOT_QEMU} not found: cross-built tests cannot run "
                  "(apt-get install qemu-user)")
endif()

# Opt-in alignment check (UBSan's -fsanitize=alignment, abort on the first
# report) for test builds: qemu-user, like the kernel on ARMv7+, quietly
# performs unaligned loads, so only the sanitizer makes them visible.
# Never ship such a binary: it aborts where a Pi would just run slower.
if(LOOPBOT_ALIGNMENT_CHECK)
  string(APPEND CMAKE_C_FLAGS_INIT " -fsanitize=alignment -fno-sanitize-recover=alignment")
  string(APPEND CMAKE_EXE_LINKER_FLAGS_INIT " -fsanitize=alignment")
endif()

set(LOOPBOT_BOARD ${LOOPBOT_BOARD} CACHE STRING "Target board (boards/<board>)")
