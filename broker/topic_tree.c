#include "broker/topic_tree.h"

#include <string.h>

#include "broker/mem.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"

/* ---- Children of one level (shared with retain.c) ------------------------ */

#define KIDS_ARRAY_MAX 8 /* above this a level gets a hash table */
#define KIDS_HASH_MIN_LOG2 4

static const uint8_t *key_of(const struct topic__level *n, size_t key_off)
{
    return (const uint8_t *)n + key_off;
}

static bool key_eq(const struct topic__level *n, size_t key_off, const uint8_t *key, size_t len)
{
    return n->len == len && (len == 0 || memcmp(key_of(n, key_off), key, len) == 0);
}

/* FNV-1a over the level, started from the table owner's address: ASLR makes
 * the seed unknown to a client choosing device ids to collide, and it stays
 * the same for the node's life, so a rehash needs no stored hashes. */
static size_t kid_hash(const struct topic__level *owner, const uint8_t *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u ^ ((uint64_t)(uintptr_t)owner * 0x9e3779b97f4a7c15u);
    for (size_t i = 0; i < len; i++)
        h = (h ^ key[i]) * 0x100000001b3u;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 29;
    return (size_t)h;
}

static size_t hash_cap(const struct topic__level *n)
{
    return (size_t)1 << n->kids_log2;
}

static void hash_put(struct topic__level **slots, size_t mask, size_t h, struct topic__level *kid)
{
    size_t i = h & mask;
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = kid;
}

/* Moves every child of n into a new table of 1 << log2 slots (log2 == 0:
 * a dense array of cap, or inline when cap is 0). Returns false, n unchanged,
 * when the new table cannot be allocated. */
static bool kids_rebuild(struct topic__level *n, size_t key_off, unsigned log2, size_t cap,
                         size_t *bytes)
{
    struct topic__level *one = NULL, **slots = NULL;
    size_t size = 0, mask = 0, k = 0;
    if (log2) {
        size = sizeof(*slots) << log2;
        mask = ((size_t)1 << log2) - 1;
    } else if (cap) {
        size = sizeof(*slots) * cap;
    }
    if (size) {
        slots = mem_calloc(NULL, size);
        if (!slots)
            return false;
    }
    uint32_t count = n->nkids;
    for (size_t i = 0, end = topic__kid_slots(n); i < end; i++) {
        struct topic__level *c = topic__kid_at(n, i);
        if (!c)
            continue;
        if (log2)
            hash_put(slots, mask, kid_hash(n, key_of(c, key_off), c->len), c);
        else if (cap)
            slots[k++] = c;
        else
            one = c;
    }
    topic__kids_release(n, bytes);
    *bytes += size;
    n->nkids = count;
    n->kids_log2 = (uint8_t)log2;
    n->kids_cap = (uint8_t)(log2 ? 0 : cap);
    if (slots)
        n->kids.slots = slots;
    else
        n->kids.one = one;
    return true;
}

struct topic__level *topic__kid_find(const struct topic__level *n, size_t key_off,
                                     const uint8_t *key, size_t len)
{
    if (n->kids_log2) {
        size_t mask = hash_cap(n) - 1;
        for (size_t i = kid_hash(n, key, len) & mask; n->kids.slots[i]; i = (i + 1) & mask)
            if (key_eq(n->kids.slots[i], key_off, key, len))
                return n->kids.slots[i];
        return NULL;
    }
    if (n->kids_cap == 0)
        return n->kids.one && key_eq(n->kids.one, key_off, key, len) ? n->kids.one : NULL;
    for (uint32_t i = 0; i < n->nkids; i++)
        if (key_eq(n->kids.slots[i], key_off, key, len))
            return n->kids.slots[i];
    return NULL;
}

int topic__kid_add(struct topic__level *n, size_t key_off, struct topic__level *kid,
                   size_t *bytes)
{
    if (n->kids_log2) {
        /* Grow at load 3/4, so a probe run stays short. */
        if ((n->nkids + 1) * (size_t)4 > hash_cap(n) * 3 &&
            !kids_rebuild(n, key_off, n->kids_log2 + 1u, 0, bytes))
            return -ERR_NOMEM;
        hash_put(n->kids.slots, hash_cap(n) - 1, kid_hash(n, key_of(kid, key_off), kid->len), kid);
    } else if (n->kids_cap == 0 && n->nkids == 0) {
        n->kids.one = kid;
    } else {
        if (n->nkids == n->kids_cap || n->kids_cap == 0) {
            bool ok = n->nkids >= KIDS_ARRAY_MAX
                          ? kids_rebuild(n, key_off, KIDS_HASH_MIN_LOG2, 0, bytes)
                          : kids_rebuild(n, key_off, 0, n->kids_cap ? n->kids_cap * 2u : 2u, bytes);
            if (!ok)
                return -ERR_NOMEM;
        }
        if (n->kids_log2)
            hash_put(n->kids.slots, hash_cap(n) - 1,
                     kid_hash(n, key_of(kid, key_off), kid->len), kid);
        else
            n->kids.slots[n->nkids] = kid;
    }
    n->nkids++;
    kid->parent = n;
    return 0;
}

/* Backward-shift deletion keeps probe runs unbroken without tombstones. */
static void hash_del(struct topic__level *n, size_t key_off, struct topic__level *kid)
{
    struct topic__level **slots = n->kids.slots;
    size_t mask = hash_cap(n) - 1;
    size_t i = kid_hash(n, key_of(kid, key_off), kid->len) & mask;
    while (slots[i] != kid)
        i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; slots[j]; j = (j + 1) & mask) {
        size_t home = kid_hash(n, key_of(slots[j], key_off), slots[j]->len) & mask;
        /* slots[j] may fill the hole at i unless its home lies in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            slots[i] = slots[j];
            i = j;
        }
    }
    slots[i] = NULL;
}

void topic__kid_del(struct topic__level *n, size_t key_off, struct topic__level *kid,
                    size_t *bytes)
{
    kid->parent = NULL;
    if (n->kids_log2) {
        hash_del(n, key_off, kid);
        n->nkids--;
        /* Shrink at load 1/8 (growth is at 3/4, so add/remove at a boundary
         * does not rebuild each time). */
        if ((size_t)n->nkids * 8 <= hash_cap(n)) {
            if (n->kids_log2 == KIDS_HASH_MIN_LOG2)
                kids_rebuild(n, key_off, 0, n->nkids <= 1 ? 0 : 2, bytes);
            else
                kids_rebuild(n, key_off, n->kids_log2 - 1u, 0, bytes);
        }
        return;
    }
    if (n->kids_cap == 0) {
        n->kids.one = NULL;
        n->nkids = 0;
        return;
    }
    uint32_t i = 0;
    while (n->kids.slots[i] != kid)
        i++;
    n->kids.slots[i] = n->kids.slots[--n->nkids];
    n->kids.slots[n->nkids] = NULL;
    if (n->nkids <= 1)
        kids_rebuild(n, key_off, 0, 0, bytes); /* needs no allocation */
    else if (n->nkids * 4u <= n->kids_cap)
        kids_rebuild(n, key_off, 0, n->kids_cap / 2u, bytes);
}

struct topic__level *topic__kid_next(const struct topic__level *n, size_t key_off,
                                     const struct topic__level *prev)
{
    if (n->kids_log2 == 0 && n->kids_cap == 0)
        return prev ? NULL : n->kids.one;
    size_t i = 0, end = n->kids_log2 ? hash_cap(n) : n->nkids;
    if (prev) {
        if (n->kids_log2) {
            size_t mask = end - 1;
            i = kid_hash(n, key_of(prev, key_off), prev->len) & mask;
            while (n->kids.slots[i] != prev)
                i = (i + 1) & mask;
        } else {
            while (n->kids.slots[i] != prev)
                i++;
        }
        i++;
    }
    for (; i < end; i++)
        if (n->kids.slots[i])
            return n->kids.slots[i];
    return NULL;
}

size_t topic__kid_slots(const struct topic__level *n)
{
    if (n->kids_log2)
        return hash_cap(n);
    return n->kids_cap ? n->nkids : n->nkids != 0;
}

struct topic__level *topic__kid_at(const struct topic__level *n, size_t i)
{
    if (n->kids_log2 == 0 && n->kids_cap == 0)
        return n->kids.one;
    return n->kids.slots[i];
}

void topic__kids_release(struct topic__level *n, size_t *bytes)
{
    size_t size = n->kids_log2 ? sizeof(*n->kids.slots) << n->kids_log2
                               : sizeof(*n->kids.slots) * n->kids_cap;
    if (size) {
        mem_free(NULL, n->kids.slots, size);
        *bytes -= size;
    }
    n->kids.one = NULL;
    n->nkids = 0;
    n->kids_cap = 0;
    n->kids_log2 = 0;
}

size_t topic__level_end(const uint8_t *s, size_t len, size_t start)
{
    const uint8_t *slash = start < len ? memchr(s + start, '/', len - start) : NULL;
    return slash ? (size_t)(slash - s) : len;
}

size_t topic__level_start(const uint8_t *s, size_t end)
{
    while (end > 0 && s[end - 1] != '/')
        end--;
    return end;
}

/* ---- The subscription tree ----------------------------------------------- */

/* '+' and '#' children are kept out of the literal children, so matching
 * one topic level is one lookup plus two pointer checks. */
struct topic_node {
    struct topic__level lv; /* first: parent, literal children, level length */
    struct topic_node *plus, *hash;
    struct subscription *subs; /* plain subscriptions */
    struct share_group *groups;
    uint8_t level[];
};

#define NODE_KEY offsetof(struct topic_node, level)

struct share_group {
    struct share_group *next; /* in the node's list */
    struct subscription *members;
    struct subscription *cursor; /* next member to try; NULL = the first */
    uint16_t name_len;
    uint8_t name[];
};

struct topic_tree {
    struct topic_node *root;
    size_t count;
    size_t bytes; /* everything allocated for the tree, itself included */
};

static const uint8_t SHARE_PREFIX[] = "$share/";
#define SHARE_PREFIX_LEN (sizeof(SHARE_PREFIX) - 1)

static struct topic_node *node_parent(const struct topic_node *n)
{
    return (struct topic_node *)n->lv.parent;
}

static size_t node_size(size_t level_len)
{
    return NODE_KEY + level_len;
}

static size_t sub_size(size_t filter_len)
{
    return offsetof(struct subscription, filter) + filter_len;
}

static size_t group_size(size_t name_len)
{
    return offsetof(struct share_group, name) + name_len;
}

static struct topic_node *node_new(struct topic_tree *t, const uint8_t *level, size_t len)
{
    struct topic_node *n = mem_calloc(NULL, node_size(len));
    if (!n)
        return NULL;
    n->lv.len = (uint16_t)len;
    if (len)
        memcpy(n->level, level, len);
    t->bytes += node_size(len);
    return n;
}

static bool node_empty(const struct topic_node *n)
{
    return !n->subs && !n->groups && !n->plus && !n->hash && n->lv.nkids == 0;
}

/* Frees n and every ancestor left empty, up to (not including) the root. */
static void prune(struct topic_tree *t, struct topic_node *n)
{
    while (n != t->root && node_empty(n)) {
        struct topic_node *p = node_parent(n);
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            topic__kid_del(&p->lv, NODE_KEY, &n->lv, &t->bytes);
        topic__kids_release(&n->lv, &t->bytes);
        t->bytes -= node_size(n->lv.len);
        mem_free(NULL, n, node_size(n->lv.len));
        n = p;
    }
}

static bool is_level(const uint8_t *s, size_t len, char c)
{
    return len == 1 && s[0] == (uint8_t)c;
}

/* The node of filter, created as needed; NULL when out of memory (anything
 * created on the way is pruned again). '#' is a wildcard only as the last
 * level: a validated filter has it nowhere else. */
static struct topic_node *node_make(struct topic_tree *t, const uint8_t *f, size_t len)
{
    struct topic_node *n = t->root;
    for (size_t s = 0;;) {
        size_t e = topic__level_end(f, len, s);
        const uint8_t *lvl = f + s;
        size_t ll = e - s;
        struct topic_node **special = is_level(lvl, ll, '+')                ? &n->plus
                                      : is_level(lvl, ll, '#') && e == len ? &n->hash
                                                                           : NULL;
        struct topic_node *c = special ? *special
                                       : (struct topic_node *)topic__kid_find(&n->lv, NODE_KEY,
                                                                              lvl, ll);
        if (!c) {
            c = node_new(t, lvl, ll);
            if (!c) {
                prune(t, n);
                return NULL;
            }
            if (special) {
                *special = c;
                c->lv.parent = &n->lv;
            } else if (topic__kid_add(&n->lv, NODE_KEY, &c->lv, &t->bytes) < 0) {
                t->bytes -= node_size(ll);
                mem_free(NULL, c, node_size(ll));
                prune(t, n);
                return NULL;
            }
        }
        n = c;
        if (e == len)
            return n;
        s = e + 1;
    }
}

struct topic_tree *topic_tree_new(void)
{
    struct topic_tree *t = mem_calloc(NULL, sizeof(*t));
    if (!t)
        return NULL;
    t->bytes = sizeof(*t);
    t->root = node_new(t, NULL, 0);
    if (!t->root) {
        mem_free(NULL, t, sizeof(*t));
        return NULL;
    }
    return t;
}

static void free_subs(struct topic_tree *t, struct subscription *s)
{
    while (s) {
        struct subscription *next = s->next;
        t->bytes -= sub_size(s->filter_len);
        mem_free(NULL, s, sub_size(s->filter_len));
        s = next;
    }
}

void topic_tree_free(struct topic_tree *t)
{
    if (!t)
        return;
    /* Nodes still to free are chained through their parent field, so freeing
     * a tree of any depth needs neither recursion nor allocation. */
    struct topic_node *todo = t->root;
    todo->lv.parent = NULL;
    while (todo) {
        struct topic_node *n = todo;
        todo = node_parent(n);
        struct topic_node *extra[2] = {n->plus, n->hash};
        for (size_t i = 0; i < 2; i++) {
            if (extra[i]) {
                extra[i]->lv.parent = (struct topic__level *)todo;
                todo = extra[i];
            }
        }
        for (size_t i = 0, end = topic__kid_slots(&n->lv); i < end; i++) {
            struct topic_node *c = (struct topic_node *)topic__kid_at(&n->lv, i);
            if (c) {
                c->lv.parent = (struct topic__level *)todo;
                todo = c;
            }
        }
        topic__kids_release(&n->lv, &t->bytes);
        free_subs(t, n->subs);
        while (n->groups) {
            struct share_group *g = n->groups;
            n->groups = g->next;
            free_subs(t, g->members);
            t->bytes -= group_size(g->name_len);
            mem_free(NULL, g, group_size(g->name_len));
        }
        t->bytes -= node_size(n->lv.len);
        mem_free(NULL, n, node_size(n->lv.len));
    }
    mem_free(NULL, t, sizeof(*t));
}

static void list_push(struct subscription **head, struct subscription *sub)
{
    sub->prev = NULL;
    sub->next = *head;
    if (*head)
        (*head)->prev = sub;
    *head = sub;
}

static void list_unlink(struct subscription **head, struct subscription *sub)
{
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        *head = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    sub->next = sub->prev = NULL;
}

struct subscription *topic_tree_add(struct topic_tree *t, const uint8_t *filter, size_t len,
                                    void *owner, uint8_t options, uint32_t sub_id)
{
    if (len > UINT16_MAX)
        return NULL;
    /* "$share/{group}/{filter}" [MQTT-4.8.2]: the group is up to the next
     * '/'. Anything not of that shape is left to validation and kept plain. */
    const uint8_t *group = NULL, *f = filter;
    size_t group_len = 0, flen = len;
    if (len > SHARE_PREFIX_LEN && memcmp(filter, SHARE_PREFIX, SHARE_PREFIX_LEN) == 0) {
        size_t ge = topic__level_end(filter, len, SHARE_PREFIX_LEN);
        if (ge < len && ge > SHARE_PREFIX_LEN) {
            group = filter + SHARE_PREFIX_LEN;
            group_len = ge - SHARE_PREFIX_LEN;
            f = filter + ge + 1;
            flen = len - ge - 1;
        }
    }

    struct subscription *sub = mem_alloc(NULL, sub_size(len));
    if (!sub)
        return NULL;
    struct topic_node *n = node_make(t, f, flen);
    if (!n) {
        mem_free(NULL, sub, sub_size(len));
        return NULL;
    }
    struct share_group *g = NULL;
    if (group) {
        for (g = n->groups; g; g = g->next)
            if (g->name_len == group_len && memcmp(g->name, group, group_len) == 0)
                break;
        if (!g) {
            g = mem_calloc(NULL, group_size(group_len));
            if (!g) {
                mem_free(NULL, sub, sub_size(len));
                prune(t, n);
                return NULL;
            }
            g->name_len = (uint16_t)group_len;
            memcpy(g->name, group, group_len);
            g->next = n->groups;
            n->groups = g;
            t->bytes += group_size(group_len);
        }
    }

    sub->node = n;
    sub->group = g;
    sub->owner = owner;
    sub->sub_id = sub_id;
    sub->options = options;
    sub->filter_len = (uint16_t)len;
    if (len)
        memcpy(sub->filter, filter, len);
    list_push(g ? &g->members : &n->subs, sub);
    t->bytes += sub_size(len);
    t->count++;
    return sub;
}

void topic_tree_remove(struct topic_tree *t, struct subscription *sub)
{
    if (!t || !sub)
        return;
    struct topic_node *n = sub->node;
    struct share_group *g = sub->group;
    if (g) {
        if (g->cursor == sub)
            g->cursor = sub->next;
        list_unlink(&g->members, sub);
        if (!g->members) {
            struct share_group **pp = &n->groups;
            while (*pp != g)
                pp = &(*pp)->next;
            *pp = g->next;
            t->bytes -= group_size(g->name_len);
            mem_free(NULL, g, group_size(g->name_len));
        }
    } else {
        list_unlink(&n->subs, sub);
    }
    t->bytes -= sub_size(sub->filter_len);
    mem_free(NULL, sub, sub_size(sub->filter_len));
    t->count--;
    prune(t, n);
}

/* The next member in round-robin turn that member_ok accepts (the turn
 * moves past it), or NULL when it accepts none (the turn stays). */
static struct subscription *group_pick(struct share_group *g, topic_member_ok_fn member_ok,
                                       void *ctx)
{
    struct subscription *start = g->cursor ? g->cursor : g->members, *m = start;
    do {
        if (!member_ok || member_ok(ctx, m)) {
            g->cursor = m->next;
            return m;
        }
        m = m->next ? m->next : g->members;
    } while (m != start);
    return NULL;
}

/* Every plain subscription of n, then one member of each of its groups. */
static void deliver(struct topic_node *n, topic_match_fn fn, topic_member_ok_fn member_ok,
                    void *ctx)
{
    for (struct subscription *s = n->subs, *next; s; s = next) {
        next = s->next;
        fn(ctx, s);
    }
    for (struct share_group *g = n->groups; g; g = g->next) {
        struct subscription *pick = group_pick(g, member_ok, ctx);
        /* No member may take it now (all offline): the next in turn gets
         * it anyway, so a persistent member queues QoS 1/2 messages rather
         * than the group losing them. */
        if (!pick) {
            pick = g->cursor ? g->cursor : g->members;
            g->cursor = pick->next;
        }
        fn(ctx, pick);
    }
}

void topic_tree_match(struct topic_tree *t, const uint8_t *topic, size_t len, topic_match_fn fn,
                      topic_member_ok_fn member_ok, void *ctx)
{
    if (!t)
        return;
    /* [MQTT-4.7.2-1]: a wildcard as the first level does not match '$'. */
    const bool dollar = len > 0 && topic[0] == '$';
    struct topic_node *const root = t->root;
    struct topic_node *n = root;
    /* Depth-first over the literal and '+' branches, without a stack: the
     * parent links lead back, and the topic position of a level is found
     * again by scanning back to its '/'. s is where the level n's children
     * match starts; s == len + 1 once every level is used. */
    size_t s = 0, e = 0;
    enum { ENTER, PLUS, UP } step = ENTER;
    for (;;) {
        bool wild = n != root || !dollar;
        if (step == ENTER) {
            if (n->hash && wild) /* "a/#" also matches "a" [MQTT-4.7.1-2] */
                deliver(n->hash, fn, member_ok, ctx);
            if (s > len) {
                deliver(n, fn, member_ok, ctx);
                step = UP;
            } else {
                e = topic__level_end(topic, len, s);
                struct topic_node *c =
                    (struct topic_node *)topic__kid_find(&n->lv, NODE_KEY, topic + s, e - s);
                if (c) {
                    n = c;
                    s = e + 1;
                    continue;
                }
                step = PLUS;
            }
        }
        if (step == PLUS) {
            if (n->plus && wild) {
                n = n->plus;
                s = e + 1;
                step = ENTER;
                continue;
            }
            step = UP;
        }
        if (n == root)
            return;
        struct topic_node *p = node_parent(n);
        e = s - 1; /* end of n's level */
        s = topic__level_start(topic, e);
        step = p->plus == n ? UP : PLUS;
        n = p;
    }
}

size_t topic_tree_count(const struct topic_tree *t)
{
    return t ? t->count : 0;
}

size_t topic_tree_memory(const struct topic_tree *t)
{
    return t ? t->bytes : 0;
}

bool topic_tree_group_matches(const struct subscription *sub, const uint8_t *topic, size_t len)
{
    struct mqtt_bytes group, inner;
    if (mqtt_share_split(sub->filter, sub->filter_len, &group, &inner) != 1)
        return false;
    return mqtt_topic_matches(inner.ptr, inner.len, topic, len);
}

struct subscription *topic_tree_group_next(struct subscription *sub, topic_member_ok_fn member_ok,
                                           void *ctx)
{
    return sub->group ? group_pick(sub->group, member_ok, ctx) : NULL;
}
