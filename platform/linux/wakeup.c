/* The persistence worker's "commit done" signal to the loop: an eventfd is
 * one fd and 8 bytes, where a pipe would be two fds and a buffer. */
#include "platform/platform.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

int platform_wakeup_new(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

void platform_wakeup_signal(int fd)
{
    uint64_t one = 1;
    /* EAGAIN only when the counter is about to overflow: it is readable then. */
    ssize_t n = write(fd, &one, sizeof(one));
    (void)n;
}

void platform_wakeup_drain(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
}
