#include "broker/retain.h"

#include <stdbool.h>
#include <string.h>

#include "broker/mem.h"
#include "broker/message.h"
#include "broker/topic_tree.h" /* the level tree shared with the subscriptions */
#include "mqtt/error.h"

/* 32 bytes plus the level on 64-bit, 20 on 32-bit ARM: a retained topic
 * usually adds one or two nodes to the tree. */
struct retain_node {
    struct topic__level lv; /* first: parent, children, level length */
    struct message *msg;    /* a reference, or NULL */
    uint8_t level[];
};

#define NODE_KEY offsetof(struct retain_node, level)

struct retain_store {
    struct retain_node *root;
    size_t count;
    size_t bytes; /* nodes, tables, the store itself and the held messages */
};

static size_t node_size(size_t level_len)
{
    return NODE_KEY + level_len;
}

static struct retain_node *node_parent(const struct retain_node *n)
{
    return (struct retain_node *)n->lv.parent;
}

static struct retain_node *kid_find(const struct retain_node *n, const uint8_t *key, size_t len)
{
    return (struct retain_node *)topic__kid_find(&n->lv, NODE_KEY, key, len);
}

static struct retain_node *node_new(struct retain_store *r, const uint8_t *level, size_t len)
{
    struct retain_node *n = mem_calloc(NULL, node_size(len));
    if (!n)
        return NULL;
    n->lv.len = (uint16_t)len;
    if (len)
        memcpy(n->level, level, len);
    r->bytes += node_size(len);
    return n;
}

static void node_free(struct retain_store *r, struct retain_node *n)
{
    topic__kids_release(&n->lv, &r->bytes);
    if (n->msg) {
        r->bytes -= message_size(n->msg);
        message_unref(n->msg);
    }
    r->bytes -= node_size(n->lv.len);
    mem_free(NULL, n, node_size(n->lv.len));
}

/* Frees n and every ancestor left empty, up to (not including) the root. */
static void prune(struct retain_store *r, struct retain_node *n)
{
    while (n != r->root && !n->msg && n->lv.nkids == 0) {
        struct retain_node *p = node_parent(n);
        topic__kid_del(&p->lv, NODE_KEY, &n->lv, &r->bytes);
        node_free(r, n);
        n = p;
    }
}

static struct retain_node *node_find(const struct retain_store *r, const uint8_t *topic,
                                     size_t len)
{
    struct retain_node *n = r->root;
    for (size_t s = 0; n;) {
        size_t e = topic__level_end(topic, len, s);
        n = kid_find(n, topic + s, e - s);
        if (e == len)
            break;
        s = e + 1;
    }
    return n;
}

struct retain_store *retain_new(void)
{
    struct retain_store *r = mem_calloc(NULL, sizeof(*r));
    if (!r)
        return NULL;
    r->bytes = sizeof(*r);
    r->root = node_new(r, NULL, 0);
    if (!r->root) {
        mem_free(NULL, r, sizeof(*r));
        return NULL;
    }
    return r;
}

void retain_free(struct retain_store *r)
{
    if (!r)
        return;
    /* Nodes still to free are chained through their parent field: any depth,
     * no recursion, no allocation. */
    struct retain_node *todo = r->root;
    todo->lv.parent = NULL;
    while (todo) {
        struct retain_node *n = todo;
        todo = node_parent(n);
        for (size_t i = 0, end = topic__kid_slots(&n->lv); i < end; i++) {
            struct retain_node *c = (struct retain_node *)topic__kid_at(&n->lv, i);
            if (c) {
                c->lv.parent = (struct topic__level *)todo;
                todo = c;
            }
        }
        node_free(r, n);
    }
    mem_free(NULL, r, sizeof(*r));
}

int retain_set(struct retain_store *r, const uint8_t *topic, size_t len, struct message *msg)
{
    if (len > UINT16_MAX)
        return -ERR_INVALID;
    if (!msg || msg->payload_len == 0) { /* [MQTT-3.3.1-10] */
        struct retain_node *n = node_find(r, topic, len);
        if (n && n->msg) {
            r->bytes -= message_size(n->msg);
            message_unref(n->msg);
            n->msg = NULL;
            r->count--;
            prune(r, n);
        }
        return 0;
    }
    struct retain_node *n = r->root;
    for (size_t s = 0;;) {
        size_t e = topic__level_end(topic, len, s);
        struct retain_node *c = kid_find(n, topic + s, e - s);
        if (!c) {
            c = node_new(r, topic + s, e - s);
            if (!c || topic__kid_add(&n->lv, NODE_KEY, &c->lv, &r->bytes) < 0) {
                if (c)
                    node_free(r, c);
                prune(r, n);
                return -ERR_NOMEM;
            }
        }
        n = c;
        if (e == len)
            break;
        s = e + 1;
    }
    struct message *old = n->msg;
    n->msg = message_ref(msg);
    r->bytes += message_size(msg);
    if (old) {
        r->bytes -= message_size(old);
        message_unref(old);
    } else {
        r->count++;
    }
    return 0;
}

struct message *retain_get(struct retain_store *r, const uint8_t *topic, size_t len)
{
    if (!r)
        return NULL;
    struct retain_node *n = node_find(r, topic, len);
    return n ? n->msg : NULL;
}

static bool is_level(const uint8_t *s, size_t len, char c)
{
    return len == 1 && s[0] == (uint8_t)c;
}

/* The child of n after prev (first when NULL) that a wildcard may reach:
 * below the root, a wildcard skips topics starting with '$' [MQTT-4.7.2-1]. */
static struct retain_node *wild_next(const struct retain_store *r, const struct retain_node *n,
                                     const struct retain_node *prev)
{
    const struct topic__level *c = prev ? &prev->lv : NULL;
    do {
        c = topic__kid_next(&n->lv, NODE_KEY, c);
    } while (c && n == r->root && c->len > 0 &&
             ((const struct retain_node *)c)->level[0] == '$');
    return (struct retain_node *)c;
}

/* Every message in the subtree of top, top included, pre-order, stackless. */
static void walk(const struct retain_store *r, struct retain_node *top, retain_match_fn fn,
                 void *ctx)
{
    struct retain_node *n = top;
    for (;;) {
        if (n->msg)
            fn(ctx, n->msg);
        struct retain_node *c = wild_next(r, n, NULL);
        while (!c) {
            if (n == top)
                return;
            struct retain_node *p = node_parent(n);
            c = wild_next(r, p, n);
            if (!c)
                n = p;
        }
        n = c;
    }
}

void retain_match(struct retain_store *r, const uint8_t *filter, size_t len, retain_match_fn fn,
                  void *ctx)
{
    if (!r)
        return;
    /* Depth-first without a stack, as topic_tree_match: fs is where the
     * filter level that n's children must match starts (len + 1 when the
     * filter is used up); going back up re-finds the level by scanning back
     * to its '/', and a '+' level then moves on to n's next sibling. */
    struct retain_node *n = r->root;
    size_t fs = 0;
    bool up = false;
    for (;;) {
        if (!up) {
            if (fs > len) {
                if (n->msg)
                    fn(ctx, n->msg);
                up = true;
            } else {
                size_t fe = topic__level_end(filter, len, fs);
                const uint8_t *lvl = filter + fs;
                struct retain_node *c;
                if (is_level(lvl, fe - fs, '#') && fe == len) {
                    walk(r, n, fn, ctx); /* "a/#" matches "a" too [MQTT-4.7.1-2] */
                    c = NULL;
                } else if (is_level(lvl, fe - fs, '+')) {
                    c = wild_next(r, n, NULL);
                } else {
                    c = kid_find(n, lvl, fe - fs);
                }
                if (c) {
                    n = c;
                    fs = fe + 1;
                    continue;
                }
                up = true;
            }
        }
        if (n == r->root)
            return;
        struct retain_node *p = node_parent(n);
        size_t fe = fs - 1; /* end of the filter level n matched */
        size_t ps = topic__level_start(filter, fe);
        struct retain_node *c = is_level(filter + ps, fe - ps, '+') ? wild_next(r, p, n) : NULL;
        if (c) {
            n = c; /* fs stays: a sibling matches the same level */
            up = false;
        } else {
            n = p;
            fs = ps;
        }
    }
}

size_t retain_count(const struct retain_store *r)
{
    return r ? r->count : 0;
}

size_t retain_memory(const struct retain_store *r)
{
    return r ? r->bytes : 0;
}
