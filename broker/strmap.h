/* A hash map from byte-string keys to pointers. Keys are not copied: the
 * value's owner keeps the key bytes alive while the entry exists (a session
 * owns its client id). Open addressing, so an entry costs 24 bytes. */
#ifndef LOOPBOT_BROKER_STRMAP_H
#define LOOPBOT_BROKER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

struct strmap_entry {
    const uint8_t *key;
    uint32_t len;
    uint32_t hash;
    void *value;
};

struct strmap {
    struct strmap_entry *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
    uint64_t seed; /* so client ids chosen to collide cannot be precomputed */
};

void strmap_init(struct strmap *m, uint64_t seed);
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const void *key, size_t len);
/* Inserts or replaces. Returns 0 or -ERR_NOMEM. */
int strmap_put(struct strmap *m, const void *key, size_t len, void *value);
/* Returns the removed value, or NULL. */
void *strmap_del(struct strmap *m, const void *key, size_t len);

#endif
