/* Cross-file internals of the codec; not for use outside mqtt/. */
#ifndef LOOPBOT_MQTT_INTERNAL_H
#define LOOPBOT_MQTT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/cursor.h"
#include "mqtt/packet.h"

/* Where a property block sits: one bit per packet type (1 << type) and bit 0
 * for the will properties of CONNECT, which have their own allow list. */
#define PROPS_CTX_WILL (1u << 0)
#define PROPS_CTX(type) (1u << (type))

/* Well-formed UTF-8 [MQTT-1.5.4-1]; U+0000 is -ERR_UTF8_NULL unless allow_nul
 * (payloads with Payload Format Indicator 1 are "UTF-8 Encoded Character
 * Data", where U+0000 is well-formed; strings forbid it [MQTT-1.5.4-2]). */
int utf8__check(const uint8_t *s, size_t len, bool allow_nul);

/* Read a property length and block at c into *out (zeroed first), checking
 * ids, the allow list of ctx, duplicates and values. Returns 0 or -ERR_*. */
int props__decode(struct cursor *c, unsigned ctx, struct mqtt_props *out);

/* Size of the block that props__write would produce (no length prefix), or
 * -ERR_INVALID (a string over 65,535 bytes, a property not allowed in ctx;
 * ctx 0 skips the allow check). */
int64_t props__size(const struct mqtt_props *p, unsigned ctx);
void props__write(struct writer *w, const struct mqtt_props *p);

#endif
