/* The event loop, wrapped once: the only broker file that includes
 * <event2/...>. One loop runs every connection.
 *
 * Every callback the loop dispatches is timed: the wrapper keeps the time
 * spent in callbacks against wall time (how busy the loop is), the longest
 * single callback and what it was (by the CPU time it used, and by wall
 * time), and warns (at most once per 10 s) when a callback holds the loop
 * longer than the slow threshold (default 50 ms, wall time), because every
 * other client waits that long.
 *
 * A turn is: wait for events (poll), run the callbacks of every event that
 * fired, then run the deferred hooks that were scheduled, then wait again.
 * Deferred hooks are where output is flushed and connections are closed:
 * once per turn, never from deep inside another callback. */
#ifndef LOOPBOT_BROKER_LOOP_H
#define LOOPBOT_BROKER_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;
struct loop_signal;
struct loop_defer;

enum { LOOP_READ = 1u << 0, LOOP_WRITE = 1u << 1 };

struct loop_io;
/* events: LOOP_READ | LOOP_WRITE. The owner embeds io and finds itself
 * from it (container_of): a watcher carries no argument pointer. */
typedef void (*loop_io_fn)(struct loop_io *io, unsigned events);
typedef void (*loop_fn)(void *arg);                     /* timers, deferred hooks */
typedef void (*loop_signal_fn)(void *arg, int signo);

struct loop_stats {
    uint64_t callbacks;        /* dispatched, deferred hooks included */
    uint64_t turns;            /* poll + callbacks + deferred pass */
    uint64_t busy_us;          /* total time inside callbacks */
    uint64_t wall_us;          /* since loop_new */
    double busy_fraction;      /* busy_us / wall_us */
    /* The longest single callback: its CPU time (the thread's, kernel work
     * on its behalf included), not time the OS spent running another
     * process while the callback was preempted. */
    uint64_t longest_us;
    const char *longest_kind;  /* "read", "write", "timer", "signal", "defer" */
    const char *longest_label; /* its label, e.g. "conn", "keepalive" */
    /* The longest by wall clock, preemption included: what the other
     * clients waited. Over longest_us when the machine is busy elsewhere. */
    uint64_t longest_wall_us;
    const char *longest_wall_kind, *longest_wall_label;
    uint64_t slow_callbacks;   /* over the slow threshold */
    uint32_t slow_threshold_ms;
    uint32_t wake_interval_us; /* coalescing now (loop_set_wake_interval); 0 = off */
    uint64_t coalesced_waits;  /* polls that waited for it */
};

/* For the transport and HTTP files only, which talk to libevent directly
 * (evhttp, bufferevents): the underlying event_base. */
struct event_base;
struct event_base *loop__event_base(struct loop *l);

struct loop *loop_new(void);
/* Every io, timer, signal and defer handle must be finished first. */
void loop_free(struct loop *l);
/* Runs turns until loop_break. Returns 0, or -ERR_IO if the backend fails. */
int loop_run(struct loop *l);
/* loop_run returns after the current turn (deferred hooks still run). */
void loop_break(struct loop *l);
/* Monotonic ms, read when the callback now running was dispatched. */
uint64_t loop_now_ms(const struct loop *l);
void loop_get_stats(const struct loop *l, struct loop_stats *out);
/* Starts a new period for longest_us and longest_wall_us (SIGUSR2). */
void loop_reset_longest(struct loop *l);
void loop_set_slow_threshold(struct loop *l, uint32_t ms);
/* Wake-up coalescing: after a turn that found few sockets ready, the next
 * poll waits until us have passed since that turn woke up, so events that
 * arrive meanwhile share one wake-up (each is served at most us later).
 * Timers, signals and listeners wait too, by at most us. 0 = off (the
 * default). The policy of when to turn it on is conn's (coalesce.h). */
void loop_set_wake_interval(struct loop *l, uint32_t us);
/* Turns so far (each is one wake-up, or one non-blocking poll). */
uint64_t loop_turns(const struct loop *l);

/* An fd watcher, embedded in its owner: watching a socket allocates
 * nothing. Sockets sit in an epoll set of the loop's own (platform
 * poller), polled without waiting whenever libevent reports it readable,
 * at most PLATFORM_POLL_BATCH fds a turn; each fd's callback is timed as
 * its own. Fields are private to loop.c. */
struct loop_io_kind {
    loop_io_fn fn;
    const char *label; /* names the callback in the loop's statistics */
};

struct loop_io {
    struct loop *loop;
    const struct loop_io_kind *kind; /* static: shared by every watcher of a kind */
    int fd;
    unsigned events;
};

/* Starts with no interest. */
void loop_io_init(struct loop_io *io, struct loop *l, int fd, const struct loop_io_kind *kind);
/* events: LOOP_READ | LOOP_WRITE, or 0 for none. Level-triggered. */
int loop_io_set(struct loop_io *io, unsigned events);
unsigned loop_io_get(const struct loop_io *io);
/* Stops watching (does not close fd); io may be freed afterwards, even
 * from inside its own callback. */
void loop_io_fini(struct loop_io *io);

/* A timer, stopped until started. Timers of equal duration share one O(1)
 * queue (libevent common timeouts), so restarting one is O(1): this is
 * what makes per-connection keepalive cheap. */
struct loop_timer *loop_timer_new(struct loop *l, const char *label, loop_fn fn, void *arg);
/* (Re)starts t to fire after ms, then every ms if periodic. */
int loop_timer_start(struct loop_timer *t, uint64_t ms, bool periodic);
void loop_timer_stop(struct loop_timer *t);
bool loop_timer_pending(const struct loop_timer *t);
void loop_timer_free(struct loop_timer *t); /* NULL is fine */

/* A signal handler that runs as an ordinary loop callback. */
struct loop_signal *loop_signal_add(struct loop *l, int signo, loop_signal_fn fn, void *arg);
void loop_signal_remove(struct loop_signal *s); /* NULL is fine */

/* A deferred hook: after loop_defer_schedule, fn runs once at the end of
 * the current turn (before the loop sleeps). Scheduling it again from its
 * own fn runs it in the next turn, and that turn does not sleep. */
struct loop_defer *loop_defer_new(struct loop *l, const char *label, loop_fn fn, void *arg);
void loop_defer_schedule(struct loop_defer *d);
void loop_defer_free(struct loop_defer *d); /* NULL is fine */

#endif
