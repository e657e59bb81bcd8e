/* The subscription tree: topic filters split into levels, so matching a
 * topic costs what its own levels and wildcards cost, not the number of
 * unrelated subscriptions.
 *
 * Filters are validated by the caller (mqtt_topic_filter_validate /
 * mqtt_share_split). A subscription is owned by the tree; the owner (a
 * session) keeps the handle, compares its filter, and may change options and
 * sub_id in place. */
#ifndef LOOPBOT_BROKER_TOPIC_TREE_H
#define LOOPBOT_BROKER_TOPIC_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct topic_tree;
struct topic_node;
struct share_group;

struct subscription {
    struct subscription *next, *prev; /* in its node's (or group's) list */
    struct topic_node *node;
    struct share_group *group; /* NULL unless a $share subscription */
    void *owner;               /* the session */
    uint32_t sub_id;           /* MQTT 5 subscription identifier, 0 = none */
    uint8_t options;           /* MQTT_SUBOPT_* bits, QoS in the low two */
    uint16_t filter_len;
    uint8_t filter[];          /* as subscribed, including any $share/{group}/ */
};

typedef void (*topic_match_fn)(void *ctx, struct subscription *sub);
/* Asked, for a shared group, whether a member may take a message now (e.g.
 * its session is online). NULL = every member may. */
typedef bool (*topic_member_ok_fn)(void *ctx, const struct subscription *sub);

struct topic_tree *topic_tree_new(void);
void topic_tree_free(struct topic_tree *t); /* frees all subscriptions */

/* Adds a subscription for owner; does not look for an existing one (the
 * owner does). A "$share/{group}/{filter}" filter joins that group at the
 * node of {filter}. Returns NULL when out of memory. */
struct subscription *topic_tree_add(struct topic_tree *t, const uint8_t *filter, size_t len,
                                    void *owner, uint8_t options, uint32_t sub_id);
/* Removes and frees one subscription, pruning nodes left empty. */
void topic_tree_remove(struct topic_tree *t, struct subscription *sub);

/* Calls fn once for every plain subscription whose filter matches topic
 * (so an owner with overlapping filters is called once per filter), and once
 * per matching shared group with one member chosen round-robin among those
 * member_ok accepts (when it accepts none, the next member in turn). Filters starting with a
 * wildcard do not match topics starting with '$' [MQTT-4.7.2-1]. fn must not
 * add or remove subscriptions. */
void topic_tree_match(struct topic_tree *t, const uint8_t *topic, size_t len, topic_match_fn fn,
                      topic_member_ok_fn member_ok, void *ctx);

/* For a $share subscription: whether its filter matches topic, and the
 * next member of its group (in the same round-robin turn as matching) that
 * member_ok accepts, or NULL. */
bool topic_tree_group_matches(const struct subscription *sub, const uint8_t *topic, size_t len);
struct subscription *topic_tree_group_next(struct subscription *sub, topic_member_ok_fn member_ok,
                                           void *ctx);

size_t topic_tree_count(const struct topic_tree *t); /* subscriptions */
size_t topic_tree_memory(const struct topic_tree *t); /* bytes held */

/* Internal to topic_tree.c and retain.c, which are both trees of topic
 * levels: a node's parent and its literal children. Every node type starts
 * with this header and keeps its level bytes key_off bytes from its start.
 * Children are held three ways so a chain node costs nothing extra and a
 * level with 20,000 device ids is still one probe: one inline pointer (up to
 * 1 child), a dense array scanned linearly (2..8), or an open-addressing hash
 * table of 1 << kids_log2 slots (load at most 3/4). */
struct topic__level {
    struct topic__level *parent;
    union {
        struct topic__level *one;    /* kids_cap == 0 && kids_log2 == 0 */
        struct topic__level **slots; /* array of kids_cap, or hash table */
    } kids;
    uint32_t nkids;
    uint16_t len;      /* of this node's level */
    uint8_t kids_cap;  /* array mode: 0 (inline), 2, 4 or 8 */
    uint8_t kids_log2; /* hash mode when nonzero */
};

/* *bytes is the owning tree's byte count, kept exact as tables change. */
struct topic__level *topic__kid_find(const struct topic__level *n, size_t key_off,
                                     const uint8_t *key, size_t len);
/* Returns 0 or -ERR_NOMEM (n unchanged). Sets kid->parent. */
int topic__kid_add(struct topic__level *n, size_t key_off, struct topic__level *kid,
                   size_t *bytes);
/* Never fails: when a smaller table cannot be had, the larger one is kept. */
void topic__kid_del(struct topic__level *n, size_t key_off, struct topic__level *kid,
                    size_t *bytes);
/* The child after prev (the first when prev is NULL), NULL at the end.
 * Order is arbitrary but stable while n is not changed. */
struct topic__level *topic__kid_next(const struct topic__level *n, size_t key_off,
                                     const struct topic__level *prev);
/* For freeing a whole tree: slots are 0..topic__kid_slots(n) - 1, some NULL. */
size_t topic__kid_slots(const struct topic__level *n);
struct topic__level *topic__kid_at(const struct topic__level *n, size_t i);
void topic__kids_release(struct topic__level *n, size_t *bytes);
/* Where the level starting at s ends ('/' or len), and where the level ending
 * at e starts. */
size_t topic__level_end(const uint8_t *s, size_t len, size_t start);
size_t topic__level_start(const uint8_t *s, size_t end);

#endif
