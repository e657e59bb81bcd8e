#include "broker/session.h"

#include <string.h>

#include "broker/client.h"
#include "broker/config.h"
#include "broker/core_priv.h"
#include "broker/message.h"
#include "broker/outq.h"
#include "broker/persist.h"
#include "broker/topic_tree.h"
#include "mqtt/packet.h"

struct session *session_new(struct core *core, const uint8_t *client_id, size_t len)
{
    if (len > UINT16_MAX)
        return NULL;
    struct session *s = mem_calloc(NULL, sizeof(*s) + len + 1);
    if (!s)
        return NULL;
    memcpy(s->client_id, client_id, len); /* NUL from calloc */
    s->core = core;
    s->id_len = (uint16_t)len;
    return s;
}

struct session_extra *session__extra(struct session *s)
{
    if (!s->x) {
        /* The broker's, not its own account: that lives inside it. */
        struct session_extra *x = mem_calloc(NULL, sizeof(*x));
        if (!x)
            return NULL;
        x->next_packet_id = 1;
        s->x = x;
    }
    return s->x;
}

static void delivery_free(struct session *s, struct delivery *d)
{
    persist_dlv_gone(s, d);
    message_unref(d->msg);
    mem_free(&s->x->acct, d, sizeof(*d));
}

static void free_list(struct session *s, struct delivery *d)
{
    while (d) {
        struct delivery *next = d->next;
        delivery_free(s, d);
        d = next;
    }
}

/* The session's queue is back under its limit (or it went offline). */
static void congestion_end(struct session *s)
{
    if (!s->x || !s->x->congested_since_ms)
        return;
    s->x->congested_since_ms = 0;
    core__congestion_remove(s->core);
}

void session_free(struct session *s)
{
    if (!s)
        return;
    congestion_end(s);
    for (uint32_t i = 0; i < s->nsubs; i++)
        topic_tree_remove(s->core->subs, s->subs[i]);
    mem_free(NULL, s->subs, s->subs_cap * sizeof(*s->subs));
    struct session_extra *x = s->x;
    if (x) {
        free_list(s, x->inflight_head);
        free_list(s, x->queue_head);
        mem_free(&x->acct, x->rx_qos2, x->rx_qos2_cap * sizeof(*x->rx_qos2));
        message_unref(x->will);
        mem_free(NULL, x, sizeof(*x));
    }
    mem_strfree(NULL, s->username);
    if (s->job_refs) {
        /* A fan-out slice still lists it: the struct waits, inert. */
        s->subs = NULL;
        s->nsubs = s->subs_cap = 0;
        s->x = NULL;
        s->username = NULL;
        s->client = NULL;
        s->online = false;
        s->dead = true;
        return;
    }
    mem_free(NULL, s, sizeof(*s) + (size_t)s->id_len + 1);
}

void session_job_release(struct session *s)
{
    if (--s->job_refs == 0 && s->dead)
        mem_free(NULL, s, sizeof(*s) + (size_t)s->id_len + 1);
}

/* ---- sending ---------------------------------------------------------- */

static void fill_publish(bool v5, const struct delivery *d, bool dup, uint64_t now_ms,
                         struct mqtt_packet *p)
{
    memset(p, 0, sizeof(*p));
    p->type = MQTT_PUBLISH;
    struct mqtt_publish *pub = &p->u.publish;
    const struct message *m = d->msg;
    pub->qos = d->spec.qos;
    pub->dup = dup && d->spec.qos > 0;
    pub->retain = d->spec.retain;
    pub->packet_id = d->packet_id;
    pub->topic = (struct mqtt_bytes){m->topic, m->topic_len};
    pub->payload = (struct mqtt_bytes){m->payload, m->payload_len};
    if (v5) {
        if (m->expiry_ms) {
            /* What is left of it, not what was published [MQTT-3.3.2-6]. */
            pub->props.present |= MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
            pub->props.message_expiry = message_expiry_left(m, now_ms);
        }
        if (d->spec.n_sub_ids) {
            pub->props.present |= MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
            pub->props.sub_id = d->spec.sub_ids[0];
            pub->props.sub_id_count = d->spec.n_sub_ids;
            pub->props.sub_ids = d->spec.sub_ids;
        }
        pub->props.verbatim = (struct mqtt_bytes){m->props, m->props_len};
    }
}

/* Encodes p into the client's out-queue. -ERR_PACKET_TOO_LARGE when the
 * client said it cannot take it [MQTT-3.1.2-24]. */
static int send_packet(struct session *s, struct mqtt_packet *p)
{
    int rc = client__send(s->client, p);
    if (rc == 0 && p->type == MQTT_PUBLISH)
        s->core->stats.messages_sent++;
    return rc;
}

static int send_delivery(struct session *s, struct delivery *d, bool dup, uint64_t now_ms)
{
    struct mqtt_packet p;
    fill_publish(client__version(s->client) == MQTT_V5, d, dup, now_ms, &p);
    return send_packet(s, &p);
}

static int send_pubrel(struct session *s, uint16_t packet_id, uint8_t reason)
{
    struct mqtt_packet p = {.type = MQTT_PUBREL, .flags = 0x2};
    p.u.ack.packet_id = packet_id;
    p.u.ack.reason = reason;
    return send_packet(s, &p);
}

static bool packet_id_in_use(const struct session_extra *x, uint16_t id)
{
    for (const struct delivery *d = x->inflight_head; d; d = d->next)
        if (d->packet_id == id)
            return true;
    return false;
}

static uint16_t next_packet_id(struct session_extra *x)
{
    /* The window is at most 65,535, so a free id always exists. */
    for (;;) {
        uint16_t id = x->next_packet_id++;
        if (x->next_packet_id == 0)
            x->next_packet_id = 1;
        if (id && !packet_id_in_use(x, id))
            return id;
    }
}

static void inflight_push(struct session_extra *x, struct delivery *d)
{
    d->next = NULL;
    if (x->inflight_tail)
        x->inflight_tail->next = d;
    else
        x->inflight_head = d;
    x->inflight_tail = d;
    x->inflight_count++;
}

static void queue_push(struct session_extra *x, struct delivery *d)
{
    d->next = NULL;
    if (x->queue_tail)
        x->queue_tail->next = d;
    else
        x->queue_head = d;
    x->queue_tail = d;
    x->queued_count++;
    x->queued_bytes += message_size(d->msg);
}

static struct delivery *queue_pop(struct session_extra *x)
{
    struct delivery *d = x->queue_head;
    if (!d)
        return NULL;
    x->queue_head = d->next;
    if (!x->queue_head)
        x->queue_tail = NULL;
    x->queued_count--;
    x->queued_bytes -= message_size(d->msg);
    d->next = NULL;
    return d;
}

static void count_drop(struct session *s)
{
    s->core->stats.messages_dropped++;
}

/* A client that does not read: its out-queue is over the soft limit. QoS 0
 * messages for it are dropped (QoS 1/2 ones are bounded by the in-flight
 * window and wait in the session queue instead), and if it stays over the
 * limit for SESSION_SLOW_CLOSE_MS it is disconnected with 0x97, so a dead
 * reader cannot pin memory forever (without memory to time it, at once).
 * The close goes through the glue's deferred pass, never from inside this
 * call stack. */
static bool slow_consumer(struct session *s, uint64_t now_ms)
{
    if (client_outq(s->client)->bytes < SESSION_OUT_SOFT_LIMIT) {
        if (s->x)
            s->x->slow_since_ms = 0;
        return false;
    }
    struct session_extra *x = session__extra(s);
    if (!x) {
        client__close(s->client, -ERR_NOMEM);
        return true;
    }
    if (!x->slow_since_ms) {
        x->slow_since_ms = now_ms;
        s->core->stats.slow_consumers++;
    } else if (now_ms - x->slow_since_ms >= SESSION_SLOW_CLOSE_MS && !x->slow_closing) {
        x->slow_closing = true;
        client__close(s->client, -ERR_QUOTA_EXCEEDED);
    }
    return true;
}

/* Starts sending d (QoS > 0): assigns its packet id and makes it in flight.
 * Frees d if it cannot be sent at all. */
static void start_inflight(struct session *s, struct delivery *d, uint64_t now_ms)
{
    struct session_extra *x = s->x;
    d->packet_id = next_packet_id(x);
    d->state = d->spec.qos == 1 ? DLV_WAIT_PUBACK : DLV_WAIT_PUBREC;
    if (send_delivery(s, d, false, now_ms) < 0) {
        count_drop(s);
        delivery_free(s, d);
        return;
    }
    inflight_push(x, d);
    if (d->seq)
        persist_dlv_update(s, d);
    else
        persist_dlv_put(s, d);
}

/* Fills the send window from the queue, skipping expired messages. */
static void pump(struct session *s, uint64_t now_ms)
{
    struct session_extra *x = s->x;
    if (!x)
        return; /* nothing queued, nothing congested */
    uint16_t window = s->online ? client__send_window(s->client) : 0;
    while (x->queue_head && x->inflight_count < window) {
        struct delivery *d = queue_pop(x);
        if (message_expired(d->msg, now_ms)) {
            count_drop(s);
            delivery_free(s, d);
            continue;
        }
        start_inflight(s, d, now_ms);
    }
    /* Drained to half the limit: the throttled publishers may go on. */
    if (x->congested_since_ms) {
        const struct config *cfg = s->core->cfg;
        bool low = (!cfg->max_queued_messages || x->queued_count <= cfg->max_queued_messages / 2) &&
                   (!cfg->max_queued_bytes || x->queued_bytes <= cfg->max_queued_bytes / 2);
        if (low)
            congestion_end(s);
    }
}

void session_attach(struct session *s, bool resend, uint64_t now_ms)
{
    s->online = true;
    if (resend && s->x) {
        for (struct delivery *d = s->x->inflight_head; d; d = d->next) {
            if (d->state == DLV_WAIT_PUBCOMP)
                send_pubrel(s, d->packet_id, 0);
            else
                send_delivery(s, d, true, now_ms);
        }
    }
    pump(s, now_ms);
}

void session_detach(struct session *s)
{
    congestion_end(s);
    s->online = false;
    if (s->x) {
        s->x->slow_since_ms = 0;
        s->x->slow_closing = false;
    }
}

/* ---- delivering ------------------------------------------------------- */

/* Over max_queued_messages / max_queued_bytes, by `slack` messages (and,
 * with any slack, by the byte limit once more). */
static bool queue_over(const struct session *s, uint32_t msg_size, uint32_t slack)
{
    const struct config *cfg = s->core->cfg;
    const struct session_extra *x = s->x;
    if (cfg->max_queued_messages && x->queued_count >= cfg->max_queued_messages + slack)
        return true;
    uint64_t byte_slack = slack ? cfg->max_queued_bytes : 0;
    if (cfg->max_queued_bytes && x->queued_bytes + msg_size > cfg->max_queued_bytes + byte_slack)
        return true;
    return false;
}

/* A full queue of an online client is not a reason to lose acknowledged
 * messages: the message is queued past the limit (up to the slack) and the
 * publisher is throttled (not read) until the queue drains, as TCP would
 * slow it. Offline sessions keep mosquitto's rule: over the limit, the new
 * message is dropped. A client that stays congested for
 * SESSION_SLOW_CLOSE_MS stops acknowledging for good, as far as we can
 * tell: it is disconnected (0x97) and its queue goes back under the rule
 * for offline sessions. */
static bool congestion_admit(struct session *s, const struct message *msg, uint64_t now_ms)
{
    if (!queue_over(s, message_size(msg), 0))
        return true;
    if (!s->online || queue_over(s, message_size(msg), SESSION_QUEUE_SLACK))
        return false;
    struct core *core = s->core;
    struct session_extra *x = s->x;
    if (!x->congested_since_ms) {
        x->congested_since_ms = now_ms ? now_ms : 1;
        core__congestion_add(core);
    } else if (now_ms - x->congested_since_ms >= SESSION_SLOW_CLOSE_MS && !x->slow_closing) {
        x->slow_closing = true;
        client__close(s->client, -ERR_QUOTA_EXCEEDED);
    }
    core->congestion_hit = true;
    return true;
}

int session_deliver(struct session *s, struct message *msg, const struct delivery_spec *spec,
                    uint64_t now_ms)
{
    if (message_expired(msg, now_ms)) {
        count_drop(s);
        return -ERR_NOT_FOUND;
    }
    if (spec->qos == 0) {
        if (!s->online) {
            count_drop(s); /* QoS 0 is not queued for offline clients */
            return -ERR_NOT_FOUND;
        }
        if (slow_consumer(s, now_ms)) {
            count_drop(s);
            return -ERR_QUOTA_EXCEEDED;
        }
        struct delivery d = {.msg = msg, .spec = *spec};
        int rc = send_delivery(s, &d, false, now_ms);
        if (rc < 0)
            count_drop(s);
        return rc;
    }
    struct session_extra *x = session__extra(s);
    if (!x) {
        count_drop(s);
        return -ERR_NOMEM;
    }
    bool window_open =
        s->online && !x->queue_head && x->inflight_count < client__send_window(s->client);
    if (!window_open && !congestion_admit(s, msg, now_ms)) {
        count_drop(s);
        return -ERR_QUOTA_EXCEEDED;
    }
    struct delivery *d = mem_calloc(&x->acct, sizeof(*d));
    if (!d) {
        count_drop(s);
        return -ERR_NOMEM;
    }
    d->msg = message_ref(msg);
    d->spec = *spec;
    if (window_open) {
        start_inflight(s, d, now_ms);
    } else {
        queue_push(x, d);
        persist_dlv_put(s, d);
    }
    return 0;
}

/* Moves the shared deliveries of one list out; returns the new tail. */
static struct delivery *handoff_list(struct session *s, struct delivery **head, bool inflight,
                                     session_handoff_fn fn, void *ctx)
{
    struct session_extra *x = s->x;
    struct delivery *tail = NULL;
    struct delivery **pp = head;
    while (*pp) {
        struct delivery *d = *pp;
        /* Past PUBREC the client has the message: it stays ours. */
        bool movable = d->spec.shared && !(inflight && d->state == DLV_WAIT_PUBCOMP);
        if (!movable) {
            tail = d;
            pp = &d->next;
            continue;
        }
        *pp = d->next;
        if (inflight) {
            x->inflight_count--;
        } else {
            x->queued_count--;
            x->queued_bytes -= message_size(d->msg);
        }
        persist_dlv_gone(s, d);
        fn(ctx, s, d->msg, &d->spec); /* takes the message reference */
        mem_free(&x->acct, d, sizeof(*d));
    }
    return tail;
}

void session_handoff_shared(struct session *s, session_handoff_fn fn, void *ctx)
{
    struct session_extra *x = s->x;
    if (!x)
        return;
    x->inflight_tail = handoff_list(s, &x->inflight_head, true, fn, ctx);
    x->queue_tail = handoff_list(s, &x->queue_head, false, fn, ctx);
}

/* ---- acknowledgements ------------------------------------------------- */

/* Finds the in-flight delivery with this id; *prev gets its predecessor. */
static struct delivery *inflight_find(struct session *s, uint16_t id, struct delivery **prev)
{
    struct delivery *p = NULL;
    for (struct delivery *d = s->x ? s->x->inflight_head : NULL; d; p = d, d = d->next) {
        if (d->packet_id == id) {
            *prev = p;
            return d;
        }
    }
    return NULL;
}

static void inflight_remove(struct session *s, struct delivery *d, struct delivery *prev)
{
    struct session_extra *x = s->x;
    if (prev)
        prev->next = d->next;
    else
        x->inflight_head = d->next;
    if (x->inflight_tail == d)
        x->inflight_tail = prev;
    x->inflight_count--;
    delivery_free(s, d);
}

/* An ack for an id we do not have in flight is ignored: after a resend the
 * client may acknowledge the same id twice, and that is no violation. */
int session_on_puback(struct session *s, uint16_t packet_id, uint64_t now_ms)
{
    struct delivery *prev;
    struct delivery *d = inflight_find(s, packet_id, &prev);
    if (d && d->state == DLV_WAIT_PUBACK) {
        inflight_remove(s, d, prev);
        pump(s, now_ms);
    }
    return 0;
}

int session_on_pubrec(struct session *s, uint16_t packet_id, uint8_t reason, uint64_t now_ms)
{
    struct delivery *prev;
    struct delivery *d = inflight_find(s, packet_id, &prev);
    if (!d || (d->state != DLV_WAIT_PUBREC && d->state != DLV_WAIT_PUBCOMP)) {
        /* [MQTT-4.3.3] answer anyway so the client can finish its flow;
         * v5 says the id was not found. */
        return send_pubrel(s, packet_id, 0x92);
    }
    if (reason >= 0x80) {
        /* The client refused it: the flow ends here [MQTT-4.3.3-4]. */
        inflight_remove(s, d, prev);
        pump(s, now_ms);
        return 0;
    }
    d->state = DLV_WAIT_PUBCOMP;
    persist_dlv_update(s, d);
    return send_pubrel(s, packet_id, 0);
}

int session_on_pubcomp(struct session *s, uint16_t packet_id, uint64_t now_ms)
{
    struct delivery *prev;
    struct delivery *d = inflight_find(s, packet_id, &prev);
    if (d && d->state == DLV_WAIT_PUBCOMP) {
        inflight_remove(s, d, prev);
        pump(s, now_ms);
    }
    return 0;
}

/* ---- incoming QoS 2 ids ----------------------------------------------- */

bool session_rx_qos2_has(const struct session *s, uint16_t packet_id)
{
    const struct session_extra *x = s->x;
    for (uint32_t i = 0; x && i < x->rx_qos2_count; i++)
        if (x->rx_qos2[i] == packet_id)
            return true;
    return false;
}

uint32_t session_rx_qos2_count(const struct session *s)
{
    return s->x ? s->x->rx_qos2_count : 0;
}

int session_rx_qos2_add(struct session *s, uint16_t packet_id)
{
    struct session_extra *x = session__extra(s);
    if (!x)
        return -ERR_NOMEM;
    if (x->rx_qos2_count == x->rx_qos2_cap) {
        uint32_t cap = x->rx_qos2_cap ? x->rx_qos2_cap * 2 : 4;
        uint16_t *v = mem_realloc(&x->acct, x->rx_qos2, x->rx_qos2_cap * sizeof(*v),
                                  cap * sizeof(*v));
        if (!v)
            return -ERR_NOMEM;
        x->rx_qos2 = v;
        x->rx_qos2_cap = cap;
    }
    x->rx_qos2[x->rx_qos2_count++] = packet_id;
    persist_rxq(s, packet_id, true);
    return 0;
}

bool session_rx_qos2_remove(struct session *s, uint16_t packet_id)
{
    struct session_extra *x = s->x;
    for (uint32_t i = 0; x && i < x->rx_qos2_count; i++) {
        if (x->rx_qos2[i] == packet_id) {
            x->rx_qos2[i] = x->rx_qos2[--x->rx_qos2_count];
            persist_rxq(s, packet_id, false);
            return true;
        }
    }
    return false;
}

/* ---- start-up --------------------------------------------------------- */

void session_restore_delivery(struct session *s, struct delivery *d)
{
    if (d->state == DLV_QUEUED)
        queue_push(s->x, d);
    else
        inflight_push(s->x, d);
}

/* ---- subscriptions ---------------------------------------------------- */

struct subscription *session_find_sub(const struct session *s, const uint8_t *filter, size_t len)
{
    for (uint32_t i = 0; i < s->nsubs; i++) {
        struct subscription *sub = s->subs[i];
        if (sub->filter_len == len && memcmp(sub->filter, filter, len) == 0)
            return sub;
    }
    return NULL;
}

int session_add_sub(struct session *s, struct subscription *sub)
{
    if (s->nsubs == s->subs_cap) {
        uint32_t cap = s->subs_cap ? s->subs_cap * 2 : 2;
        struct subscription **v = mem_realloc(NULL, s->subs, s->subs_cap * sizeof(*v),
                                              cap * sizeof(*v));
        if (!v)
            return -ERR_NOMEM;
        s->subs = v;
        s->subs_cap = cap;
    }
    s->subs[s->nsubs++] = sub;
    persist_sub_put(s, sub);
    return 0;
}

void session_remove_sub(struct session *s, struct subscription *sub)
{
    persist_sub_del(s, sub);
    for (uint32_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i] == sub) {
            s->subs[i] = s->subs[--s->nsubs];
            break;
        }
    }
    topic_tree_remove(s->core->subs, sub);
}
