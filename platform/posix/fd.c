/* File descriptors used as log destinations. */
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

int platform_fd_kind(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (S_ISREG(st.st_mode))
        return PLATFORM_FD_FILE;
    if (S_ISFIFO(st.st_mode))
        return PLATFORM_FD_PIPE;
    if (S_ISCHR(st.st_mode))
        return PLATFORM_FD_TTY;
    if (S_ISSOCK(st.st_mode))
        return PLATFORM_FD_SOCKET;
    return PLATFORM_FD_OTHER;
}

int platform_open_append(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0644);
    return fd < 0 ? -errno : fd;
}

ssize_t platform_fd_writev(int fd, const struct iovec *iov, int iovcnt, int is_socket)
{
    ssize_t n;
    if (is_socket) {
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
        n = writev(fd, iov, iovcnt);
    }
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}
