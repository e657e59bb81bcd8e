/* A private non-blocking description for stderr/stdout. Opening
 * /proc/self/fd/N opens the same pipe or terminal anew (unlike dup, which
 * shares the description and therefore its O_NONBLOCK flag with the shell
 * and every process on that terminal). Fails with ENXIO for sockets, which
 * the log writes with MSG_DONTWAIT instead. */
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

int platform_fd_reopen_nonblock(int fd)
{
    char path[40];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    int nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    return nfd < 0 ? -errno : nfd;
}
