/* UTF-8 validation [MQTT-1.5.4].
 *
 * Rejected: ill-formed sequences (stray continuation bytes, truncated
 * sequences, C0/C1 and other overlong forms, F5..FF), code points above
 * U+10FFFF, the surrogates U+D800..U+DFFF [MQTT-1.5.4-1] and U+0000
 * [MQTT-1.5.4-2]. Accepted: control characters U+0001..U+001F,
 * U+007F..U+009F and non-characters such as U+FFFF. The spec says senders
 * SHOULD NOT send them and a receiver MAY reject them [MQTT-1.5.4-3 is about
 * the BOM]; we accept, as mosquitto does, since rejecting closes the
 * connection for a string that is still well-formed. */
#include <string.h>

#include "mqtt/internal.h"

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

int utf8__check(const uint8_t *s, size_t len, bool allow_nul)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII runs eight bytes at a time: topics and JSON payloads are
         * mostly ASCII. A word passes if no byte has its high bit set and,
         * for strings, no byte is zero. */
        while (len - i >= 8) {
            uint64_t v;
            memcpy(&v, s + i, 8);
            uint64_t bad = v & HIGHS;
            if (!allow_nul)
                bad |= (v - ONES) & ~v & HIGHS;
            if (bad)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0 && !allow_nul)
                return -ERR_UTF8_NULL;
            i++;
            continue;
        }
        size_t left = len - i;
        if (c < 0xC2) /* continuation byte, or overlong C0/C1 lead */
            return -ERR_UTF8_INVALID;
        if (c < 0xE0) {
            if (left < 2 || (s[i + 1] & 0xC0) != 0x80)
                return -ERR_UTF8_INVALID;
            i += 2;
            continue;
        }
        if (c < 0xF0) {
            if (left < 3 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
                return -ERR_UTF8_INVALID;
            if (c == 0xE0 && s[i + 1] < 0xA0) /* overlong: below U+0800 */
                return -ERR_UTF8_INVALID;
            if (c == 0xED && s[i + 1] >= 0xA0) /* U+D800..U+DFFF */
                return -ERR_UTF8_SURROGATE;
            i += 3;
            continue;
        }
        if (c < 0xF5) {
            if (left < 4 || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
                (s[i + 3] & 0xC0) != 0x80)
                return -ERR_UTF8_INVALID;
            if (c == 0xF0 && s[i + 1] < 0x90) /* overlong: below U+10000 */
                return -ERR_UTF8_INVALID;
            if (c == 0xF4 && s[i + 1] >= 0x90) /* above U+10FFFF */
                return -ERR_UTF8_INVALID;
            i += 4;
            continue;
        }
        return -ERR_UTF8_INVALID; /* F5..FF never appear in UTF-8 */
    }
    return 0;
}

int mqtt_utf8_validate(const uint8_t *s, size_t len)
{
    if (!s && len)
        return -ERR_INVALID;
    return utf8__check(s, len, false);
}
