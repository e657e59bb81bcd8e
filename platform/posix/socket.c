/* Listening sockets, reads and writes. Portable POSIX; accept4 lives in
 * platform/linux/. */
#include "platform/platform.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

int platform_listen(const char *addr, uint16_t port, int backlog, int *ipv)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        slen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        slen = sizeof(*sin6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    int rc = set_flags(fd);
    if (rc == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        rc = -errno;
    if (rc == 0 && ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
        rc = -errno;
    if (rc == 0 && bind(fd, (struct sockaddr *)&ss, slen) != 0)
        rc = -errno;
    if (rc == 0 && listen(fd, backlog) != 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    if (ipv)
        *ipv = ss.ss_family == AF_INET6 ? 6 : 4;
    return fd;
}

int platform_resolve_passive(const char *host, char (*out)[PLATFORM_ADDR_MAX], int max,
                             const char **why)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        *why = gai_strerror(rc);
        return -EINVAL;
    }
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        const void *a;
        if (ai->ai_family == AF_INET)
            a = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            a = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        else
            continue;
        if (!inet_ntop(ai->ai_family, a, out[n], PLATFORM_ADDR_MAX))
            continue;
        int dup = 0;
        for (int i = 0; i < n; i++)
            dup |= strcmp(out[i], out[n]) == 0;
        if (!dup)
            n++;
    }
    freeaddrinfo(res);
    if (n == 0) {
        *why = "no IPv4 or IPv6 address";
        return -ENOENT;
    }
    return n;
}

int platform_sock_pending(int fd)
{
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) != 0)
        return -errno;
    return n;
}

ssize_t platform_sock_read(int fd, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t platform_sock_writev(int fd, const struct iovec *iov, int iovcnt)
{
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    for (;;) {
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

void platform_sock_close(int fd, void *scratch, size_t scratch_len)
{
    shutdown(fd, SHUT_WR);
    /* Unread input at close() makes the kernel send RST instead of FIN; a
     * RST can make the peer drop our last DISCONNECT or CONNACK unread.
     * One non-blocking read clears what has arrived so far. */
    if (scratch && scratch_len)
        while (read(fd, scratch, scratch_len) < 0 && errno == EINTR) {
        }
    close(fd);
}

void platform_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

int platform_unix_dgram(const char *path)
{
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0)
        return -errno;
    int rc = set_flags(fd);
    if (rc == 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        rc = -errno;
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* Shared by accept (platform/linux) for the peer string. */
int platform__format_peer(const struct sockaddr_storage *ss, char *buf, size_t cap);
int platform__format_peer(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
        return snprintf(buf, cap, "%s:%u", a, (unsigned)ntohs(s->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
        return snprintf(buf, cap, "[%s]:%u", a, (unsigned)ntohs(s->sin6_port));
    }
    return snprintf(buf, cap, "unknown");
}
