/* Topic names, topic filters and shared subscriptions [MQTT-4.7, 4.8.2]. */
#include <string.h>

#include "mqtt/internal.h"

/* Topic names and filters are UTF-8 strings, so at most 65,535 bytes
 * [MQTT-1.5.3]; a longer one cannot have come off the wire. */
#define TOPIC_MAX 65535u

/* What names and filters share: not empty [MQTT-4.7.3-1], a length that
 * fits a UTF-8 string, well-formed UTF-8 without U+0000. */
static int topic_text_check(const uint8_t *s, size_t len, int empty_err)
{
    if (len == 0)
        return empty_err;
    if (!s || len > TOPIC_MAX)
        return -ERR_INVALID;
    return utf8__check(s, len, false);
}

int mqtt_topic_name_validate(const uint8_t *s, size_t len)
{
    int rc = topic_text_check(s, len, -ERR_TOPIC_EMPTY);
    if (rc < 0)
        return rc;
    /* '+' and '#' are ASCII, so a byte scan is exact in UTF-8. */
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+' || s[i] == '#')
            return -ERR_TOPIC_WILDCARD; /* [MQTT-3.3.2-2] */
    }
    return 0;
}

int mqtt_topic_filter_validate(const uint8_t *s, size_t len)
{
    int rc = topic_text_check(s, len, -ERR_FILTER_EMPTY);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < len; i++) {
        bool level_start = i == 0 || s[i - 1] == '/';
        bool level_end = i + 1 == len || s[i + 1] == '/';
        if (s[i] == '#') {
            /* Alone in its level and the last level [MQTT-4.7.1-2]. */
            if (!level_start || i + 1 != len)
                return -ERR_FILTER_INVALID;
        } else if (s[i] == '+') {
            /* Alone in its level [MQTT-4.7.1-3]. */
            if (!level_start || !level_end)
                return -ERR_FILTER_INVALID;
        }
    }
    return 0;
}

int mqtt_share_split(const uint8_t *s, size_t len, struct mqtt_bytes *group,
                     struct mqtt_bytes *filter)
{
    static const char prefix[] = "$share/";
    const size_t plen = sizeof(prefix) - 1;
    if (!s || len < plen || memcmp(s, prefix, plen) != 0)
        return 0;
    /* ShareName: at least one character, no '/', '+' or '#' [MQTT-4.8.2-1,
     * MQTT-4.8.2-2]; then a '/' and a non-empty, valid filter. */
    size_t i = plen;
    while (i < len && s[i] != '/') {
        if (s[i] == '+' || s[i] == '#')
            return -ERR_SHARE_INVALID;
        i++;
    }
    if (i == plen || i >= len)
        return -ERR_SHARE_INVALID;
    if (utf8__check(s + plen, i - plen, false) < 0)
        return -ERR_SHARE_INVALID;
    const uint8_t *f = s + i + 1;
    size_t flen = len - i - 1;
    if (flen == 0 || mqtt_topic_filter_validate(f, flen) < 0)
        return -ERR_SHARE_INVALID;
    if (group) {
        group->ptr = s + plen;
        group->len = (uint32_t)(i - plen);
    }
    if (filter) {
        filter->ptr = f;
        filter->len = (uint32_t)flen;
    }
    return 1;
}

bool mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen)
{
    /* [MQTT-4.7.2-1]: a leading wildcard does not match a '$' topic. */
    if (tlen && topic[0] == '$' && flen && (filter[0] == '+' || filter[0] == '#'))
        return false;
    size_t f = 0, t = 0;
    for (;;) {
        size_t fe = f, te = t;
        while (fe < flen && filter[fe] != '/')
            fe++;
        if (fe - f == 1 && filter[f] == '#')
            return true; /* matches this level and everything below, or nothing */
        while (te < tlen && topic[te] != '/')
            te++;
        bool level_ok = (fe - f == 1 && filter[f] == '+') ||
                        (fe - f == te - t && memcmp(filter + f, topic + t, fe - f) == 0);
        if (!level_ok)
            return false;
        bool f_end = fe >= flen, t_end = te >= tlen;
        if (f_end && t_end)
            return true;
        if (t_end)
            /* "a/#" also matches "a" [MQTT-4.7.1-2] */
            return flen - fe == 2 && filter[fe + 1] == '#';
        if (f_end)
            return false;
        f = fe + 1;
        t = te + 1;
    }
}
