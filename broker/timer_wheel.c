#include "broker/timer_wheel.h"

/* Ticks compare with wrap-around (a u32 of 100 ms ticks wraps in 13 years
 * of uptime, but the arithmetic costs nothing). */
static bool tick_le(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

static void list_init(struct wheel_node *h)
{
    h->prev = h->next = h;
}

void wheel_init(struct wheel *w, uint32_t now)
{
    for (unsigned i = 0; i < WHEEL_SLOTS; i++)
        list_init(&w->slot[i]);
    w->now = now;
    w->count = 0;
}

bool wheel_pending(const struct wheel_node *n)
{
    return n->next != NULL;
}

static void unlink_node(struct wheel *w, struct wheel_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
    w->count--;
}

/* Into the slot visited next at or before n->due (the next tick if due). */
static void place(struct wheel *w, struct wheel_node *n)
{
    uint32_t placed = w->now + 1;
    if (!tick_le(n->due, w->now))
        placed = w->now + 1 + (n->due - w->now - 1) % WHEEL_SLOTS;
    n->placed = placed;
    struct wheel_node *h = &w->slot[placed % WHEEL_SLOTS];
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
    w->count++;
}

void wheel_set(struct wheel *w, struct wheel_node *n, uint32_t due)
{
    if (n->next && tick_le(n->placed, due)) {
        n->due = due; /* its slot comes first: it moves on from there */
        return;
    }
    if (n->next)
        unlink_node(w, n);
    n->due = due;
    place(w, n);
}

void wheel_del(struct wheel *w, struct wheel_node *n)
{
    if (n->next)
        unlink_node(w, n);
}

void wheel_advance(struct wheel *w, uint32_t now, wheel_fn fn, void *ctx)
{
    if (tick_le(now, w->now))
        return;
    uint32_t from = w->now;
    uint32_t steps = now - from;
    if (steps > WHEEL_SLOTS)
        steps = WHEEL_SLOTS; /* a long stall: every slot once */
    w->now = now;
    for (uint32_t k = 1; k <= steps; k++) {
        struct wheel_node *h = &w->slot[(from + k) % WHEEL_SLOTS];
        if (h->next == h)
            continue;
        /* Detach the slot: nodes set again land in live lists, so this
         * visit ends even when fn re-arms into the same slot. */
        struct wheel_node todo = {.prev = h->prev, .next = h->next};
        todo.next->prev = &todo;
        todo.prev->next = &todo;
        list_init(h);
        while (todo.next != &todo) {
            struct wheel_node *n = todo.next;
            n->prev->next = n->next;
            n->next->prev = n->prev;
            n->next = n->prev = NULL;
            w->count--;
            if (tick_le(n->due, now))
                fn(ctx, n);
            else
                place(w, n);
        }
    }
}

bool wheel_next(const struct wheel *w, uint32_t *tick)
{
    if (!w->count)
        return false;
    for (uint32_t k = 1; k <= WHEEL_SLOTS; k++) {
        const struct wheel_node *h = &w->slot[(w->now + k) % WHEEL_SLOTS];
        if (h->next != h) {
            *tick = w->now + k;
            return true;
        }
    }
    return false; /* not reached: count says a slot holds a node */
}
