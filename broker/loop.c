/* The libevent wrapper: the only broker file that sees <event2/...>.
 *
 * Turns, and why not a low-priority "defer" event. libevent 2.1 has no
 * prepare/check watchers, and the usual substitute (two priorities, the
 * deferred pass as an event at the lowest) starves: event_base_loop runs
 * only the highest non-empty priority per iteration and, while anything is
 * active, polls again with a zero timeout, so as long as one connection
 * stays readable (a fast publisher that our per-event read budget leaves
 * unread) the low-priority pass, which flushes every subscriber's output and
 * closes dead connections, never runs. Instead loop_run drives
 * event_base_loop(EVLOOP_ONCE) itself: one poll, every callback that fired,
 * return; then the deferred hooks; then the next poll (EVLOOP_NONBLOCK when
 * a hook asked to run again). This is redis's beforeSleep, with the same
 * guarantee: deferred work runs once per turn, before the loop sleeps, and
 * cannot be starved.
 *
 * Sockets are watched by the platform poller (an epoll set of our own)
 * rather than one libevent event each: libevent's struct event and per-fd
 * map cost ~180 bytes a socket, our whole idle-connection budget is ~450.
 * The poller's fd is one libevent event; its callback takes a batch of
 * ready sockets without waiting and times each socket's callback alone.
 *
 * Each callback is timed with the monotonic microsecond clock: two vDSO
 * clock_gettime calls, ~50 ns each on a Pi 4, against callbacks that cost
 * microseconds to milliseconds.
 *
 * Wall time alone cannot tell a callback that worked for 5 ms from one the
 * OS preempted for 5 ms to run another process (on a shared VM, a nice -10
 * daemon or kdamond took the core 1-4 ms at a time, dozens of times a
 * second). So a callback over LOOP_CPU_CHECK_US also reads the thread's CPU
 * clock, a system call: its hold is the CPU time since a mark taken before
 * it started, at most its wall time. The mark is renewed when it is
 * LOOP_CPU_MARK_US old, so at most ~4,000 reads a second whatever the load,
 * and the hold is never under the callback's own CPU time and at most
 * LOOP_CPU_MARK_US over it. Both figures are kept: the hold (what loopbot's
 * code and the kernel work it asked for cost) and the wall time (what other
 * clients waited). */
#include "broker/loop.h"

#include <event2/event.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "broker/log.h"
#include "broker/mem.h"
#include "mqtt/error.h"
#include "platform/platform.h"

#define LOOP_SLOW_DEFAULT_MS 50
#define LOOP_SLOW_WARN_EVERY_MS 10000
/* Distinct timer durations given a shared O(1) queue. libevent allows 256
 * per base and warns on stderr beyond that; keepalives come in a handful of
 * values (15, 30, 60 s...), so 64 leaves room and the rest use the heap. */
#define LOOP_COMMON_MAX 64
#define LOOP_CPU_CHECK_US 250u
#define LOOP_CPU_MARK_US 250u
/* A poll that found this many sockets ready means the loop has work
 * waiting: no coalescing wait after it (it would only idle a busy loop). */
#define LOOP_COALESCE_BUSY_EVENTS 16

struct loop_defer {
    struct loop *loop;
    const char *label;
    loop_fn fn;
    void *arg;
    bool scheduled;
    struct loop_defer *next;
};

struct loop {
    struct event_base *base;
    uint64_t now_ms;
    uint64_t start_us;
    uint64_t callbacks, turns, busy_us, longest_us, longest_wall_us, slow;
    const char *longest_kind, *longest_label, *longest_wall_kind, *longest_wall_label;
    uint64_t cpu_mark, cpu_mark_at; /* thread CPU us, and when it was read */
    /* Wake-up coalescing (loop_set_wake_interval): when this turn's first
     * callback ran, and how many sockets its poll found ready. */
    uint32_t wake_interval_us;
    uint64_t woke_us, coalesced_waits;
    int polled;
    uint32_t slow_ms;
    uint64_t slow_warned_at_ms, slow_unwarned;
    bool broken;
    struct loop_defer *dhead, *dtail; /* scheduled for this turn's pass */
    struct loop_defer *pass;          /* the pass running now */
    size_t handles;
    struct {
        uint64_t ms;
        const struct timeval *tv;
    } common[LOOP_COMMON_MAX];
    int ncommon;
    /* The poller: its fd in libevent, and the batch being dispatched (an
     * io finished mid-batch is struck out of it). */
    int pfd;
    struct event *pev;
    struct platform_poll_event batch[PLATFORM_POLL_BATCH];
    int batch_n, batch_i;
};

/* Timers and signals embed their struct event at the end (one allocation). */
struct loop_timer {
    struct loop *loop;
    loop_fn fn;
    void *arg;
    const char *label;
    alignas(max_align_t) unsigned char ev[];
};

struct loop_signal {
    struct loop *loop;
    loop_signal_fn fn;
    void *arg;
    int signo;
    alignas(max_align_t) unsigned char ev[];
};

#define EV(h) ((struct event *)(void *)(h)->ev)

static void *handle_alloc(struct loop *l, size_t head)
{
    void *h = mem_calloc(NULL, head + event_get_struct_event_size());
    if (h)
        l->handles++;
    return h;
}

static void handle_free(struct loop *l, void *h, size_t head)
{
    mem_free(NULL, h, head + event_get_struct_event_size());
    l->handles--;
}

static void on_libevent_log(int severity, const char *msg)
{
    if (severity >= EVENT_LOG_ERR)
        log_printf(LOG_T_ERROR, "libevent: %s", msg);
    else if (severity == EVENT_LOG_WARN)
        log_printf(LOG_T_WARNING, "libevent: %s", msg);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg);

/* ---- timing every callback ---- */

static void cpu_mark(struct loop *l, uint64_t now_us)
{
    l->cpu_mark = platform_thread_cpu_us();
    l->cpu_mark_at = now_us;
}

static uint64_t cb_begin(struct loop *l)
{
    uint64_t t = platform_now_us();
    l->now_ms = t / 1000;
    if (!l->woke_us)
        l->woke_us = t;
    if (t - l->cpu_mark_at >= LOOP_CPU_MARK_US)
        cpu_mark(l, t);
    return t;
}

static void cb_end(struct loop *l, uint64_t t0, const char *kind, const char *label)
{
    uint64_t end = platform_now_us();
    uint64_t us = end - t0;
    uint64_t held = us;
    if (us >= LOOP_CPU_CHECK_US) {
        uint64_t mark = l->cpu_mark;
        cpu_mark(l, end);
        if (l->cpu_mark - mark < held)
            held = l->cpu_mark - mark;
    }
    l->callbacks++;
    l->busy_us += us;
    if (held > l->longest_us) {
        l->longest_us = held;
        l->longest_kind = kind;
        l->longest_label = label;
    }
    if (us > l->longest_wall_us) {
        l->longest_wall_us = us;
        l->longest_wall_kind = kind;
        l->longest_wall_label = label;
    }
    if (us < (uint64_t)l->slow_ms * 1000)
        return;
    l->slow++;
    uint64_t now = (t0 + us) / 1000;
    if (l->slow_warned_at_ms && now - l->slow_warned_at_ms < LOOP_SLOW_WARN_EVERY_MS) {
        l->slow_unwarned++;
        return;
    }
    /* Mostly off the CPU: the machine, not this callback, was slow. */
    char why[96] = "";
    if (held < us / 2)
        snprintf(why, sizeof(why), ", but ran only %.1f ms of it: the OS ran other processes",
                 (double)held / 1e3);
    log_printf(LOG_T_WARNING,
               "Warning: a %s callback (%s) held the loop for %llu ms (threshold %u ms)%s; "
               "%llu more slow callbacks since the last warning.",
               kind, label ? label : "-", (unsigned long long)(us / 1000), l->slow_ms, why,
               (unsigned long long)l->slow_unwarned);
    l->slow_warned_at_ms = now;
    l->slow_unwarned = 0;
}

/* ---- the loop ---- */

struct loop *loop_new(void)
{
    event_set_log_callback(on_libevent_log);
    struct loop *l = mem_calloc(NULL, sizeof(*l));
    if (!l)
        return NULL;
    struct event_config *cfg = event_config_new();
    if (cfg) {
        /* One thread: no locks. The changelist folds the del+add that
         * loop_io_set does into one epoll_ctl. */
        event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        l->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    l->pfd = -1;
    if (l->base) {
        l->pfd = platform_poller_new();
        if (l->pfd >= 0)
            l->pev = event_new(l->base, l->pfd, EV_READ | EV_PERSIST, poll_cb, l);
    }
    if (!l->pev || event_add(l->pev, NULL) != 0) {
        loop_free(l);
        return NULL;
    }
    l->start_us = platform_now_us();
    l->now_ms = l->start_us / 1000;
    l->slow_ms = LOOP_SLOW_DEFAULT_MS;
    return l;
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    if (l->handles)
        log_printf(LOG_T_ERROR, "Error: %zu loop handles still open at exit.", l->handles);
    if (l->pev)
        event_free(l->pev);
    if (l->pfd >= 0)
        platform_close(l->pfd);
    if (l->base)
        event_base_free(l->base);
    mem_free(NULL, l, sizeof(*l));
}

static void run_deferred(struct loop *l)
{
    /* Hooks scheduled while the pass runs go to the next turn's list. */
    l->pass = l->dhead;
    l->dhead = l->dtail = NULL;
    while (l->pass) {
        struct loop_defer *d = l->pass;
        l->pass = d->next;
        d->next = NULL;
        d->scheduled = false;
        const char *label = d->label;
        uint64_t t0 = cb_begin(l);
        d->fn(d->arg);
        cb_end(l, t0, "defer", label);
    }
}

/* Coalescing: after a light turn, the next poll waits until the interval
 * has passed since this turn woke, so what arrives meanwhile is served in
 * one turn. Output was flushed by the deferred pass before this. */
static void coalesce_wait(struct loop *l)
{
    if (!l->wake_interval_us || !l->woke_us || l->polled >= LOOP_COALESCE_BUSY_EVENTS)
        return;
    uint64_t due = l->woke_us + l->wake_interval_us;
    if (platform_now_us() >= due)
        return;
    platform_sleep_until_us(due);
    l->coalesced_waits++;
}

int loop_run(struct loop *l)
{
    l->broken = false;
    while (!l->broken) {
        int flags = EVLOOP_ONCE | EVLOOP_NO_EXIT_ON_EMPTY;
        if (l->dhead)
            flags |= EVLOOP_NONBLOCK;
        else
            coalesce_wait(l);
        l->woke_us = 0;
        l->polled = 0;
        if (event_base_loop(l->base, flags) < 0)
            return -ERR_IO;
        l->turns++;
        run_deferred(l);
    }
    return 0;
}

void loop_break(struct loop *l)
{
    l->broken = true;
}

uint64_t loop_now_ms(const struct loop *l)
{
    return l->now_ms;
}

void loop_get_stats(const struct loop *l, struct loop_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->callbacks = l->callbacks;
    out->turns = l->turns;
    out->busy_us = l->busy_us;
    out->wall_us = platform_now_us() - l->start_us;
    out->busy_fraction = out->wall_us ? (double)l->busy_us / (double)out->wall_us : 0.0;
    out->longest_us = l->longest_us;
    out->longest_kind = l->longest_kind;
    out->longest_label = l->longest_label;
    out->longest_wall_us = l->longest_wall_us;
    out->longest_wall_kind = l->longest_wall_kind;
    out->longest_wall_label = l->longest_wall_label;
    out->slow_callbacks = l->slow;
    out->wake_interval_us = l->wake_interval_us;
    out->coalesced_waits = l->coalesced_waits;
    out->slow_threshold_ms = l->slow_ms;
}

void loop_reset_longest(struct loop *l)
{
    l->longest_us = l->longest_wall_us = 0;
    l->longest_kind = l->longest_label = l->longest_wall_kind = l->longest_wall_label = NULL;
}

void loop_set_wake_interval(struct loop *l, uint32_t us)
{
    l->wake_interval_us = us;
}

uint64_t loop_turns(const struct loop *l)
{
    return l->turns;
}

void loop_set_slow_threshold(struct loop *l, uint32_t ms)
{
    l->slow_ms = ms;
}

/* ---- fd watchers ---- */

static unsigned loop_events(unsigned platform_events)
{
    return ((platform_events & PLATFORM_POLL_IN) ? LOOP_READ : 0u) |
           ((platform_events & PLATFORM_POLL_OUT) ? LOOP_WRITE : 0u);
}

static unsigned poll_events(unsigned loop_ev)
{
    return ((loop_ev & LOOP_READ) ? PLATFORM_POLL_IN : 0u) |
           ((loop_ev & LOOP_WRITE) ? PLATFORM_POLL_OUT : 0u);
}

/* libevent saw the poller readable: dispatch one batch of ready fds, each
 * callback timed as its own. Whatever is left stays ready for next turn. */
static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct loop *l = arg;
    int n = platform_poller_wait(l->pfd, l->batch, PLATFORM_POLL_BATCH);
    if (n < 0) {
        log_printf(LOG_T_ERROR, "Error: polling sockets failed (%d).", n);
        return;
    }
    l->batch_n = n;
    l->polled += n;
    for (l->batch_i = 0; l->batch_i < l->batch_n; l->batch_i++) {
        struct loop_io *io = l->batch[l->batch_i].ptr;
        if (!io)
            continue; /* finished earlier in this batch */
        unsigned ev = loop_events(l->batch[l->batch_i].events) & io->events;
        if (!ev)
            continue;
        const char *kind = ev == LOOP_READ ? "read" : ev == LOOP_WRITE ? "write" : "read+write";
        const char *label = io->kind->label;
        uint64_t t0 = cb_begin(l);
        io->kind->fn(io, ev); /* may finish io */
        cb_end(l, t0, kind, label);
    }
    l->batch_n = l->batch_i = 0;
}

void loop_io_init(struct loop_io *io, struct loop *l, int fd, const struct loop_io_kind *kind)
{
    io->loop = l;
    io->kind = kind;
    io->fd = fd;
    io->events = 0;
    l->handles++;
}

int loop_io_set(struct loop_io *io, unsigned events)
{
    events &= LOOP_READ | LOOP_WRITE;
    if (events == io->events)
        return 0;
    int rc = platform_poller_set(io->loop->pfd, io->fd, poll_events(io->events),
                                 poll_events(events), io);
    if (rc < 0) {
        /* The kernel's set is unchanged, except a failed removal: forget it. */
        if (!events)
            io->events = 0;
        return -ERR_IO;
    }
    io->events = events;
    return 0;
}

unsigned loop_io_get(const struct loop_io *io)
{
    return io->events;
}

void loop_io_fini(struct loop_io *io)
{
    struct loop *l = io->loop;
    if (!l)
        return;
    loop_io_set(io, 0);
    for (int i = l->batch_i + 1; i < l->batch_n; i++)
        if (l->batch[i].ptr == io)
            l->batch[i].ptr = NULL;
    l->handles--;
    io->loop = NULL;
}

/* ---- timers ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct loop_timer *t = arg;
    struct loop *l = t->loop;
    const char *label = t->label;
    uint64_t t0 = cb_begin(l);
    t->fn(t->arg); /* may free t */
    cb_end(l, t0, "timer", label);
}

static const struct timeval *timeout_for(struct loop *l, uint64_t ms, struct timeval *plain)
{
    for (int i = 0; i < l->ncommon; i++)
        if (l->common[i].ms == ms)
            return l->common[i].tv;
    plain->tv_sec = (time_t)(ms / 1000);
    plain->tv_usec = (suseconds_t)(ms % 1000) * 1000;
    if (ms == 0 || l->ncommon == LOOP_COMMON_MAX)
        return plain;
    const struct timeval *tv = event_base_init_common_timeout(l->base, plain);
    if (!tv)
        return plain;
    l->common[l->ncommon].ms = ms;
    l->common[l->ncommon].tv = tv;
    l->ncommon++;
    return tv;
}

struct loop_timer *loop_timer_new(struct loop *l, const char *label, loop_fn fn, void *arg)
{
    struct loop_timer *t = handle_alloc(l, sizeof(*t));
    if (!t)
        return NULL;
    t->loop = l;
    t->fn = fn;
    t->arg = arg;
    t->label = label;
    event_assign(EV(t), l->base, -1, 0, timer_cb, t);
    return t;
}

int loop_timer_start(struct loop_timer *t, uint64_t ms, bool periodic)
{
    struct timeval plain;
    const struct timeval *tv = timeout_for(t->loop, ms, &plain);
    event_del(EV(t));
    if (event_assign(EV(t), t->loop->base, -1, periodic ? EV_PERSIST : 0, timer_cb, t) != 0 ||
        event_add(EV(t), tv) != 0)
        return -ERR_IO;
    return 0;
}

void loop_timer_stop(struct loop_timer *t)
{
    event_del(EV(t));
}

bool loop_timer_pending(const struct loop_timer *t)
{
    return event_pending(EV(t), EV_TIMEOUT, NULL) != 0;
}

void loop_timer_free(struct loop_timer *t)
{
    if (!t)
        return;
    event_del(EV(t));
    handle_free(t->loop, t, sizeof(*t));
}

/* ---- signals ---- */

static void signal_cb(evutil_socket_t fd, short what, void *arg)
{
    struct loop_signal *s = arg;
    struct loop *l = s->loop;
    uint64_t t0 = cb_begin(l);
    s->fn(s->arg, s->signo); /* may remove s */
    cb_end(l, t0, "signal", "signal");
}

struct loop_signal *loop_signal_add(struct loop *l, int signo, loop_signal_fn fn, void *arg)
{
    struct loop_signal *s = handle_alloc(l, sizeof(*s));
    if (!s)
        return NULL;
    s->loop = l;
    s->fn = fn;
    s->arg = arg;
    s->signo = signo;
    if (evsignal_assign(EV(s), l->base, signo, signal_cb, s) != 0 || evsignal_add(EV(s), NULL) != 0) {
        handle_free(l, s, sizeof(*s));
        return NULL;
    }
    return s;
}

void loop_signal_remove(struct loop_signal *s)
{
    if (!s)
        return;
    evsignal_del(EV(s));
    handle_free(s->loop, s, sizeof(*s));
}

/* ---- deferred hooks ---- */

struct loop_defer *loop_defer_new(struct loop *l, const char *label, loop_fn fn, void *arg)
{
    struct loop_defer *d = mem_calloc(NULL, sizeof(*d));
    if (!d)
        return NULL;
    d->loop = l;
    d->label = label;
    d->fn = fn;
    d->arg = arg;
    l->handles++;
    return d;
}

void loop_defer_schedule(struct loop_defer *d)
{
    if (d->scheduled)
        return;
    struct loop *l = d->loop;
    d->scheduled = true;
    d->next = NULL;
    if (l->dtail)
        l->dtail->next = d;
    else
        l->dhead = d;
    l->dtail = d;
}

static void unlink_from(struct loop_defer **head, struct loop_defer **tail, struct loop_defer *d)
{
    struct loop_defer *prev = NULL;
    for (struct loop_defer *x = *head; x; prev = x, x = x->next) {
        if (x != d)
            continue;
        if (prev)
            prev->next = d->next;
        else
            *head = d->next;
        if (tail && *tail == d)
            *tail = prev;
        return;
    }
}

void loop_defer_free(struct loop_defer *d)
{
    if (!d)
        return;
    struct loop *l = d->loop;
    /* A handful of hooks exist, so walking the lists costs nothing. */
    if (d->scheduled) {
        unlink_from(&l->dhead, &l->dtail, d);
        unlink_from(&l->pass, NULL, d);
    }
    mem_free(NULL, d, sizeof(*d));
    l->handles--;
}

struct event_base *loop__event_base(struct loop *l)
{
    return l->base;
}
