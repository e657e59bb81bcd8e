/* A session: what the broker keeps for one client id across connections —
 * its subscriptions, the messages queued and in flight to it, the QoS 2
 * packet ids it sent us that await PUBREL, and when it expires.
 *
 * While a client is connected the session is linked to its out-queue and
 * encodes PUBLISH/PUBREL packets straight into it; while offline, QoS 1/2
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
struct outq;
struct subscription;

#define SESSION_NEVER_EXPIRES UINT32_MAX
#define SESSION_MAX_SUB_IDS 4 /* per delivery; more overlapping ids are rare */

enum delivery_state {
    DLV_QUEUED = 0,
    DLV_WAIT_PUBACK,  /* QoS 1 sent */
    DLV_WAIT_PUBREC,  /* QoS 2 sent */
    DLV_WAIT_PUBCOMP, /* QoS 2, PUBREL sent */
};

struct delivery {
    struct delivery *next;
    struct message *msg;
    uint16_t packet_id;
    uint8_t qos; /* granted: min(subscription, message) */
    uint8_t state;
    bool retain;
    uint8_t n_sub_ids;
    uint32_t sub_ids[SESSION_MAX_SUB_IDS];
};

/* The connection a session is attached to while online. */
struct session_link {
    struct outq *out;
    void *conn;
    uint8_t version;
    uint32_t max_packet;   /* client's Maximum Packet Size */
    uint16_t send_window;  /* min(client Receive Maximum, max_inflight_messages) */
};

struct session {
    struct core *core;
    char *client_id;
    uint16_t id_len;
    bool online;
    struct client *client; /* while online */
    struct session_link link;
    struct mem_account acct;

    struct subscription **subs;
    uint32_t nsubs, subs_cap;

    struct delivery *inflight_head, *inflight_tail;
    uint32_t inflight_count;
    struct delivery *queue_head, *queue_tail;
    uint32_t queued_count;
    uint64_t queued_bytes;
    uint16_t next_packet_id;

    uint16_t *rx_qos2; /* incoming QoS 2 ids awaiting PUBREL */
    uint32_t rx_qos2_count, rx_qos2_cap;

    uint32_t expiry_interval; /* seconds once offline; SESSION_NEVER_EXPIRES */
    uint64_t expire_at_ms;    /* while offline */
    struct session *off_prev, *off_next;

    uint64_t route_gen; /* routing: last publish that reached this session */
    uint32_t route_slot;
};

struct session *session_new(struct core *core, const uint8_t *client_id, size_t len);
/* Drops subscriptions, queued and inflight messages. Not in the core's
 * table any more (core removes it). */
void session_free(struct session *s);

/* Links to a connection; a resumed session resends its in-flight messages
 * with DUP set (PUBREL for those past PUBREC) [MQTT-4.4.0-1], then fills
 * the send window from its queue. */
void session_attach(struct session *s, const struct session_link *link, bool resend,
                    uint64_t now_ms);
void session_detach(struct session *s);

/* One message for this session, at qos (already min'ed with the
 * subscription), retain flag as it should be sent, and the matching
 * subscription identifiers. Returns 0, or a negative error when the message
 * was dropped (queue full, too large for the client, out of memory); drops
 * are counted in the core's stats. */
int session_deliver(struct session *s, struct message *msg, uint8_t qos, bool retain,
                    const uint32_t *sub_ids, uint8_t n_sub_ids, uint64_t now_ms);

/* Acknowledgements from the client. Return 0, or a negative error for a
 * protocol violation the caller should close on. */
int session_on_puback(struct session *s, uint16_t packet_id, uint64_t now_ms);
int session_on_pubrec(struct session *s, uint16_t packet_id, uint8_t reason, uint64_t now_ms);
int session_on_pubcomp(struct session *s, uint16_t packet_id, uint64_t now_ms);

/* Incoming QoS 2: remember / forget / ask about a packet id awaiting PUBREL. */
int session_rx_qos2_add(struct session *s, uint16_t packet_id);
bool session_rx_qos2_has(const struct session *s, uint16_t packet_id);
bool session_rx_qos2_remove(struct session *s, uint16_t packet_id);

/* Subscriptions the session holds, found by their full filter text. */
struct subscription *session_find_sub(const struct session *s, const uint8_t *filter, size_t len);
int session_add_sub(struct session *s, struct subscription *sub);
void session_remove_sub(struct session *s, struct subscription *sub); /* frees it in the tree */

#endif
