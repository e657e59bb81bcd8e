/* Prometheus text: every metric has HELP and TYPE lines, values are the
 * figures given, and a short buffer reports the size it needs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "broker/conn.h"
#include "broker/core.h"
#include "broker/listener.h"
#include "broker/loop.h"
#include "broker/metrics.h"

static void test_format(void **state)
{
    (void)state;
    struct core_stats cs = {.clients_connected = 3, .messages_received = 1234567890123ULL};
    struct loop_stats ls = {.busy_fraction = 0.125, .longest_us = 1500, .longest_wall_us = 2000};
    struct conn_stats cn = {.accepted = 7};
    struct listener_stats lst = {.rejected_max_connections = 2};
    struct metrics_figures f = {&cs, &ls, &cn, &lst, 4096, 5, 60};
    char buf[16384];
    size_t n = metrics_format(&f, buf, sizeof(buf));
    assert_true(n > 0 && n < sizeof(buf));
    assert_int_equal(strlen(buf), n);
    assert_non_null(strstr(buf, "# TYPE loopbot_clients_connected gauge\nloopbot_clients_connected 3\n"));
    assert_non_null(strstr(buf, "loopbot_messages_received_total 1234567890123\n"));
    assert_non_null(strstr(buf, "loopbot_loop_busy_ratio 0.125\n"));
    assert_non_null(strstr(buf, "loopbot_loop_longest_callback_seconds 0.0015\n"));
    assert_non_null(strstr(buf, "loopbot_loop_longest_callback_wall_seconds 0.002\n"));
    assert_non_null(strstr(buf, "loopbot_connections_accepted_total 7\n"));
    assert_non_null(strstr(buf, "loopbot_connections_rejected_total 2\n"));
    /* every sample line is preceded by its HELP and TYPE */
    size_t helps = 0, types = 0, samples = 0;
    for (char *line = buf; *line;) {
        char *end = strchr(line, '\n');
        assert_non_null(end);
        if (strncmp(line, "# HELP ", 7) == 0)
            helps++;
        else if (strncmp(line, "# TYPE ", 7) == 0)
            types++;
        else
            samples++;
        line = end + 1;
    }
    assert_int_equal(helps, types);
    assert_int_equal(types, samples);

    /* too small: nothing past cap, and the size needed is returned */
    char small[64];
    memset(small, 'x', sizeof(small));
    assert_int_equal(metrics_format(&f, small, sizeof(small)), n);
    assert_true(memchr(small, '\0', sizeof(small)) != NULL);

    /* optional parts may be missing */
    struct metrics_figures bare = {&cs, NULL, NULL, NULL, 0, 0, 0};
    assert_true(metrics_format(&bare, buf, sizeof(buf)) < n);
    assert_null(strstr(buf, "loop_busy"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
