/* The wake-up coalescing policy (coalesce.h), driven with made-up
 * counters: who qualifies, the measure-then-decide sequence, re-measuring,
 * and stopping when the traffic changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "broker/coalesce.h"

#define MAX_US 300u

struct traffic {
    uint64_t now_ms;
    struct coalesce_counts total;
};

/* One window of traffic: turns, packets and writes in it, and the CPU it
 * cost (us per 1,000 packets) off and on. Returns the interval chosen. */
static uint32_t window(struct coalesce *c, struct traffic *t, uint64_t turns, uint64_t packets,
                       uint64_t writes, uint64_t cost_off, uint64_t cost_on)
{
    t->now_ms += COALESCE_WINDOW_MS;
    assert_true(coalesce_due(c, t->now_ms));
    t->total.turns += turns;
    t->total.packets += packets;
    t->total.writes += writes;
    t->total.cpu_us += packets * (c->on ? cost_on : cost_off) / 1000u;
    return coalesce_update(c, t->now_ms, &t->total);
}

/* fan-in: 2,000 packets a window, 1,200 writes (40% merged), 600 turns
 * (6,000 a second); coalescing halves the cost. */
static uint32_t fanin(struct coalesce *c, struct traffic *t, uint64_t cost_on)
{
    return window(c, t, 600, 2000, 1200, 24000, cost_on);
}

/* Windows until the decision: the first qualifying window, the settling
 * ones, then four phases (off, on, off, on) each skipping one window and
 * counting COALESCE_MEASURE_WINDOWS; the last counted window decides. */
enum {
    MEASURE = COALESCE_PHASES * (1 + COALESCE_MEASURE_WINDOWS),
    TO_DECIDE = 1 + COALESCE_SETTLE_WINDOWS + MEASURE,
};

static void start(struct coalesce *c, struct traffic *t, uint32_t max_us)
{
    *t = (struct traffic){1000, {0}};
    coalesce_init(c, max_us, t->now_ms);
}

/* From the first qualifying fan-in window to the decision. */
static void run_to_decision(struct coalesce *c, struct traffic *t, uint64_t cost_on)
{
    for (int i = 0; i < TO_DECIDE; i++)
        fanin(c, t, cost_on);
    assert_int_equal(c->state, CO_SETTLED);
}

static void test_cheaper_when_coalesced_turns_it_on(void **state)
{
    (void)state;
    struct coalesce c;
    struct traffic t;
    start(&c, &t, MAX_US);
    assert_false(coalesce_due(&c, t.now_ms + COALESCE_WINDOW_MS - 1));
    /* No waiting while the traffic settles. */
    for (int i = 0; i < 1 + (int)COALESCE_SETTLE_WINDOWS; i++)
        assert_int_equal(fanin(&c, &t, 12000), 0);
    int probed = 0;
    uint32_t got = 0;
    for (int i = 0; i < MEASURE; i++) {
        got = fanin(&c, &t, 12000);
        probed += got == MAX_US;
    }
    assert_int_equal(c.state, CO_SETTLED);
    assert_int_equal(got, MAX_US);
    /* each "on" phase (from the window that switches to it to the one
     * before it switches back), and the deciding window */
    assert_int_equal(probed, 2 * (1 + COALESCE_MEASURE_WINDOWS) + 1);
    assert_int_equal(c.cost_off, 24000);
    assert_int_equal(c.cost_on, 12000);
    for (int i = 0; i < 50; i++)
        assert_int_equal(fanin(&c, &t, 12000), MAX_US);
}

static void test_no_cheaper_stays_off(void **state)
{
    (void)state;
    struct coalesce c;
    struct traffic t;
    start(&c, &t, MAX_US);
    run_to_decision(&c, &t, 23000); /* 4% cheaper: under the 10% bar */
    for (int i = 0; i < 50; i++)
        assert_int_equal(fanin(&c, &t, 23000), 0);
}

/* Pairs: every packet has its own write; QoS 0 trickle: few turns; few
 * packets. None is ever measured, so no message is held for it. */
static void test_unmerged_or_slow_traffic_never_coalesces(void **state)
{
    (void)state;
    struct coalesce c;
    struct traffic t;
    start(&c, &t, MAX_US);
    for (int i = 0; i < 100; i++)
        assert_int_equal(window(&c, &t, 600, 2000, 2000, 24000, 1000), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(window(&c, &t, 150, 2000, 1000, 24000, 1000), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(window(&c, &t, 600, 100, 50, 24000, 1000), 0);
    assert_int_equal(c.state, CO_IDLE);
}

static void test_off_when_configured_off(void **state)
{
    (void)state;
    struct coalesce c;
    struct traffic t;
    start(&c, &t, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(fanin(&c, &t, 1000), 0);
}

/* Settled on: the traffic drops to a trickle -> off at once; it returns
 * -> settles and is measured again before coalescing. */
static void test_traffic_change_stops_and_remeasures(void **state)
{
    (void)state;
    struct coalesce c;
    struct traffic t;
    start(&c, &t, MAX_US);
    run_to_decision(&c, &t, 12000);
    assert_true(c.on);
    /* coalescing caps turns: 200 a window (2,000/s) still qualifies */
    assert_int_equal(window(&c, &t, 200, 2000, 600, 24000, 12000), MAX_US);
    assert_int_equal(window(&c, &t, 50, 2000, 600, 24000, 12000), 0);
    assert_int_equal(c.state, CO_IDLE);
    for (int i = 0; i < 1 + (int)COALESCE_SETTLE_WINDOWS; i++)
        assert_int_equal(fanin(&c, &t, 12000), 0);
    for (int i = 0; i < MEASURE; i++)
        fanin(&c, &t, 12000);
    assert_true(c.on);
}

/* Settled, it measures again every COALESCE_REPROBE_MS (no settling: the
 * traffic has been steady): if coalescing no longer pays, it stops. */
static void test_remeasures_periodically(void **state)
{
    (void)state;
    struct coalesce c;
    struct traffic t;
    start(&c, &t, MAX_US);
    run_to_decision(&c, &t, 12000);
    assert_true(c.on);
    int windows = COALESCE_REPROBE_MS / COALESCE_WINDOW_MS;
    for (int i = 0; i < windows - 1; i++)
        assert_int_equal(fanin(&c, &t, 30000), MAX_US);
    assert_int_equal(fanin(&c, &t, 30000), 0); /* measuring, "off" first */
    assert_int_equal(c.state, CO_MEASURING);
    for (int i = 0; i < MEASURE; i++)
        fanin(&c, &t, 30000);
    assert_int_equal(c.state, CO_SETTLED);
    assert_false(c.on);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cheaper_when_coalesced_turns_it_on),
        cmocka_unit_test(test_no_cheaper_stays_off),
        cmocka_unit_test(test_unmerged_or_slow_traffic_never_coalesces),
        cmocka_unit_test(test_off_when_configured_off),
        cmocka_unit_test(test_traffic_change_stops_and_remeasures),
        cmocka_unit_test(test_remeasures_periodically),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
