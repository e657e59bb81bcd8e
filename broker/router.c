/* Routing: from one published message to the sessions that get it. */
#include <string.h>

#include "broker/auth.h"
#include "broker/core_priv.h"
#include "broker/mem.h"
#include "broker/message.h"
#include "broker/persist.h"
#include "broker/retain.h"
#include "broker/topic_tree.h"
#include "mqtt/packet.h"

struct route_ctx {
    struct core *core;
    struct message *msg;
};

/* May session s receive a message on topic? (its ACL "read" right) */
static bool may_read(const struct core *core, const struct session *s, const struct message *msg)
{
    const struct auth *a = core_auth_for(core, s->lc);
    return !a || !auth_has_acl(a) ||
           auth_acl_check(a, s->client_id, s->username, msg->topic, msg->topic_len, AUTH_READ) == 0;
}

static bool member_online(void *ctx, const struct subscription *sub)
{
    (void)ctx;
    return ((const struct session *)sub->owner)->online;
}

/* A session already reached by this publish holds a slot below ntargets
 * that names it; any other value of route_slot is stale, so no
 * per-publish generation needs resetting. */
static struct route_target *target_for(struct core *core, struct session *s)
{
    if (s->route_slot < core->ntargets && core->targets[s->route_slot].session == s)
        return &core->targets[s->route_slot];
    if (core->ntargets == core->targets_cap) {
        uint32_t cap = core->targets_cap ? core->targets_cap * 2 : 64;
        struct route_target *v = mem_realloc(NULL, core->targets,
                                             core->targets_cap * sizeof(*v), cap * sizeof(*v));
        if (!v)
            return NULL;
        core->targets = v;
        core->targets_cap = cap;
    }
    struct route_target *t = &core->targets[core->ntargets];
    memset(t, 0, sizeof(*t));
    t->session = s;
    s->route_slot = core->ntargets++;
    return t;
}

/* Overlapping subscriptions of one session are merged into one delivery
 * with the highest QoS and every subscription id [MQTT-3.3.4-2, -3]. */
static void on_match(void *ctx, struct subscription *sub)
{
    struct route_ctx *rc = ctx;
    struct session *s = sub->owner;
    if ((sub->options & MQTT_SUBOPT_NO_LOCAL) && !sub->group && rc->msg->origin == s)
        return; /* [MQTT-3.8.3-3] */
    struct route_target *t = target_for(rc->core, s);
    if (!t) {
        rc->core->stats.messages_dropped++;
        return;
    }
    uint8_t qos = sub->options & MQTT_SUBOPT_QOS_MASK;
    if (qos > t->spec.qos)
        t->spec.qos = qos;
    if (sub->options & MQTT_SUBOPT_RETAIN_AS_PUBLISHED)
        t->retain_as_published = true;
    if (!sub->group)
        t->plain = true;
    if (sub->sub_id && t->spec.n_sub_ids < SESSION_MAX_SUB_IDS)
        t->spec.sub_ids[t->spec.n_sub_ids++] = sub->sub_id;
}

uint32_t router_publish(struct core *core, struct message *msg, uint64_t now_ms)
{
    if (msg->retain) {
        /* Persistence needs the message it replaces (NULL when off). */
        struct message *old = core->persist ? retain_get(core->retained, msg->topic, msg->topic_len)
                                            : NULL;
        if (old)
            message_ref(old);
        if (retain_set(core->retained, msg->topic, msg->topic_len, msg) < 0)
            core->stats.messages_dropped++;
        else
            persist_retained(core, msg, old);
        message_unref(old);
    }
    core->ntargets = 0;
    struct route_ctx rc = {core, msg};
    topic_tree_match(core->subs, msg->topic, msg->topic_len, on_match, member_online, &rc);
    /* Past ROUTER_INLINE_DELIVERIES, targets are compacted to the front
     * of the array for a fan-out job; sessions kept in the store are
     * always served now (their records must precede the PUBACK). */
    bool may_defer = core->io.fanout_pending != NULL;
    /* The broker's own messages (wills, $SYS) have no publisher to hold
     * back: while slices are pending they queue behind them whole, so a
     * later one cannot overtake an earlier one's slices. */
    uint32_t inline_max = core->fan_head && !core->routing_client ? 0 : ROUTER_INLINE_DELIVERIES;
    uint32_t now_done = 0, later = 0;
    uint64_t (*clock_us)(void *) = may_defer && core->ntargets > ROUTER_CLOCK_EVERY
                                       ? core->io.clock_us
                                       : NULL;
    uint64_t t0 = clock_us ? clock_us(core->io.ctx) : 0;
    for (uint32_t i = 0; i < core->ntargets; i++) {
        struct route_target *t = &core->targets[i];
        if (msg->qos < t->spec.qos)
            t->spec.qos = msg->qos;
        /* Without Retain As Published, a forwarded message is not marked
         * retained [MQTT-3.3.1-9]. */
        t->spec.retain = t->retain_as_published && msg->retain;
        t->spec.shared = !t->plain;
        if (!may_read(core, t->session, msg))
            continue;
        if (may_defer && now_done >= inline_max && !t->session->persist) {
            core->targets[later++] = *t;
            continue;
        }
        session_deliver(t->session, msg, &t->spec, now_ms);
        now_done++;
        if (clock_us && now_done % ROUTER_CLOCK_EVERY == 0 && now_done < inline_max &&
            clock_us(core->io.ctx) - t0 >= ROUTER_INLINE_US)
            inline_max = now_done; /* slow deliveries: the rest in slices */
    }
    if (later) {
        if (fanout__defer(core, msg, core->targets, later) == 0)
            core->congestion_hit = true; /* throttles its publisher */
        else
            for (uint32_t i = 0; i < later; i++)
                session_deliver(core->targets[i].session, msg, &core->targets[i].spec, now_ms);
    }
    uint32_t reached = core->ntargets;
    core->ntargets = 0;
    return reached;
}

struct retained_ctx {
    struct core *core;
    struct session *s;
    struct delivery_spec spec;
    uint64_t now_ms;
};

static void on_retained(void *ctx, struct message *msg)
{
    struct retained_ctx *rc = ctx;
    if (!may_read(rc->core, rc->s, msg))
        return;
    struct delivery_spec spec = rc->spec;
    if (msg->qos < spec.qos)
        spec.qos = msg->qos;
    session_deliver(rc->s, msg, &spec, rc->now_ms);
}

void router_send_retained(struct core *core, struct session *s, const uint8_t *filter,
                          size_t len, uint8_t sub_qos, uint32_t sub_id, uint64_t now_ms)
{
    /* Sent because of the subscription: retain flag set [MQTT-3.3.1-8]. */
    struct retained_ctx rc = {.core = core, .s = s, .now_ms = now_ms};
    rc.spec.qos = sub_qos;
    rc.spec.retain = true;
    if (sub_id)
        rc.spec.sub_ids[rc.spec.n_sub_ids++] = sub_id;
    retain_match(core->retained, filter, len, on_retained, &rc);
}

/* ---- shared subscriptions of a member that went away ------------------ */

struct handoff_ctx {
    struct core *core;
    uint64_t now_ms;
};

static bool other_online(void *ctx, const struct subscription *sub)
{
    return sub->owner != ctx && ((const struct session *)sub->owner)->online;
}

/* Gives one message a departed member held to another member of the same
 * group that is online; with none online it stays with the member. */
static void handoff_one(void *ctx, struct session *from, struct message *msg,
                        const struct delivery_spec *spec)
{
    struct handoff_ctx *hc = ctx;
    struct session *to = NULL;
    for (uint32_t i = 0; i < from->nsubs && !to; i++) {
        struct subscription *sub = from->subs[i];
        if (!sub->group || !topic_tree_group_matches(sub, msg->topic, msg->topic_len))
            continue;
        struct subscription *next = topic_tree_group_next(sub, other_online, from);
        if (next && may_read(hc->core, next->owner, msg))
            to = next->owner;
    }
    struct delivery_spec moved = *spec;
    if (to) {
        moved.n_sub_ids = 0; /* the ids were the old member's */
        session_deliver(to, msg, &moved, hc->now_ms);
    } else {
        moved.shared = false; /* nobody else: keep it, and stop trying */
        session_deliver(from, msg, &moved, hc->now_ms);
    }
    message_unref(msg);
}

void router_handoff_shared(struct core *core, struct session *s, uint64_t now_ms)
{
    struct handoff_ctx hc = {core, now_ms};
    session_handoff_shared(s, handoff_one, &hc);
}
