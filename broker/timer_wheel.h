/* A hashed timing wheel: per-connection deadlines (connect timeout,
 * keepalive, linger) at O(1) each, in 24 bytes per connection instead of
 * a libevent timer (~160 bytes with its wrapper).
 *
 * Time is in ticks (the caller picks the tick; conn.c uses 100 ms). A node
 * sits in the slot of a tick at or before its deadline. Moving a deadline
 * later, which every packet of a keepalive client does, only stores the
 * new value: when the slot comes round the node is found not due and moves
 * on. Only a deadline earlier than its slot relinks at once. Pure data
 * structure: no clock, no loop. */
#ifndef LOOPBOT_BROKER_TIMER_WHEEL_H
#define LOOPBOT_BROKER_TIMER_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WHEEL_SLOTS 512u

struct wheel_node {
    struct wheel_node *prev, *next; /* next == NULL: not in the wheel */
    uint32_t due;    /* the deadline, in ticks */
    uint32_t placed; /* the tick at which its slot is visited next */
};

struct wheel {
    struct wheel_node slot[WHEEL_SLOTS]; /* list heads */
    uint32_t now;                        /* the last tick advanced to */
    size_t count;
};

typedef void (*wheel_fn)(void *ctx, struct wheel_node *n);

void wheel_init(struct wheel *w, uint32_t now);
/* (Re)sets n's deadline. */
void wheel_set(struct wheel *w, struct wheel_node *n, uint32_t due);
/* Takes n out (nothing if it is not in). */
void wheel_del(struct wheel *w, struct wheel_node *n);
bool wheel_pending(const struct wheel_node *n);
/* Moves time to now: fn runs for every node whose deadline has come, once,
 * taken out of the wheel first (fn may set it, or any node, again). */
void wheel_advance(struct wheel *w, uint32_t now, wheel_fn fn, void *ctx);
/* The next tick at which a slot holds a node (a deadline may be later:
 * the visit then only moves it), or false when the wheel is empty. */
bool wheel_next(const struct wheel *w, uint32_t *tick);

#endif
