#include "broker/topic_alias.h"

#include <string.h>

#include "broker/mem.h"

void topic_alias_init(struct topic_alias_table *t, uint16_t max, struct mem_account *acct)
{
    memset(t, 0, sizeof(*t));
    t->max = max;
    t->acct = acct;
}

void topic_alias_clear(struct topic_alias_table *t)
{
    if (t->v) {
        for (uint16_t i = 0; i < t->max; i++)
            mem_free(t->acct, t->v[i].topic, t->v[i].len);
        mem_free(t->acct, t->v, (size_t)t->max * sizeof(*t->v));
    }
    t->v = NULL;
    t->used = 0;
}

int topic_alias_set(struct topic_alias_table *t, uint16_t alias, struct mqtt_bytes topic)
{
    if (alias == 0 || alias > t->max || topic.len == 0 || topic.len > UINT16_MAX)
        return -ERR_TOPIC_ALIAS_INVALID;
    if (!t->v) {
        t->v = mem_calloc(t->acct, (size_t)t->max * sizeof(*t->v));
        if (!t->v)
            return -ERR_NOMEM;
    }
    struct topic_alias_entry *e = &t->v[alias - 1];
    if (e->len != topic.len) {
        uint8_t *p = mem_alloc(t->acct, topic.len);
        if (!p)
            return -ERR_NOMEM;
        mem_free(t->acct, e->topic, e->len);
        e->topic = p;
        e->len = (uint16_t)topic.len;
    }
    memcpy(e->topic, topic.ptr, topic.len);
    if (alias > t->used)
        t->used = alias;
    return 0;
}

int topic_alias_get(const struct topic_alias_table *t, uint16_t alias, struct mqtt_bytes *topic)
{
    if (alias == 0 || alias > t->max || !t->v || !t->v[alias - 1].len)
        return -ERR_TOPIC_ALIAS_INVALID;
    topic->ptr = t->v[alias - 1].topic;
    topic->len = t->v[alias - 1].len;
    return 0;
}

uint16_t topic_alias_for(const struct topic_alias_table *t, const uint8_t *topic, uint16_t len,
                         bool *fresh)
{
    for (uint16_t i = 0; t->v && i < t->used; i++) {
        if (t->v[i].len == len && memcmp(t->v[i].topic, topic, len) == 0) {
            *fresh = false;
            return (uint16_t)(i + 1);
        }
    }
    if (t->used >= t->max)
        return 0;
    *fresh = true;
    return (uint16_t)(t->used + 1);
}
