#include "broker/core.h"

#include <string.h>

#include "broker/config.h"
#include "broker/core_priv.h"
#include "broker/mem.h"
#include "broker/message.h"
#include "broker/persist.h"
#include "broker/retain.h"
#include "broker/topic_tree.h"
#include "mqtt/error.h"

static const uint8_t *session_key(const void *value, size_t *len)
{
    const struct session *s = value;
    *len = s->id_len;
    return (const uint8_t *)s->client_id;
}

struct core *core_new(const struct config *cfg, const struct core_io *io)
{
    struct core *core = mem_calloc(NULL, sizeof(*core));
    if (!core)
        return NULL;
    core->cfg = cfg;
    core->io = *io;
    core->subs = topic_tree_new();
    core->retained = retain_new();
    if (!core->subs || !core->retained) {
        topic_tree_free(core->subs);
        retain_free(core->retained);
        mem_free(NULL, core, sizeof(*core));
        return NULL;
    }
    /* The seed only has to be unknown to clients choosing ids; the address
     * of a heap object plus a counter is enough for that and needs no OS. */
    core->id_seed = (uint64_t)(uintptr_t)core * 0x9e3779b97f4a7c15ULL;
    strmap_init(&core->sessions, core->id_seed, session_key);
    return core;
}

void core_set_auth(struct core *core, struct auth *a)
{
    core->auth = a;
}

void core_free(struct core *core)
{
    if (!core)
        return;
    /* Jobs first: they hold sessions. Then sessions: their subscriptions
     * live in the tree. */
    fanout__free_all(core);
    for (size_t i = 0; i < core->sessions.cap; i++) {
        struct session *s = core->sessions.slots[i];
        if (s)
            session_free(s);
    }
    strmap_free(&core->sessions);
    topic_tree_free(core->subs);
    retain_free(core->retained);
    mem_free(NULL, core->targets, core->targets_cap * sizeof(*core->targets));
    mem_free(NULL, core->heap, core->heap_cap * sizeof(*core->heap));
    mem_free(NULL, core, sizeof(*core));
}

void core__congestion_add(struct core *core)
{
    core->congested++;
}

void core__congestion_remove(struct core *core)
{
    if (--core->congested == 0 && core->io.congestion_cleared)
        core->io.congestion_cleared(core->io.ctx);
}

const struct auth *core_auth_for(const struct core *core, const struct listener_config *lc)
{
    return lc && lc->auth ? lc->auth : core->auth;
}

struct core_stats *core_stats(struct core *core)
{
    return &core->stats;
}

const struct core_stats *core_stats_refresh(struct core *core)
{
    core->stats.subscriptions_count = topic_tree_count(core->subs);
    core->stats.retained_count = retain_count(core->retained);
    core->stats.clients_total = core->sessions.count;
    return &core->stats;
}

struct session *core__session_find(struct core *core, const uint8_t *id, size_t len)
{
    return strmap_get(&core->sessions, id, len);
}

int core__session_insert(struct core *core, struct session *s)
{
    return strmap_put(&core->sessions, s);
}

/* ---- deadlines of offline sessions ------------------------------------
 * A binary min-heap of sessions keyed by their next deadline (expiry or a
 * delayed will), so the once-a-second tick costs O(log n) per session that
 * is due, not a walk over every offline session. */

static uint64_t deadline(const struct session *s)
{
    uint64_t d = UINT64_MAX;
    if (s->expire_at_ms)
        d = s->expire_at_ms;
    if (s->x && s->x->will && s->x->will_at_ms < d)
        d = s->x->will_at_ms;
    return d;
}

static void heap_set(struct core *core, uint32_t i, struct session *s)
{
    core->heap[i] = s;
    s->heap_idx = i + 1;
}

static void heap_up(struct core *core, uint32_t i)
{
    struct session *s = core->heap[i];
    uint64_t d = deadline(s);
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (deadline(core->heap[parent]) <= d)
            break;
        heap_set(core, i, core->heap[parent]);
        i = parent;
    }
    heap_set(core, i, s);
}

static void heap_down(struct core *core, uint32_t i)
{
    struct session *s = core->heap[i];
    uint64_t d = deadline(s);
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t md = d;
        if (l < core->heap_n && deadline(core->heap[l]) < md)
            m = l, md = deadline(core->heap[l]);
        if (r < core->heap_n && deadline(core->heap[r]) < md)
            m = r;
        if (m == i)
            break;
        heap_set(core, i, core->heap[m]);
        i = m;
    }
    heap_set(core, i, s);
}

static void heap_remove(struct core *core, struct session *s)
{
    if (!s->heap_idx)
        return;
    uint32_t i = s->heap_idx - 1;
    s->heap_idx = 0;
    struct session *last = core->heap[--core->heap_n];
    if (last != s) {
        heap_set(core, i, last);
        heap_up(core, i);
        heap_down(core, last->heap_idx - 1);
    }
}

/* (Re)files s by its deadline; a session with none leaves the heap. */
static int heap_update(struct core *core, struct session *s)
{
    if (deadline(s) == UINT64_MAX) {
        heap_remove(core, s);
        return 0;
    }
    if (!s->heap_idx) {
        if (core->heap_n == core->heap_cap) {
            uint32_t cap = core->heap_cap ? core->heap_cap * 2 : 64;
            struct session **v = mem_realloc(NULL, core->heap, core->heap_cap * sizeof(*v),
                                             cap * sizeof(*v));
            if (!v)
                return -ERR_NOMEM;
            core->heap = v;
            core->heap_cap = cap;
        }
        heap_set(core, core->heap_n++, s);
    }
    heap_up(core, s->heap_idx - 1);
    heap_down(core, s->heap_idx - 1);
    return 0;
}

static void publish_will(struct core *core, struct session *s, uint64_t now_ms)
{
    struct message *will = s->x->will;
    persist_will_clear(s);
    s->x->will = NULL;
    router_publish(core, will, now_ms);
    message_unref(will);
}

/* Ends a session for good. A delayed will still waiting goes out now: the
 * session ending comes first [MQTT-3.1.3-9]. */
void core__session_destroy(struct core *core, struct session *s, uint64_t now_ms)
{
    heap_remove(core, s);
    if (strmap_get(&core->sessions, s->client_id, s->id_len) == s)
        strmap_del(&core->sessions, s->client_id, s->id_len);
    persist_session_destroy(s);
    if (s->x && s->x->will)
        publish_will(core, s, now_ms);
    session_free(s);
}

/* A session left offline: it ends now (expiry 0), or waits for its expiry
 * and delayed will in the heap. */
void core__session_offline(struct core *core, struct session *s, uint64_t now_ms)
{
    if (s->expiry_interval == 0) {
        core__session_destroy(core, s, now_ms);
        return;
    }
    s->expire_at_ms = s->expiry_interval == SESSION_NEVER_EXPIRES
                          ? 0
                          : now_ms + (uint64_t)s->expiry_interval * 1000;
    persist_session_offline(s, now_ms);
    if (heap_update(core, s) < 0) {
        /* Without a place in the heap it could never expire: end it now
         * rather than keep it forever. */
        core__session_destroy(core, s, now_ms);
    }
}

/* A client took the session back: no expiry, and a delayed will is
 * cancelled [MQTT-3.1.3-9]. */
void core__session_online(struct core *core, struct session *s)
{
    if (s->x) {
        persist_will_clear(s);
        message_unref(s->x->will);
        s->x->will = NULL;
    }
    s->expire_at_ms = 0;
    heap_remove(core, s);
}

int core__session_refile(struct core *core, struct session *s)
{
    return heap_update(core, s);
}

void core_tick(struct core *core, uint64_t now_ms)
{
    while (core->heap_n && deadline(core->heap[0]) <= now_ms) {
        struct session *s = core->heap[0];
        if (s->expire_at_ms && s->expire_at_ms <= now_ms) {
            core__session_destroy(core, s, now_ms);
            continue;
        }
        publish_will(core, s, now_ms);
        heap_update(core, s); /* only removes or moves down: cannot fail */
    }
}
