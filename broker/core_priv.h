/* The core's state, shared by the files that make up the core (core.c,
 * client.c, session.c, router.c) and by their tests; nothing else reads it. */
#ifndef LOOPBOT_BROKER_CORE_PRIV_H
#define LOOPBOT_BROKER_CORE_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/core.h"
#include "broker/session.h"
#include "broker/strmap.h"

struct auth;
struct client;
struct config;
struct listener_config;
struct message;
struct mqtt_packet;
struct persist;
struct retain_store;
struct topic_tree;

/* One session reached by a publish, after overlapping subscriptions are
 * merged: the highest QoS, retain-as-published if any asked, every id. */
struct route_target {
    struct session *session;
    bool retain_as_published;
    bool plain; /* reached through a non-shared subscription too */
    struct delivery_spec spec;
};

#define SYS_LOADS 3  /* 1, 5, 15 minutes */
#define SYS_SLOTS 32

/* What $SYS last published, so only changes go out. */
struct sys_state {
    char last[SYS_SLOTS][40];
    uint64_t prev[3]; /* messages received, sent, bytes received */
    double load[3][SYS_LOADS];
    uint64_t last_ms;
};

struct core {
    const struct config *cfg;
    struct core_io io;
    struct topic_tree *subs;
    struct retain_store *retained;
    struct strmap sessions;       /* client id -> struct session */
    struct session **heap; /* offline sessions by next deadline */
    uint32_t heap_n, heap_cap;
    struct core_stats stats;
    struct route_target *targets;
    uint32_t ntargets, targets_cap;
    struct sys_state sys;
    uint32_t congested;   /* online sessions whose queue is over its limit */
    bool congestion_hit;  /* the current publish reached a congested session */
    /* Fan-outs continuing in later turns (fanout.c), oldest first. */
    struct fanout_job *fan_head, *fan_tail;
    /* The message being routed came from a client's PUBLISH (which can be
     * throttled), not from the broker itself (a will, $SYS). */
    bool routing_client;
    /* Who may connect and what they may do (auth.h), when per_listener_settings
     * is false; NULL = everyone, everything. Owned by main.c, which swaps it
     * on SIGHUP (core_set_auth). */
    struct auth *auth;
    uint64_t id_counter; /* assigned client ids */
    /* persistence true: the store's hooks (persist.c); NULL = off, and
     * then every persist_* call returns at once. */
    struct persist *persist;
    struct client *ack_waiters; /* clients with acks waiting for a commit */
    uint64_t id_seed;
};

/* Route one message to every matching subscription (and store it if it is
 * retained). Takes no reference of its own beyond what queues keep.
 * Returns how many sessions it reached. */
uint32_t router_publish(struct core *core, struct message *msg, uint64_t now_ms);

/* Fan-out slicing (fanout.c). The router delivers this many targets of one
 * message at once; the rest, if any, become a job for later turns. */
#define ROUTER_INLINE_DELIVERIES 1024u
/* ...or as many as fit in this time, whichever is fewer (core_io
 * clock_us), the clock read every ROUTER_CLOCK_EVERY deliveries. */
#define ROUTER_INLINE_US 300u
#define ROUTER_CLOCK_EVERY 64u
/* Queues a job for n targets of msg (references taken, publishers
 * throttled until it is done). Returns 0, or a negative error when the
 * caller must deliver them itself. */
int fanout__defer(struct core *core, struct message *msg, const struct route_target *t,
                  uint32_t n);
void fanout__free_all(struct core *core);
/* Send the retained messages matching a new subscription to s. */
void router_send_retained(struct core *core, struct session *s, const uint8_t *filter,
                          size_t len, uint8_t sub_qos, uint32_t sub_id, uint64_t now_ms);

/* The session's client left: its undelivered messages from shared
 * subscriptions go to other online members of those groups [MQTT-4.8.2-5]. */
void router_handoff_shared(struct core *core, struct session *s, uint64_t now_ms);

/* Something is over its limit (a subscriber's queue, the store's backlog):
 * publishers that feed it are throttled (core->congestion_hit) until every
 * such thing has drained; the last removal calls io.congestion_cleared. */
void core__congestion_add(struct core *core);
void core__congestion_remove(struct core *core);

/* Session table and expiry bookkeeping. */
struct session *core__session_find(struct core *core, const uint8_t *id, size_t len);
int core__session_insert(struct core *core, struct session *s);
void core__session_destroy(struct core *core, struct session *s, uint64_t now_ms);
void core__session_offline(struct core *core, struct session *s, uint64_t now_ms);
void core__session_online(struct core *core, struct session *s);
/* Start-up: (re)files a restored offline session by its expire_at_ms and
 * delayed will. Returns 0 or -ERR_NOMEM. */
int core__session_refile(struct core *core, struct session *s);

/* Persistence: sends every deferred ack whose commit ticket is <= done
 * (client.c). */
void client__acks_flush(struct core *core, uint64_t done, uint64_t now_ms);

/* An online session reaches its connection through its client (client.c),
 * which alone knows the protocol version, the client's Maximum Packet Size
 * and its topic aliases, so the session keeps no copy of them. send encodes
 * p into the out-queue (a PUBLISH may get a topic alias, so p may change):
 * 0, -ERR_PACKET_TOO_LARGE [MQTT-3.1.2-24] or -ERR_NOMEM. close asks the
 * glue to close the connection from its deferred pass. */
int client__send(struct client *c, struct mqtt_packet *p);
uint8_t client__version(const struct client *c);
/* min(the client's Receive Maximum, max_inflight_messages) */
uint16_t client__send_window(const struct client *c);
void client__close(struct client *c, int err);

#endif
