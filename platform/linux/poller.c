/* Readiness for the loop's connection sockets: an epoll set of our own,
 * whose one fd sits in the libevent loop. Watching a socket here costs no
 * user-space memory (libevent's struct event plus its per-fd map is about
 * 180 bytes a socket, a quarter of what an idle client should cost). */
#include "platform/platform.h"

#include <errno.h>
#include <sys/epoll.h>

int platform_poller_new(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int platform_poller_set(int pfd, int fd, unsigned old_events, unsigned events, void *ptr)
{
    struct epoll_event ev = {0};
    ev.data.ptr = ptr;
    if (events & PLATFORM_POLL_IN)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & PLATFORM_POLL_OUT)
        ev.events |= EPOLLOUT;
    /* No interest means not in the set at all: epoll reports hang-ups and
     * errors whatever the mask, and a paused socket whose peer hung up
     * would otherwise wake the loop on every turn. */
    int op = !events ? EPOLL_CTL_DEL : !old_events ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (op == EPOLL_CTL_DEL && !old_events)
        return 0;
    return epoll_ctl(pfd, op, fd, &ev) < 0 ? -errno : 0;
}

int platform_poller_wait(int pfd, struct platform_poll_event *out, int max)
{
    struct epoll_event evs[PLATFORM_POLL_BATCH];
    if (max > PLATFORM_POLL_BATCH)
        max = PLATFORM_POLL_BATCH;
    int n = epoll_wait(pfd, evs, max, 0);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t e = evs[i].events;
        unsigned got = 0;
        if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            got |= PLATFORM_POLL_IN;
        if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            got |= PLATFORM_POLL_OUT;
        out[i].ptr = evs[i].data.ptr;
        out[i].events = got;
    }
    return n;
}
