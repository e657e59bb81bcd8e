#include "broker/strmap.h"

#include <string.h>

#include "broker/mem.h"
#include "mqtt/error.h"

static uint32_t hash_bytes(uint64_t seed, const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed; /* FNV-1a, seeded */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

static size_t home_of(const struct strmap *m, const void *value, size_t mask)
{
    size_t len;
    const uint8_t *key = m->key_of(value, &len);
    return hash_bytes(m->seed, key, len) & mask;
}

void strmap_init(struct strmap *m, uint64_t seed, strmap_key_fn key_of)
{
    memset(m, 0, sizeof(*m));
    m->seed = seed;
    m->key_of = key_of;
}

void strmap_free(struct strmap *m)
{
    mem_free(NULL, m->slots, m->cap * sizeof(*m->slots));
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* The slot holding key, or NULL. */
static void **find(const struct strmap *m, const uint8_t *key, size_t len)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(m->seed, key, len) & mask;; i = (i + 1) & mask) {
        void **slot = &m->slots[i];
        if (!*slot)
            return NULL;
        size_t klen;
        const uint8_t *k = m->key_of(*slot, &klen);
        if (klen == len && memcmp(k, key, len) == 0)
            return slot;
    }
}

void *strmap_get(const struct strmap *m, const void *key, size_t len)
{
    void **slot = find(m, key, len);
    return slot ? *slot : NULL;
}

static void insert_slot(const struct strmap *m, void **slots, size_t cap, void *value)
{
    size_t mask = cap - 1;
    size_t i = home_of(m, value, mask);
    while (slots[i])
        i = (i + 1) & mask;
    slots[i] = value;
}

static int grow(struct strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    void **slots = mem_calloc(NULL, cap * sizeof(*slots));
    if (!slots)
        return -ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i])
            insert_slot(m, slots, cap, m->slots[i]);
    mem_free(NULL, m->slots, m->cap * sizeof(*m->slots));
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int strmap_put(struct strmap *m, void *value)
{
    size_t len;
    const uint8_t *key = m->key_of(value, &len);
    void **slot = find(m, key, len);
    if (slot) {
        *slot = value;
        return 0;
    }
    /* Load factor at most 3/4 keeps probe runs short. */
    if ((m->count + 1) * 4 > m->cap * 3) {
        int rc = grow(m);
        if (rc < 0)
            return rc;
    }
    insert_slot(m, m->slots, m->cap, value);
    m->count++;
    return 0;
}

void *strmap_del(struct strmap *m, const void *key, size_t len)
{
    void **slot = find(m, key, len);
    if (!slot)
        return NULL;
    void *value = *slot;
    size_t mask = m->cap - 1;
    size_t i = (size_t)(slot - m->slots);
    /* Backward-shift deletion: no tombstones, so lookups never slow down. */
    for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        size_t home = home_of(m, m->slots[j], mask);
        size_t dist_j = (j - home) & mask;
        size_t dist_i = (j - i) & mask;
        if (dist_j >= dist_i) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i] = NULL;
    m->count--;
    return value;
}
