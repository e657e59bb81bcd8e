/* The on-disk store (persistence true): SQLite in WAL mode, written by ONE
 * worker thread with group commit, so the loop never waits on the disk.
 *
 * The loop builds records (each carries its own copy of its bytes: the loop
 * and the worker share no memory but the queue), hands them to store_submit,
 * which returns the record's ticket. The worker takes everything queued, runs
 * it in one transaction, commits, and then tells the loop through a wakeup fd
 * (store_fd) that every ticket up to store_done() is on disk (handed to the
 * OS; fsynced too with full_sync). Loading happens once, synchronously, at
 * start-up, before the worker and the listeners start.
 *
 * docs/persistence.md describes the schema and the guarantees. */
#ifndef LOOPBOT_BROKER_STORE_H
#define LOOPBOT_BROKER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

enum store_op {
    STORE_SESSION_PUT = 1, /* b0 id, b1 username; i0 expiry, i1 disconnect wall ms (0 online), i2 listener */
    STORE_SESSION_DEL,     /* b0 id: the session and everything it holds */
    STORE_SUB_PUT,         /* b0 id, b1 filter; i0 options, i1 sub id */
    STORE_SUB_DEL,         /* b0 id, b1 filter */
    STORE_MSG_PUT,         /* i0 msg id, b0 topic, b1 payload, b2 props; i1 qos, i2 retain, i3 expiry wall ms */
    STORE_MSG_DEL,         /* i0 msg id */
    STORE_DLV_PUT,         /* b0 id; i0 seq, i1 msg id, i2 qos, i3 state, i4 packet id, i5 flags; b1 sub ids */
    STORE_DLV_UPD,         /* b0 id; i0 seq, i3 state, i4 packet id */
    STORE_DLV_DEL,         /* b0 id; i0 seq */
    STORE_RET_PUT,         /* b0 topic; i0 msg id */
    STORE_RET_DEL,         /* b0 topic */
    STORE_RXQ_ADD,         /* b0 id; i0 packet id */
    STORE_RXQ_DEL,         /* b0 id; i0 packet id */
    STORE_WILL_PUT,        /* b0 id; i0 msg id, i1 will wall ms */
    STORE_WILL_DEL,        /* b0 id */
};

#define STORE_REC_INTS 6
#define STORE_REC_BLOBS 3

struct store_rec {
    struct store_rec *next;
    uint64_t ticket;
    int op;
    int64_t i[STORE_REC_INTS];
    uint32_t len[STORE_REC_BLOBS];
    const uint8_t *b[STORE_REC_BLOBS];
    uint8_t data[];
};

/* One allocation holding copies of the blobs (any may be NULL/0). Records
 * cross threads, so they use malloc, not mem_alloc (whose accounting is the
 * loop's). NULL when out of memory. */
struct store_rec *store_rec_new(int op, const void *b0, size_t l0, const void *b1, size_t l1,
                                const void *b2, size_t l2);
void store_rec_free(struct store_rec *r);

/* What was found on disk, handed to the loader at start-up. Blobs point
 * into SQLite's memory: valid only during the callback. */
struct store_row {
    int64_t i[STORE_REC_INTS];
    uint32_t len[STORE_REC_BLOBS];
    const uint8_t *b[STORE_REC_BLOBS];
};

/* The loader is called once per row, table by table in this order:
 * messages (by id), sessions, subscriptions, deliveries (by client id, then
 * seq), incoming QoS 2 ids, wills, retained. Same field layout as the
 * records that write them. A callback returning < 0 stops the load. */
struct store_loader {
    void *ctx;
    int (*row)(void *ctx, int op, const struct store_row *row);
};

/* Opens (creating) dir/name. A file that cannot be opened, fails PRAGMA
 * quick_check, or has an unknown schema is renamed aside to
 * name.corrupt-<unix time> (with its -wal and -shm) and a fresh store is
 * created; *set_aside (may be NULL) then receives 1 and `why` says what was
 * wrong. full_sync: synchronous=FULL (survives a power cut) instead of
 * NORMAL (survives a crash of the process). Returns the store or NULL
 * (why says why; the broker then runs without persistence). */
struct store *store_open(const char *dir, const char *name, bool full_sync, int *set_aside,
                         char *why, size_t whylen);
/* Reads everything back through loader (start-up, before store_start). */
int store_load(struct store *st, const struct store_loader *loader);
/* Starts the worker thread. Returns 0 or a negative error. */
int store_start(struct store *st);
/* Queues r (taking it) and wakes the worker. Returns r's ticket: tickets
 * grow by one per record. Before store_start, records simply wait. */
uint64_t store_submit(struct store *st, struct store_rec *r);
/* The last ticket queued, and the last one committed. */
uint64_t store_last(const struct store *st);
uint64_t store_done(struct store *st);
/* The fd that becomes readable when a commit completes (a pipe or eventfd:
 * watch it with loop_io_init); store_ack_wakeup drains it. */
int store_fd(const struct store *st);
void store_ack_wakeup(struct store *st);
/* Commits that failed since the last call, with the last error message
 * copied to msg (for the loop to log; the worker does not log). */
uint64_t store_take_errors(struct store *st, char *msg, size_t len);
/* Statistics: transactions committed, records written, microseconds spent
 * in the last and the slowest commit (COMMIT only). */
struct store_stats {
    uint64_t commits, records, last_commit_us, max_commit_us, total_commit_us;
};
void store_get_stats(struct store *st, struct store_stats *out);
/* Flushes what is queued, commits, closes the database and joins the
 * worker, waiting at most max_ms for it. Returns 0, or
 * -ERR_IO when the worker did not finish in time (it is left to the process exit; WAL
 * keeps the file consistent). NULL is fine. */
int store_close(struct store *st, uint32_t max_ms);

#endif
