/* MQTT 5 topic aliases of one connection [MQTT-3.3.2.3.4], both ways.
 *
 * Incoming: the client maps alias -> topic, up to the Topic Alias Maximum
 * we announced. Outgoing: we map the first topics we send to aliases, up to
 * the client's maximum (at most TOPIC_ALIAS_OUT_MAX: a sensor gateway sends
 * a few hot topics to each subscriber, and each slot costs a topic copy).
 * Both tables live in the connection's extra part, made when a client
 * first needs them, and die with the connection. */
#ifndef LOOPBOT_BROKER_TOPIC_ALIAS_H
#define LOOPBOT_BROKER_TOPIC_ALIAS_H

#include <stdbool.h>
#include <stdint.h>

#include "mqtt/packet.h"

struct mem_account;

#define TOPIC_ALIAS_OUT_MAX 16

struct topic_alias_entry {
    uint8_t *topic;
    uint16_t len;
};

struct topic_alias_table {
    struct topic_alias_entry *v; /* index alias - 1; allocated on first use */
    uint16_t max;
    uint16_t used; /* outgoing: aliases handed out so far */
    struct mem_account *acct;
};

void topic_alias_init(struct topic_alias_table *t, uint16_t max, struct mem_account *acct);
void topic_alias_clear(struct topic_alias_table *t);

/* Incoming. set: 0 or -ERR_TOPIC_ALIAS_INVALID / -ERR_NOMEM. get: 0 and the
 * topic, or -ERR_TOPIC_ALIAS_INVALID for 0, above max or never set. */
int topic_alias_set(struct topic_alias_table *t, uint16_t alias, struct mqtt_bytes topic);
int topic_alias_get(const struct topic_alias_table *t, uint16_t alias, struct mqtt_bytes *topic);

/* Outgoing. Returns the alias already sent for topic (and *fresh false), or
 * the alias that would be new (*fresh true; commit it with topic_alias_set
 * once the packet is out), or 0 when the table is full or disabled. */
uint16_t topic_alias_for(const struct topic_alias_table *t, const uint8_t *topic, uint16_t len,
                         bool *fresh);

#endif
