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

void strmap_init(struct strmap *m, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->seed = seed;
}

void strmap_free(struct strmap *m)
{
    mem_free(NULL, m->slots, m->cap * sizeof(*m->slots));
    m->slots = NULL;
    m->cap = m->count = 0;
}

static struct strmap_entry *find(const struct strmap *m, const uint8_t *key, size_t len,
                                 uint32_t h)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct strmap_entry *e = &m->slots[i];
        if (!e->key)
            return NULL;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}

void *strmap_get(const struct strmap *m, const void *key, size_t len)
{
    struct strmap_entry *e = find(m, key, len, hash_bytes(m->seed, key, len));
    return e ? e->value : NULL;
}

static void insert_slot(struct strmap_entry *slots, size_t cap, const struct strmap_entry *src)
{
    size_t mask = cap - 1;
    size_t i = src->hash & mask;
    while (slots[i].key)
        i = (i + 1) & mask;
    slots[i] = *src;
}

static int grow(struct strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    struct strmap_entry *slots = mem_calloc(NULL, cap * sizeof(*slots));
    if (!slots)
        return -ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            insert_slot(slots, cap, &m->slots[i]);
    mem_free(NULL, m->slots, m->cap * sizeof(*m->slots));
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int strmap_put(struct strmap *m, const void *key, size_t len, void *value)
{
    uint32_t h = hash_bytes(m->seed, key, len);
    struct strmap_entry *e = find(m, key, len, h);
    if (e) {
        e->key = key; /* the new owner's bytes */
        e->value = value;
        return 0;
    }
    /* Load factor at most 3/4 keeps probe runs short. */
    if ((m->count + 1) * 4 > m->cap * 3) {
        int rc = grow(m);
        if (rc < 0)
            return rc;
    }
    struct strmap_entry ne = {.key = key, .len = (uint32_t)len, .hash = h, .value = value};
    insert_slot(m->slots, m->cap, &ne);
    m->count++;
    return 0;
}

void *strmap_del(struct strmap *m, const void *key, size_t len)
{
    struct strmap_entry *e = find(m, key, len, hash_bytes(m->seed, key, len));
    if (!e)
        return NULL;
    void *value = e->value;
    size_t mask = m->cap - 1;
    size_t i = (size_t)(e - m->slots);
    /* Backward-shift deletion: no tombstones, so lookups never slow down. */
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        size_t dist_j = (j - home) & mask;
        size_t dist_i = (j - i) & mask;
        if (dist_j >= dist_i) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    memset(&m->slots[i], 0, sizeof(m->slots[i]));
    m->count--;
    return value;
}
