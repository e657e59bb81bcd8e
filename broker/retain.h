/* The retained-message store: one message per topic, found by topic filter
 * when a subscription is made. Held in a tree of topic levels so a lookup
 * visits only the branches the filter can match. */
#ifndef LOOPBOT_BROKER_RETAIN_H
#define LOOPBOT_BROKER_RETAIN_H

#include <stddef.h>
#include <stdint.h>

struct message;
struct retain_store;

typedef void (*retain_match_fn)(void *ctx, struct message *msg);

struct retain_store *retain_new(void);
void retain_free(struct retain_store *r); /* drops every reference it holds */

/* Stores msg (taking a reference) as the retained message of its topic,
 * replacing any previous one; msg with an empty payload, or NULL, clears the
 * topic [MQTT-3.3.1-10]. Returns 0 or -ERR_NOMEM (nothing changed then). */
int retain_set(struct retain_store *r, const uint8_t *topic, size_t len, struct message *msg);
struct message *retain_get(struct retain_store *r, const uint8_t *topic, size_t len);

/* Calls fn for every retained message whose topic matches filter (plain
 * filter, no $share prefix), with the '$' rule [MQTT-4.7.2-1]. fn must not
 * change the store. */
void retain_match(struct retain_store *r, const uint8_t *filter, size_t len, retain_match_fn fn,
                  void *ctx);

size_t retain_count(const struct retain_store *r);
size_t retain_memory(const struct retain_store *r); /* bytes held, messages included */

#endif
