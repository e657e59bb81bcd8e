/* systemd's readiness protocol without libsystemd: one datagram to the
 * AF_UNIX socket named by $NOTIFY_SOCKET (sd_notify(3)). Linking libsystemd
 * for two messages would add ~1 MB of dependencies to a Pi image and tie
 * the static build to it; the protocol is a single sendto. */
#include "platform/platform.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Returns 1 when sent, 0 when not run by systemd (no $NOTIFY_SOCKET), or
 * -errno. "@name" is an abstract socket (a leading NUL), "/path" a file. */
static int notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len < 2)
        return -EAFNOSUPPORT; /* e.g. systemd 254's "vsock:..." */
    if (len > sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    /* An abstract name's length is exact; a path also counts its NUL. */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                                  (path[0] == '/' && len < sizeof(sa.sun_path) ? 1 : 0));

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    size_t n = strlen(msg);
    ssize_t w;
    do
        w = sendto(fd, msg, n, MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
    while (w < 0 && errno == EINTR);
    int rc = w < 0 ? -errno : 1;
    close(fd);
    return rc;
}

int platform_notify_ready(void)
{
    return notify("READY=1\nSTATUS=Accepting connections");
}

int platform_notify_stopping(void)
{
    return notify("STOPPING=1\nSTATUS=Disconnecting clients");
}
