/* The per-connection MQTT state machine: one table says which packets each
 * state accepts, one handler per packet type. */
#include "broker/client.h"

#include "broker/auth.h"

#include <stdio.h>
#include <string.h>

#include "broker/config.h"
#include "broker/core_priv.h"
#include "broker/log.h"
#include "broker/mem.h"
#include "broker/message.h"
#include "broker/outq.h"
#include "broker/persist.h"
#include "broker/topic_alias.h"
#include "broker/topic_tree.h"
#include "mqtt/packet.h"
#include "platform/platform.h"

enum client_state {
    CL_AWAIT_CONNECT = 0,
    CL_CONNECTED,
    CL_CLOSING,
    CL__STATES
};

/* Every connection has one, most of them idle, so it holds only what each
 * needs: 96 bytes on 64-bit plus its peer address (288 when the will,
 * aliases, warning and ack state were inline). The rest is in struct
 * client_extra; who the client is (its username) is kept by its session,
 * which needs it while offline anyway. Its allocations are charged to the
 * broker's account: nothing reads or limits a per-client figure, and the
 * 16-byte account was a sixth of an idle client. */
struct client {
    struct core *core;
    void *conn;
    struct session *session; /* NULL until CONNECT, and after a takeover */
    struct outq out;
    const struct listener_config *lc;
    struct client_extra *x; /* NULL until needed (client_extra) */
    uint32_t max_packet_out; /* the client's Maximum Packet Size; 0 = none */
    uint16_t keepalive;      /* seconds, as agreed */
    uint16_t send_window;    /* min(its Receive Maximum, max_inflight_messages) */
    uint8_t state;
    uint8_t version;
    uint8_t alias_out_max;   /* topic aliases we may send, MQTT 5 */
    bool disconnect_sent;
    bool problem_info;       /* MQTT 5 Request Problem Information (default 1) */
    bool throttle;           /* its last PUBLISH filled a subscriber's queue */
    bool session_ends;       /* expiry 0 at CONNECT: DISCONNECT may not revive it */
    uint8_t peer_len;
    char peer[]; /* "1.2.3.4:5678", in the same allocation */
};

/* The parts few connections need, allocated on first use and freed with
 * the client: a will, MQTT 5 topic aliases, a client repeating mistakes,
 * a transport identity (only until CONNECT), acks waiting for the store. */
struct client_extra {
    struct message *will;
    uint32_t will_delay;       /* seconds, MQTT 5 */
    uint32_t warns_suppressed;
    uint64_t warned_at_ms;     /* per-client warnings: at most one per 10 s */
    char *identity;            /* from the transport; becomes the username */
    struct topic_alias_table alias_in, alias_out;
    /* Persistence: acks (PUBACK, PUBREC, PUBCOMP) waiting for the store to
     * commit the records their packet caused, in the order they are due;
     * linked in core->ack_waiters while any wait. */
    struct pending_ack *acks;
    uint32_t acks_head, acks_n, acks_cap;
    struct client *ack_prev, *ack_next;
};

struct pending_ack {
    uint64_t ticket;
    uint16_t packet_id;
    uint8_t type, reason;
    int err;
};

/* The largest incoming packet when message_size_limit is set: the payload
 * limit plus room for the longest topic and a generous property block, so
 * an over-limit payload is still read and refused politely [mosquitto]. */
#define PACKET_OVERHEAD_MAX (5 + 2 + 65535 + 2 + 4 + 65536)
#define PROTOCOL_MAX_PACKET (268435455u + 5u)

struct client *client_new(struct core *core, void *conn, const char *peer,
                          const struct listener_config *lc, uint64_t now_ms)
{
    (void)now_ms;
    if (!peer)
        peer = "?";
    size_t peer_len = strnlen(peer, PLATFORM_ADDR_MAX + 8);
    struct client *c = mem_calloc(NULL, sizeof(*c) + peer_len + 1);
    if (!c)
        return NULL;
    c->core = core;
    c->conn = conn;
    c->lc = lc;
    c->peer_len = (uint8_t)peer_len;
    memcpy(c->peer, peer, peer_len); /* NUL from calloc */
    outq_init(&c->out);
    c->problem_info = true;
    return c;
}

/* The tables take their maxima from the version and CONNECT, so they are
 * set up again there if the extra part came earlier (an identity).
 * max_topic_alias is not reloaded on SIGHUP: what CONNACK announced holds. */
static void aliases_init(struct client *c, struct client_extra *x)
{
    uint16_t in_max = c->version == MQTT_V5 ? c->core->cfg->max_topic_alias : 0;
    topic_alias_init(&x->alias_in, in_max, NULL);
    topic_alias_init(&x->alias_out, c->alias_out_max, NULL);
}

/* The extra part, allocated on first use; NULL when out of memory, which
 * the caller turns into a failure of what needed it. */
static struct client_extra *client_extra(struct client *c)
{
    if (!c->x) {
        struct client_extra *x = mem_calloc(NULL, sizeof(*x));
        if (!x)
            return NULL;
        aliases_init(c, x);
        c->x = x;
    }
    return c->x;
}

static void extra_free(struct client *c)
{
    struct client_extra *x = c->x;
    if (!x)
        return;
    message_unref(x->will);
    topic_alias_clear(&x->alias_in);
    topic_alias_clear(&x->alias_out);
    mem_strfree(NULL, x->identity);
    mem_free(NULL, x, sizeof(*x));
    c->x = NULL;
}

int client_set_identity(struct client *c, const char *identity)
{
    struct client_extra *x = client_extra(c);
    char *copy = x ? mem_strndup(NULL, identity, strlen(identity)) : NULL;
    if (!copy)
        return -ERR_NOMEM;
    mem_strfree(NULL, x->identity);
    x->identity = copy;
    return 0;
}

bool client_throttle_requested(struct client *c)
{
    bool t = c->throttle;
    c->throttle = false;
    return t;
}

struct outq *client_outq(struct client *c)
{
    return &c->out;
}

bool client_connected(const struct client *c)
{
    return c->state == CL_CONNECTED;
}

uint32_t client_max_packet_in(const struct client *c)
{
    uint32_t max = PROTOCOL_MAX_PACKET;
    uint32_t limit = c->core->cfg->message_size_limit;
    if (limit && limit < PROTOCOL_MAX_PACKET - PACKET_OVERHEAD_MAX)
        max = limit + PACKET_OVERHEAD_MAX;
    if (c->core->cfg->max_packet_size && c->core->cfg->max_packet_size < max)
        max = c->core->cfg->max_packet_size;
    return max;
}

uint32_t client_keepalive_ms(const struct client *c)
{
    if (c->state != CL_CONNECTED)
        return 0;
    /* [MQTT-3.1.2-24]: one and a half times the keep alive. */
    return (uint32_t)c->keepalive * 1500u;
}

const char *client_name(const struct client *c)
{
    return c->session ? c->session->client_id : c->peer;
}

/* ---- per-client warnings ---------------------------------------------- */

/* One client repeating a mistake (publishing too large, or where it may
 * not) must not fill the log: at most one such line per client per 10 s,
 * the next one saying how many were skipped (in note). Out of memory for
 * the bookkeeping, the line is skipped too. */
#define CLIENT_WARN_INTERVAL_MS 10000u

static bool warn_allowed(struct client *c, uint64_t now_ms, char *note, size_t cap)
{
    struct client_extra *x = client_extra(c);
    if (!x)
        return false;
    if (x->warned_at_ms && now_ms - x->warned_at_ms < CLIENT_WARN_INTERVAL_MS) {
        x->warns_suppressed++;
        return false;
    }
    note[0] = '\0';
    if (x->warns_suppressed)
        snprintf(note, cap, " (%u similar lines skipped)", x->warns_suppressed);
    x->warns_suppressed = 0;
    x->warned_at_ms = now_ms ? now_ms : 1;
    return true;
}

/* ---- output ----------------------------------------------------------- */

/* The properties block of the packets that carry a Reason String. */
static struct mqtt_props *reason_props(struct mqtt_packet *p)
{
    switch (p->type) {
    case MQTT_CONNACK: return &p->u.connack.props;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: return &p->u.ack.props;
    case MQTT_DISCONNECT: return &p->u.reason.props;
    default: return NULL;
    }
}

static int send_packet(struct client *c, const struct mqtt_packet *p)
{
    uint8_t version = c->version ? c->version : MQTT_V311;
    int size = mqtt_encode(p, version, NULL, 0);
    if (size < 0)
        return size;
    if (c->max_packet_out && (uint32_t)size > c->max_packet_out) {
        /* A Reason String is the first thing to go [MQTT-3.2.2-19]. */
        struct mqtt_packet bare = *p;
        struct mqtt_props *props = reason_props(&bare);
        if (!props || !(props->present & MQTT_PROP_BIT(MQTT_PROP_REASON_STRING)))
            return -ERR_PACKET_TOO_LARGE;
        props->present &= ~MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
        return send_packet(c, &bare);
    }
    uint8_t *buf = outq_reserve(&c->out, (size_t)size);
    if (!buf)
        return -ERR_NOMEM;
    mqtt_encode(p, version, buf, (size_t)size);
    c->core->io.wants_write(c->core->io.ctx, c->conn);
    return 0;
}

/* ---- what the session sends through its client (core_priv.h) -------- */

uint8_t client__version(const struct client *c)
{
    return c->version;
}

uint16_t client__send_window(const struct client *c)
{
    return c->send_window;
}

void client__close(struct client *c, int err)
{
    c->core->io.close(c->core->io.ctx, c->conn, err);
}

/* A PUBLISH to an MQTT 5 client that allows topic aliases: a topic sent
 * before goes as its alias alone; a new one carries both, and the alias
 * counts only once that packet is really queued. */
static int send_aliased(struct client *c, struct mqtt_packet *p)
{
    /* Without memory for the table the topic goes in full: a sender may
     * always leave the alias out. */
    struct client_extra *x = client_extra(c);
    if (!x)
        return send_packet(c, p);
    bool fresh = false;
    struct mqtt_publish *pub = &p->u.publish;
    uint16_t alias = topic_alias_for(&x->alias_out, pub->topic.ptr, (uint16_t)pub->topic.len,
                                     &fresh);
    if (alias) {
        pub->props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
        pub->props.topic_alias = alias;
        if (!fresh)
            pub->topic.len = 0;
    }
    int rc = send_packet(c, p);
    /* If remembering fails the table does not advance, and the next send
     * of this topic maps the same alias again: still correct. */
    if (rc == 0 && alias && fresh)
        (void)topic_alias_set(&x->alias_out, alias, pub->topic);
    return rc;
}

int client__send(struct client *c, struct mqtt_packet *p)
{
    if (p->type == MQTT_PUBLISH && c->alias_out_max)
        return send_aliased(c, p);
    return send_packet(c, p);
}

/* Adds the message of err as a Reason String where the client allows one:
 * always on CONNACK and DISCONNECT, on acks only when it asked for problem
 * information [MQTT-3.1.2-29]. */
static void add_reason_string(const struct client *c, struct mqtt_packet *p, int err)
{
    struct mqtt_props *props = reason_props(p);
    if (c->version != MQTT_V5 || !props || !err)
        return;
    if (!c->problem_info && p->type != MQTT_CONNACK && p->type != MQTT_DISCONNECT)
        return;
    const char *msg = mqtt_err_message(err);
    props->present |= MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
    props->reason_string = (struct mqtt_bytes){(const uint8_t *)msg, (uint32_t)strlen(msg)};
}

/* err, when non-zero, explains a failure reason code to v5 clients. */
static int send_ack(struct client *c, uint8_t type, uint16_t packet_id, uint8_t reason, int err)
{
    struct mqtt_packet p = {.type = type, .flags = type == MQTT_PUBREL ? 0x2 : 0};
    p.u.ack.packet_id = packet_id;
    p.u.ack.reason = c->version == MQTT_V5 ? reason : 0;
    add_reason_string(c, &p, err);
    return send_packet(c, &p);
}

/* The acknowledgement policy with persistence on (docs/persistence.md): a
 * PUBACK/PUBREC/PUBCOMP goes out only once the store has committed every
 * record queued so far (those this packet caused among them), so an
 * acknowledged message survives a kill -9. Acks of one client keep their
 * order. With persistence off this is send_ack. */
static int send_ack_durable(struct client *c, uint8_t type, uint16_t packet_id, uint8_t reason,
                            int err)
{
    struct core *core = c->core;
    if (!core->persist)
        return send_ack(c, type, packet_id, reason, err);
    uint64_t ticket = persist_ticket(core);
    struct client_extra *x = c->x;
    if ((!x || x->acks_n == x->acks_head) && ticket <= persist_done(core))
        return send_ack(c, type, packet_id, reason, err);
    if (!(x = client_extra(c)))
        return -ERR_NOMEM;
    if (x->acks_head && x->acks_n == x->acks_cap) {
        memmove(x->acks, x->acks + x->acks_head, (x->acks_n - x->acks_head) * sizeof(*x->acks));
        x->acks_n -= x->acks_head;
        x->acks_head = 0;
    }
    if (x->acks_n == x->acks_cap) {
        uint32_t cap = x->acks_cap ? x->acks_cap * 2 : 8;
        struct pending_ack *v = mem_realloc(NULL, x->acks, x->acks_cap * sizeof(*v),
                                            cap * sizeof(*v));
        if (!v)
            return -ERR_NOMEM;
        x->acks = v;
        x->acks_cap = cap;
    }
    x->acks[x->acks_n++] = (struct pending_ack){ticket, packet_id, type, reason, err};
    if (!x->ack_prev && core->ack_waiters != c) {
        x->ack_next = core->ack_waiters;
        if (x->ack_next)
            x->ack_next->x->ack_prev = c;
        core->ack_waiters = c;
    }
    return 0;
}

static void ack_unlink(struct client *c)
{
    struct core *core = c->core;
    struct client_extra *x = c->x;
    if (!x || (!x->ack_prev && core->ack_waiters != c))
        return;
    if (x->ack_prev)
        x->ack_prev->x->ack_next = x->ack_next;
    else
        core->ack_waiters = x->ack_next;
    if (x->ack_next)
        x->ack_next->x->ack_prev = x->ack_prev;
    x->ack_prev = x->ack_next = NULL;
    mem_free(NULL, x->acks, x->acks_cap * sizeof(*x->acks));
    x->acks = NULL;
    x->acks_head = x->acks_n = x->acks_cap = 0;
}

void client__acks_flush(struct core *core, uint64_t done, uint64_t now_ms)
{
    struct client *c = core->ack_waiters;
    while (c) {
        struct client_extra *x = c->x; /* every waiter has one */
        struct client *next = x->ack_next;
        while (x->acks_head < x->acks_n && x->acks[x->acks_head].ticket <= done) {
            const struct pending_ack *a = &x->acks[x->acks_head++];
            /* A client on its way out gets no more acks. */
            if (c->state != CL_CONNECTED)
                continue;
            int rc = send_ack(c, a->type, a->packet_id, a->reason, a->err);
            if (rc < 0) {
                client_disconnect(c, rc, now_ms);
                client__close(c, rc);
            }
        }
        if (x->acks_head == x->acks_n)
            ack_unlink(c);
        c = next;
    }
}

/* v3 CONNACK return codes for the reasons a CONNECT is refused. */
static uint8_t connack_v3_code(int err)
{
    switch (err < 0 ? -err : err) {
    case ERR_PROTOCOL_VERSION: return 0x01;
    case ERR_CLIENT_ID_INVALID: return 0x02;
    case ERR_SERVER_BUSY: return 0x03;
    case ERR_BAD_CREDENTIALS: return 0x04;
    case ERR_NOT_AUTHORIZED: return 0x05;
    default: return 0x03;
    }
}

/* Refuses a CONNECT: CONNACK with the reason, then the caller closes. */
static int refuse_connect(struct client *c, int err)
{
    /* A refused client never had a session: its will must not go out. */
    if (c->x) {
        message_unref(c->x->will);
        c->x->will = NULL;
    }
    struct mqtt_packet p = {.type = MQTT_CONNACK};
    p.u.connack.reason = c->version == MQTT_V5 ? mqtt_err_reason(err) : connack_v3_code(err);
    add_reason_string(c, &p, err);
    send_packet(c, &p);
    log_printf(LOG_T_NOTICE, "Client %s refused: %s", c->peer, mqtt_err_message(err));
    return err;
}

void client_disconnect(struct client *c, int err, uint64_t now_ms)
{
    (void)now_ms;
    if (c->state == CL_CONNECTED && c->version == MQTT_V5 && !c->disconnect_sent) {
        struct mqtt_packet p = {.type = MQTT_DISCONNECT};
        p.u.reason.reason = mqtt_err_reason(err);
        add_reason_string(c, &p, err);
        send_packet(c, &p);
        c->disconnect_sent = true;
    }
    c->state = CL_CLOSING;
}

/* ---- CONNECT ---------------------------------------------------------- */

static int assign_client_id(struct client *c, char *buf, size_t cap)
{
    struct core *core = c->core;
    /* Unique among live sessions; the seed keeps ids unguessable enough
     * that one client cannot pre-empt another's assigned id. */
    for (int tries = 0; tries < 16; tries++) {
        uint64_t x = core->id_seed ^ (++core->id_counter * 0x9e3779b97f4a7c15ULL);
        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        int n = snprintf(buf, cap, "auto-%016llx%08llx", (unsigned long long)x,
                         (unsigned long long)(core->id_counter & 0xffffffffu));
        if (!core__session_find(core, (const uint8_t *)buf, (size_t)n))
            return n;
    }
    return -ERR_CLIENT_ID_INVALID;
}

static int make_will(struct client *c, const struct mqtt_connect *cp, uint64_t now_ms)
{
    if (!cp->will_flag)
        return 0;
    int rc = mqtt_topic_name_validate(cp->will_topic.ptr, cp->will_topic.len);
    if (rc < 0)
        return rc;
    uint64_t expiry = 0;
    const struct mqtt_props *wp = NULL;
    if (cp->will_qos > c->core->cfg->max_qos)
        return -ERR_QOS_NOT_SUPPORTED; /* [MQTT-3.2.2-12] */
    if (cp->will_retain && !c->core->cfg->retain_available)
        return -ERR_RETAIN_NOT_SUPPORTED; /* [MQTT-3.2.2-13] */
    struct client_extra *x = client_extra(c);
    if (!x)
        return -ERR_NOMEM;
    if (c->version == MQTT_V5) {
        wp = &cp->will_props;
        if (wp->present & MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY))
            expiry = now_ms + (uint64_t)wp->message_expiry * 1000;
        if (wp->present & MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY))
            x->will_delay = wp->will_delay;
    }
    x->will = message_new(&cp->will_topic, &cp->will_payload, wp, cp->will_qos, cp->will_retain,
                          expiry, NULL);
    return x->will ? 0 : -ERR_NOMEM;
}

/* Who the client is: the transport's identity (certificate or PSK) when it
 * has one, else CONNECT's user name and password, checked against the
 * listener's (or global) password file and allow_anonymous. *username gets
 * a copy of who it is (NULL: anonymous), which the session will own. */
static int authenticate(struct client *c, const struct mqtt_connect *cp, char **username)
{
    const struct auth *a = core_auth_for(c->core, c->lc);
    const uint8_t *user = NULL, *pass = NULL;
    size_t ulen = 0, plen = 0;
    const char *identity = c->x ? c->x->identity : NULL;
    bool verified = identity != NULL;
    if (verified) {
        user = (const uint8_t *)identity;
        ulen = strlen(identity);
    } else if (cp->username_flag) {
        user = cp->username.ptr;
        ulen = cp->username.len;
        if (cp->password_flag) {
            pass = cp->password.ptr;
            plen = cp->password.len;
        }
    }
    if (a) {
        int rc = auth_connect_check(a, user, ulen, pass, plen, verified);
        if (rc < 0)
            return rc;
    }
    if (user) {
        *username = mem_strndup(NULL, user, ulen);
        if (!*username)
            return -ERR_SERVER_BUSY;
    }
    return 0;
}

/* The ACL decides, where there is one. id and user: CONNECT's, for its
 * will, before the session exists; after, the session's id is used. */
static bool acl_allows(const struct client *c, struct mqtt_bytes id, const char *user,
                       const uint8_t *topic, size_t len, enum auth_access access)
{
    const struct auth *a = core_auth_for(c->core, c->lc);
    if (!a || !auth_has_acl(a))
        return true;
    char idbuf[256];
    const char *cid = c->session ? c->session->client_id : NULL;
    if (!cid) {
        if (id.len >= sizeof(idbuf))
            return false; /* ids that long are not in anyone's ACL patterns */
        memcpy(idbuf, id.ptr, id.len);
        idbuf[id.len] = '\0';
        cid = idbuf;
    }
    return auth_acl_check(a, cid, user, topic, len, access) == 0;
}

/* Ends the other connection that holds this client id [MQTT-3.1.4-3]. */
static void take_over(struct client *c, struct session *s, uint64_t now_ms)
{
    struct client *old = s->client;
    log_printf(LOG_T_NOTICE, "Client %s already connected, closing old connection.",
               s->client_id);
    client_disconnect(old, -ERR_TAKEN_OVER, now_ms);
    old->session = NULL;
    old->state = CL_CLOSING;
    session_detach(s);
    s->client = NULL;
    c->core->stats.clients_connected--;
    c->core->io.close(c->core->io.ctx, old->conn, -ERR_TAKEN_OVER);
}

static uint32_t session_expiry_for(const struct client *c, const struct mqtt_connect *cp)
{
    if (c->version == MQTT_V5)
        return (cp->props.present & MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY))
                   ? cp->props.session_expiry
                   : 0;
    if (cp->clean_start)
        return 0;
    int64_t exp = c->core->cfg->persistent_client_expiration;
    if (exp < 0 || exp >= (int64_t)SESSION_NEVER_EXPIRES)
        return SESSION_NEVER_EXPIRES;
    return (uint32_t)exp;
}

/* Once authenticated, the transport identity has done its work (the
 * session holds the username). Nothing else in the extra part is used
 * before CONNECT but the will, so without one that part goes too. */
static void drop_identity(struct client *c)
{
    struct client_extra *x = c->x;
    if (!x || !x->identity)
        return;
    mem_strfree(NULL, x->identity);
    x->identity = NULL;
    if (!x->will)
        extra_free(c);
}

static int on_connect(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    const struct mqtt_connect *cp = &p->u.connect;
    const struct config *cfg = c->core->cfg;
    struct core *core = c->core;
    c->version = cp->version;

    if (c->version == MQTT_V5) {
        const struct mqtt_props *pp = &cp->props;
        if ((pp->present & MQTT_PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFO)) &&
            !pp->request_problem_info)
            c->problem_info = false;
        if (pp->present & MQTT_PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE))
            c->max_packet_out = pp->max_packet_size;
        /* Enhanced authentication: no method is registered yet, so every
         * method is refused as the spec asks [MQTT-4.12.0-1]. */
        if (pp->present & MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD))
            return refuse_connect(c, -ERR_AUTH_METHOD);
        if (pp->present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX))
            c->alias_out_max = (uint8_t)(pp->topic_alias_max < TOPIC_ALIAS_OUT_MAX
                                             ? pp->topic_alias_max
                                             : TOPIC_ALIAS_OUT_MAX);
        if (c->x)
            aliases_init(c, c->x);
    }

    char assigned[48];
    struct mqtt_bytes id = cp->client_id;
    bool id_assigned = false;
    if (id.len == 0) {
        /* 3.1 needs an id; 3.1.1 allows none only with a clean session
         * [MQTT-3.1.3-7, -8]; 5.0 gets one assigned [MQTT-3.1.3-6]. */
        if (c->version == MQTT_V31 || (c->version == MQTT_V311 && !cp->clean_start))
            return refuse_connect(c, -ERR_CLIENT_ID_INVALID);
        int n = assign_client_id(c, assigned, sizeof(assigned));
        if (n < 0)
            return refuse_connect(c, n);
        id = (struct mqtt_bytes){(const uint8_t *)assigned, (uint32_t)n};
        id_assigned = true;
    }

    uint16_t keepalive = cp->keepalive;
    bool server_keepalive = false;
    /* max_keepalive only applies to MQTT 5 clients, which are told the
     * value to use in Server Keep Alive (also when they asked for none);
     * 3.1/3.1.1 have no way to be told, so they keep theirs, as in
     * mosquitto 2.0 (mosquitto.conf(5)). */
    if (c->version == MQTT_V5 && cfg->max_keepalive &&
        (keepalive > cfg->max_keepalive || keepalive == 0)) {
        keepalive = cfg->max_keepalive;
        server_keepalive = true;
    }

    /* Who it is goes to the session, which keeps it for ACL checks (also
     * while offline); the client asks its session. */
    char *username = NULL;
    int rc = authenticate(c, cp, &username);
    if (rc >= 0)
        rc = make_will(c, cp, now_ms);
    if (rc < 0) {
        mem_strfree(NULL, username);
        return refuse_connect(c, rc);
    }
    struct message *will = c->x ? c->x->will : NULL;
    if (will && !acl_allows(c, id, username, will->topic, will->topic_len, AUTH_WRITE)) {
        /* A will it may not publish is dropped, the connection accepted,
         * as mosquitto 2.0 does. */
        log_printf(LOG_T_NOTICE, "Will of %.*s on %s denied by the ACL: dropped.", (int)id.len,
                   (const char *)id.ptr, (const char *)will->topic);
        message_unref(will);
        c->x->will = NULL;
    }
    drop_identity(c);

    struct session *s = core__session_find(core, id.ptr, id.len);
    if (s && s->client)
        take_over(c, s, now_ms);
    if (s && cp->clean_start) {
        core__session_destroy(core, s, now_ms);
        s = NULL;
    }
    bool session_present = s != NULL;
    if (!s) {
        s = session_new(core, id.ptr, id.len);
        if (!s || core__session_insert(core, s) < 0) {
            session_free(s);
            mem_strfree(NULL, username);
            return refuse_connect(c, -ERR_SERVER_BUSY);
        }
    } else {
        core__session_online(core, s);
    }
    s->expiry_interval = session_expiry_for(c, cp);
    c->session_ends = s->expiry_interval == 0;
    s->client = c;
    s->lc = c->lc;
    mem_strfree(NULL, s->username);
    s->username = username;
    persist_session_online(s);
    c->session = s;
    c->keepalive = keepalive;
    uint16_t window = cfg->max_inflight_messages ? cfg->max_inflight_messages : UINT16_MAX;
    if (c->version == MQTT_V5 && (cp->props.present & MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX)) &&
        cp->props.receive_max < window)
        window = cp->props.receive_max;
    c->send_window = window ? window : UINT16_MAX;
    c->state = CL_CONNECTED;

    struct mqtt_packet ack = {.type = MQTT_CONNACK};
    ack.u.connack.session_present = session_present && c->version >= MQTT_V311;
    if (c->version == MQTT_V5) {
        struct mqtt_props *ap = &ack.u.connack.props;
        /* The server's limits, so the client need not find them out by
         * being disconnected [MQTT-3.2.2.3]. */
        if (cfg->max_inflight_messages) {
            ap->present |= MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX);
            ap->receive_max = cfg->max_inflight_messages;
        }
        if (cfg->max_qos < 2) {
            ap->present |= MQTT_PROP_BIT(MQTT_PROP_MAX_QOS);
            ap->max_qos = cfg->max_qos;
        }
        ap->present |= MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) |
                       MQTT_PROP_BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                       MQTT_PROP_BIT(MQTT_PROP_SUB_ID_AVAILABLE) |
                       MQTT_PROP_BIT(MQTT_PROP_SHARED_SUB_AVAILABLE);
        ap->retain_available = cfg->retain_available;
        ap->wildcard_sub_available = 1;
        ap->sub_id_available = 1;
        ap->shared_sub_available = 1;
        if (client_max_packet_in(c) < PROTOCOL_MAX_PACKET) {
            ap->present |= MQTT_PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE);
            ap->max_packet_size = client_max_packet_in(c);
        }
        if (cfg->max_topic_alias) {
            ap->present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX);
            ap->topic_alias_max = cfg->max_topic_alias;
        }
        if (id_assigned) {
            ap->present |= MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID);
            ap->assigned_client_id = (struct mqtt_bytes){(const uint8_t *)s->client_id, s->id_len};
        }
        if (server_keepalive) {
            ap->present |= MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEPALIVE);
            ap->server_keepalive = keepalive;
        }
    }
    rc = send_packet(c, &ack);
    if (rc < 0)
        return rc;

    core->stats.clients_connected++;
    if (core->stats.clients_connected > core->stats.clients_maximum)
        core->stats.clients_maximum = core->stats.clients_connected;
    log_printf(LOG_T_NOTICE, "New client connected from %s as %s (p%u, c%d, k%u).", c->peer,
               s->client_id, (unsigned)c->version, cp->clean_start ? 1 : 0, (unsigned)keepalive);
    session_attach(s, session_present, now_ms);
    return 0;
}

/* ---- PUBLISH and its acknowledgements --------------------------------- */

/* Resolves the topic of a v5 PUBLISH through its Topic Alias, if any
 * [MQTT-3.3.2-12]: an alias with a topic (re)defines it, an alias alone
 * uses it. */
static int resolve_topic(struct client *c, const struct mqtt_publish *pub,
                         struct mqtt_bytes *topic)
{
    *topic = pub->topic;
    if (!(pub->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS)))
        return pub->topic.len ? 0 : -ERR_PROTOCOL; /* an empty topic needs an alias */
    if (pub->topic.len) {
        struct client_extra *x = client_extra(c);
        return x ? topic_alias_set(&x->alias_in, pub->props.topic_alias, pub->topic) : -ERR_NOMEM;
    }
    if (!c->x)
        return -ERR_TOPIC_ALIAS_INVALID; /* none was ever set */
    return topic_alias_get(&c->x->alias_in, pub->props.topic_alias, topic);
}

static int on_publish(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    const struct mqtt_publish *pub = &p->u.publish;
    struct session *s = c->session;
    struct core *core = c->core;
    const struct config *cfg = core->cfg;
    core->stats.messages_received++;
    core->stats.publish_received++;

    struct mqtt_bytes topic = pub->topic;
    if (c->version == MQTT_V5) {
        if (pub->props.sub_id_count)
            return -ERR_PROPERTY_NOT_ALLOWED; /* clients never send one [MQTT-3.3.4-6] */
        int rc = resolve_topic(c, pub, &topic);
        if (rc < 0)
            return rc;
    }
    /* Limits we announced in CONNACK (MQTT 5) or documented (3.1.1). */
    if (pub->qos > cfg->max_qos)
        return -ERR_QOS_NOT_SUPPORTED; /* [MQTT-3.2.2-11] */
    if (pub->retain && !cfg->retain_available)
        return -ERR_RETAIN_NOT_SUPPORTED; /* [MQTT-3.2.2-14] */

    if (pub->qos == 2 && session_rx_qos2_has(s, pub->packet_id))
        return send_ack_durable(c, MQTT_PUBREC, pub->packet_id, 0, 0); /* a resend: once only */

    if (pub->qos == 2 && c->version == MQTT_V5 && cfg->max_inflight_messages &&
        session_rx_qos2_count(s) >= cfg->max_inflight_messages)
        return -ERR_RECEIVE_MAX_EXCEEDED; /* [MQTT-3.3.4-8] */

    uint8_t reason = 0;
    int why = 0;
    uint32_t limit = cfg->message_size_limit;
    /* $SYS belongs to the broker: no client writes there, ACL or not. */
    bool sys_topic = topic.len >= 4 && memcmp(topic.ptr, "$SYS", 4) == 0;
    char note[40];
    if (sys_topic ||
        !acl_allows(c, (struct mqtt_bytes){0}, s->username, topic.ptr, topic.len, AUTH_WRITE)) {
        /* Refused, but acknowledged so the client does not resend it
         * forever: 0x87 tells an MQTT 5 client; 3.1.1 cannot be told. */
        if (warn_allowed(c, now_ms, note, sizeof(note)))
            log_printf(LOG_T_NOTICE, "Denied PUBLISH from %s to %.*s%s.", s->client_id,
                       (int)topic.len, (const char *)topic.ptr, note);
        reason = 0x87;
        why = -ERR_NOT_AUTHORIZED;
    } else if (limit && pub->payload.len > limit) {
        if (warn_allowed(c, now_ms, note, sizeof(note)))
            log_printf(LOG_T_NOTICE, "Dropped too large PUBLISH from %s (%u bytes on %.*s)%s.",
                       s->client_id, pub->payload.len, (int)topic.len, (const char *)topic.ptr,
                       note);
        core->stats.messages_dropped++;
        reason = 0x95; /* as mosquitto answers */
        why = -ERR_PACKET_TOO_LARGE;
    } else {
        uint64_t expiry = 0;
        if (c->version == MQTT_V5 && (pub->props.present & MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY)))
            expiry = now_ms + (uint64_t)pub->props.message_expiry * 1000;
        struct message *m =
            message_new(&topic, &pub->payload, c->version == MQTT_V5 ? &pub->props : NULL,
                        pub->qos, pub->retain, expiry, s);
        if (!m) {
            core->stats.messages_dropped++;
            if (pub->qos == 0)
                return 0;
            if (c->version != MQTT_V5)
                return -ERR_NOMEM; /* no negative ack before v5: close */
            reason = 0x97;
            why = -ERR_NOMEM;
        } else {
            core->congestion_hit = false;
            core->routing_client = true;
            uint32_t reached = router_publish(core, m, now_ms);
            core->routing_client = false;
            message_unref(m);
            if (!reached)
                reason = 0x10; /* no matching subscribers (a success) */
            if (core->congestion_hit && !c->throttle) {
                /* A subscriber's queue is full, or its fan-out goes out in
                 * slices: read no more from this publisher until that is over
                 * (core_io.congestion_cleared). */
                c->throttle = true;
                core->stats.publisher_throttles++;
            }
        }
    }

    if (pub->qos == 1)
        return send_ack_durable(c, MQTT_PUBACK, pub->packet_id, reason, why);
    if (pub->qos == 2) {
        if (reason < 0x80) {
            int rc = session_rx_qos2_add(s, pub->packet_id);
            if (rc < 0)
                return rc;
        }
        return send_ack_durable(c, MQTT_PUBREC, pub->packet_id, reason, why);
    }
    return 0;
}

static int on_puback(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    return session_on_puback(c->session, p->u.ack.packet_id, now_ms);
}

static int on_pubrec(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    return session_on_pubrec(c->session, p->u.ack.packet_id, p->u.ack.reason, now_ms);
}

static int on_pubrel(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    (void)now_ms;
    bool had = session_rx_qos2_remove(c->session, p->u.ack.packet_id);
    return send_ack_durable(c, MQTT_PUBCOMP, p->u.ack.packet_id, had ? 0 : 0x92, 0);
}

static int on_pubcomp(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    return session_on_pubcomp(c->session, p->u.ack.packet_id, now_ms);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------ */

/* Subscribes one filter. Returns the SUBACK reason code; *is_new tells
 * whether it replaced an existing subscription [MQTT-3.8.4-3]. */
static int subscribe_one(struct client *c, struct mqtt_bytes filter, uint8_t options,
                         uint32_t sub_id, bool *is_new)
{
    bool v5 = c->version == MQTT_V5;
    struct mqtt_bytes group, inner;
    int shared = mqtt_share_split(filter.ptr, filter.len, &group, &inner);
    if (shared < 0)
        return v5 ? mqtt_err_reason(shared) : 0x80;
    if (shared && (options & MQTT_SUBOPT_NO_LOCAL))
        return -ERR_PROTOCOL; /* [MQTT-3.8.3-4] */
    const struct mqtt_bytes *f = shared ? &inner : &filter;
    int rc = mqtt_topic_filter_validate(f->ptr, f->len);
    if (rc < 0)
        return v5 ? mqtt_err_reason(rc) : 0x80;
    if (!acl_allows(c, (struct mqtt_bytes){0}, c->session->username, f->ptr, f->len,
                    AUTH_SUBSCRIBE))
        return v5 ? 0x87 : 0x80;

    /* The granted QoS is what the server supports at most [MQTT-3.2.2-9]. */
    if ((options & MQTT_SUBOPT_QOS_MASK) > c->core->cfg->max_qos)
        options = (uint8_t)((options & ~MQTT_SUBOPT_QOS_MASK) | c->core->cfg->max_qos);
    struct session *s = c->session;
    struct subscription *sub = session_find_sub(s, filter.ptr, filter.len);
    *is_new = sub == NULL;
    if (sub) {
        sub->options = options;
        sub->sub_id = sub_id;
        persist_sub_put(s, sub);
    } else {
        sub = topic_tree_add(c->core->subs, filter.ptr, filter.len, s, options, sub_id);
        if (!sub)
            return v5 ? 0x97 : 0x80;
        if (session_add_sub(s, sub) < 0) {
            topic_tree_remove(c->core->subs, sub);
            return v5 ? 0x97 : 0x80;
        }
    }
    log_printf(LOG_T_SUBSCRIBE, "%s %u %.*s", s->client_id, (unsigned)(options & 3),
               (int)filter.len, (const char *)filter.ptr);
    return sub->options & MQTT_SUBOPT_QOS_MASK;
}

static int on_subscribe(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    const struct mqtt_subscribe *sp = &p->u.subscribe;
    uint32_t sub_id = 0;
    if (c->version == MQTT_V5 && (sp->props.present & MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)))
        sub_id = sp->props.sub_id;

    /* reasons[i], then a byte per entry saying whether it was new. */
    size_t n = sp->count;
    uint8_t *reasons = mem_alloc(NULL, n * 2);
    if (!reasons)
        return -ERR_NOMEM;
    uint8_t *is_new = reasons + n;
    size_t pos = 0, i = 0;
    struct mqtt_bytes filter;
    uint8_t options;
    int rc = 0;
    while (i < n && mqtt_subscribe_next(sp, &pos, &filter, &options)) {
        bool fresh = false;
        int r = subscribe_one(c, filter, options, sub_id, &fresh);
        if (r < 0) {
            rc = r;
            break;
        }
        reasons[i] = (uint8_t)r;
        is_new[i] = fresh;
        i++;
    }
    if (rc == 0) {
        struct mqtt_packet ack = {.type = MQTT_SUBACK};
        ack.u.suback.packet_id = sp->packet_id;
        ack.u.suback.count = (uint16_t)n;
        ack.u.suback.reasons = reasons;
        rc = send_packet(c, &ack);
    }
    /* Retained messages follow the SUBACK, per the retain handling option:
     * 0 always, 1 only for a new subscription, 2 never [MQTT-3.3.1-9..11];
     * never for shared subscriptions [MQTT-3.8.4-?]. */
    pos = 0;
    for (i = 0; rc == 0 && i < n && mqtt_subscribe_next(sp, &pos, &filter, &options); i++) {
        if (reasons[i] >= 0x80)
            continue;
        uint8_t rh = (options & MQTT_SUBOPT_RETAIN_HANDLING_MASK) >> MQTT_SUBOPT_RETAIN_HANDLING_SHIFT;
        if (rh == 2 || (rh == 1 && !is_new[i]))
            continue;
        struct mqtt_bytes group, inner;
        if (mqtt_share_split(filter.ptr, filter.len, &group, &inner) != 0)
            continue;
        router_send_retained(c->core, c->session, filter.ptr, filter.len, reasons[i], sub_id,
                             now_ms);
    }
    mem_free(NULL, reasons, n * 2);
    return rc;
}

static int on_unsubscribe(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    (void)now_ms;
    const struct mqtt_subscribe *sp = &p->u.subscribe;
    size_t n = sp->count;
    uint8_t *reasons = mem_alloc(NULL, n);
    if (!reasons)
        return -ERR_NOMEM;
    size_t pos = 0, i = 0;
    struct mqtt_bytes filter;
    while (i < n && mqtt_unsubscribe_next(sp, &pos, &filter)) {
        struct subscription *sub = session_find_sub(c->session, filter.ptr, filter.len);
        if (sub)
            session_remove_sub(c->session, sub);
        log_printf(LOG_T_UNSUBSCRIBE, "%s %.*s", c->session->client_id, (int)filter.len,
                   (const char *)filter.ptr);
        reasons[i++] = sub ? 0x00 : 0x11; /* no subscription existed */
    }
    struct mqtt_packet ack = {.type = MQTT_UNSUBACK};
    ack.u.suback.packet_id = sp->packet_id;
    ack.u.suback.count = (uint16_t)n;
    ack.u.suback.reasons = reasons;
    int rc = send_packet(c, &ack);
    mem_free(NULL, reasons, n);
    return rc;
}

/* ---- the rest --------------------------------------------------------- */

static int on_pingreq(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    (void)p;
    (void)now_ms;
    struct mqtt_packet resp = {.type = MQTT_PINGRESP};
    return send_packet(c, &resp);
}

static int on_disconnect(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    (void)now_ms;
    const struct mqtt_reason *r = &p->u.reason;
    if (c->version == MQTT_V5 && (r->props.present & MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY))) {
        /* A session that was to end at disconnect cannot be revived here
         * [MQTT-3.14.2-2]. */
        if (c->session_ends && r->props.session_expiry != 0)
            return -ERR_PROTOCOL;
        c->session->expiry_interval = r->props.session_expiry;
    }
    /* 0x04 "disconnect with will message" keeps it; anything else is a
     * normal disconnect, which discards it [MQTT-3.1.2-10]. */
    if (!(c->version == MQTT_V5 && r->reason == 0x04) && c->x) {
        message_unref(c->x->will);
        c->x->will = NULL;
    }
    c->state = CL_CLOSING;
    c->disconnect_sent = true; /* the client is leaving: nothing to tell it */
    return -ERR_PEER_CLOSED;
}

static int on_auth(struct client *c, const struct mqtt_packet *p, uint64_t now_ms)
{
    (void)c;
    (void)p;
    (void)now_ms;
    /* CONNECT never accepts an authentication method, so AUTH is out of
     * place [MQTT-4.12.0-1]. */
    return -ERR_PROTOCOL;
}

typedef int (*packet_handler)(struct client *c, const struct mqtt_packet *p, uint64_t now_ms);

static const packet_handler handlers[16] = {
    [MQTT_CONNECT] = on_connect,
    [MQTT_PUBLISH] = on_publish,
    [MQTT_PUBACK] = on_puback,
    [MQTT_PUBREC] = on_pubrec,
    [MQTT_PUBREL] = on_pubrel,
    [MQTT_PUBCOMP] = on_pubcomp,
    [MQTT_SUBSCRIBE] = on_subscribe,
    [MQTT_UNSUBSCRIBE] = on_unsubscribe,
    [MQTT_PINGREQ] = on_pingreq,
    [MQTT_DISCONNECT] = on_disconnect,
    [MQTT_AUTH] = on_auth,
};

#define T(type) (1u << (type))
/* Which packet types each state accepts from a client. */
static const uint16_t accepts[CL__STATES] = {
    [CL_AWAIT_CONNECT] = T(MQTT_CONNECT),
    [CL_CONNECTED] = T(MQTT_PUBLISH) | T(MQTT_PUBACK) | T(MQTT_PUBREC) | T(MQTT_PUBREL) |
                     T(MQTT_PUBCOMP) | T(MQTT_SUBSCRIBE) | T(MQTT_UNSUBSCRIBE) |
                     T(MQTT_PINGREQ) | T(MQTT_DISCONNECT) | T(MQTT_AUTH),
    [CL_CLOSING] = 0,
};
#undef T

/* For a CONNECT that failed to decode: the protocol level byte, if the
 * packet says it is MQTT 5, so the refusal can carry a reason code. */
static uint8_t connect_level(const uint8_t *pkt, size_t len)
{
    size_t i = 1;
    while (i < len && i < 5 && (pkt[i] & 0x80))
        i++;
    i++;
    if (i + 7 > len || pkt[i] != 0 || pkt[i + 1] != 4 || memcmp(pkt + i + 2, "MQTT", 4) != 0)
        return 0;
    return pkt[i + 6];
}

int client_on_packet(struct client *c, const uint8_t *pkt, size_t len, uint64_t now_ms)
{
    uint8_t type = pkt[0] >> 4;
    if (!(accepts[c->state] & (1u << type))) {
        int err = c->state == CL_AWAIT_CONNECT ? -ERR_FIRST_NOT_CONNECT
                  : type == MQTT_CONNECT       ? -ERR_SECOND_CONNECT
                                               : -ERR_PROTOCOL;
        if (c->state == CL_CLOSING)
            return -ERR_PEER_CLOSED;
        client_disconnect(c, err, now_ms);
        return err;
    }
    struct mqtt_packet p;
    int rc = mqtt_decode(pkt, len, c->version, &p);
    if (rc < 0) {
        if (c->state == CL_AWAIT_CONNECT) {
            uint8_t level = connect_level(pkt, len);
            if (rc == -ERR_PROTOCOL_VERSION || level == MQTT_V5) {
                c->version = level == MQTT_V5 ? MQTT_V5 : MQTT_V311;
                return refuse_connect(c, rc);
            }
        }
        log_printf(LOG_T_NOTICE, "Client %s sent a bad packet: %s", client_name(c),
                   mqtt_err_message(rc));
        client_disconnect(c, rc, now_ms);
        return rc;
    }
    rc = handlers[type](c, &p, now_ms);
    if (rc < 0 && rc != -ERR_PEER_CLOSED) {
        if (c->state == CL_CONNECTED)
            log_printf(LOG_T_NOTICE, "Client %s closed: %s", client_name(c),
                       mqtt_err_message(rc));
        client_disconnect(c, rc, now_ms);
    }
    return rc;
}

void client_free(struct client *c, int err, uint64_t now_ms)
{
    if (!c)
        return;
    struct core *core = c->core;
    struct session *s = c->session;
    if (s && s->client == c) {
        if (err && err != -ERR_PEER_CLOSED)
            log_printf(LOG_T_NOTICE, "Client %s disconnected: %s", s->client_id,
                       mqtt_err_message(err));
        else
            log_printf(LOG_T_NOTICE, "Client %s disconnected.", s->client_id);
        session_detach(s);
        s->client = NULL;
        core->stats.clients_connected--;
        router_handoff_shared(core, s, now_ms);
        /* A delayed will waits in the session, which publishes it when the
         * delay or the session ends, whichever comes first; a reconnect
         * cancels it [MQTT-3.1.3-9]. Without memory to keep it there it
         * goes out now, below, rather than never. */
        struct client_extra *x = c->x;
        struct session_extra *sx;
        if (x && x->will && x->will_delay && s->expiry_interval && (sx = session__extra(s))) {
            sx->will = x->will;
            sx->will_at_ms = now_ms + (uint64_t)x->will_delay * 1000;
            x->will = NULL;
        }
        core__session_offline(core, s, now_ms);
    }
    if (c->x && c->x->will) {
        /* The will is published unless a normal DISCONNECT removed it
         * [MQTT-3.1.2-8]. */
        router_publish(core, c->x->will, now_ms);
    }
    ack_unlink(c); /* acks still waiting for a commit are dropped */
    extra_free(c);
    outq_clear(&c->out);
    mem_free(NULL, c, sizeof(*c) + c->peer_len + 1);
}
