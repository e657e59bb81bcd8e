#include "broker/message.h"

#include <string.h>

#include "broker/mem.h"

/* Properties that travel with a message unchanged [MQTT-3.3.2-…]; expiry is
 * rewritten per delivery, topic alias and subscription ids are per client. */
#define FORWARDED_PROPS                                                                     \
    (MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |     \
     MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) | MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA))

struct message *message_new(const struct mqtt_bytes *topic, const struct mqtt_bytes *payload,
                            const struct mqtt_props *props, uint8_t qos, bool retain,
                            uint64_t expiry_ms, const void *origin)
{
    struct mqtt_props fwd;
    int props_len = 0;
    if (props) {
        fwd = *props;
        fwd.present &= FORWARDED_PROPS;
        fwd.sub_id_count = 0;
        fwd.verbatim.len = 0;
        props_len = mqtt_props_encode(&fwd, NULL, 0);
        if (props_len < 0)
            return NULL;
    }
    if (topic->len > UINT16_MAX)
        return NULL;
    size_t size = sizeof(struct message) + topic->len + 1 + payload->len + (size_t)props_len;
    struct message *m = mem_alloc(NULL, size);
    if (!m)
        return NULL;
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic->len;
    m->payload_len = payload->len;
    m->props_len = (uint32_t)props_len;
    m->expiry_ms = expiry_ms;
    m->origin = origin;
    m->pid = 0;
    m->store_refs = 0;
    m->topic = m->data;
    m->payload = m->topic + topic->len + 1;
    m->props = m->payload + payload->len;
    if (topic->len)
        memcpy(m->topic, topic->ptr, topic->len);
    m->topic[topic->len] = '\0';
    if (payload->len)
        memcpy(m->payload, payload->ptr, payload->len);
    if (props_len > 0)
        mqtt_props_encode(&fwd, m->props, (size_t)props_len);
    return m;
}

struct message *message_new_raw(const uint8_t *topic, size_t topic_len, const uint8_t *payload,
                                size_t payload_len, const uint8_t *props, size_t props_len,
                                uint8_t qos, bool retain, uint64_t expiry_ms)
{
    if (topic_len > UINT16_MAX || payload_len > UINT32_MAX || props_len > UINT32_MAX)
        return NULL;
    size_t size = sizeof(struct message) + topic_len + 1 + payload_len + props_len;
    struct message *m = mem_calloc(NULL, size);
    if (!m)
        return NULL;
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)topic_len;
    m->payload_len = (uint32_t)payload_len;
    m->props_len = (uint32_t)props_len;
    m->expiry_ms = expiry_ms;
    m->topic = m->data;
    m->payload = m->topic + topic_len + 1;
    m->props = m->payload + payload_len;
    if (topic_len)
        memcpy(m->topic, topic, topic_len);
    m->topic[topic_len] = '\0';
    if (payload_len)
        memcpy(m->payload, payload, payload_len);
    if (props_len)
        memcpy(m->props, props, props_len);
    return m;
}

struct message *message_ref(struct message *m)
{
    m->refs++;
    return m;
}

uint32_t message_size(const struct message *m)
{
    return (uint32_t)sizeof(*m) + m->topic_len + 1u + m->payload_len + m->props_len;
}

void message_unref(struct message *m)
{
    if (m && --m->refs == 0)
        mem_free(NULL, m, message_size(m));
}

bool message_expired(const struct message *m, uint64_t now_ms)
{
    return m->expiry_ms && now_ms >= m->expiry_ms;
}

uint32_t message_expiry_left(const struct message *m, uint64_t now_ms)
{
    if (message_expired(m, now_ms))
        return 0;
    uint64_t left = (m->expiry_ms - now_ms + 999) / 1000;
    return left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}
