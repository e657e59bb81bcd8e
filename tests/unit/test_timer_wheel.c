/* The timing wheel behind per-connection deadlines: each node fires once,
 * at its deadline's tick, however often the deadline moved, and a model
 * check against a plain array for random moves, removals and jumps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/timer_wheel.h"

struct item {
    struct wheel_node node;
    int fired;
    uint32_t fired_at;
};

struct run {
    struct wheel *w;
    uint32_t now;
    /* optional: re-arm each fired item this many ticks later */
    uint32_t rearm;
};

#define ITEM_OF(n) ((struct item *)(void *)((char *)(n) - offsetof(struct item, node)))

static void on_fire(void *ctx, struct wheel_node *n)
{
    struct run *r = ctx;
    struct item *it = ITEM_OF(n);
    assert_false(wheel_pending(n));
    it->fired++;
    it->fired_at = r->now;
    if (r->rearm)
        wheel_set(r->w, n, r->now + r->rearm);
}

static struct wheel *new_wheel(uint32_t now)
{
    struct wheel *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    wheel_init(w, now);
    return w;
}

static void advance_to(struct run *r, uint32_t to)
{
    while (r->now != to) {
        r->now++;
        wheel_advance(r->w, r->now, on_fire, r);
    }
}

static void test_fires_at_its_tick(void **state)
{
    (void)state;
    struct run r = {new_wheel(1000), 1000, 0};
    struct item a = {0};
    wheel_set(r.w, &a.node, 1005);
    advance_to(&r, 1004);
    assert_int_equal(a.fired, 0);
    advance_to(&r, 1005);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.fired_at, 1005);
    advance_to(&r, 3000);
    assert_int_equal(a.fired, 1);
    assert_int_equal(r.w->count, 0);
    free(r.w);
}

/* Keepalive: every packet moves the deadline later; only the last counts. */
static void test_moving_later_fires_only_at_the_last(void **state)
{
    (void)state;
    struct run r = {new_wheel(0), 0, 0};
    struct item a = {0};
    for (uint32_t t = 0; t < 2000; t += 7) {
        advance_to(&r, t);
        wheel_set(r.w, &a.node, t + 900); /* beyond the wheel's span */
    }
    uint32_t last = 1995 + 900;
    advance_to(&r, last - 1);
    assert_int_equal(a.fired, 0);
    advance_to(&r, last);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.fired_at, last);
    free(r.w);
}

/* Connect timeout (long) replaced by linger (short): the earlier one wins. */
static void test_moving_earlier_relinks(void **state)
{
    (void)state;
    struct run r = {new_wheel(50), 50, 0};
    struct item a = {0};
    wheel_set(r.w, &a.node, 150);
    wheel_set(r.w, &a.node, 60);
    advance_to(&r, 60);
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.fired_at, 60);
    free(r.w);
}

static void test_deleted_never_fires(void **state)
{
    (void)state;
    struct run r = {new_wheel(0), 0, 0};
    struct item a = {0}, b = {0};
    wheel_set(r.w, &a.node, 10);
    wheel_set(r.w, &b.node, 10);
    wheel_del(r.w, &a.node);
    wheel_del(r.w, &a.node); /* twice is fine */
    advance_to(&r, 20);
    assert_int_equal(a.fired, 0);
    assert_int_equal(b.fired, 1);
    free(r.w);
}

/* A deadline already past fires on the next advance. */
static void test_past_deadline_fires_next_tick(void **state)
{
    (void)state;
    struct run r = {new_wheel(100), 100, 0};
    struct item a = {0};
    wheel_set(r.w, &a.node, 90);
    uint32_t next = 0;
    assert_true(wheel_next(r.w, &next));
    assert_int_equal(next, 101);
    advance_to(&r, 101);
    assert_int_equal(a.fired, 1);
    free(r.w);
}

/* A callback that re-arms into the slot being visited ends the visit and
 * fires again a round later. */
static void test_rearm_from_callback(void **state)
{
    (void)state;
    struct run r = {new_wheel(0), 0, WHEEL_SLOTS};
    struct item a = {0};
    wheel_set(r.w, &a.node, 5);
    advance_to(&r, 5);
    assert_int_equal(a.fired, 1);
    advance_to(&r, 5 + WHEEL_SLOTS);
    assert_int_equal(a.fired, 2);
    assert_int_equal(a.fired_at, 5 + WHEEL_SLOTS);
    free(r.w);
}

/* The loop stalled for longer than the wheel's span: one advance fires
 * every deadline that passed, each once. */
static void test_long_jump_fires_everything_due(void **state)
{
    (void)state;
    struct run r = {new_wheel(0), 0, 0};
    struct item it[40];
    memset(it, 0, sizeof(it));
    for (unsigned i = 0; i < 40; i++)
        wheel_set(r.w, &it[i].node, 1 + i * 97);
    r.now = 2000;
    wheel_advance(r.w, r.now, on_fire, &r);
    for (unsigned i = 0; i < 40; i++)
        assert_int_equal(it[i].fired, 1 + i * 97 <= 2000 ? 1 : 0);
    advance_to(&r, 5000);
    for (unsigned i = 0; i < 40; i++)
        assert_int_equal(it[i].fired, 1);
    free(r.w);
}

static void test_next_is_the_first_busy_slot(void **state)
{
    (void)state;
    struct wheel *w = new_wheel(7);
    uint32_t next = 0;
    assert_false(wheel_next(w, &next));
    struct item a = {0}, b = {0};
    wheel_set(w, &a.node, 30);
    wheel_set(w, &b.node, 20);
    assert_true(wheel_next(w, &next));
    assert_int_equal(next, 20);
    wheel_del(w, &b.node);
    assert_true(wheel_next(w, &next));
    assert_int_equal(next, 30);
    free(w);
}

/* Random sets, deletes and advances (ticks near the u32 wrap) against a
 * plain array of deadlines: each item fires exactly at its deadline tick,
 * or on the first advance past it. */
static void test_model(void **state)
{
    (void)state;
    enum { N = 300 };
    uint32_t start = UINT32_MAX - 5000;
    struct run r = {new_wheel(start), start, 0};
    static struct item it[N];
    memset(it, 0, sizeof(it));
    uint32_t due[N];
    int armed[N];
    memset(armed, 0, sizeof(armed));
    srand(7);
    for (int step = 0; step < 20000; step++) {
        int i = rand() % N;
        int op = rand() % 10;
        if (op < 5) {
            due[i] = r.now + (uint32_t)(rand() % 3000);
            armed[i] = 1;
            it[i].fired = 0;
            wheel_set(r.w, &it[i].node, due[i]);
        } else if (op < 6) {
            armed[i] = 0;
            wheel_del(r.w, &it[i].node);
        } else {
            uint32_t to = r.now + (uint32_t)(rand() % (op == 9 ? 700 : 4));
            uint32_t from = r.now;
            r.now = to;
            wheel_advance(r.w, to, on_fire, &r);
            if (to == from)
                continue; /* not an advance: deadlines at "now" wait for one */
            for (int k = 0; k < N; k++) {
                if (!armed[k])
                    continue;
                int32_t left = (int32_t)(due[k] - to);
                if (left <= 0) {
                    assert_int_equal(it[k].fired, 1);
                    /* fired on the first advance that reached it */
                    assert_true((int32_t)(due[k] - from) > 0 || it[k].fired_at == from ||
                                it[k].fired_at == to);
                    armed[k] = 0;
                    it[k].fired = 0;
                } else {
                    assert_int_equal(it[k].fired, 0);
                    assert_true(wheel_pending(&it[k].node));
                }
            }
        }
    }
    free(r.w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_at_its_tick),
        cmocka_unit_test(test_moving_later_fires_only_at_the_last),
        cmocka_unit_test(test_moving_earlier_relinks),
        cmocka_unit_test(test_deleted_never_fires),
        cmocka_unit_test(test_past_deadline_fires_next_tick),
        cmocka_unit_test(test_rearm_from_callback),
        cmocka_unit_test(test_long_jump_fires_everything_due),
        cmocka_unit_test(test_next_is_the_first_busy_slot),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
