/* Log destinations and the one-write-per-line rule.
 *
 * stderr/stdout are shared with whoever started us, so we never set
 * O_NONBLOCK on them (that flag lives in the open file description and
 * would make the shell's or a sibling's writes fail with EAGAIN). Instead:
 *  - a regular file is written directly: it never returns EAGAIN;
 *  - a pipe or terminal is reopened through the platform as a private,
 *    non-blocking description of the same pipe/terminal;
 *  - a socket (systemd's journal stream) is written with MSG_DONTWAIT;
 *  - if none of this works, writes are blocking (logged once as a warning).
 * syslog is our own non-blocking datagram to /dev/log in syslog(3)'s format:
 * glibc's syslog(3) sends on a blocking socket, so a stalled journald would
 * stall every client. */
#include "broker/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "broker/mem.h"
#include "mqtt/error.h"
#include "platform/platform.h"

/* A line (with the dropped-lines notice) stays under PIPE_BUF (4096), so a
 * write to a pipe is all or nothing, never interleaved with another
 * writer's. */
#define LOG_LINE_MAX 2048
#define LOG_NOTICE_MAX 96
#define SYSLOG_PATH "/dev/log"
#define SYSLOG_RETRY_MS 10000

enum sink_mode { SINK_WRITE, SINK_SOCKET, SINK_SYSLOG };

struct sink {
    int fd;          /* -1: not open */
    bool own;        /* we opened it: close it */
    uint8_t mode;
    bool broken;     /* a short write left a partial line: start with '\n' */
    uint64_t dropped;
    uint32_t dest;   /* LOG_D_* it serves */
};

enum { S_STDERR, S_STDOUT, S_FILE, S_SYSLOG, S__COUNT };

uint32_t log__mask = LOG_T_ERROR | LOG_T_WARNING | LOG_T_NOTICE | LOG_T_INFO;

static struct {
    struct sink sink[S__COUNT];
    uint32_t dest;
    bool timestamp;
    bool ready;
    char *file;
    uint64_t dropped_total;
    uint64_t syslog_retry_at;
    bool blocking_warned;
} L = {.dest = LOG_D_STDERR, .timestamp = true};

static void sink_reset(struct sink *s, uint32_t dest)
{
    s->fd = -1;
    s->own = false;
    s->mode = SINK_WRITE;
    s->broken = false;
    s->dropped = 0;
    s->dest = dest;
}

static void sink_close(struct sink *s)
{
    if (s->own && s->fd >= 0)
        platform_close(s->fd);
    s->fd = -1;
    s->own = false;
}

/* Makes a non-blocking writer for a standard stream (see the top). Returns
 * false when only a blocking write is possible. */
static bool sink_std(struct sink *s, int fd)
{
    s->fd = fd;
    s->own = false;
    s->mode = SINK_WRITE;
    int kind = platform_fd_kind(fd);
    if (kind == PLATFORM_FD_FILE || kind < 0)
        return true; /* regular files never block on EAGAIN; closed fd: writes fail */
    if (kind == PLATFORM_FD_SOCKET) {
        s->mode = SINK_SOCKET;
        return true;
    }
    int nfd = platform_fd_reopen_nonblock(fd);
    if (nfd >= 0) {
        s->fd = nfd;
        s->own = true;
        return true;
    }
    return false;
}

static void syslog_connect(void)
{
    struct sink *s = &L.sink[S_SYSLOG];
    int fd = platform_unix_dgram(SYSLOG_PATH);
    s->fd = fd >= 0 ? fd : -1;
    s->own = fd >= 0;
    s->mode = SINK_SYSLOG;
    if (fd < 0)
        L.syslog_retry_at = platform_now_ms() + SYSLOG_RETRY_MS;
}

static void ready_default(void)
{
    if (L.ready)
        return;
    for (int i = 0; i < S__COUNT; i++)
        sink_reset(&L.sink[i], 1u << i);
    L.sink[S_STDERR].dest = LOG_D_STDERR;
    L.sink[S_STDOUT].dest = LOG_D_STDOUT;
    L.sink[S_FILE].dest = LOG_D_FILE;
    L.sink[S_SYSLOG].dest = LOG_D_SYSLOG;
    bool nb = true;
    if (L.dest & LOG_D_STDERR)
        nb &= sink_std(&L.sink[S_STDERR], STDERR_FILENO);
    if (L.dest & LOG_D_STDOUT)
        nb &= sink_std(&L.sink[S_STDOUT], STDOUT_FILENO);
    L.ready = true;
    if (!nb && !L.blocking_warned) {
        L.blocking_warned = true;
        log_printf(LOG_T_WARNING,
                   "Warning: log output cannot be made non-blocking; a stalled reader will stall "
                   "the broker.");
    }
}

static void close_all(void)
{
    for (int i = 0; i < S__COUNT; i++)
        sink_close(&L.sink[i]);
    mem_strfree(NULL, L.file);
    L.file = NULL;
    L.ready = false;
}

int log_open(const struct config *cfg)
{
    close_all();
    L.dest = cfg->log_dest;
    L.timestamp = cfg->log_timestamp;
    log__mask = cfg->log_type;
    L.blocking_warned = false;
    ready_default();
    int rc = 0;
    if ((L.dest & LOG_D_FILE) && cfg->log_file) {
        L.file = mem_strndup(NULL, cfg->log_file, strlen(cfg->log_file));
        if (!L.file)
            return -ERR_NOMEM;
        rc = log_reopen();
    }
    if (L.dest & LOG_D_SYSLOG) {
        tzset(); /* localtime_r must not read /etc/localtime on the loop */
        syslog_connect();
    }
    return rc;
}

int log_reopen(void)
{
    ready_default();
    int rc = 0;
    if (L.file) {
        struct sink *s = &L.sink[S_FILE];
        int fd = platform_open_append(L.file);
        if (fd < 0) {
            rc = -ERR_IO;
            log_printf(LOG_T_ERROR, "Error: Unable to open log file %s for writing: %s.", L.file,
                       strerror(-fd));
        } else {
            sink_close(s);
            s->fd = fd;
            s->own = true;
            s->mode = SINK_WRITE;
            s->broken = false;
        }
    }
    if (L.dest & LOG_D_SYSLOG) {
        sink_close(&L.sink[S_SYSLOG]);
        syslog_connect();
    }
    return rc;
}

void log_close(void)
{
    close_all();
    L.dest = LOG_D_STDERR;
    L.timestamp = true;
}

uint64_t log_dropped_total(void)
{
    return L.dropped_total;
}

static void count_drop(struct sink *s)
{
    s->dropped++;
    L.dropped_total++;
}

/* One write of [notice][line] to a file/pipe/tty/stream socket. */
static void sink_write(struct sink *s, const char *line, size_t len, uint64_t secs)
{
    char notice[LOG_NOTICE_MAX];
    size_t nlen = 0;
    if (s->broken)
        notice[nlen++] = '\n';
    if (s->dropped) {
        int n;
        if (L.timestamp)
            n = snprintf(notice + nlen, sizeof(notice) - nlen, "%llu: %llu log lines dropped\n",
                         (unsigned long long)secs, (unsigned long long)s->dropped);
        else
            n = snprintf(notice + nlen, sizeof(notice) - nlen, "%llu log lines dropped\n",
                         (unsigned long long)s->dropped);
        if (n > 0)
            nlen += (size_t)n < sizeof(notice) - nlen ? (size_t)n : sizeof(notice) - nlen - 1;
    }
    struct iovec iov[2] = {{notice, nlen}, {(void *)line, len}};
    int first = nlen ? 0 : 1;
    ssize_t w = platform_fd_writev(s->fd, iov + first, 2 - first, s->mode == SINK_SOCKET);
    if (w == (ssize_t)(nlen + len)) {
        s->dropped = 0;
        s->broken = false;
        return;
    }
    if (w > 0) {
        /* Short: the notice went out if w covers it; this line is lost and
         * the next one must start on a new line. */
        if ((size_t)w >= nlen)
            s->dropped = 0;
        s->broken = true;
    }
    count_drop(s);
}

static int syslog_pri(uint32_t type)
{
    /* facility daemon (3) << 3 | severity */
    int sev = type & LOG_T_ERROR     ? 3
              : type & LOG_T_WARNING ? 4
              : type & LOG_T_NOTICE  ? 5
              : type & LOG_T_INFO    ? 6
                                     : 7;
    return (3 << 3) | sev;
}

static void sink_syslog(struct sink *s, uint32_t type, const char *msg, size_t len,
                        uint64_t wall_ms)
{
    if (s->fd < 0) {
        if (platform_now_ms() < L.syslog_retry_at) {
            count_drop(s);
            return;
        }
        syslog_connect();
        if (s->fd < 0) {
            count_drop(s);
            return;
        }
    }
    /* syslog(3)'s format: "<PRI>Mmm dd hh:mm:ss ident[pid]: message" */
    char hdr[LOG_NOTICE_MAX];
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    size_t h = (size_t)snprintf(hdr, sizeof(hdr), "<%d>", syslog_pri(type));
    h += strftime(hdr + h, sizeof(hdr) - h, "%b %e %T ", &tm);
    h += (size_t)snprintf(hdr + h, sizeof(hdr) - h, "loopbot[%d]: ", (int)getpid());
    if (s->dropped) {
        char note[LOG_NOTICE_MAX];
        int n = snprintf(note, sizeof(note), "%.*s%llu log lines dropped", (int)h, hdr,
                         (unsigned long long)s->dropped);
        struct iovec niov = {note, (size_t)n};
        if (platform_fd_writev(s->fd, &niov, 1, 1) == n)
            s->dropped = 0;
    }
    struct iovec iov[2] = {{hdr, h}, {(void *)msg, len}};
    ssize_t w = platform_fd_writev(s->fd, iov, 2, 1);
    if (w == (ssize_t)(h + len))
        return;
    if (w == -ECONNREFUSED || w == -ENOTCONN || w == -ENOENT) {
        /* journald restarted: reconnect on a later line */
        sink_close(s);
        L.syslog_retry_at = platform_now_ms();
    }
    count_drop(s);
}

void log__write(uint32_t type, const char *fmt, ...)
{
    ready_default();
    char line[LOG_LINE_MAX];
    uint64_t wall = platform_wall_ms();
    uint64_t secs = wall / 1000;
    size_t pre = 0;
    if (L.timestamp)
        pre = (size_t)snprintf(line, sizeof(line), "%llu: ", (unsigned long long)secs);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + pre, sizeof(line) - pre - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = pre + (size_t)n;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2; /* truncated: mark it */
        memcpy(line + len - 3, "...", 3);
    }
    line[len++] = '\n';
    line[len] = '\0';
    for (int i = 0; i < S__COUNT; i++) {
        struct sink *s = &L.sink[i];
        if (!(L.dest & s->dest))
            continue;
        if (i == S_SYSLOG)
            sink_syslog(s, type, line + pre, len - pre - 1, wall);
        else if (s->fd >= 0)
            sink_write(s, line, len, secs);
    }
}
