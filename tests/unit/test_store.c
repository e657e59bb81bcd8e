/* The SQLite store (broker/store.c) against a temporary directory: records
 * written, closed, reopened and loaded back exactly; an unusable file set
 * aside; completion tickets in order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <poll.h>
#include <sqlite3.h>
#include <unistd.h>

#include "broker/store.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/loopbot-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
    return 0;
}

static struct store *open_store(int *aside)
{
    char why[256];
    struct store *st = store_open(dir, "loopbot.db", false, aside, why, sizeof(why));
    assert_non_null(st);
    return st;
}

static void submit(struct store *st, int op, const char *b0, const char *b1, const char *b2,
                   int64_t i0, int64_t i1, int64_t i2, int64_t i3, int64_t i4, int64_t i5)
{
    struct store_rec *r = store_rec_new(op, b0, b0 ? strlen(b0) : 0, b1, b1 ? strlen(b1) : 0, b2,
                                        b2 ? strlen(b2) : 0);
    assert_non_null(r);
    int64_t v[6] = {i0, i1, i2, i3, i4, i5};
    memcpy(r->i, v, sizeof(v));
    store_submit(st, r);
}

/* Every row loaded, as one line of text, in load order. */
struct collected {
    char text[4096];
    size_t len;
};

static int collect(void *ctx, int op, const struct store_row *row)
{
    struct collected *c = ctx;
    int n = snprintf(c->text + c->len, sizeof(c->text) - c->len, "%d:%lld,%lld,%lld,%lld,%lld,%lld",
                     op, (long long)row->i[0], (long long)row->i[1], (long long)row->i[2],
                     (long long)row->i[3], (long long)row->i[4], (long long)row->i[5]);
    c->len += (size_t)n;
    for (int k = 0; k < STORE_REC_BLOBS; k++) {
        n = snprintf(c->text + c->len, sizeof(c->text) - c->len, ",%.*s", (int)row->len[k],
                     row->b[k] ? (const char *)row->b[k] : "");
        c->len += (size_t)n;
    }
    c->text[c->len++] = '\n';
    c->text[c->len] = '\0';
    return 0;
}

static void load_all(struct store *st, struct collected *c)
{
    memset(c, 0, sizeof(*c));
    struct store_loader l = {c, collect};
    assert_int_equal(store_load(st, &l), 0);
}

static void test_write_close_reopen_load(void **state)
{
    (void)state;
    int aside = -1;
    struct store *st = open_store(&aside);
    assert_int_equal(aside, 0);
    assert_int_equal(store_start(st), 0);
    submit(st, STORE_MSG_PUT, "t/1", "payload-1", "", 1, 1, 0, 0, 0, 0);
    submit(st, STORE_MSG_PUT, "t/2", "payload-2", "P", 2, 2, 1, 1795000000000, 0, 0);
    submit(st, STORE_MSG_PUT, "gone", "x", NULL, 3, 1, 0, 0, 0, 0);
    submit(st, STORE_MSG_DEL, NULL, NULL, NULL, 3, 0, 0, 0, 0, 0);
    submit(st, STORE_SESSION_PUT, "hub", "user", NULL, 3600, 0, 0, 0, 0, 0);
    submit(st, STORE_SESSION_PUT, "hub", "user", NULL, 3600, 1795000000001, 0, 0, 0, 0);
    submit(st, STORE_SUB_PUT, "hub", "t/#", NULL, 1, 7, 0, 0, 0, 0);
    submit(st, STORE_SUB_PUT, "hub", "x/#", NULL, 2, 0, 0, 0, 0, 0);
    submit(st, STORE_SUB_DEL, "hub", "x/#", NULL, 0, 0, 0, 0, 0, 0);
    submit(st, STORE_DLV_PUT, "hub", "", NULL, 2, 2, 2, 0, 0, 1);
    submit(st, STORE_DLV_PUT, "hub", "\x07\0\0\0", NULL, 1, 1, 1, 0, 0, 0);
    submit(st, STORE_DLV_UPD, "hub", NULL, NULL, 1, 0, 0, 1, 42, 0);
    submit(st, STORE_DLV_PUT, "hub", NULL, NULL, 3, 1, 1, 0, 0, 0);
    submit(st, STORE_DLV_DEL, "hub", NULL, NULL, 3, 0, 0, 0, 0, 0);
    submit(st, STORE_RXQ_ADD, "hub", NULL, NULL, 9, 0, 0, 0, 0, 0);
    submit(st, STORE_RXQ_ADD, "hub", NULL, NULL, 10, 0, 0, 0, 0, 0);
    submit(st, STORE_RXQ_DEL, "hub", NULL, NULL, 9, 0, 0, 0, 0, 0);
    submit(st, STORE_WILL_PUT, "hub", NULL, NULL, 2, 1795000000500, 0, 0, 0, 0);
    submit(st, STORE_RET_PUT, "t/1", NULL, NULL, 1, 0, 0, 0, 0, 0);
    submit(st, STORE_RET_PUT, "t/9", NULL, NULL, 1, 0, 0, 0, 0, 0);
    submit(st, STORE_RET_DEL, "t/9", NULL, NULL, 0, 0, 0, 0, 0, 0);
    /* A session and everything it holds, in one record. */
    submit(st, STORE_SESSION_PUT, "old", NULL, NULL, 60, 5, 1, 0, 0, 0);
    submit(st, STORE_SUB_PUT, "old", "o/#", NULL, 1, 0, 0, 0, 0, 0);
    submit(st, STORE_DLV_PUT, "old", NULL, NULL, 1, 1, 1, 0, 0, 0);
    submit(st, STORE_SESSION_DEL, "old", NULL, NULL, 0, 0, 0, 0, 0, 0);
    assert_int_equal(store_last(st), 25);
    assert_int_equal(store_close(st, 5000), 0);

    st = open_store(&aside);
    assert_int_equal(aside, 0);
    struct collected c;
    load_all(st, &c);
    char expect[2048];
    snprintf(expect, sizeof(expect),
             "%d:1,1,0,0,0,0,t/1,payload-1,\n"
             "%d:2,2,1,1795000000000,0,0,t/2,payload-2,P\n"
             "%d:3600,1795000000001,0,0,0,0,hub,user,\n"
             "%d:1,7,0,0,0,0,hub,t/#,\n"
             "%d:1,1,1,1,42,0,hub,\x07,\n"
             "%d:2,2,2,0,0,1,hub,,\n"
             "%d:10,0,0,0,0,0,hub,,\n"
             "%d:2,1795000000500,0,0,0,0,hub,,\n"
             "%d:1,0,0,0,0,0,t/1,,\n",
             STORE_MSG_PUT, STORE_MSG_PUT, STORE_SESSION_PUT, STORE_SUB_PUT, STORE_DLV_PUT,
             STORE_DLV_PUT, STORE_RXQ_ADD, STORE_WILL_PUT, STORE_RET_PUT);
    assert_string_equal(c.text, expect);
    assert_int_equal(store_close(st, 5000), 0);
}

/* Records queued but never started are still written by store_close. */
static void test_close_flushes_unstarted(void **state)
{
    (void)state;
    struct store *st = open_store(NULL);
    submit(st, STORE_RET_PUT, "a", NULL, NULL, 5, 0, 0, 0, 0, 0);
    assert_int_equal(store_close(st, 5000), 0);
    st = open_store(NULL);
    struct collected c;
    load_all(st, &c);
    char expect[64];
    snprintf(expect, sizeof(expect), "%d:5,0,0,0,0,0,a,,\n", STORE_RET_PUT);
    assert_string_equal(c.text, expect);
    assert_int_equal(store_close(st, 5000), 0);
}

static int count_corrupt(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, "loopbot.db.corrupt-", 19) == 0)
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_garbage_set_aside(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/loopbot.db", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++)
        fputc((i * 7919) & 0xff, f);
    fclose(f);
    int aside = 0;
    struct store *st = open_store(&aside);
    assert_int_equal(aside, 1);
    assert_true(count_corrupt() >= 1);
    struct collected c;
    load_all(st, &c);
    assert_int_equal(c.len, 0); /* empty, and usable */
    assert_int_equal(store_start(st), 0);
    submit(st, STORE_RET_PUT, "a", NULL, NULL, 1, 0, 0, 0, 0, 0);
    assert_int_equal(store_close(st, 5000), 0);
    st = open_store(&aside);
    assert_int_equal(aside, 0);
    load_all(st, &c);
    assert_true(c.len > 0);
    assert_int_equal(store_close(st, 5000), 0);
}

/* A valid SQLite file that is not ours (a schema we do not know), and one
 * whose header is damaged. */
static void test_unknown_schema_set_aside(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/loopbot.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE foo(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    int aside = 0;
    struct store *st = open_store(&aside);
    assert_int_equal(aside, 1);
    assert_int_equal(store_close(st, 5000), 0);

    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fwrite("NOT SQLITE", 1, 10, f);
    fclose(f);
    st = open_store(&aside);
    assert_int_equal(aside, 1);
    assert_int_equal(store_close(st, 5000), 0);
    st = open_store(&aside);
    assert_int_equal(aside, 0);
    assert_int_equal(store_close(st, 5000), 0);
}

/* Tickets grow by one per record; completion reports them in order and the
 * wakeup fd fires. */
static void test_tickets_ordered(void **state)
{
    (void)state;
    struct store *st = open_store(NULL);
    assert_int_equal(store_start(st), 0);
    uint64_t prev_done = store_done(st);
    assert_int_equal(prev_done, 0);
    uint64_t last = 0;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 50; i++) {
            struct store_rec *r = store_rec_new(STORE_RXQ_ADD, "c", 1, NULL, 0, NULL, 0);
            assert_non_null(r);
            r->i[0] = round * 50 + i;
            uint64_t t = store_submit(st, r);
            assert_int_equal(t, last + 1);
            last = t;
        }
        assert_int_equal(store_last(st), last);
        uint64_t done;
        while ((done = store_done(st)) < last) {
            struct pollfd pfd = {.fd = store_fd(st), .events = POLLIN};
            assert_true(poll(&pfd, 1, 5000) == 1);
            store_ack_wakeup(st);
            done = store_done(st);
            assert_true(done >= prev_done);
            assert_true(done <= last);
            prev_done = done;
        }
        assert_int_equal(done, last);
    }
    struct store_stats s;
    store_get_stats(st, &s);
    assert_int_equal(s.records, 1000);
    assert_true(s.commits >= 1 && s.commits <= 1000);
    assert_int_equal(store_take_errors(st, NULL, 0), 0);
    assert_int_equal(store_close(st, 5000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_close_reopen_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_flushes_unstarted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_schema_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tickets_ordered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
