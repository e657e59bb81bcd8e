/* A session: what the broker keeps for one client id across connections —
 * its subscriptions, the messages queued and in flight to it, the QoS 2
 * packet ids it sent us that await PUBREL, and when it expires.
 *
 * While a client is connected the session sends PUBLISH/PUBREL through it
 * (client__send encodes them straight into its out-queue); while offline, QoS 1/2
 * deliveries wait in its queue (bounded by max_queued_messages and
 * max_queued_bytes) and QoS 0 ones are dropped, as mosquitto does by
 * default. No I/O here either. */
#ifndef LOOPBOT_BROKER_SESSION_H
#define LOOPBOT_BROKER_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/mem.h"

struct client;
struct core;
struct message;
struct listener_config;
struct subscription;

#define SESSION_NEVER_EXPIRES UINT32_MAX
/* Out-queue bytes over which a client counts as not reading (QoS 0 to it is
 * dropped), and how long it may stay so before it is disconnected. */
#define SESSION_OUT_SOFT_LIMIT (1024u * 1024u)
#define SESSION_SLOW_CLOSE_MS 30000u
/* How far an online session's queue may go past max_queued_messages while
 * the publishers feeding it are being throttled: enough for every
 * publisher's packets already read in the same loop turn. */
#define SESSION_QUEUE_SLACK 10000u
#define SESSION_MAX_SUB_IDS 4 /* per delivery; more overlapping ids are rare */

enum delivery_state {
    DLV_QUEUED = 0,
    DLV_WAIT_PUBACK,  /* QoS 1 sent */
    DLV_WAIT_PUBREC,  /* QoS 2 sent */
    DLV_WAIT_PUBCOMP, /* QoS 2, PUBREL sent */
};

/* How one message is to be sent to one session. */
struct delivery_spec {
    uint8_t qos;  /* granted: min(subscription, message) */
    bool retain;  /* the flag as it is to be sent */
    bool shared;  /* reached only through $share subscriptions */
    uint8_t n_sub_ids;
    uint32_t sub_ids[SESSION_MAX_SUB_IDS];
};

struct delivery {
    struct delivery *next;
    struct message *msg;
    uint16_t packet_id;
    uint8_t state;
    struct delivery_spec spec;
    uint64_t seq; /* persistence: its row in the store (order in the session); 0 = not stored */
};

/* What a session holds only once it has messages to keep (QoS 1/2 in
 * flight or queued, QoS 2 ids awaiting PUBREL, a delayed will) or a slow
 * client to watch; allocated on first use and freed with the session. */
struct session_extra {
    struct mem_account acct; /* its deliveries and rx_qos2 */
    struct delivery *inflight_head, *inflight_tail;
    struct delivery *queue_head, *queue_tail;
    uint64_t queued_bytes;
    uint32_t inflight_count;
    uint32_t queued_count;
    uint16_t *rx_qos2; /* incoming QoS 2 ids awaiting PUBREL */
    uint32_t rx_qos2_count, rx_qos2_cap;
    struct message *will; /* a delayed will waiting for will_at_ms */
    uint64_t will_at_ms;
    uint64_t dlv_seq;     /* persistence: the last delivery seq given out */
    uint64_t slow_since_ms;      /* over the out-queue soft limit since; 0 = not */
    uint64_t congested_since_ms; /* online with a full queue since; 0 = not */
    uint16_t next_packet_id;
    bool will_stored;     /* persistence: the delayed will is in the store */
    bool slow_closing;    /* a close for slowness was asked for */
};

/* Every connected client has one, so it holds only what each needs: 88
 * bytes on 64-bit, a 96-byte malloc chunk (288 when queues, wills and
 * timers were inline; 8 more bytes would cost the next chunk size). While
 * online it sends through its client (client__send), which knows the
 * version, the limits and the aliases, so it keeps no copy of them. The
 * deadline heap (heap_idx, expire_at_ms) and routing (route_slot) stay
 * here: they are read for sessions that hold nothing else. */
struct session {
    struct core *core;
    /* Who it is, for ACL checks on deliveries (also while offline): the
     * listener of its last connection and its authenticated username. */
    const struct listener_config *lc;
    char *username;
    struct client *client; /* while online */
    struct subscription **subs;
    struct session_extra *x; /* NULL until needed (session__extra) */
    uint64_t expire_at_ms;   /* while offline; 0 = never */
    uint32_t nsubs, subs_cap;
    uint32_t expiry_interval; /* seconds once offline; SESSION_NEVER_EXPIRES */
    uint32_t heap_idx;   /* 1-based place in the core's deadline heap; 0 = none */
    uint32_t route_slot; /* routing: its place in core->targets, if this publish reached it */
    uint16_t id_len;
    /* Bits, in the two bytes before client_id: */
    uint16_t online : 1;
    /* Persistence (persist.c): written to the store (expiry > 0 and
     * persistence on). Clean sessions never touch the store. */
    uint16_t persist : 1;
    /* Fan-out slices still to deliver to it (fanout.c) keep the struct
     * alive past session_free, which then only marks it dead. */
    uint16_t dead : 1;
    uint16_t job_refs : 13;
    /* NUL-terminated, in the same allocation: one block per session. */
    char client_id[];
};

struct session *session_new(struct core *core, const uint8_t *client_id, size_t len);
/* Drops subscriptions, queued and inflight messages. Not in the core's
 * table any more (core removes it). */
void session_free(struct session *s);
/* A fan-out slice is done with s: frees it if session_free came first. */
void session_job_release(struct session *s);
#define SESSION_JOB_REFS_MAX 8191u

/* The extra part, allocated on first use; NULL when out of memory (the
 * caller fails what needed it). */
struct session_extra *session__extra(struct session *s);

/* Goes online through s->client (set by the caller); a resumed session
 * resends its in-flight messages with DUP set (PUBREL for those past
 * PUBREC) [MQTT-4.4.0-1], then fills the send window from its queue. */
void session_attach(struct session *s, bool resend, uint64_t now_ms);
void session_detach(struct session *s);

/* One message for this session, as spec says. Returns 0, or a negative
 * error when the message was dropped (queue full, too large for the
 * client, out of memory); drops are counted in the core's stats. */
int session_deliver(struct session *s, struct message *msg, const struct delivery_spec *spec,
                    uint64_t now_ms);

/* The session's client went away: hands each QoS 1/2 message that reached
 * it only through a shared subscription, and that the client has not yet
 * received for sure (queued, or sent without PUBACK/PUBREC), to fn, which
 * takes the reference; the session forgets them [MQTT-4.8.2-5]. */
typedef void (*session_handoff_fn)(void *ctx, struct session *from, struct message *msg,
                                   const struct delivery_spec *spec);
void session_handoff_shared(struct session *s, session_handoff_fn fn, void *ctx);

/* Acknowledgements from the client. Return 0, or a negative error for a
 * protocol violation the caller should close on. */
int session_on_puback(struct session *s, uint16_t packet_id, uint64_t now_ms);
int session_on_pubrec(struct session *s, uint16_t packet_id, uint8_t reason, uint64_t now_ms);
int session_on_pubcomp(struct session *s, uint16_t packet_id, uint64_t now_ms);

/* Incoming QoS 2: remember / forget / ask about a packet id awaiting PUBREL. */
int session_rx_qos2_add(struct session *s, uint16_t packet_id);
bool session_rx_qos2_has(const struct session *s, uint16_t packet_id);
bool session_rx_qos2_remove(struct session *s, uint16_t packet_id);
uint32_t session_rx_qos2_count(const struct session *s);

/* Start-up (persist.c): appends d, read back from the store and allocated
 * on s->x->acct, to the in-flight list (state past DLV_QUEUED) or to the
 * queue. */
void session_restore_delivery(struct session *s, struct delivery *d);

/* Subscriptions the session holds, found by their full filter text. */
struct subscription *session_find_sub(const struct session *s, const uint8_t *filter, size_t len);
int session_add_sub(struct session *s, struct subscription *sub);
void session_remove_sub(struct session *s, struct subscription *sub); /* frees it in the tree */

#endif
