/* The retained-message store: set/replace/clear, matching by filter with the
 * '$' rule, references, memory and allocation failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/mem.h"
#include "broker/message.h"
#include "broker/retain.h"

/* props = NULL: the message is built without the property codec. */
static struct message *msg_new(const char *topic, const char *payload)
{
    struct mqtt_bytes t = {(const uint8_t *)topic, (uint32_t)strlen(topic)};
    struct mqtt_bytes p = {(const uint8_t *)payload, (uint32_t)strlen(payload)};
    struct message *m = message_new(&t, &p, NULL, 1, true, 0, NULL);
    assert_non_null(m);
    return m;
}

static int set(struct retain_store *r, const char *topic, struct message *m)
{
    return retain_set(r, (const uint8_t *)topic, strlen(topic), m);
}

static struct message *get(struct retain_store *r, const char *topic)
{
    return retain_get(r, (const uint8_t *)topic, strlen(topic));
}

static void test_set_replace_clear(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct retain_store *r = retain_new();
    assert_non_null(r);
    size_t empty = retain_memory(r);
    assert_int_equal(mem_used_total() - before, empty);

    struct message *m1 = msg_new("a/b", "one");
    struct message *m2 = msg_new("a/b", "two");
    struct message *none = msg_new("a/b", "");
    assert_int_equal(set(r, "a/b", m1), 0);
    assert_int_equal(m1->refs, 2);
    assert_ptr_equal(get(r, "a/b"), m1);
    assert_null(get(r, "a"));
    assert_null(get(r, "a/b/c"));
    assert_null(get(r, "a/"));
    assert_int_equal(retain_count(r), 1);
    assert_true(retain_memory(r) >= empty + message_size(m1));

    assert_int_equal(set(r, "a/b", m2), 0); /* replace */
    assert_int_equal(m1->refs, 1);
    assert_int_equal(m2->refs, 2);
    assert_ptr_equal(get(r, "a/b"), m2);
    assert_int_equal(retain_count(r), 1);

    assert_int_equal(set(r, "a/b", m2), 0); /* same message again */
    assert_int_equal(m2->refs, 2);

    assert_int_equal(set(r, "a", m1), 0); /* a node that is also a parent */
    assert_int_equal(retain_count(r), 2);
    assert_int_equal(set(r, "a", NULL), 0); /* NULL clears */
    assert_null(get(r, "a"));
    assert_ptr_equal(get(r, "a/b"), m2);
    assert_int_equal(m1->refs, 1);

    assert_int_equal(set(r, "a/b", none), 0); /* empty payload clears [MQTT-3.3.1-10] */
    assert_int_equal(none->refs, 1);
    assert_int_equal(m2->refs, 1);
    assert_null(get(r, "a/b"));
    assert_int_equal(retain_count(r), 0);
    assert_int_equal(retain_memory(r), empty); /* nodes pruned */
    assert_int_equal(set(r, "never/set", NULL), 0); /* clearing nothing is fine */
    assert_int_equal(retain_memory(r), empty);

    /* Empty levels are topics of their own. */
    assert_int_equal(set(r, "/", m1), 0);
    assert_int_equal(set(r, "//", m2), 0);
    assert_ptr_equal(get(r, "/"), m1);
    assert_ptr_equal(get(r, "//"), m2);
    assert_null(get(r, ""));

    retain_free(r);
    assert_int_equal(m1->refs, 1);
    assert_int_equal(m2->refs, 1);
    message_unref(m1);
    message_unref(m2);
    message_unref(none);
    assert_int_equal(mem_used_total(), before);
    retain_free(NULL);
}

/* Collects the topics of matched messages, sorted, joined with spaces. */
struct seen {
    size_t n;
    const char *topic[64];
};

static void on_msg(void *ctx, struct message *m)
{
    struct seen *s = ctx;
    assert_true(s->n < 64);
    s->topic[s->n++] = (const char *)m->topic;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void joined(struct seen *s, char *out, size_t cap)
{
    qsort(s->topic, s->n, sizeof(s->topic[0]), cmp_str);
    out[0] = '\0';
    for (size_t i = 0; i < s->n; i++) {
        if (i)
            strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, s->topic[i], cap - strlen(out) - 1);
    }
}

static const char *const stored[] = {
    "a", "a/b", "a/b/c", "a/c", "a//c", "/a", "b", "$SYS/x", "$SYS/y/z", "x/$y", "a/",
};

/* Expected topics in strcmp order. */
static const struct {
    const char *filter, *want;
} match_rows[] = {
    {"#", "/a a a/ a//c a/b a/b/c a/c b x/$y"},
    {"+/#", "/a a a/ a//c a/b a/b/c a/c b x/$y"},
    {"a/#", "a a/ a//c a/b a/b/c a/c"},
    {"a/+", "a/ a/b a/c"},
    {"a/+/c", "a//c a/b/c"},
    {"+", "a b"},
    {"+/+", "/a a/ a/b a/c x/$y"},
    {"+/+/+", "a//c a/b/c"},
    {"+/+/z", ""},
    {"+/x", ""},
    {"$SYS/#", "$SYS/x $SYS/y/z"},
    {"$SYS/+", "$SYS/x"},
    {"$SYS/y/+", "$SYS/y/z"},
    {"$SYS", ""},
    {"a/b", "a/b"},
    {"a/b/c/#", "a/b/c"},
    {"/+", "/a"},
    {"/#", "/a"},
    {"x/+", "x/$y"},
    {"a/", "a/"},
    {"a//+", "a//c"},
    {"nothing", ""},
    {"nothing/#", ""},
    {"a/b/c/d", ""},
    {"+/b/#", "a/b a/b/c"},
};

static void test_match_table(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct retain_store *r = retain_new();
    struct message *m[sizeof(stored) / sizeof(stored[0])];
    for (size_t i = 0; i < sizeof(stored) / sizeof(stored[0]); i++) {
        m[i] = msg_new(stored[i], "payload");
        assert_int_equal(set(r, stored[i], m[i]), 0);
        message_unref(m[i]); /* the store holds the only reference */
    }
    assert_int_equal(retain_count(r), sizeof(stored) / sizeof(stored[0]));
    for (size_t i = 0; i < sizeof(match_rows) / sizeof(match_rows[0]); i++) {
        struct seen s = {0};
        char got[512];
        retain_match(r, (const uint8_t *)match_rows[i].filter, strlen(match_rows[i].filter),
                     on_msg, &s);
        joined(&s, got, sizeof(got));
        if (strcmp(got, match_rows[i].want) != 0)
            fail_msg("filter \"%s\": got \"%s\", want \"%s\"", match_rows[i].filter, got,
                     match_rows[i].want);
    }
    retain_free(r); /* frees the messages: refs were 1 */
    assert_int_equal(mem_used_total(), before);
}

static void count_msg(void *ctx, struct message *m)
{
    (void)m;
    (*(size_t *)ctx)++;
}

static size_t count_match(struct retain_store *r, const char *filter)
{
    size_t n = 0;
    retain_match(r, (const uint8_t *)filter, strlen(filter), count_msg, &n);
    return n;
}

static void test_many_children(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct retain_store *r = retain_new();
    size_t empty = retain_memory(r);
    struct message *m = msg_new("x", "1");
    enum { N = 20000 };
    char t[64];
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof(t), "devices/%d/temp", i);
        assert_int_equal(set(r, t, m), 0);
    }
    assert_int_equal(m->refs, N + 1);
    assert_int_equal(retain_count(r), N);
    size_t mem = retain_memory(r) - empty - (size_t)N * message_size(m);
    print_message("      %d retained devices/<id>/temp: %zu bytes of tree per topic\n", N,
                  mem / N);
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof(t), "devices/%d/temp", i);
        assert_ptr_equal(get(r, t), m);
    }
    assert_null(get(r, "devices/20000/temp"));
    assert_int_equal(count_match(r, "devices/+/temp"), N);
    assert_int_equal(count_match(r, "devices/#"), N);
    assert_int_equal(count_match(r, "devices/123/+"), 1);
    assert_int_equal(count_match(r, "+/123/temp"), 1);
    for (int i = 1; i < N; i += 2) {
        snprintf(t, sizeof(t), "devices/%d/temp", i);
        assert_int_equal(set(r, t, NULL), 0);
    }
    assert_int_equal(count_match(r, "devices/+/temp"), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(t, sizeof(t), "devices/%d/temp", i);
        if (i % 2)
            assert_null(get(r, t));
        else
            assert_ptr_equal(get(r, t), m);
    }
    retain_free(r);
    assert_int_equal(m->refs, 1);
    message_unref(m);
    assert_int_equal(mem_used_total(), before);
}

static void test_deep(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    enum { LEVELS = 30000 };
    static char topic[2 * LEVELS], plus[2 * LEVELS];
    for (int i = 0; i < LEVELS; i++) {
        topic[2 * i] = 'a';
        plus[2 * i] = '+';
        topic[2 * i + 1] = plus[2 * i + 1] = '/';
    }
    size_t len = 2 * LEVELS - 1;
    struct retain_store *r = retain_new();
    struct message *m = msg_new("a", "deep");
    assert_int_equal(retain_set(r, (uint8_t *)topic, len, m), 0);
    assert_int_equal(retain_set(r, (uint8_t *)topic, 9, m), 0); /* a/a/a/a/a */
    assert_ptr_equal(retain_get(r, (uint8_t *)topic, len), m);
    size_t n = 0;
    retain_match(r, (uint8_t *)plus, len, count_msg, &n);
    assert_int_equal(n, 1);
    n = 0;
    retain_match(r, (uint8_t *)"#", 1, count_msg, &n);
    assert_int_equal(n, 2);
    n = 0;
    retain_match(r, (uint8_t *)"a/a/+/a/a/#", 11, count_msg, &n);
    assert_int_equal(n, 2);
    retain_free(r); /* a 30,000-level chain */
    assert_int_equal(m->refs, 1);
    message_unref(m);
    assert_int_equal(mem_used_total(), before);
}

static const char *const seq[] = {
    "a/b/c", "a/b", "a/x/c", "$SYS/x", "d/0", "d/1", "d/2", "d/3", "d/4", "d/5",
    "d/6",   "d/7", "d/8",   "d/9",    "d/10", "d/11", "/", "a//b",
};
#define SEQ_N (sizeof(seq) / sizeof(seq[0]))

static void test_alloc_failure(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct message *m = msg_new("t", "v");
    struct retain_store *r = retain_new();
    size_t empty = retain_memory(r);
    mem_fail_nth(0);
    for (size_t i = 0; i < SEQ_N; i++)
        assert_int_equal(set(r, seq[i], m), 0);
    unsigned long total = mem_fail_nth(0);
    retain_free(r);
    assert_int_equal(m->refs, 1);

    for (unsigned long k = 1; k <= total; k++) {
        r = retain_new();
        bool ok[SEQ_N];
        size_t nok = 0;
        mem_fail_nth(k);
        for (size_t i = 0; i < SEQ_N; i++) {
            int rc = set(r, seq[i], m);
            assert_true(rc == 0 || rc == -ERR_NOMEM);
            ok[i] = rc == 0;
            nok += ok[i];
        }
        mem_fail_nth(0);
        assert_int_equal(nok, SEQ_N - 1);
        assert_int_equal(retain_count(r), nok);
        assert_int_equal(m->refs, 1 + nok);
        for (size_t i = 0; i < SEQ_N; i++)
            assert_ptr_equal(get(r, seq[i]), ok[i] ? m : NULL);
        assert_int_equal(count_match(r, "#"), nok - ok[3]); /* $SYS/x excluded */
        assert_int_equal(count_match(r, "d/+"), ok[4] + ok[5] + ok[6] + ok[7] + ok[8] + ok[9] +
                                                    ok[10] + ok[11] + ok[12] + ok[13] +
                                                    ok[14] + ok[15]);
        assert_int_equal(mem_used_total() - before - message_size(m),
                         retain_memory(r) - nok * message_size(m));
        /* Clearing everything with allocations failing still frees all. */
        mem_fail_nth(k);
        for (size_t i = 0; i < SEQ_N; i++)
            assert_int_equal(set(r, seq[i], NULL), 0);
        mem_fail_nth(0);
        assert_int_equal(retain_count(r), 0);
        assert_int_equal(retain_memory(r), empty);
        assert_int_equal(m->refs, 1);
        retain_free(r);
        assert_int_equal(mem_used_total() - before, message_size(m));
    }
    mem_fail_nth(0);
    r = retain_new();
    unsigned long n_new = mem_fail_nth(0);
    retain_free(r);
    for (unsigned long k = 1; k <= n_new; k++) {
        mem_fail_nth(k);
        assert_null(retain_new());
        mem_fail_nth(0);
    }
    message_unref(m);
    assert_int_equal(mem_used_total(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_replace_clear),
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_many_children),
        cmocka_unit_test(test_deep),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
