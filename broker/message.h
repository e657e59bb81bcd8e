/* An application message, stored once and shared by reference between the
 * retained store and every subscriber queue that holds it. Per-subscriber
 * fields (packet id, QoS, DUP, topic alias, subscription ids, remaining
 * expiry) are not here: they are encoded at send time. */
#ifndef LOOPBOT_BROKER_MESSAGE_H
#define LOOPBOT_BROKER_MESSAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "mqtt/packet.h"

struct message {
    uint32_t refs;
    uint8_t qos;       /* as published */
    bool retain;       /* as published */
    uint16_t topic_len;
    uint32_t payload_len;
    uint32_t props_len;   /* forwarded MQTT 5 properties, already encoded */
    uint64_t expiry_ms;   /* absolute monotonic ms; 0 = never expires */
    const void *origin;   /* publishing session, for No Local; may dangle, only compared */
    uint64_t pid;         /* persistence: its row id in the store; 0 = not stored */
    uint32_t store_refs;  /* persistence: stored rows (queues, retained, wills) referencing it */
    uint8_t *topic;       /* NUL-terminated copy (topic_len bytes + NUL) */
    uint8_t *payload;
    uint8_t *props;       /* encoded block: payload format, content type,
                           * response topic, correlation data, user props */
    uint8_t data[];
};

/* Builds a message from a decoded PUBLISH (or a will): copies topic and
 * payload, and encodes the forwardable properties of `props` (may be NULL).
 * expiry_ms is absolute (0 = none). Returns NULL when out of memory. */
struct message *message_new(const struct mqtt_bytes *topic, const struct mqtt_bytes *payload,
                            const struct mqtt_props *props, uint8_t qos, bool retain,
                            uint64_t expiry_ms, const void *origin);
/* The same from bytes already encoded (the store's rows at start-up):
 * props is a forwarded-properties block as message_new builds it. */
struct message *message_new_raw(const uint8_t *topic, size_t topic_len, const uint8_t *payload,
                                size_t payload_len, const uint8_t *props, size_t props_len,
                                uint8_t qos, bool retain, uint64_t expiry_ms);
struct message *message_ref(struct message *m);
void message_unref(struct message *m);
/* Total bytes the message holds (for queue accounting). */
uint32_t message_size(const struct message *m);
/* Remaining expiry in whole seconds (rounded up) at now_ms, for forwarding;
 * 0 if it has expired. Only meaningful when expiry_ms != 0. */
uint32_t message_expiry_left(const struct message *m, uint64_t now_ms);
bool message_expired(const struct message *m, uint64_t now_ms);

#endif
