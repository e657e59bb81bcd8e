/* Random bytes: getrandom(2), falling back to /dev/urandom when the pool
 * is not initialised yet (GRND_NONBLOCK gives EAGAIN: a Pi without a
 * hardware RNG driver can take minutes after boot) or the kernel is older
 * than 3.17 (ENOSYS). Never blocks the loop. */
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

static int from_urandom(unsigned char *p, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            close(fd);
            return err;
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    return 0;
}

int platform_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len) {
        ssize_t n = getrandom(p, len, GRND_NONBLOCK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == ENOSYS)
                return from_urandom(p, len);
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
