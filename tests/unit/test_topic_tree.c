/* The subscription tree: matching rules [MQTT-4.7], shared groups, memory
 * accounting and allocation failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "broker/mem.h"
#include "broker/topic_tree.h"

#define MAX_HITS 64

struct hits {
    size_t n;
    struct subscription *sub[MAX_HITS];
    const void *not_ok; /* member_ok refuses subscriptions of this owner */
    const void *not_ok2;
};

static void on_hit(void *ctx, struct subscription *sub)
{
    struct hits *h = ctx;
    if (h->n < MAX_HITS)
        h->sub[h->n] = sub;
    h->n++;
}

static bool member_ok(void *ctx, const struct subscription *sub)
{
    const struct hits *h = ctx;
    return sub->owner != h->not_ok && sub->owner != h->not_ok2;
}

static struct subscription *add(struct topic_tree *t, const char *filter, void *owner)
{
    return topic_tree_add(t, (const uint8_t *)filter, strlen(filter), owner, 1, 0);
}

static size_t match(struct topic_tree *t, const char *topic, struct hits *h)
{
    h->n = 0;
    topic_tree_match(t, (const uint8_t *)topic, strlen(topic), on_hit, member_ok, h);
    return h->n;
}

static size_t count_owner(const struct hits *h, const void *owner)
{
    size_t k = 0;
    for (size_t i = 0; i < h->n && i < MAX_HITS; i++)
        k += h->sub[i]->owner == owner;
    return k;
}

static const struct {
    const char *filter, *topic;
    bool match;
} rows[] = {
    {"a/b/c", "a/b/c", true},
    {"a/b/c", "a/b", false},
    {"a/b", "a/b/c", false},
    {"A/b", "a/b", false}, /* case matters */
    {"a/b", "a/b/", false},
    {"a/+/c", "a/b/c", true},
    {"a/+/c", "a//c", true}, /* '+' matches an empty level */
    {"a/+/c", "a/b/d", false},
    {"a/+", "a/", true},
    {"a/+", "a", false},
    {"+", "a", true},
    {"+", "/a", false},
    {"+", "/", false},
    {"+/+", "/x", true},
    {"+/+", "x/", true},
    {"+/+", "/", true},
    {"/+", "/x", true},
    {"/+", "x", false},
    {"+/+/+", "a/b/c", true},
    {"+/+/+", "a/b", false},
    {"+/+/+", "a/b/c/d", false},
    {"#", "a", true},
    {"#", "a/b/c", true},
    {"#", "/", true},
    {"#", "$SYS/x", false}, /* [MQTT-4.7.2-1] */
    {"#", "$SYS", false},
    {"+/x", "$SYS/x", false},
    {"+", "$SYS", false},
    {"+/#", "$x/y", false},
    {"+/#", "a", true}, /* '#' matches the parent level */
    {"$SYS/#", "$SYS/x", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/+", "$SYS/x", true},
    {"$SYS/x", "$SYS/x", true},
    {"$foo", "$foo", true},
    {"x/+", "x/$y", true}, /* the '$' rule is for the first level only */
    {"x/#", "x/$y/z", true},
    {"a/#", "a", true},
    {"a/#", "a/b", true},
    {"a/#", "a/b/c/d", true},
    {"a/#", "a/", true},
    {"a/#", "ab", false},
    {"a/#", "b/a", false},
    {"a/+/#", "a/b", true},
    {"a/+/#", "a", false},
    {"+/b/#", "a/b", true},
    {"+/b/#", "a/c", false},
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"/a", "/a", true},
    {"/a", "a", false},
    {"/#", "/", true},
    {"/#", "a", false},
    {"a//b", "a//b", true},
    {"a//b", "a/b", false},
    {"a/", "a/", true},
    {"a/", "a", false},
    {"a/+/+/d", "a/b//d", true},
    {"\xc3\xbc/+", "\xc3\xbc/x", true}, /* UTF-8 levels are just bytes */
    {"a+/b", "a+/b", true},          /* '+' inside a level is not a wildcard */
    {"a+/b", "ax/b", false},
};

static void test_match_table(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct topic_tree *t = topic_tree_new();
        assert_non_null(t);
        struct subscription *s = add(t, rows[i].filter, (void *)&rows[i]);
        assert_non_null(s);
        assert_int_equal(s->filter_len, strlen(rows[i].filter));
        assert_memory_equal(s->filter, rows[i].filter, s->filter_len);
        struct hits h = {0};
        size_t got = match(t, rows[i].topic, &h);
        if (got != (rows[i].match ? 1u : 0u))
            fail_msg("filter \"%s\" topic \"%s\": %zu matches, want %d", rows[i].filter,
                     rows[i].topic, got, rows[i].match);
        /* The same row with a shared subscription on the filter. */
        char shared[128];
        snprintf(shared, sizeof(shared), "$share/g/%s", rows[i].filter);
        struct subscription *g = add(t, shared, &h);
        assert_non_null(g);
        got = match(t, rows[i].topic, &h);
        assert_int_equal(got, rows[i].match ? 2u : 0u);
        topic_tree_remove(t, s);
        topic_tree_remove(t, g);
        assert_int_equal(topic_tree_count(t), 0);
        topic_tree_free(t);
    }
    /* All rows in one tree: each topic gets exactly its rows. */
    struct topic_tree *t = topic_tree_new();
    size_t nrows = sizeof(rows) / sizeof(rows[0]);
    for (size_t i = 0; i < nrows; i++)
        assert_non_null(add(t, rows[i].filter, (void *)&rows[i]));
    for (size_t i = 0; i < nrows; i++) {
        struct hits h = {0};
        match(t, rows[i].topic, &h);
        assert_true(h.n <= MAX_HITS);
        if (count_owner(&h, &rows[i]) != (rows[i].match ? 1u : 0u))
            fail_msg("row %zu in the full tree", i);
    }
    topic_tree_free(t);
    assert_int_equal(mem_used_total(), before);
}

static void test_overlap_and_plain_with_group(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    int owner, other;
    add(t, "a/b", &owner);
    add(t, "a/+", &owner);
    add(t, "#", &owner);
    add(t, "a/#", &owner);
    add(t, "+/b", &other);
    add(t, "$share/g/a/b", &other);
    struct hits h = {0};
    assert_int_equal(match(t, "a/b", &h), 6);
    assert_int_equal(count_owner(&h, &owner), 4);
    assert_int_equal(count_owner(&h, &other), 2);
    assert_int_equal(topic_tree_count(t), 6);
    /* Two subscriptions with the same filter and owner are both called. */
    add(t, "a/b", &owner);
    assert_int_equal(match(t, "a/b", &h), 7);
    topic_tree_free(t);
}

static void test_shared_round_robin(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct topic_tree *t = topic_tree_new();
    int o[3];
    struct subscription *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = add(t, "$share/grp/x/+", &o[i]);
        assert_non_null(s[i]);
        assert_non_null(s[i]->group);
        assert_int_equal(s[i]->filter_len, strlen("$share/grp/x/+"));
    }
    assert_ptr_equal(s[0]->group, s[1]->group);
    assert_ptr_equal(s[0]->node, s[2]->node);
    struct subscription *plain = add(t, "x/+", &o[0]);
    assert_null(plain->group);
    struct subscription *other_group = add(t, "$share/other/x/+", &o[1]);
    assert_ptr_not_equal(other_group->group, s[0]->group);

    struct hits h = {0};
    size_t per[3] = {0};
    for (int m = 0; m < 6; m++) {
        assert_int_equal(match(t, "x/y", &h), 3); /* plain + one per group */
        for (size_t k = 0; k < h.n; k++)
            for (int i = 0; i < 3; i++)
                per[i] += h.sub[k] == s[i];
    }
    assert_int_equal(per[0], 2);
    assert_int_equal(per[1], 2);
    assert_int_equal(per[2], 2);

    /* member_ok: o[1] refused, so o[0] and o[2] alternate. */
    h.not_ok = &o[1];
    memset(per, 0, sizeof(per));
    for (int m = 0; m < 6; m++) {
        h.n = 0;
        topic_tree_match(t, (const uint8_t *)"x/y", 3, on_hit, member_ok, &h);
        for (size_t k = 0; k < h.n; k++)
            for (int i = 0; i < 3; i++)
                per[i] += h.sub[k] == s[i];
    }
    assert_int_equal(per[0], 3);
    assert_int_equal(per[1], 0);
    assert_int_equal(per[2], 3);

    /* No member ok: the next in turn gets it anyway (it may queue it), and
     * the turn still rotates; "other" (o[1] only) delivers to o[1]. */
    h.not_ok = &o[1];
    h.not_ok2 = &o[2];
    struct subscription *keep = s[0];
    topic_tree_remove(t, keep); /* o[0] gone from grp: grp has o[1], o[2] */
    s[0] = NULL;
    memset(per, 0, sizeof(per));
    for (int m = 0; m < 4; m++) {
        h.n = 0;
        topic_tree_match(t, (const uint8_t *)"x/y", 3, on_hit, member_ok, &h);
        assert_int_equal(h.n, 3);
        assert_int_equal(count_owner(&h, &o[1]) + count_owner(&h, &o[2]), 2);
        for (size_t k = 0; k < h.n; k++)
            for (int i = 1; i < 3; i++)
                per[i] += h.sub[k] == s[i];
    }
    assert_int_equal(per[1], 2);
    assert_int_equal(per[2], 2);

    /* NULL member_ok = every member may. */
    h.n = 0;
    topic_tree_match(t, (const uint8_t *)"x/y", 3, on_hit, NULL, &h);
    assert_int_equal(h.n, 3);

    /* Removing the cursor member and then every member removes the group. */
    size_t mem_with = topic_tree_memory(t);
    topic_tree_remove(t, s[1]);
    topic_tree_remove(t, s[2]);
    assert_true(topic_tree_memory(t) < mem_with);
    h.n = 0;
    topic_tree_match(t, (const uint8_t *)"x/y", 3, on_hit, NULL, &h);
    assert_int_equal(h.n, 2);
    topic_tree_remove(t, other_group);
    topic_tree_remove(t, plain);
    assert_int_equal(topic_tree_count(t), 0);
    assert_int_equal(match(t, "x/y", &h), 0);
    topic_tree_free(t);
    assert_int_equal(mem_used_total(), before);
}

static void test_share_parse(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    int o;
    /* The group is the level after $share; the rest is the filter. */
    struct subscription *a = add(t, "$share/g/#", &o);
    struct subscription *b = add(t, "$share/g/$SYS/#", &o);
    assert_non_null(a->group);
    struct hits h = {0};
    assert_int_equal(match(t, "a/b", &h), 1);
    assert_ptr_equal(h.sub[0], a);
    assert_int_equal(match(t, "$SYS/x", &h), 1);
    assert_ptr_equal(h.sub[0], b);
    /* Not a shared subscription: "$share" alone, or no filter part. */
    struct subscription *c = add(t, "$share/g", &o);
    assert_null(c->group);
    assert_int_equal(match(t, "$share/g", &h), 1);
    struct subscription *d = add(t, "$share", &o);
    assert_null(d->group);
    topic_tree_free(t);
}

static void test_add_remove_many(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct topic_tree *t = topic_tree_new();
    size_t empty = topic_tree_memory(t);
    assert_int_equal(mem_used_total() - before, empty);
    enum { N = 2000 };
    static struct subscription *subs[N];
    char f[64];
    for (int i = 0; i < N; i++) {
        switch (i % 4) {
        case 0: snprintf(f, sizeof(f), "s/%d/t", i); break;
        case 1: snprintf(f, sizeof(f), "s/+/t/%d", i); break;
        case 2: snprintf(f, sizeof(f), "s/%d/#", i % 50); break;
        default: snprintf(f, sizeof(f), "$share/g%d/s/%d/t", i % 7, i % 13); break;
        }
        subs[i] = add(t, f, (void *)(uintptr_t)(i + 1));
        assert_non_null(subs[i]);
        assert_int_equal(mem_used_total() - before, topic_tree_memory(t));
    }
    assert_int_equal(topic_tree_count(t), N);
    struct hits h = {0};
    /* "s/4/t": s/4/t (i=4), s/4/# (i=2..: i%50==4 and i%4==2 -> none, 4%4=0),
     * and groups on s/4/t. Just check consistency under removal. */
    size_t first = match(t, "s/4/t", &h);
    assert_true(first >= 1);
    /* Remove in an order unlike the adds. */
    for (int i = 0; i < N; i += 2)
        topic_tree_remove(t, subs[i]);
    for (int i = N - 1; i > 0; i -= 2)
        topic_tree_remove(t, subs[i]);
    assert_int_equal(topic_tree_count(t), 0);
    assert_int_equal(topic_tree_memory(t), empty);
    assert_int_equal(mem_used_total() - before, empty);
    assert_int_equal(match(t, "s/4/t", &h), 0);
    topic_tree_free(t);
    assert_int_equal(mem_used_total(), before);
}

static void test_many_children(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct topic_tree *t = topic_tree_new();
    size_t empty = topic_tree_memory(t);
    enum { N = 20000 };
    static struct subscription *subs[N];
    size_t filter_bytes = 0;
    char f[64];
    for (int i = 0; i < N; i++) {
        int n = snprintf(f, sizeof(f), "devices/%d/temp", i);
        filter_bytes += (size_t)n;
        subs[i] = add(t, f, (void *)(uintptr_t)(i + 1));
        assert_non_null(subs[i]);
    }
    size_t mem = topic_tree_memory(t) - empty;
    print_message("      %d x devices/<id>/temp: %zu bytes, %zu per subscription, "
                  "%zu beyond the filter bytes\n",
                  N, mem, mem / N, (mem - filter_bytes) / N);
    struct subscription *wild = add(t, "devices/+/temp", NULL);
    struct hits h = {0};
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "devices/%d/temp", i);
        assert_int_equal(match(t, f, &h), 2);
        assert_int_equal(count_owner(&h, (void *)(uintptr_t)(i + 1)), 1);
    }
    assert_int_equal(match(t, "devices/20000/temp", &h), 1);
    assert_int_equal(match(t, "devices/1/hum", &h), 0);
    /* Remove the odd ids: the table shrinks, lookups still work. */
    for (int i = 1; i < N; i += 2)
        topic_tree_remove(t, subs[i]);
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof(f), "devices/%d/temp", i);
        assert_int_equal(match(t, f, &h), i % 2 ? 1 : 2);
    }
    for (int i = 0; i < N; i += 2)
        topic_tree_remove(t, subs[i]);
    topic_tree_remove(t, wild);
    assert_int_equal(topic_tree_memory(t), empty);

    /* Many subscriptions on one node cost their own struct and filter. */
    for (int i = 0; i < N; i++)
        subs[i] = add(t, "devices/+/temp", (void *)(uintptr_t)(i + 1));
    mem = topic_tree_memory(t) - empty;
    print_message("      %d x devices/+/temp: %zu per subscription, %zu beyond the filter\n", N,
                  mem / N, mem / N - strlen("devices/+/temp"));
    assert_true(mem / N - strlen("devices/+/temp") < 100);
    assert_int_equal(match(t, "devices/7/temp", &h), N);
    topic_tree_free(t);
    assert_int_equal(mem_used_total(), before);
}

static void test_deep(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    /* 30,000 levels: matching and freeing must not recurse per level. */
    enum { LEVELS = 30000 };
    static char topic[2 * LEVELS], plus[2 * LEVELS], lit[2 * LEVELS];
    for (int i = 0; i < LEVELS; i++) {
        topic[2 * i] = 'a';
        plus[2 * i] = '+';
        lit[2 * i] = i % 2 ? '+' : 'a';
        topic[2 * i + 1] = plus[2 * i + 1] = lit[2 * i + 1] = '/';
    }
    size_t len = 2 * LEVELS - 1;
    struct topic_tree *t = topic_tree_new();
    struct subscription *sp = topic_tree_add(t, (uint8_t *)plus, len, plus, 0, 0);
    struct subscription *sl = topic_tree_add(t, (uint8_t *)lit, len, lit, 0, 0);
    struct subscription *sh = topic_tree_add(t, (uint8_t *)"a/a/#", 5, NULL, 0, 0);
    assert_non_null(sp);
    assert_non_null(sl);
    struct hits h = {0};
    topic_tree_match(t, (uint8_t *)topic, len, on_hit, NULL, &h);
    assert_int_equal(h.n, 3);
    h.n = 0;
    topic_tree_match(t, (uint8_t *)topic, len - 2, on_hit, NULL, &h); /* one level short */
    assert_int_equal(h.n, 1);
    h.n = 0;
    topic_tree_match(t, (uint8_t *)topic, len, on_hit, NULL, &h);
    assert_int_equal(h.n, 3);
    topic_tree_remove(t, sl);
    h.n = 0;
    topic_tree_match(t, (uint8_t *)topic, len, on_hit, NULL, &h);
    assert_int_equal(h.n, 2);
    (void)sh;
    topic_tree_free(t); /* still holds a 30,000-level chain */
    assert_int_equal(mem_used_total(), before);
}

/* Runs a fixed sequence of adds (and the removals of what succeeded), with
 * the n-th allocation failing. Checks the tree is consistent afterwards. */
static const char *const seq[] = {
    "a/b/c",    "a/+/c",    "a/#",      "$share/g/a/b/c", "$share/g/a/b/c", "$share/h/x/y",
    "d/0/t",    "d/1/t",    "d/2/t",    "d/3/t",          "d/4/t",          "d/5/t",
    "d/6/t",    "d/7/t",    "d/8/t",    "d/9/t",          "d/10/t",         "d/11/t",
    "d/12/t",   "d/13/t",   "d/14/t",   "+/+/+",          "#",              "d/+/t",
};
#define SEQ_N (sizeof(seq) / sizeof(seq[0]))

static size_t run_seq(struct topic_tree *t, struct subscription **subs)
{
    size_t ok = 0;
    for (size_t i = 0; i < SEQ_N; i++) {
        subs[i] = add(t, seq[i], (void *)seq[i]);
        ok += subs[i] != NULL;
    }
    return ok;
}

static void test_alloc_failure(void **state)
{
    (void)state;
    size_t before = mem_used_total();
    struct subscription *subs[SEQ_N];
    struct topic_tree *t = topic_tree_new();
    size_t empty = topic_tree_memory(t);
    mem_fail_nth(0);
    assert_int_equal(run_seq(t, subs), SEQ_N);
    unsigned long total = mem_fail_nth(0);
    assert_true(total > SEQ_N);
    topic_tree_free(t);

    for (unsigned long k = 1; k <= total; k++) {
        t = topic_tree_new();
        mem_fail_nth(k);
        size_t ok = run_seq(t, subs);
        mem_fail_nth(0);
        assert_int_equal(ok, SEQ_N - 1); /* exactly one add failed */
        assert_int_equal(topic_tree_count(t), ok);
        assert_int_equal(mem_used_total() - before, topic_tree_memory(t));
        /* The tree still works: "a/b/c" reaches the filters that made it. */
        struct hits h = {0};
        match(t, "a/b/c", &h);
        size_t want = 0;
        const char *const a_b_c[] = {"a/b/c", "a/+/c", "a/#", "+/+/+", "#"};
        for (size_t i = 0; i < SEQ_N; i++)
            for (size_t j = 0; j < 5; j++)
                want += subs[i] && strcmp(seq[i], a_b_c[j]) == 0;
        bool group_ok = subs[3] || subs[4];
        assert_int_equal(h.n, want + group_ok);
        match(t, "d/14/t", &h);
        assert_int_equal(h.n, (subs[20] != NULL) + (subs[21] != NULL) + (subs[22] != NULL) +
                                  (subs[23] != NULL));
        /* Adding again works once memory is back. */
        for (size_t i = 0; i < SEQ_N; i++)
            if (!subs[i])
                assert_non_null(subs[i] = add(t, seq[i], (void *)seq[i]));
        assert_int_equal(topic_tree_count(t), SEQ_N);
        /* Removal with an allocation failing (tables that would shrink keep
         * their size) still frees everything. */
        mem_fail_nth(k);
        for (size_t i = 0; i < SEQ_N; i++)
            topic_tree_remove(t, subs[i]);
        mem_fail_nth(0);
        assert_int_equal(topic_tree_count(t), 0);
        assert_int_equal(topic_tree_memory(t), empty);
        topic_tree_free(t);
        assert_int_equal(mem_used_total(), before);
    }
    /* Out of memory in topic_tree_new. */
    mem_fail_nth(0);
    t = topic_tree_new();
    unsigned long n_new = mem_fail_nth(0);
    topic_tree_free(t);
    for (unsigned long k = 1; k <= n_new; k++) {
        mem_fail_nth(k);
        assert_null(topic_tree_new());
        mem_fail_nth(0);
        assert_int_equal(mem_used_total(), before);
    }
}

static void test_null(void **state)
{
    (void)state;
    topic_tree_free(NULL);
    topic_tree_remove(NULL, NULL);
    assert_int_equal(topic_tree_count(NULL), 0);
    assert_int_equal(topic_tree_memory(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_overlap_and_plain_with_group),
        cmocka_unit_test(test_shared_round_robin),
        cmocka_unit_test(test_share_parse),
        cmocka_unit_test(test_add_remove_many),
        cmocka_unit_test(test_many_children),
        cmocka_unit_test(test_deep),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
