/* The loop wrapper: ordering, the deferred pass, timing statistics, and the
 * log lines it produces. No timed assertions except lower bounds. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/config.h"
#include "broker/log.h"
#include "broker/loop.h"
#include "broker/mem.h"
#include "platform/platform.h"

struct rec {
    struct loop *loop;
    char seq[64];
    int n;
    int count;
    int limit;
    struct loop_defer *defer;
    struct loop_timer *timer;
    struct loop_io io;
};

static void push(struct rec *r, char c)
{
    if (r->n < (int)sizeof(r->seq) - 1)
        r->seq[r->n++] = c;
}

/* ---- timers ---- */

struct tag {
    struct rec *r;
    char c;
    bool last;
};

static void on_tagged(void *arg)
{
    struct tag *t = arg;
    push(t->r, t->c);
    if (t->last)
        loop_break(t->r->loop);
}

static void test_timers_fire_in_order(void **state)
{
    struct rec r = {0};
    r.loop = loop_new();
    assert_non_null(r.loop);
    struct tag t[3] = {{&r, 'c', true}, {&r, 'a', false}, {&r, 'b', false}};
    uint64_t ms[3] = {30, 10, 20};
    struct loop_timer *tm[3];
    for (int i = 0; i < 3; i++) {
        tm[i] = loop_timer_new(r.loop, "t", on_tagged, &t[i]);
        assert_int_equal(loop_timer_start(tm[i], ms[i], false), 0);
    }
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "abc");
    for (int i = 0; i < 3; i++)
        loop_timer_free(tm[i]);
    loop_free(r.loop);
}

static void on_periodic(void *arg)
{
    struct rec *r = arg;
    push(r, 'p');
    if (++r->count == 5) {
        loop_timer_stop(r->timer);
        assert_false(loop_timer_pending(r->timer));
        loop_break(r->loop);
    }
}

static void test_periodic_and_stop(void **state)
{
    struct rec r = {0};
    r.loop = loop_new();
    r.timer = loop_timer_new(r.loop, "p", on_periodic, &r);
    loop_timer_start(r.timer, 1, true);
    assert_true(loop_timer_pending(r.timer));
    /* A cancelled timer never fires. */
    struct tag never = {&r, 'X', true};
    struct loop_timer *cancelled = loop_timer_new(r.loop, "x", on_tagged, &never);
    loop_timer_start(cancelled, 2, false);
    loop_timer_stop(cancelled);
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "ppppp");
    loop_timer_free(cancelled);
    loop_timer_free(r.timer);
    loop_free(r.loop);
}

/* ---- the deferred pass ---- */

static void on_defer_rec(void *arg)
{
    struct rec *r = arg;
    push(r, 'd');
}

/* The fd stays readable (never drained): the deferred hook must still run
 * after every turn, before the next poll, instead of starving. */
#define REC_OF(io) ((struct rec *)(void *)((char *)(io) - offsetof(struct rec, io)))

static void on_readable_undrained(struct loop_io *io, unsigned ev)
{
    struct rec *r = REC_OF(io);
    assert_true(ev & LOOP_READ);
    push(r, 'r');
    loop_defer_schedule(r->defer);
    loop_defer_schedule(r->defer); /* twice in a turn: runs once */
    if (++r->count == 4)
        loop_break(r->loop);
}

static void test_defer_runs_before_next_poll(void **state)
{
    struct rec r = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    r.loop = loop_new();
    r.defer = loop_defer_new(r.loop, "d", on_defer_rec, &r);
    static const struct loop_io_kind kind = {on_readable_undrained, "sock"};
    loop_io_init(&r.io, r.loop, sv[0], &kind);
    assert_int_equal(loop_io_set(&r.io, LOOP_READ), 0);
    assert_int_equal(loop_io_get(&r.io), LOOP_READ);
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "rdrdrdrd");
    loop_io_fini(&r.io);
    loop_defer_free(r.defer);
    loop_free(r.loop);
    close(sv[0]);
    close(sv[1]);
}

/* Each read drains one byte, notes the time, and writes the next byte
 * itself: the socket is ready again at once. */
struct paced {
    struct loop_io io;
    struct loop *loop;
    int peer;
    int n;
    uint64_t at[4];
};

static void on_paced(struct loop_io *io, unsigned ev)
{
    struct paced *p = (struct paced *)(void *)io;
    (void)ev;
    char c;
    assert_int_equal(read(io->fd, &c, 1), 1);
    p->at[p->n++] = platform_now_us();
    if (p->n == 4) {
        loop_break(p->loop);
        return;
    }
    assert_int_equal(write(p->peer, "x", 1), 1);
}

static void run_paced(struct paced *p, uint32_t interval_us)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->loop = loop_new();
    p->peer = sv[1];
    p->n = 0;
    loop_set_wake_interval(p->loop, interval_us);
    static const struct loop_io_kind kind = {on_paced, "paced"};
    loop_io_init(&p->io, p->loop, sv[0], &kind);
    assert_int_equal(loop_io_set(&p->io, LOOP_READ), 0);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(loop_run(p->loop), 0);
    loop_io_fini(&p->io);
    close(sv[0]);
    close(sv[1]);
}

/* With an interval, a socket that is ready again at once is served the
 * interval after the previous wake-up, not at once; without, at once. */
static void test_wake_interval_spaces_turns(void **state)
{
    struct paced p;
    run_paced(&p, 20000);
    struct loop_stats st;
    loop_get_stats(p.loop, &st);
    assert_int_equal(st.wake_interval_us, 20000);
    assert_int_equal(st.coalesced_waits, 3);
    for (int i = 1; i < 4; i++)
        assert_true(p.at[i] - p.at[i - 1] >= 20000);
    loop_free(p.loop);

    run_paced(&p, 0);
    loop_get_stats(p.loop, &st);
    assert_int_equal(st.coalesced_waits, 0);
    loop_free(p.loop);
}

static void on_defer_again(void *arg)
{
    struct rec *r = arg;
    push(r, 'd');
    if (++r->count < 3)
        loop_defer_schedule(r->defer); /* next turn, without sleeping */
    else
        loop_break(r->loop);
}

static void test_defer_rescheduled_runs_next_turn(void **state)
{
    struct rec r = {0};
    r.loop = loop_new();
    r.defer = loop_defer_new(r.loop, "again", on_defer_again, &r);
    /* A far timer: if a turn slept, the test would hang here for an hour. */
    struct tag never = {&r, 'X', true};
    struct loop_timer *far = loop_timer_new(r.loop, "far", on_tagged, &never);
    loop_timer_start(far, 3600 * 1000, false);
    loop_defer_schedule(r.defer);
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "ddd");
    struct loop_stats st;
    loop_get_stats(r.loop, &st);
    assert_true(st.turns >= 3);
    loop_timer_free(far);
    loop_defer_free(r.defer);
    loop_free(r.loop);
}

/* A hook freed while scheduled never runs. */
static void test_defer_free_while_scheduled(void **state)
{
    struct rec r = {0};
    r.loop = loop_new();
    struct loop_defer *gone = loop_defer_new(r.loop, "gone", on_defer_rec, &r);
    loop_defer_schedule(gone);
    loop_defer_free(gone);
    struct tag stop = {&r, 't', true};
    struct loop_timer *t = loop_timer_new(r.loop, "t", on_tagged, &stop);
    loop_timer_start(t, 1, false);
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "t");
    loop_timer_free(t);
    loop_free(r.loop);
}

/* ---- io ---- */

static void on_writable(struct loop_io *io, unsigned ev)
{
    struct rec *r = REC_OF(io);
    assert_int_equal(ev, LOOP_WRITE);
    push(r, 'w');
    loop_io_set(&r->io, 0);
    loop_break(r->loop);
}

static void test_io_write_interest(void **state)
{
    struct rec r = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    r.loop = loop_new();
    static const struct loop_io_kind kind = {on_writable, "sock"};
    loop_io_init(&r.io, r.loop, sv[0], &kind);
    assert_int_equal(loop_io_set(&r.io, LOOP_WRITE), 0);
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "w");
    assert_int_equal(loop_io_get(&r.io), 0);
    loop_io_fini(&r.io);
    loop_free(r.loop);
    close(sv[0]);
    close(sv[1]);
}

/* Two sockets ready in one batch; the first callback finishes the other's
 * watcher (as a close would): the second must not run on freed memory. */
struct pair_rec {
    struct loop *loop;
    struct loop_io io[2];
    int ran[2];
};

static struct pair_rec *pair_of;

static void on_pair_first(struct loop_io *io, unsigned ev)
{
    (void)ev;
    int i = (int)(io - pair_of->io);
    pair_of->ran[i]++;
    loop_io_fini(&pair_of->io[1 - i]);
    loop_io_set(&pair_of->io[i], 0);
    loop_break(pair_of->loop);
}

static void test_io_finished_mid_batch_is_skipped(void **state)
{
    struct pair_rec p = {0};
    int a[2], b[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "y", 1), 1);
    pair_of = &p;
    p.loop = loop_new();
    static const struct loop_io_kind kind = {on_pair_first, "pair"};
    loop_io_init(&p.io[0], p.loop, a[0], &kind);
    loop_io_init(&p.io[1], p.loop, b[0], &kind);
    assert_int_equal(loop_io_set(&p.io[0], LOOP_READ), 0);
    assert_int_equal(loop_io_set(&p.io[1], LOOP_READ), 0);
    assert_int_equal(loop_run(p.loop), 0);
    assert_int_equal(p.ran[0] + p.ran[1], 1);
    loop_io_fini(&p.io[p.ran[0] ? 0 : 1]);
    loop_free(p.loop);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(b[1]);
}

/* A watcher with no interest is out of the set: its peer hanging up does
 * not wake the loop (a paused client that went away must not spin it). */
static void on_hup_never(struct loop_io *io, unsigned ev)
{
    (void)io;
    (void)ev;
    fail_msg("a watcher with no interest was dispatched");
}

static void test_io_no_interest_hangup_is_quiet(void **state)
{
    struct rec r = {0};
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    r.loop = loop_new();
    static const struct loop_io_kind kind = {on_hup_never, "sock"};
    loop_io_init(&r.io, r.loop, sv[0], &kind);
    assert_int_equal(loop_io_set(&r.io, LOOP_READ), 0);
    assert_int_equal(loop_io_set(&r.io, 0), 0);
    close(sv[1]);
    struct tag stop = {&r, 't', true};
    struct loop_timer *t = loop_timer_new(r.loop, "t", on_tagged, &stop);
    loop_timer_start(t, 20, false);
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "t");
    struct loop_stats st;
    loop_get_stats(r.loop, &st);
    assert_true(st.turns <= 3); /* slept until the timer */
    loop_timer_free(t);
    loop_io_fini(&r.io);
    loop_free(r.loop);
    close(sv[0]);
}

/* ---- signals ---- */

static void on_raise(void *arg)
{
    raise(SIGUSR1);
}

static void on_sig(void *arg, int signo)
{
    struct rec *r = arg;
    assert_int_equal(signo, SIGUSR1);
    push(r, 's');
    loop_break(r->loop);
}

static void test_signal_runs_as_callback(void **state)
{
    struct rec r = {0};
    r.loop = loop_new();
    struct loop_signal *s = loop_signal_add(r.loop, SIGUSR1, on_sig, &r);
    assert_non_null(s);
    struct loop_timer *t = loop_timer_new(r.loop, "raise", on_raise, &r);
    loop_timer_start(t, 1, false);
    assert_int_equal(loop_run(r.loop), 0);
    assert_string_equal(r.seq, "s");
    loop_timer_free(t);
    loop_signal_remove(s);
    loop_free(r.loop);
}

/* ---- statistics ---- */

/* On the thread's CPU clock: a loaded machine that preempts the test must
 * not shorten the work the loop is meant to see. */
static void busy_wait_ms(uint64_t ms)
{
    uint64_t end = platform_thread_cpu_us() + ms * 1000;
    while (platform_thread_cpu_us() < end) {
    }
}

static void on_busy(void *arg)
{
    busy_wait_ms(20);
}

/* Off the CPU the whole time, as if the OS ran another process. */
static void on_sleep(void *arg)
{
    struct timespec ts = {0, 30 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void test_stats_count_and_longest(void **state)
{
    struct rec r = {0};
    r.loop = loop_new();
    loop_set_slow_threshold(r.loop, 10);
    struct loop_timer *busy = loop_timer_new(r.loop, "busy", on_busy, &r);
    struct tag a = {&r, 'a', false}, b = {&r, 'b', true};
    struct loop_timer *ta = loop_timer_new(r.loop, "a", on_tagged, &a);
    struct loop_timer *tb = loop_timer_new(r.loop, "b", on_tagged, &b);
    r.defer = loop_defer_new(r.loop, "d", on_defer_rec, &r);
    loop_timer_start(busy, 1, false);
    loop_timer_start(ta, 2, false);
    loop_timer_start(tb, 40, false);
    loop_defer_schedule(r.defer);
    uint64_t t0 = loop_now_ms(r.loop);
    assert_int_equal(loop_run(r.loop), 0);
    assert_true(loop_now_ms(r.loop) >= t0 + 20); /* cached per callback, monotonic */

    struct loop_stats st;
    loop_get_stats(r.loop, &st);
    assert_int_equal(st.callbacks, 4); /* busy, a, b, the defer */
    assert_true(st.longest_us >= 20000);
    assert_string_equal(st.longest_kind, "timer");
    assert_string_equal(st.longest_label, "busy");
    assert_true(st.longest_wall_us >= st.longest_us);
    assert_true(st.busy_us >= 20000);
    assert_true(st.wall_us >= st.busy_us);
    assert_true(st.busy_fraction > 0.0 && st.busy_fraction <= 1.0);
    assert_true(st.slow_callbacks >= 1);
    assert_int_equal(st.slow_threshold_ms, 10);

    loop_timer_free(busy);
    loop_timer_free(ta);
    loop_timer_free(tb);
    loop_defer_free(r.defer);
    loop_free(r.loop);
}

/* ---- the log, through a FIFO we can fill ---- */

static char fifo_path[64];
static int fifo_rd = -1;

static void open_log_fifo(void)
{
    snprintf(fifo_path, sizeof(fifo_path), "/tmp/loopbot-test-log-%d", (int)getpid());
    unlink(fifo_path);
    assert_int_equal(mkfifo(fifo_path, 0600), 0);
    fifo_rd = open(fifo_path, O_RDONLY | O_NONBLOCK);
    assert_true(fifo_rd >= 0);
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.log_dest = LOG_D_FILE;
    cfg.log_file = fifo_path;
    cfg.log_type = LOG_T_ALL;
    cfg.log_timestamp = false;
    assert_int_equal(log_open(&cfg), 0);
}

static void close_log_fifo(void)
{
    log_close();
    close(fifo_rd);
    unlink(fifo_path);
}

static size_t drain(char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fifo_rd, buf + got, cap - 1 - got);
        if (n <= 0 || got + (size_t)n >= cap - 1) {
            if (n > 0)
                got += (size_t)n;
            break;
        }
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

/* A callback the OS kept off the CPU shows in the wall-clock figure, not in
 * the hold: 30 ms asleep, a few microseconds of CPU. */
static void test_preempted_callback_counts_as_wall_time_only(void **state)
{
    struct rec r = {0};
    r.loop = loop_new();
    struct loop_timer *busy = loop_timer_new(r.loop, "busy", on_busy, &r);
    struct loop_timer *sleepy = loop_timer_new(r.loop, "sleepy", on_sleep, &r);
    struct tag stop = {&r, 's', true};
    struct loop_timer *ts = loop_timer_new(r.loop, "stop", on_tagged, &stop);
    loop_timer_start(busy, 1, false);
    loop_timer_start(sleepy, 2, false);
    loop_timer_start(ts, 3, false);
    assert_int_equal(loop_run(r.loop), 0);
    struct loop_stats st;
    loop_get_stats(r.loop, &st);
    assert_true(st.longest_wall_us >= 30000);
    assert_string_equal(st.longest_wall_label, "sleepy");
    assert_true(st.longest_us >= 20000 && st.longest_us < 30000);
    assert_string_equal(st.longest_label, "busy");
    loop_timer_free(busy);
    loop_timer_free(sleepy);
    loop_timer_free(ts);
    loop_free(r.loop);
}

/* Runs one slow timer callback (threshold 5 ms) and collects the log. */
static void log_of_slow_timer(const char *label, loop_fn fn, char *buf, size_t cap)
{
    open_log_fifo();
    struct rec r = {0};
    r.loop = loop_new();
    loop_set_slow_threshold(r.loop, 5);
    struct loop_timer *slow = loop_timer_new(r.loop, label, fn, &r);
    struct tag stop = {&r, 's', true};
    struct loop_timer *ts = loop_timer_new(r.loop, "stop", on_tagged, &stop);
    loop_timer_start(slow, 1, false);
    loop_timer_start(ts, 2, false);
    loop_run(r.loop);
    drain(buf, cap);
    loop_timer_free(slow);
    loop_timer_free(ts);
    loop_free(r.loop);
    close_log_fifo();
}

static void test_slow_callback_is_logged(void **state)
{
    char buf[4096];
    log_of_slow_timer("busy", on_busy, buf, sizeof(buf));
    assert_non_null(strstr(buf, "timer callback (busy) held the loop for"));
    assert_null(strstr(buf, "the OS ran other processes"));
}

static void test_preempted_slow_callback_says_so(void **state)
{
    char buf[4096];
    log_of_slow_timer("sleepy", on_sleep, buf, sizeof(buf));
    assert_non_null(strstr(buf, "timer callback (sleepy) held the loop for"));
    assert_non_null(strstr(buf, "the OS ran other processes"));
}

static void test_log_drops_are_counted_and_reported(void **state)
{
    open_log_fifo();
    uint64_t before = log_dropped_total();
    /* Fill the pipe: each line is one write, so once it is full lines are
     * dropped, never blocked on. */
    int lines = 0;
    while (log_dropped_total() == before && lines < 100000) {
        log_printf(LOG_T_NOTICE, "filler line %d with some padding to fill the pipe faster......",
                   lines);
        lines++;
    }
    assert_true(log_dropped_total() > before);
    uint64_t dropped = log_dropped_total() - before;
    char big[1 << 16];
    while (drain(big, sizeof(big)) > 0) {
    }
    log_printf(LOG_T_NOTICE, "after the drain");
    size_t got = drain(big, sizeof(big));
    assert_true(got > 0);
    char expect[64];
    snprintf(expect, sizeof(expect), "%llu log lines dropped\nafter the drain\n",
             (unsigned long long)dropped);
    assert_string_equal(big, expect);
    close_log_fifo();
}

static void test_log_type_mask(void **state)
{
    open_log_fifo();
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.log_dest = LOG_D_FILE;
    cfg.log_file = fifo_path;
    cfg.log_type = LOG_T_ERROR;
    cfg.log_timestamp = true;
    assert_int_equal(log_open(&cfg), 0);
    assert_false(log_enabled(LOG_T_DEBUG));
    log_printf(LOG_T_DEBUG, "hidden %d", 1);
    log_printf(LOG_T_ERROR, "shown %d", 2);
    char buf[256];
    drain(buf, sizeof(buf));
    assert_null(strstr(buf, "hidden"));
    /* "1700000000: shown 2" */
    char *colon = strchr(buf, ':');
    assert_non_null(colon);
    assert_true(colon - buf >= 10);
    assert_string_equal(colon, ": shown 2\n");
    close_log_fifo();
}

static void test_no_leaks(void **state)
{
    assert_int_equal(mem_used_total(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_order),
        cmocka_unit_test(test_periodic_and_stop),
        cmocka_unit_test(test_defer_runs_before_next_poll),
        cmocka_unit_test(test_defer_rescheduled_runs_next_turn),
        cmocka_unit_test(test_wake_interval_spaces_turns),
        cmocka_unit_test(test_defer_free_while_scheduled),
        cmocka_unit_test(test_io_write_interest),
        cmocka_unit_test(test_io_finished_mid_batch_is_skipped),
        cmocka_unit_test(test_io_no_interest_hangup_is_quiet),
        cmocka_unit_test(test_signal_runs_as_callback),
        cmocka_unit_test(test_stats_count_and_longest),
        cmocka_unit_test(test_preempted_callback_counts_as_wall_time_only),
        cmocka_unit_test(test_slow_callback_is_logged),
        cmocka_unit_test(test_preempted_slow_callback_says_so),
        cmocka_unit_test(test_log_drops_are_counted_and_reported),
        cmocka_unit_test(test_log_type_mask),
        cmocka_unit_test(test_no_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
