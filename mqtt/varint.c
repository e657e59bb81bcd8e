/* Variable byte integers [MQTT-1.5.5]. Reading and writing live in
 * cursor.h so the decoders inline them; this is the public size helper. */
#include "mqtt/cursor.h"
#include "mqtt/packet.h"

int mqtt_varint_size(uint32_t value)
{
    if (value > MQTT_VARINT_MAX)
        return -ERR_INVALID;
    return (int)varint_len(value);
}
