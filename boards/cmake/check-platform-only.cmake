# Only platform/ may know the operating system or the CPU (STYLE.md): this
# fails when broker/ or mqtt/ reach for a Linux-only header or API, a byte
# order or unaligned-access shortcut, or /proc. Run as
#   cmake -DROOT=<source dir> -P boards/cmake/check-platform-only.cmake
# at configure time and as the ctest test portability.platform_only.
# The platform/ call to use instead is named with each rule.
if(NOT ROOT)
  get_filename_component(ROOT ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)
endif()

# Pairs: a regex, then what to use instead (neither may contain ';').
set(_rules
  "#[ \t]*include[ \t]*<sys/(epoll|eventfd|timerfd|signalfd|inotify|sendfile|prctl|sysinfo|random|auxv)\\.h>;loop.c's libevent wrapper or a platform_* function"
  "#[ \t]*include[ \t]*<(linux|asm|machine)/;a platform_* function"
  "#[ \t]*include[ \t]*<(endian|byteswap)\\.h>;the codec's byte-at-a-time cursor (mqtt/cursor.h)"
  "__builtin_bswap|bswap_(16|32|64)|(htobe|htole|be|le)(16|32|64)(toh)?[ \t]*\\(;byte-at-a-time big-endian reads (mqtt/cursor.h)"
  "(^|[^a-z_])accept4[ \t]*\\(;platform_accept()"
  "(^|[^a-z_])getrandom[ \t]*\\(;platform_random()"
  "(^|[^a-z_])epoll_[a-z_]+[ \t]*\\(;loop.c (libevent)"
  "\"/proc/|\"/sys/;a platform_* function"
  "defined[ \t]*\\(?[ \t]*__(linux|linux__|gnu_linux__|APPLE__|FreeBSD__|arm__|aarch64__|x86_64__|i386__|ARM_ARCH[A-Z0-9_]*)[ \t]*\\)?|#[ \t]*ifn?def[ \t]+__(linux|linux__|gnu_linux__|APPLE__|FreeBSD__|arm__|aarch64__|x86_64__|i386__|ARM_ARCH[A-Z0-9_]*);platform/ (CMake picks the files per system)"
)

file(GLOB_RECURSE _files ${ROOT}/broker/*.c ${ROOT}/broker/*.h ${ROOT}/mqtt/*.c ${ROOT}/mqtt/*.h)
set(_bad 0)
# Keywords of all rules (CMake regexes allow only 9 groups, so not the
# rules themselves): most files are skipped after one match.
set(_any "epoll|eventfd|timerfd|signalfd|inotify|sendfile|prctl|sysinfo|sys/random|auxv|linux/|asm/|\
machine/|endian|byteswap|bswap|htobe|htole|be16|be32|be64|le16|le32|le64|accept4|getrandom|/proc/|/sys/|\
__linux|__gnu_linux|__APPLE__|__FreeBSD__|__arm__|__aarch64__|__x86_64__|__i386__|__ARM_ARCH")

foreach(_f IN LISTS _files)
  file(READ ${_f} _text)
  if(NOT _text MATCHES "${_any}")
    continue()
  endif()
  file(STRINGS ${_f} _lines)
  set(_n 0)
  set(_in_comment FALSE)
  foreach(_line IN LISTS _lines)
    math(EXPR _n "${_n} + 1")
    # Comments may name what they avoid ("... into one epoll_ctl"): strip
    # block comments that close on the line, skip lines inside one.
    set(_code "${_line}")
    if(_in_comment)
      if(_code MATCHES "\\*/(.*)$")
        set(_code "${CMAKE_MATCH_1}")
        set(_in_comment FALSE)
      else()
        continue()
      endif()
    endif()
    string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" _code "${_code}")
    string(REGEX REPLACE "//.*$" "" _code "${_code}")
    if(_code MATCHES "/\\*")
      string(REGEX REPLACE "/\\*.*$" "" _code "${_code}")
      set(_in_comment TRUE)
    endif()
    set(_i 0)
    list(LENGTH _rules _nr)
    while(_i LESS _nr)
      list(GET _rules ${_i} _re)
      math(EXPR _j "${_i} + 1")
      list(GET _rules ${_j} _hint)
      if(_code MATCHES "${_re}")
        file(RELATIVE_PATH _rel ${ROOT} ${_f})
        message("${_rel}:${_n}: OS/CPU-specific code outside platform/: ${CMAKE_MATCH_0}\n"
                "    use ${_hint} instead\n    ${_line}")
        math(EXPR _bad "${_bad} + 1")
      endif()
      math(EXPR _i "${_i} + 2")
    endwhile()
  endforeach()
endforeach()
if(_bad GREATER 0)
  message(FATAL_ERROR "platform check: ${_bad} finding(s) in broker/ or mqtt/; "
                      "only platform/ may use OS- or CPU-specific code")
endif()
list(LENGTH _files _nf)
message(STATUS "platform check: ${_nf} files in broker/ and mqtt/ use no OS- or CPU-specific code")
