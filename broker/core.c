#include "broker/core.h"

#include <string.h>

#include "broker/config.h"
#include "broker/core_priv.h"
#include "broker/mem.h"
#include "broker/retain.h"
#include "broker/topic_tree.h"

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
    strmap_init(&core->sessions, core->id_seed);
    return core;
}

void core_free(struct core *core)
{
    if (!core)
        return;
    /* Sessions first: their subscriptions live in the tree. */
    for (size_t i = 0; i < core->sessions.cap; i++) {
        struct session *s = core->sessions.slots[i].value;
        if (core->sessions.slots[i].key && s)
            session_free(s);
    }
    strmap_free(&core->sessions);
    topic_tree_free(core->subs);
    retain_free(core->retained);
    mem_free(NULL, core->targets, core->targets_cap * sizeof(*core->targets));
    mem_free(NULL, core, sizeof(*core));
}

struct core_stats *core_stats(struct core *core)
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
    return strmap_put(&core->sessions, s->client_id, s->id_len, s);
}

static void offline_unlink(struct core *core, struct session *s)
{
    if (s->off_prev)
        s->off_prev->off_next = s->off_next;
    else if (core->offline_head == s)
        core->offline_head = s->off_next;
    if (s->off_next)
        s->off_next->off_prev = s->off_prev;
    s->off_prev = s->off_next = NULL;
}

void core__session_destroy(struct core *core, struct session *s)
{
    offline_unlink(core, s);
    if (strmap_get(&core->sessions, s->client_id, s->id_len) == s)
        strmap_del(&core->sessions, s->client_id, s->id_len);
    session_free(s);
}

/* A session left offline: it ends now (expiry 0), never, or is put on the
 * list core_tick walks. */
void core__session_offline(struct core *core, struct session *s, uint64_t now_ms)
{
    if (s->expiry_interval == 0) {
        core__session_destroy(core, s);
        return;
    }
    if (s->expiry_interval == SESSION_NEVER_EXPIRES)
        return;
    s->expire_at_ms = now_ms + (uint64_t)s->expiry_interval * 1000;
    s->off_prev = NULL;
    s->off_next = core->offline_head;
    if (core->offline_head)
        core->offline_head->off_prev = s;
    core->offline_head = s;
}

void core__session_online(struct core *core, struct session *s)
{
    offline_unlink(core, s);
}

void core_tick(struct core *core, uint64_t now_ms)
{
    struct session *s = core->offline_head;
    while (s) {
        struct session *next = s->off_next;
        if (now_ms >= s->expire_at_ms)
            core__session_destroy(core, s);
        s = next;
    }
}
