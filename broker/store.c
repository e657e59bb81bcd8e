/* SQLite store on one worker thread with group commit (store.h).
 *
 * The loop's only costs are store_rec_new (one malloc and the copies) and
 * store_submit (a mutex held for a pointer swap). The worker waits for
 * records, takes the whole queue, and writes it in ONE transaction: under a
 * burst, a commit (one WAL append, one fsync with persistence_sync) covers
 * every record queued while the previous commit ran. Never a rewrite of the
 * whole store: each record is one row-level statement. */
#include "broker/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mqtt/error.h"
#include "platform/platform.h"

#define SCHEMA_VERSION 1
#define NSTMT (STORE_WILL_DEL + 1)

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[NSTMT];
    sqlite3_stmt *session_del[4]; /* the rows of a session in the other tables */
    sqlite3_stmt *begin, *commit, *rollback;
    int wake_fd;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* records queued, or stop */
    pthread_cond_t done_cv; /* the worker finished (store_close) */
    struct store_rec *head, *tail;
    uint64_t last;   /* the last ticket given out (loop side; under mu) */
    uint64_t done;   /* the last ticket committed (under mu) */
    bool stop, finished;
    uint64_t errors;
    char errmsg[160];
    struct store_stats stats;
};

static const char *const schema[] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER)",
    "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic BLOB NOT NULL, payload BLOB, props BLOB,"
    " qos INTEGER, retain INTEGER, expiry INTEGER)",
    "CREATE TABLE sessions(client_id BLOB PRIMARY KEY, username BLOB, expiry_interval INTEGER,"
    " disconnected_at INTEGER, listener INTEGER) WITHOUT ROWID",
    "CREATE TABLE subscriptions(client_id BLOB, filter BLOB, options INTEGER, sub_id INTEGER,"
    " PRIMARY KEY(client_id, filter)) WITHOUT ROWID",
    "CREATE TABLE deliveries(client_id BLOB, seq INTEGER, msg_id INTEGER, qos INTEGER,"
    " state INTEGER, packet_id INTEGER, flags INTEGER, sub_ids BLOB,"
    " PRIMARY KEY(client_id, seq)) WITHOUT ROWID",
    "CREATE TABLE retained(topic BLOB PRIMARY KEY, msg_id INTEGER) WITHOUT ROWID",
    "CREATE TABLE rx_qos2(client_id BLOB, packet_id INTEGER, PRIMARY KEY(client_id, packet_id))"
    " WITHOUT ROWID",
    "CREATE TABLE wills(client_id BLOB PRIMARY KEY, msg_id INTEGER, will_at INTEGER) WITHOUT ROWID",
};

/* One statement per record type; ?1.. are bound from the record by bind_rec. */
static const char *const stmt_sql[NSTMT] = {
    [STORE_SESSION_PUT] = "INSERT OR REPLACE INTO sessions VALUES(?7, ?8, ?1, ?2, ?3)",
    [STORE_SESSION_DEL] = "DELETE FROM sessions WHERE client_id = ?7",
    [STORE_SUB_PUT] = "INSERT OR REPLACE INTO subscriptions VALUES(?7, ?8, ?1, ?2)",
    [STORE_SUB_DEL] = "DELETE FROM subscriptions WHERE client_id = ?7 AND filter = ?8",
    [STORE_MSG_PUT] = "INSERT OR REPLACE INTO messages VALUES(?1, ?7, ?8, ?9, ?2, ?3, ?4)",
    [STORE_MSG_DEL] = "DELETE FROM messages WHERE id = ?1",
    [STORE_DLV_PUT] = "INSERT OR REPLACE INTO deliveries VALUES(?7, ?1, ?2, ?3, ?4, ?5, ?6, ?8)",
    [STORE_DLV_UPD] = "UPDATE deliveries SET state = ?4, packet_id = ?5 WHERE client_id = ?7 AND seq = ?1",
    [STORE_DLV_DEL] = "DELETE FROM deliveries WHERE client_id = ?7 AND seq = ?1",
    [STORE_RET_PUT] = "INSERT OR REPLACE INTO retained VALUES(?7, ?1)",
    [STORE_RET_DEL] = "DELETE FROM retained WHERE topic = ?7",
    [STORE_RXQ_ADD] = "INSERT OR REPLACE INTO rx_qos2 VALUES(?7, ?1)",
    [STORE_RXQ_DEL] = "DELETE FROM rx_qos2 WHERE client_id = ?7 AND packet_id = ?1",
    [STORE_WILL_PUT] = "INSERT OR REPLACE INTO wills VALUES(?7, ?1, ?2)",
    [STORE_WILL_DEL] = "DELETE FROM wills WHERE client_id = ?7",
};

static const char *const session_del_sql[4] = {
    "DELETE FROM subscriptions WHERE client_id = ?7",
    "DELETE FROM deliveries WHERE client_id = ?7",
    "DELETE FROM rx_qos2 WHERE client_id = ?7",
    "DELETE FROM wills WHERE client_id = ?7",
};

struct store_rec *store_rec_new(int op, const void *b0, size_t l0, const void *b1, size_t l1,
                                const void *b2, size_t l2)
{
    struct store_rec *r = malloc(sizeof(*r) + l0 + l1 + l2);
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->op = op;
    const void *src[3] = {b0, b1, b2};
    size_t len[3] = {l0, l1, l2};
    uint8_t *p = r->data;
    for (int k = 0; k < 3; k++) {
        r->len[k] = (uint32_t)len[k];
        r->b[k] = src[k] ? p : NULL;
        if (len[k])
            memcpy(p, src[k], len[k]);
        p += len[k];
    }
    return r;
}

void store_rec_free(struct store_rec *r)
{
    free(r);
}

/* ---- opening -------------------------------------------------------- */

static void set_why(char *why, size_t len, const char *what, sqlite3 *db)
{
    if (why && len)
        snprintf(why, len, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* "ok" from PRAGMA quick_check, and a schema we know (or none: new file). */
static int check(sqlite3 *db, char *why, size_t whylen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK) {
        set_why(why, whylen, "quick_check", db);
        return -1;
    }
    int rc = sqlite3_step(st);
    bool ok = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0;
    if (!ok)
        set_why(why, whylen, "quick_check failed", db);
    sqlite3_finalize(st);
    if (!ok)
        return -1;
    int tables = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        tables = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (tables == 0)
        return 0; /* a new file */
    int version = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema'", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (version != SCHEMA_VERSION) {
        if (why && whylen)
            snprintf(why, whylen, "unknown schema (version %d, expected %d)", version,
                     SCHEMA_VERSION);
        return -1;
    }
    return 1;
}

static int create_schema(sqlite3 *db)
{
    if (exec(db, "BEGIN") != SQLITE_OK)
        return -1;
    for (size_t k = 0; k < sizeof(schema) / sizeof(schema[0]); k++)
        if (exec(db, schema[k]) != SQLITE_OK)
            goto fail;
    char sql[80];
    snprintf(sql, sizeof(sql), "INSERT INTO meta VALUES('schema', %d)", SCHEMA_VERSION);
    if (exec(db, sql) != SQLITE_OK || exec(db, "COMMIT") != SQLITE_OK)
        goto fail;
    return 0;
fail:
    exec(db, "ROLLBACK");
    return -1;
}

static sqlite3 *open_db(const char *path, bool full_sync, char *why, size_t whylen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                            SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        set_why(why, whylen, "open", db);
        sqlite3_close(db);
        return NULL;
    }
    /* WAL: a commit appends to one file, readers never block the writer.
     * NORMAL syncs only at checkpoints: a process crash loses nothing
     * committed, a power cut may lose the last commits; FULL syncs the WAL
     * at every commit. */
    sqlite3_busy_timeout(db, 1000);
    /* Only this process uses the store: with exclusive locking SQLite keeps
     * the WAL index in its own memory instead of a shared -shm mapping
     * (fewer writes on an SD card, and it works under qemu-user, whose
     * shared mappings SQLite's WAL index cannot use), and a second broker
     * pointed at the same directory is refused instead of corrupting it. */
    if (exec(db, "PRAGMA locking_mode=EXCLUSIVE") != SQLITE_OK) {
        set_why(why, whylen, "locking_mode=EXCLUSIVE", db);
        sqlite3_close(db);
        return NULL;
    }
    if (exec(db, "PRAGMA journal_mode=WAL") != SQLITE_OK) {
        set_why(why, whylen, "journal_mode=WAL", db);
        sqlite3_close(db);
        return NULL;
    }
    exec(db, full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    return db;
}

/* Returns true when the database file itself was moved (false: there was
 * none, e.g. the directory does not exist). */
static bool set_aside_files(const char *path)
{
    bool moved = false;
    char to[4200], from[4200];
    long long now = (long long)(platform_wall_ms() / 1000);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (int k = 0; k < 3; k++) {
        snprintf(from, sizeof(from), "%s%s", path, suffix[k]);
        snprintf(to, sizeof(to), "%s.corrupt-%lld%s", path, now, suffix[k]);
        if (platform_rename(from, to) == 0 && k == 0)
            moved = true;
    }
    return moved;
}

static void store_free(struct store *st)
{
    for (int k = 0; k < NSTMT; k++)
        sqlite3_finalize(st->stmt[k]);
    for (int k = 0; k < 4; k++)
        sqlite3_finalize(st->session_del[k]);
    sqlite3_finalize(st->begin);
    sqlite3_finalize(st->commit);
    sqlite3_finalize(st->rollback);
    sqlite3_close(st->db);
    if (st->wake_fd >= 0)
        platform_close(st->wake_fd);
    struct store_rec *r = st->head;
    while (r) {
        struct store_rec *next = r->next;
        store_rec_free(r);
        r = next;
    }
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    pthread_cond_destroy(&st->done_cv);
    free(st);
}

static int prepare_all(struct store *st)
{
    for (int k = 1; k < NSTMT; k++)
        if (sqlite3_prepare_v3(st->db, stmt_sql[k], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[k],
                               NULL) != SQLITE_OK)
            return -1;
    for (int k = 0; k < 4; k++)
        if (sqlite3_prepare_v3(st->db, session_del_sql[k], -1, SQLITE_PREPARE_PERSISTENT,
                               &st->session_del[k], NULL) != SQLITE_OK)
            return -1;
    if (sqlite3_prepare_v2(st->db, "BEGIN", -1, &st->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "COMMIT", -1, &st->commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "ROLLBACK", -1, &st->rollback, NULL) != SQLITE_OK)
        return -1;
    return 0;
}

struct store *store_open(const char *dir, const char *name, bool full_sync, int *set_aside,
                         char *why, size_t whylen)
{
    if (set_aside)
        *set_aside = 0;
    char path[4096];
    int n = snprintf(path, sizeof(path), "%s%s%s", dir && *dir ? dir : "",
                     dir && *dir && dir[strlen(dir) - 1] != '/' ? "/" : "", name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        if (why && whylen)
            snprintf(why, whylen, "path too long");
        return NULL;
    }
    struct store *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->wake_fd = -1;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    pthread_cond_init(&st->done_cv, NULL);

    int ok = -1;
    st->db = open_db(path, full_sync, why, whylen);
    if (st->db)
        ok = check(st->db, why, whylen);
    if (ok < 0) {
        /* Unusable: keep it for a post-mortem, start empty. */
        sqlite3_close(st->db);
        st->db = NULL;
        bool moved = set_aside_files(path);
        if (set_aside)
            *set_aside = moved;
        char ignored[8];
        st->db = open_db(path, full_sync, ignored, sizeof(ignored));
        if (!st->db) {
            store_free(st);
            return NULL;
        }
        ok = 0;
    }
    if (ok == 0 && create_schema(st->db) < 0) {
        set_why(why, whylen, "create schema", st->db);
        store_free(st);
        return NULL;
    }
    if (prepare_all(st) < 0) {
        set_why(why, whylen, "prepare", st->db);
        store_free(st);
        return NULL;
    }
    int fd = platform_wakeup_new();
    if (fd < 0) {
        if (why && whylen)
            snprintf(why, whylen, "wakeup fd: error %d", -fd);
        store_free(st);
        return NULL;
    }
    st->wake_fd = fd;
    return st;
}

/* ---- loading -------------------------------------------------------- */

static const struct {
    int op;
    const char *sql;
    signed char ints[STORE_REC_INTS]; /* column of each int field, -1 none */
    signed char blobs[STORE_REC_BLOBS];
} load_sql[] = {
    {STORE_MSG_PUT, "SELECT id, qos, retain, expiry, topic, payload, props FROM messages ORDER BY id",
     {0, 1, 2, 3, -1, -1}, {4, 5, 6}},
    {STORE_SESSION_PUT, "SELECT expiry_interval, disconnected_at, listener, client_id, username FROM sessions",
     {0, 1, 2, -1, -1, -1}, {3, 4, -1}},
    {STORE_SUB_PUT, "SELECT options, sub_id, client_id, filter FROM subscriptions",
     {0, 1, -1, -1, -1, -1}, {2, 3, -1}},
    {STORE_DLV_PUT, "SELECT seq, msg_id, qos, state, packet_id, flags, client_id, sub_ids"
                    " FROM deliveries ORDER BY client_id, seq",
     {0, 1, 2, 3, 4, 5}, {6, 7, -1}},
    {STORE_RXQ_ADD, "SELECT packet_id, client_id FROM rx_qos2", {0, -1, -1, -1, -1, -1}, {1, -1, -1}},
    {STORE_WILL_PUT, "SELECT msg_id, will_at, client_id FROM wills", {0, 1, -1, -1, -1, -1}, {2, -1, -1}},
    {STORE_RET_PUT, "SELECT msg_id, topic FROM retained", {0, -1, -1, -1, -1, -1}, {1, -1, -1}},
};

int store_load(struct store *st, const struct store_loader *loader)
{
    for (size_t t = 0; t < sizeof(load_sql) / sizeof(load_sql[0]); t++) {
        sqlite3_stmt *q;
        if (sqlite3_prepare_v2(st->db, load_sql[t].sql, -1, &q, NULL) != SQLITE_OK)
            return -ERR_IO;
        int rc;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            struct store_row row;
            memset(&row, 0, sizeof(row));
            for (int k = 0; k < STORE_REC_INTS; k++)
                if (load_sql[t].ints[k] >= 0)
                    row.i[k] = sqlite3_column_int64(q, load_sql[t].ints[k]);
            for (int k = 0; k < STORE_REC_BLOBS; k++) {
                int col = load_sql[t].blobs[k];
                if (col < 0)
                    continue;
                row.b[k] = sqlite3_column_blob(q, col);
                row.len[k] = (uint32_t)sqlite3_column_bytes(q, col);
            }
            int r = loader->row(loader->ctx, load_sql[t].op, &row);
            if (r < 0) {
                sqlite3_finalize(q);
                return r;
            }
        }
        sqlite3_finalize(q);
        if (rc != SQLITE_DONE)
            return -ERR_IO;
    }
    return 0;
}

/* ---- the worker ----------------------------------------------------- */

static int run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static void bind_rec(sqlite3_stmt *s, const struct store_rec *r)
{
    sqlite3_clear_bindings(s);
    int n = sqlite3_bind_parameter_count(s);
    for (int k = 0; k < STORE_REC_INTS && k < n; k++)
        sqlite3_bind_int64(s, k + 1, r->i[k]);
    for (int k = 0; k < STORE_REC_BLOBS && 7 + k <= n; k++) {
        if (r->b[k])
            sqlite3_bind_blob(s, 7 + k, r->len[k] ? (const void *)r->b[k] : "", (int)r->len[k],
                              SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 7 + k);
    }
}

static int apply(struct store *st, const struct store_rec *r)
{
    if (r->op <= 0 || r->op >= NSTMT)
        return 0;
    if (r->op == STORE_SESSION_DEL) {
        for (int k = 0; k < 4; k++) {
            bind_rec(st->session_del[k], r);
            if (run(st->session_del[k]) < 0)
                return -1;
        }
    }
    sqlite3_stmt *s = st->stmt[r->op];
    bind_rec(s, r);
    return run(s);
}

static uint64_t now_us(void)
{
    return platform_now_us();
}

static void *worker(void *arg)
{
    struct store *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->head && !st->stop)
            pthread_cond_wait(&st->cv, &st->mu);
        if (!st->head && st->stop)
            break;
        struct store_rec *batch = st->head;
        st->head = st->tail = NULL;
        pthread_mutex_unlock(&st->mu);

        uint64_t last = 0, count = 0;
        int failed = run(st->begin);
        for (struct store_rec *r = batch; r && !failed; r = r->next) {
            failed = apply(st, r);
            count++;
        }
        uint64_t t0 = now_us();
        if (!failed)
            failed = run(st->commit);
        uint64_t took = now_us() - t0;
        char msg[sizeof(st->errmsg)] = "";
        if (failed) {
            snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(st->db));
            run(st->rollback);
        }
        while (batch) {
            struct store_rec *next = batch->next;
            last = batch->ticket;
            store_rec_free(batch);
            batch = next;
        }

        pthread_mutex_lock(&st->mu);
        st->done = last;
        if (failed) {
            st->errors++;
            memcpy(st->errmsg, msg, sizeof(msg));
        } else {
            st->stats.commits++;
            st->stats.records += count;
            st->stats.last_commit_us = took;
            st->stats.total_commit_us += took;
            if (took > st->stats.max_commit_us)
                st->stats.max_commit_us = took;
        }
        platform_wakeup_signal(st->wake_fd);
    }
    st->finished = true;
    pthread_cond_broadcast(&st->done_cv);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

int store_start(struct store *st)
{
    if (pthread_create(&st->thread, NULL, worker, st) != 0)
        return -ERR_IO;
    st->started = true;
    return 0;
}

uint64_t store_submit(struct store *st, struct store_rec *r)
{
    r->next = NULL;
    pthread_mutex_lock(&st->mu);
    r->ticket = ++st->last;
    bool was_empty = !st->head;
    if (st->tail)
        st->tail->next = r;
    else
        st->head = r;
    st->tail = r;
    if (was_empty)
        pthread_cond_signal(&st->cv);
    uint64_t t = r->ticket;
    pthread_mutex_unlock(&st->mu);
    return t;
}

uint64_t store_last(const struct store *st)
{
    /* Written only by the loop thread (store_submit), so the loop may read
     * it without the lock. */
    return st->last;
}

uint64_t store_done(struct store *st)
{
    pthread_mutex_lock(&st->mu);
    uint64_t d = st->done;
    pthread_mutex_unlock(&st->mu);
    return d;
}

int store_fd(const struct store *st)
{
    return st->wake_fd;
}

void store_ack_wakeup(struct store *st)
{
    platform_wakeup_drain(st->wake_fd);
}

uint64_t store_take_errors(struct store *st, char *msg, size_t len)
{
    pthread_mutex_lock(&st->mu);
    uint64_t e = st->errors;
    st->errors = 0;
    if (e && msg && len)
        snprintf(msg, len, "%s", st->errmsg);
    pthread_mutex_unlock(&st->mu);
    return e;
}

void store_get_stats(struct store *st, struct store_stats *out)
{
    pthread_mutex_lock(&st->mu);
    *out = st->stats;
    pthread_mutex_unlock(&st->mu);
}

int store_close(struct store *st, uint32_t max_ms)
{
    if (!st)
        return 0;
    if (!st->started) {
        /* Never started (start-up failed, or tests): write what is queued
         * here, then close. */
        st->started = true;
        st->stop = true;
        if (pthread_create(&st->thread, NULL, worker, st) != 0) {
            store_free(st);
            return -ERR_IO;
        }
    }
    /* pthread_cond_timedwait wants CLOCK_REALTIME, which is what
     * platform_wall_ms reads. */
    uint64_t deadline = platform_wall_ms() + max_ms;
    struct timespec until = {.tv_sec = (time_t)(deadline / 1000),
                             .tv_nsec = (long)(deadline % 1000) * 1000000L};
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_signal(&st->cv);
    int rc = 0;
    while (!st->finished && rc == 0)
        rc = pthread_cond_timedwait(&st->done_cv, &st->mu, &until);
    bool finished = st->finished;
    pthread_mutex_unlock(&st->mu);
    if (!finished) {
        /* The disk is stuck: leave the worker to the process exit. The WAL
         * keeps the file consistent; what it had not committed is lost,
         * and none of that was acknowledged. */
        pthread_detach(st->thread);
        return -ERR_IO;
    }
    pthread_join(st->thread, NULL);
    store_free(st);
    return 0;
}
