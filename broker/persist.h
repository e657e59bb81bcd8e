/* The core's side of persistence: one-line hooks called from session.c,
 * core.c, client.c and router.c that turn state changes into store records
 * (store.h), and the start-up load that puts the store's rows back into the
 * core. Every hook returns at once when persistence is off (core->persist
 * NULL) or the session is clean (expiry 0: s->persist false), so clean
 * sessions and persistence false cost one branch.
 *
 * No I/O here either: records go to the store's queue; main.c watches the
 * store's completion fd and calls persist_completed. */
#ifndef LOOPBOT_BROKER_PERSIST_H
#define LOOPBOT_BROKER_PERSIST_H

#include <stdbool.h>
#include <stdint.h>

struct core;
struct delivery;
struct message;
struct session;
struct store;
struct subscription;

/* Start-up, before the listeners open: loads everything st holds into the
 * core (sessions with their remaining expiry reduced by the downtime,
 * subscriptions, queues in order, retained messages, delayed wills), then
 * attaches st so that the hooks write to it. now_ms: the monotonic clock;
 * wall_ms: the wall clock (ms since 1970), to convert stored absolute
 * times. Returns 0 or a negative error (what loaded stays). */
int persist_attach(struct core *core, struct store *st, uint64_t now_ms, uint64_t wall_ms);
/* Shutdown: stops the hooks (so core_free does not delete what is stored)
 * and returns the store for store_close. NULL when not attached. */
struct store *persist_detach(struct core *core);
/* The store's completion fd fired: sends the acks whose records are now
 * committed, and logs commit errors. */
void persist_completed(struct core *core, uint64_t now_ms);
/* What was loaded, for the start-up log line. */
struct persist_counts {
    uint64_t sessions, subscriptions, deliveries, retained, wills, dropped;
};
void persist_get_counts(const struct core *core, struct persist_counts *out);

/* The acknowledgement policy: the ticket an ack must wait for (the last
 * record queued so far), and the last ticket committed. */
uint64_t persist_ticket(const struct core *core);
uint64_t persist_done(const struct core *core);

/* ---- hooks ---- */
void persist_session_online(struct session *s);  /* after CONNECT settled its expiry */
void persist_session_offline(struct session *s, uint64_t now_ms);
void persist_session_destroy(struct session *s); /* before session_free */
void persist_will_clear(struct session *s);      /* before s->x->will is dropped or published */
void persist_sub_put(struct session *s, const struct subscription *sub);
void persist_sub_del(struct session *s, const struct subscription *sub);
void persist_dlv_put(struct session *s, struct delivery *d);    /* new, queued or in flight */
void persist_dlv_update(struct session *s, const struct delivery *d); /* state or packet id */
void persist_dlv_gone(struct session *s, struct delivery *d);   /* acked, dropped, handed off */
void persist_rxq(struct session *s, uint16_t packet_id, bool add);
/* A retained message was set (old: the one it replaced, or NULL). */
void persist_retained(struct core *core, struct message *msg, struct message *old);

#endif
