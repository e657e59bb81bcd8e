/* Everything that knows the operating system. broker/ and mqtt/ call these
 * instead of Linux-only APIs; CMake picks platform/posix/ everywhere and
 * platform/linux/ on Linux (accept4, getrandom, /proc).
 *
 * Unless said otherwise, functions return >= 0 on success and -errno on
 * failure, so a caller can tell EAGAIN from EMFILE without reading errno. */
#ifndef LOOPBOT_PLATFORM_PLATFORM_H
#define LOOPBOT_PLATFORM_PLATFORM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* "[ffff:...:ffff]:65535" and a NUL fit, with room to spare. */
#define PLATFORM_ADDR_MAX 64

/* ---- clocks ---- */
/* Monotonic milliseconds (CLOCK_MONOTONIC): the only time the core uses. */
uint64_t platform_now_ms(void);
/* Monotonic microseconds, for timing loop callbacks. */
uint64_t platform_now_us(void);
/* CPU time the calling thread has run, in microseconds (kernel time on its
 * behalf included): not advancing while the OS runs another process. A
 * system call (~0.3-0.5 us), unlike the two above. */
uint64_t platform_thread_cpu_us(void);
/* Sleeps until platform_now_us() reaches mono_us, or a signal arrives. */
void platform_sleep_until_us(uint64_t mono_us);
/* Wall-clock milliseconds since 1970 (CLOCK_REALTIME), for log lines only. */
uint64_t platform_wall_ms(void);

/* ---- process ---- */
/* Fills buf with len cryptographically random bytes. Never blocks: before
 * the kernel pool is initialised (early boot on a Pi) it reads
 * /dev/urandom. Returns 0 or -errno. */
int platform_random(void *buf, size_t len);
/* Raises the RLIMIT_NOFILE soft limit to the hard limit; *limit (may be
 * NULL) receives the soft limit now in force. Returns 0 or -errno. */
int platform_raise_nofile(uint64_t *limit);
/* The heap is not returned to the OS from inside free() (glibc returns a
 * burst's worth at once there, holding the loop tens of ms): see heap.c. */
void platform_heap_keep(void);
/* SIGPIPE would kill the broker when a peer resets while we write. */
int platform_ignore_sigpipe(void);

/* ---- sockets ---- */
/* A non-blocking, close-on-exec listening TCP socket bound to a numeric
 * IPv4 or IPv6 address (e.g. "0.0.0.0", "::1") and port, with SO_REUSEADDR;
 * IPv6 sockets are IPV6_V6ONLY so "0.0.0.0" and "::" can share a port.
 * *ipv (may be NULL) receives 4 or 6. Returns the fd or -errno
 * (-EINVAL if addr is not a numeric address). */
int platform_listen(const char *addr, uint16_t port, int backlog, int *ipv);
/* Resolves a bind host name (blocking getaddrinfo: start-up only) to up to
 * max numeric addresses, each as a string in out[i]. Returns the count
 * (>= 1), or a negative value with *why set to a message. */
int platform_resolve_passive(const char *host, char (*out)[PLATFORM_ADDR_MAX], int max,
                             const char **why);
/* Accepts one connection as a non-blocking, close-on-exec socket with
 * TCP_NODELAY set. peer (cap bytes, may be NULL) receives "1.2.3.4:5678"
 * or "[::1]:5678". Returns the fd or -errno (-EAGAIN when none waits). */
int platform_accept(int lfd, char *peer, size_t cap);
/* Bytes waiting to be read on a socket (FIONREAD), or -errno. */
int platform_sock_pending(int fd);
/* Reads into buf (never blocks on a non-blocking fd). Returns bytes read,
 * 0 at end of stream, or -errno (-EAGAIN: nothing to read). */
ssize_t platform_sock_read(int fd, void *buf, size_t len);
/* One writev on a socket without raising SIGPIPE. Returns bytes written
 * or -errno (-EAGAIN: the kernel buffer is full). */
ssize_t platform_sock_writev(int fd, const struct iovec *iov, int iovcnt);
/* Half-closes then closes; first reads (and discards) what the peer sent
 * last, so the close sends FIN, not a RST that could destroy our final
 * packet in flight. scratch is at least scratch_len bytes. */
void platform_sock_close(int fd, void *scratch, size_t scratch_len);

/* ---- log destinations ---- */
enum platform_fd_kind {
    PLATFORM_FD_FILE,   /* regular file: writes never return EAGAIN */
    PLATFORM_FD_PIPE,   /* pipe or FIFO */
    PLATFORM_FD_TTY,    /* character device: terminal, /dev/null */
    PLATFORM_FD_SOCKET, /* e.g. systemd's journal stream */
    PLATFORM_FD_OTHER,
};
/* What fd refers to, or -errno (e.g. -EBADF when it is closed). */
int platform_fd_kind(int fd);
/* A new fd on the same pipe or terminal as fd, with its OWN open file
 * description in O_NONBLOCK mode: making fd itself non-blocking would
 * change the description it shares with the shell and the other
 * processes writing to the same terminal. Returns the fd or -errno. */
int platform_fd_reopen_nonblock(int fd);
/* Opens a log file O_WRONLY|O_APPEND|O_CREAT|O_NONBLOCK|O_CLOEXEC, 0644.
 * Returns the fd or -errno. */
int platform_open_append(const char *path);
/* One writev of a whole line; on a socket with MSG_DONTWAIT so it cannot
 * block whatever the fd's flags. Returns bytes written or -errno. */
ssize_t platform_fd_writev(int fd, const struct iovec *iov, int iovcnt, int is_socket);
/* A non-blocking datagram socket connected to a local (AF_UNIX) path, e.g.
 * /dev/log. Returns the fd or -errno. */
int platform_unix_dgram(const char *path);
/* Closes an fd we own (EINTR is not retried: on Linux the fd is gone). */
void platform_close(int fd);

/* ---- service manager ---- */
/* systemd's sd_notify protocol (Type=notify) without libsystemd: sends
 * READY=1 once the listeners are open, STOPPING=1 when a graceful shutdown
 * begins, to the unix datagram socket in $NOTIFY_SOCKET ("/path" or
 * "@abstract"). Returns 1 when sent, 0 when $NOTIFY_SOCKET is unset (not
 * started by systemd), or -errno. */
int platform_notify_ready(void);
int platform_notify_stopping(void);

/* ---- persistence (broker/store.c) ---- */
/* A wakeup fd for another thread to tell the loop "something is done":
 * an eventfd on Linux, non-blocking and close-on-exec. Returns it or -errno. */
int platform_wakeup_new(void);
/* Makes the fd readable (from any thread). Never blocks. */
void platform_wakeup_signal(int fd);
/* Reads it back to not readable. Never blocks. */
void platform_wakeup_drain(int fd);
/* rename(2). Returns 0 or -errno (-ENOENT when from does not exist). */
int platform_rename(const char *from, const char *to);

/* ---- readiness (broker/loop.c) ---- */
/* A readiness set (epoll on Linux) that the loop polls without waiting
 * whenever its fd is readable. Level-triggered. */
enum { PLATFORM_POLL_IN = 1u << 0, PLATFORM_POLL_OUT = 1u << 1 };
#define PLATFORM_POLL_BATCH 128
struct platform_poll_event {
    void *ptr;
    unsigned events; /* PLATFORM_POLL_*; a hang-up or an error reports both */
};
/* Returns the set's fd (close-on-exec) or -errno. */
int platform_poller_new(void);
/* Changes fd's interest from old_events to events (PLATFORM_POLL_* bits;
 * 0 takes fd out of the set); ptr comes back with its readiness. Returns 0
 * or -errno. */
int platform_poller_set(int pfd, int fd, unsigned old_events, unsigned events, void *ptr);
/* What is ready now, without waiting: up to max (at most
 * PLATFORM_POLL_BATCH) entries in out. Returns the count or -errno. */
int platform_poller_wait(int pfd, struct platform_poll_event *out, int max);

#endif
