/* Persistence hooks and the start-up load (persist.h).
 *
 * A message is written once: the first stored row that references it (a
 * queue row, the retained row, a delayed will) gives it an id and queues
 * its body; every such row counts in message.store_refs, and when the last
 * one goes the body is deleted (and the id forgotten, so a later reference
 * stores it again under a new id). Rows are keyed by the client id and a
 * per-session sequence number, so the order of a queue survives a restart. */
#include "broker/persist.h"

#include <string.h>

#include "broker/config.h"
#include "broker/core_priv.h"
#include "broker/log.h"
#include "broker/mem.h"
#include "broker/message.h"
#include "broker/retain.h"
#include "broker/session.h"
#include "broker/store.h"
#include "broker/strmap.h"
#include "broker/topic_tree.h"
#include "mqtt/error.h"

/* Records handed to the worker but not yet committed. Past this many (a
 * stalled or slow card) the publishers are throttled like for a full
 * subscriber queue, so the loop never holds an unbounded backlog; they go
 * on once half of it is written. */
#define PERSIST_MAX_BACKLOG 50000u

struct persist {
    struct core *core;
    struct store *st;
    bool throttling; /* the backlog is over PERSIST_MAX_BACKLOG */
    uint64_t next_msg_id;
    int64_t wall_off; /* wall ms - monotonic ms, to store absolute times */
    uint64_t done;
    uint64_t lost;    /* records that could not be built (out of memory) */
    struct persist_counts counts;
};

/* The delivery flags column. */
#define DLV_F_RETAIN 1
#define DLV_F_SHARED 2

static struct persist *on(const struct session *s)
{
    return s->persist ? s->core->persist : NULL;
}

static uint64_t submit(struct persist *p, struct store_rec *r)
{
    if (!r) {
        if (p->lost++ == 0)
            log_printf(LOG_T_ERROR, "Error: persistence: out of memory, a record was not written.");
        return 0;
    }
    uint64_t ticket = store_submit(p->st, r);
    if (ticket - p->done > PERSIST_MAX_BACKLOG) {
        if (!p->throttling) {
            p->throttling = true;
            core__congestion_add(p->core);
            log_printf(LOG_T_WARNING, "Warning: persistence: %u records wait for the disk; "
                                      "publishers are throttled until it catches up.",
                       PERSIST_MAX_BACKLOG);
        }
        p->core->congestion_hit = true;
    }
    return ticket;
}

static int64_t to_wall(const struct persist *p, uint64_t mono_ms)
{
    return mono_ms ? (int64_t)mono_ms + p->wall_off : 0;
}

/* ---- messages ---- */

static uint64_t msg_store(struct persist *p, struct message *m)
{
    if (!m->pid) {
        m->pid = ++p->next_msg_id;
        struct store_rec *r = store_rec_new(STORE_MSG_PUT, m->topic, m->topic_len, m->payload,
                                            m->payload_len, m->props, m->props_len);
        if (r) {
            r->i[0] = (int64_t)m->pid;
            r->i[1] = m->qos;
            r->i[2] = m->retain;
            r->i[3] = to_wall(p, m->expiry_ms);
        }
        submit(p, r);
    }
    m->store_refs++;
    return m->pid;
}

static void msg_unstore(struct persist *p, struct message *m)
{
    if (!m || !m->pid || !m->store_refs)
        return;
    if (--m->store_refs == 0) {
        struct store_rec *r = store_rec_new(STORE_MSG_DEL, NULL, 0, NULL, 0, NULL, 0);
        if (r)
            r->i[0] = (int64_t)m->pid;
        submit(p, r);
        m->pid = 0;
    }
}

static struct store_rec *rec_id(int op, const struct session *s, const void *b1, size_t l1)
{
    return store_rec_new(op, s->client_id, s->id_len, b1, l1, NULL, 0);
}

/* ---- sessions ---- */

static int64_t listener_index(const struct core *core, const struct listener_config *lc)
{
    int64_t i = 0;
    for (const struct listener_config *l = core->cfg->listeners; l; l = l->next, i++)
        if (l == lc)
            return i;
    return -1;
}

static void session_put(struct persist *p, struct session *s, int64_t disconnected_wall)
{
    const char *u = s->username;
    struct store_rec *r = rec_id(STORE_SESSION_PUT, s, u, u ? strlen(u) : 0);
    if (r) {
        r->i[0] = s->expiry_interval;
        r->i[1] = disconnected_wall;
        r->i[2] = listener_index(s->core, s->lc);
    }
    submit(p, r);
}

static void sub_put(struct persist *p, struct session *s, const struct subscription *sub)
{
    struct store_rec *r = rec_id(STORE_SUB_PUT, s, sub->filter, sub->filter_len);
    if (r) {
        r->i[0] = sub->options;
        r->i[1] = sub->sub_id;
    }
    submit(p, r);
}

static void dlv_put(struct persist *p, struct session *s, struct delivery *d)
{
    d->seq = ++s->x->dlv_seq; /* a delivery lives in s->x */
    uint64_t id = msg_store(p, d->msg);
    uint8_t ids[SESSION_MAX_SUB_IDS * 4];
    for (uint8_t k = 0; k < d->spec.n_sub_ids; k++) {
        uint32_t v = d->spec.sub_ids[k];
        ids[4 * k] = (uint8_t)v;
        ids[4 * k + 1] = (uint8_t)(v >> 8);
        ids[4 * k + 2] = (uint8_t)(v >> 16);
        ids[4 * k + 3] = (uint8_t)(v >> 24);
    }
    struct store_rec *r = rec_id(STORE_DLV_PUT, s, ids, 4u * d->spec.n_sub_ids);
    if (r) {
        r->i[0] = (int64_t)d->seq;
        r->i[1] = (int64_t)id;
        r->i[2] = d->spec.qos;
        r->i[3] = d->state;
        r->i[4] = d->packet_id;
        r->i[5] = (d->spec.retain ? DLV_F_RETAIN : 0) | (d->spec.shared ? DLV_F_SHARED : 0);
    }
    submit(p, r);
}

static void will_put(struct persist *p, struct session *s)
{
    struct session_extra *x = s->x;
    if (!x || !x->will || x->will_stored)
        return;
    uint64_t id = msg_store(p, x->will);
    struct store_rec *r = rec_id(STORE_WILL_PUT, s, NULL, 0);
    if (r) {
        r->i[0] = (int64_t)id;
        r->i[1] = to_wall(p, x->will_at_ms);
    }
    submit(p, r);
    x->will_stored = true;
}

/* Everything the session holds goes to the store (it just became
 * persistent: a new session, or one whose expiry went from 0 to more). */
static void session_store_all(struct persist *p, struct session *s)
{
    s->persist = true;
    session_put(p, s, 0);
    for (uint32_t i = 0; i < s->nsubs; i++)
        sub_put(p, s, s->subs[i]);
    struct session_extra *x = s->x;
    if (!x)
        return;
    for (struct delivery *d = x->inflight_head; d; d = d->next)
        if (d->spec.qos)
            dlv_put(p, s, d);
    for (struct delivery *d = x->queue_head; d; d = d->next)
        dlv_put(p, s, d);
    for (uint32_t i = 0; i < x->rx_qos2_count; i++)
        persist_rxq(s, x->rx_qos2[i], true);
}

/* The session leaves the store (destroyed, or now clean): its rows go in
 * one SESSION_DEL; the messages they referenced lose a reference each. */
static void session_unstore(struct persist *p, struct session *s)
{
    struct session_extra *x = s->x;
    for (struct delivery *d = x ? x->inflight_head : NULL; d; d = d->next) {
        if (d->seq)
            msg_unstore(p, d->msg);
        d->seq = 0;
    }
    for (struct delivery *d = x ? x->queue_head : NULL; d; d = d->next) {
        if (d->seq)
            msg_unstore(p, d->msg);
        d->seq = 0;
    }
    if (x && x->will_stored) {
        msg_unstore(p, x->will);
        x->will_stored = false;
    }
    submit(p, rec_id(STORE_SESSION_DEL, s, NULL, 0));
    s->persist = false;
}

void persist_session_online(struct session *s)
{
    struct persist *p = s->core->persist;
    if (!p)
        return;
    if (s->expiry_interval == 0) {
        if (s->persist)
            session_unstore(p, s);
        return;
    }
    if (!s->persist)
        session_store_all(p, s);
    else
        session_put(p, s, 0);
}

void persist_session_offline(struct session *s, uint64_t now_ms)
{
    struct persist *p = on(s);
    if (!p || s->expiry_interval == 0)
        return; /* a clean session is destroyed next */
    session_put(p, s, to_wall(p, now_ms));
    will_put(p, s);
}

void persist_session_destroy(struct session *s)
{
    struct persist *p = on(s);
    if (p)
        session_unstore(p, s);
}

void persist_will_clear(struct session *s)
{
    struct persist *p = on(s);
    if (!p || !s->x || !s->x->will_stored)
        return;
    s->x->will_stored = false;
    submit(p, rec_id(STORE_WILL_DEL, s, NULL, 0));
    msg_unstore(p, s->x->will);
}

void persist_sub_put(struct session *s, const struct subscription *sub)
{
    struct persist *p = on(s);
    if (p)
        sub_put(p, s, sub);
}

void persist_sub_del(struct session *s, const struct subscription *sub)
{
    struct persist *p = on(s);
    if (p)
        submit(p, rec_id(STORE_SUB_DEL, s, sub->filter, sub->filter_len));
}

void persist_dlv_put(struct session *s, struct delivery *d)
{
    struct persist *p = on(s);
    if (p && d->spec.qos)
        dlv_put(p, s, d);
}

void persist_dlv_update(struct session *s, const struct delivery *d)
{
    struct persist *p = on(s);
    if (!p || !d->seq)
        return;
    struct store_rec *r = rec_id(STORE_DLV_UPD, s, NULL, 0);
    if (r) {
        r->i[0] = (int64_t)d->seq;
        r->i[3] = d->state;
        r->i[4] = d->packet_id;
    }
    submit(p, r);
}

void persist_dlv_gone(struct session *s, struct delivery *d)
{
    struct persist *p = on(s);
    if (!p || !d->seq)
        return;
    struct store_rec *r = rec_id(STORE_DLV_DEL, s, NULL, 0);
    if (r)
        r->i[0] = (int64_t)d->seq;
    submit(p, r);
    d->seq = 0;
    msg_unstore(p, d->msg);
}

void persist_rxq(struct session *s, uint16_t packet_id, bool add)
{
    struct persist *p = on(s);
    if (!p)
        return;
    struct store_rec *r = rec_id(add ? STORE_RXQ_ADD : STORE_RXQ_DEL, s, NULL, 0);
    if (r)
        r->i[0] = packet_id;
    submit(p, r);
}

void persist_retained(struct core *core, struct message *msg, struct message *old)
{
    struct persist *p = core->persist;
    /* $SYS is the broker's own, rewritten every sys_interval: storing it
     * would only wear the SD card, and its values are stale after a restart. */
    if (!p || (msg->topic_len >= 4 && memcmp(msg->topic, "$SYS", 4) == 0))
        return;
    if (old && old->pid)
        msg_unstore(p, old);
    if (msg->payload_len == 0) {
        submit(p, store_rec_new(STORE_RET_DEL, msg->topic, msg->topic_len, NULL, 0, NULL, 0));
        return;
    }
    uint64_t id = msg_store(p, msg);
    struct store_rec *r = store_rec_new(STORE_RET_PUT, msg->topic, msg->topic_len, NULL, 0, NULL, 0);
    if (r)
        r->i[0] = (int64_t)id;
    submit(p, r);
}

uint64_t persist_ticket(const struct core *core)
{
    return core->persist ? store_last(core->persist->st) : 0;
}

uint64_t persist_done(const struct core *core)
{
    return core->persist ? core->persist->done : 0;
}

void persist_completed(struct core *core, uint64_t now_ms)
{
    struct persist *p = core->persist;
    if (!p)
        return;
    store_ack_wakeup(p->st);
    p->done = store_done(p->st);
    char msg[160];
    uint64_t errors = store_take_errors(p->st, msg, sizeof(msg));
    if (errors)
        log_printf(LOG_T_ERROR, "Error: persistence: %llu commits failed (%s); the messages they "
                                "held are acknowledged but NOT on disk.",
                   (unsigned long long)errors, msg);
    client__acks_flush(core, p->done, now_ms);
    if (p->throttling && store_last(p->st) - p->done <= PERSIST_MAX_BACKLOG / 2) {
        p->throttling = false;
        core__congestion_remove(core);
    }
}

void persist_get_counts(const struct core *core, struct persist_counts *out)
{
    if (core->persist)
        *out = core->persist->counts;
    else
        memset(out, 0, sizeof(*out));
}

struct store *persist_detach(struct core *core)
{
    struct persist *p = core->persist;
    if (!p)
        return NULL;
    struct store *st = p->st;
    core->persist = NULL;
    mem_free(NULL, p, sizeof(*p));
    return st;
}

/* ---- start-up ---- */

struct load {
    struct core *core;
    struct persist *p;
    struct strmap msgs; /* id (8 bytes: the message's own pid) -> message */
    uint64_t now_ms;
    int64_t now_wall;
};

/* Stored wall time -> monotonic now-relative; 0 stays 0 (never). Sets
 * *past when it is already over. */
static uint64_t to_mono(const struct load *ld, int64_t wall, bool *past)
{
    *past = false;
    if (!wall)
        return 0;
    int64_t left = wall - ld->now_wall;
    if (left <= 0) {
        *past = true;
        return ld->now_ms ? ld->now_ms : 1;
    }
    return ld->now_ms + (uint64_t)left;
}

/* The loader's map key: the message's own row id, 8 bytes as stored. */
static const uint8_t *message_pid_key(const void *value, size_t *len)
{
    const struct message *m = value;
    *len = sizeof(m->pid);
    return (const uint8_t *)&m->pid;
}

static struct message *find_msg(struct load *ld, int64_t id)
{
    uint64_t key = (uint64_t)id;
    return strmap_get(&ld->msgs, &key, sizeof(key));
}

static struct session *find_session(struct load *ld, const struct store_row *row)
{
    return core__session_find(ld->core, row->b[0], row->len[0]);
}

/* A row that refers to something gone (expired, its session ended):
 * deleted, so the next start does not meet it again. */
static void drop_row(struct load *ld, int op, const struct store_row *row)
{
    struct store_rec *r = store_rec_new(op, row->b[0], row->len[0], row->b[1], row->len[1], NULL, 0);
    if (r)
        memcpy(r->i, row->i, sizeof(r->i));
    submit(ld->p, r);
    ld->p->counts.dropped++;
}

static int load_message(struct load *ld, const struct store_row *row)
{
    uint64_t id = (uint64_t)row->i[0];
    if (id > ld->p->next_msg_id)
        ld->p->next_msg_id = id;
    bool past;
    uint64_t expiry = to_mono(ld, row->i[3], &past);
    if (past) {
        drop_row(ld, STORE_MSG_DEL, row); /* expired while we were down */
        return 0;
    }
    struct message *m = message_new_raw(row->b[0], row->len[0], row->b[1], row->len[1], row->b[2],
                                        row->len[2], (uint8_t)row->i[1], row->i[2] != 0, expiry);
    if (!m)
        return -ERR_NOMEM;
    m->pid = id;
    if (strmap_put(&ld->msgs, m) < 0) {
        message_unref(m);
        return -ERR_NOMEM;
    }
    return 0;
}

static int load_session(struct load *ld, const struct store_row *row)
{
    struct core *core = ld->core;
    uint32_t interval = (uint32_t)row->i[0];
    /* A session that was online when the broker stopped counts as
     * disconnected now. */
    int64_t gone = row->i[1] ? row->i[1] : ld->now_wall;
    uint64_t expire_at = 0;
    if (interval == 0) {
        drop_row(ld, STORE_SESSION_DEL, row);
        return 0;
    }
    if (interval != SESSION_NEVER_EXPIRES) {
        int64_t end = gone + (int64_t)interval * 1000;
        bool past;
        expire_at = to_mono(ld, end, &past);
        if (past) {
            drop_row(ld, STORE_SESSION_DEL, row); /* expired while we were down */
            return 0;
        }
    }
    struct session *s = session_new(core, row->b[0], row->len[0]);
    if (!s)
        return -ERR_NOMEM;
    if (row->len[1] && !(s->username = mem_strndup(NULL, row->b[1], row->len[1]))) {
        session_free(s);
        return -ERR_NOMEM;
    }
    s->expiry_interval = interval;
    s->expire_at_ms = expire_at;
    int64_t li = row->i[2];
    for (const struct listener_config *l = core->cfg->listeners; l && li >= 0; l = l->next, li--)
        if (li == 0)
            s->lc = l;
    s->persist = true;
    if (core__session_insert(core, s) < 0) {
        session_free(s);
        return -ERR_NOMEM;
    }
    if (core__session_refile(core, s) < 0)
        return -ERR_NOMEM;
    ld->p->counts.sessions++;
    return 0;
}

static int load_sub(struct load *ld, const struct store_row *row)
{
    struct session *s = find_session(ld, row);
    if (!s) {
        drop_row(ld, STORE_SUB_DEL, row);
        return 0;
    }
    struct subscription *sub = topic_tree_add(ld->core->subs, row->b[1], row->len[1], s,
                                              (uint8_t)row->i[0], (uint32_t)row->i[1]);
    if (!sub)
        return -ERR_NOMEM;
    if (session_add_sub(s, sub) < 0) {
        topic_tree_remove(ld->core->subs, sub);
        return -ERR_NOMEM;
    }
    ld->p->counts.subscriptions++;
    return 0;
}

static int load_delivery(struct load *ld, const struct store_row *row)
{
    struct session *s = find_session(ld, row);
    struct message *m = find_msg(ld, row->i[1]);
    if (!s || !m) {
        drop_row(ld, STORE_DLV_DEL, row);
        return 0;
    }
    struct session_extra *x = session__extra(s);
    struct delivery *d = x ? mem_calloc(&x->acct, sizeof(*d)) : NULL;
    if (!d)
        return -ERR_NOMEM;
    d->msg = message_ref(m);
    m->store_refs++;
    d->seq = (uint64_t)row->i[0];
    if (d->seq > x->dlv_seq)
        x->dlv_seq = d->seq;
    d->spec.qos = (uint8_t)row->i[2];
    d->state = (uint8_t)row->i[3];
    d->packet_id = (uint16_t)row->i[4];
    d->spec.retain = (row->i[5] & DLV_F_RETAIN) != 0;
    d->spec.shared = (row->i[5] & DLV_F_SHARED) != 0;
    uint32_t n = row->len[1] / 4;
    for (uint32_t k = 0; k < n && k < SESSION_MAX_SUB_IDS; k++) {
        const uint8_t *b = row->b[1] + 4 * k;
        d->spec.sub_ids[k] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                             (uint32_t)b[3] << 24;
        d->spec.n_sub_ids++;
    }
    session_restore_delivery(s, d);
    ld->p->counts.deliveries++;
    return 0;
}

static int load_rxq(struct load *ld, const struct store_row *row)
{
    struct session *s = find_session(ld, row);
    if (!s) {
        drop_row(ld, STORE_RXQ_DEL, row);
        return 0;
    }
    return session_rx_qos2_add(s, (uint16_t)row->i[0]);
}

static int load_will(struct load *ld, const struct store_row *row)
{
    struct session *s = find_session(ld, row);
    struct message *m = find_msg(ld, row->i[0]);
    if (!s || !m || (s->x && s->x->will)) {
        drop_row(ld, STORE_WILL_DEL, row);
        return 0;
    }
    struct session_extra *x = session__extra(s);
    if (!x)
        return -ERR_NOMEM;
    bool past;
    uint64_t at = to_mono(ld, row->i[1], &past);
    x->will = message_ref(m);
    x->will_at_ms = at ? at : ld->now_ms; /* its time came while we were down: now */
    x->will_stored = true;
    m->store_refs++;
    ld->p->counts.wills++;
    return core__session_refile(ld->core, s);
}

static int load_retained(struct load *ld, const struct store_row *row)
{
    struct message *m = find_msg(ld, row->i[0]);
    if (!m) {
        drop_row(ld, STORE_RET_DEL, row);
        return 0;
    }
    if (retain_set(ld->core->retained, m->topic, m->topic_len, m) < 0)
        return -ERR_NOMEM;
    m->store_refs++;
    ld->p->counts.retained++;
    return 0;
}

static int load_row(void *ctx, int op, const struct store_row *row)
{
    struct load *ld = ctx;
    switch (op) {
    case STORE_MSG_PUT: return load_message(ld, row);
    case STORE_SESSION_PUT: return load_session(ld, row);
    case STORE_SUB_PUT: return load_sub(ld, row);
    case STORE_DLV_PUT: return load_delivery(ld, row);
    case STORE_RXQ_ADD: return load_rxq(ld, row);
    case STORE_WILL_PUT: return load_will(ld, row);
    case STORE_RET_PUT: return load_retained(ld, row);
    default: return 0;
    }
}

int persist_attach(struct core *core, struct store *st, uint64_t now_ms, uint64_t wall_ms)
{
    struct persist *p = mem_calloc(NULL, sizeof(*p));
    if (!p)
        return -ERR_NOMEM;
    p->st = st;
    p->core = core;
    p->wall_off = (int64_t)wall_ms - (int64_t)now_ms;
    struct load ld = {.core = core, .p = p, .now_ms = now_ms, .now_wall = (int64_t)wall_ms};
    strmap_init(&ld.msgs, core->id_seed ^ 0x5bd1e995u, message_pid_key);
    struct store_loader loader = {&ld, load_row};
    /* The hooks stay off while loading (core->persist is still NULL): what
     * is read back is not written again. */
    int rc = store_load(st, &loader);
    /* Bodies nothing references any more are deleted; the map's own
     * references go. */
    for (size_t i = 0; i < ld.msgs.cap; i++) {
        struct message *m = ld.msgs.slots[i];
        if (!m)
            continue;
        if (!m->store_refs) {
            struct store_rec *r = store_rec_new(STORE_MSG_DEL, NULL, 0, NULL, 0, NULL, 0);
            if (r)
                r->i[0] = (int64_t)m->pid;
            submit(p, r);
            m->pid = 0;
        }
        message_unref(m);
    }
    strmap_free(&ld.msgs);
    p->done = store_last(st); /* nothing acknowledged waits on the clean-up */
    core->persist = p;
    return rc;
}
