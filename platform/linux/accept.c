/* accept4 sets O_NONBLOCK and FD_CLOEXEC in the same system call: one
 * syscall per accepted client instead of three. */
#define _GNU_SOURCE /* accept4 */
#include "platform/platform.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

int platform__format_peer(const struct sockaddr_storage *ss, char *buf, size_t cap);

int platform_accept(int lfd, char *peer, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t slen = sizeof(ss);
    int fd;
    do
        fd = accept4(lfd, (struct sockaddr *)&ss, &slen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    /* MQTT is request/response with small packets: Nagle would hold a
     * PUBACK for up to 40 ms waiting for the peer's delayed ACK. */
    int one = 1;
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (peer && cap)
        platform__format_peer(&ss, peer, cap);
    return fd;
}
