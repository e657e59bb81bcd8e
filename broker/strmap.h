/* A hash map of objects by a byte-string key that each object holds (a
 * session by its client id, an ACL user by name). Slots hold only the
 * object pointer, 8 bytes, and the map asks key_of for the key: one map
 * entry per connected client is then ~16 bytes at the usual load, where a
 * slot caching key pointer, length and hash cost 24 per slot (~48 per
 * client). Lookups are rare (CONNECT, an ACL user per check), so reading
 * the key through the object costs nothing that matters. */
#ifndef LOOPBOT_BROKER_STRMAP_H
#define LOOPBOT_BROKER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

/* The key bytes of value (they stay put while value is in the map). */
typedef const uint8_t *(*strmap_key_fn)(const void *value, size_t *len);

struct strmap {
    void **slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
    uint64_t seed; /* so client ids chosen to collide cannot be precomputed */
    strmap_key_fn key_of;
};

void strmap_init(struct strmap *m, uint64_t seed, strmap_key_fn key_of);
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const void *key, size_t len);
/* Inserts value under its key, or replaces the value with an equal key.
 * Returns 0 or -ERR_NOMEM. */
int strmap_put(struct strmap *m, void *value);
/* Returns the removed value, or NULL. */
void *strmap_del(struct strmap *m, const void *key, size_t len);

#endif
