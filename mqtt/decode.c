/* Framing and decoding of MQTT 3.1, 3.1.1 and 5.0 packets.
 *
 * Every read goes through a bounded cursor (cursor.h); decoded packets hold
 * views into the input. Rule ids are from MQTT 3.1.1 unless they say 5.0;
 * most 3.1.1 ids keep their number in 5.0. */
#include <string.h>

#include "mqtt/internal.h"

int mqtt_scan(const uint8_t *buf, size_t len, uint32_t max_size)
{
    if (len == 0)
        return 0;
    if ((buf[0] >> 4) == 0)
        return -ERR_RESERVED_TYPE; /* type 0 is reserved (2.1.2, table 2-1) */
    uint32_t rl = 0;
    size_t i;
    for (i = 1; i <= 4; i++) {
        if (i >= len) {
            /* Half a remaining length: the packet is at least 1 + i header
             * bytes plus the digits seen so far (the next one may be 0 in a
             * non-minimal form), so an oversized announcement is refused
             * before its header is even complete. */
            if (max_size && (uint64_t)1 + i + rl > max_size)
                return -ERR_PACKET_TOO_LARGE;
            return 0;
        }
        uint8_t b = buf[i];
        rl |= (uint32_t)(b & 0x7F) << (7 * (i - 1));
        if (!(b & 0x80))
            break;
    }
    if (i > 4)
        return -ERR_VARINT_OVERLONG; /* [MQTT-1.5.5-1]: 4 bytes at most */
    uint64_t total = 1 + i + (uint64_t)rl;
    if (max_size && total > max_size)
        return -ERR_PACKET_TOO_LARGE;
    if (len < total)
        return 0;
    return (int)total;
}

/* The cursor must be exactly at the end: the remaining length has to match
 * the fields [MQTT-2.1.4]. */
static int finish(const struct cursor *c)
{
    if (c->err)
        return c->err;
    if (c->p != c->end)
        return -ERR_TRAILING_BYTES;
    return 0;
}

static bool bytes_eq(struct mqtt_bytes b, const char *s, size_t n)
{
    return b.len == n && memcmp(b.ptr, s, n) == 0;
}

static int decode_connect(struct cursor *c, struct mqtt_connect *m)
{
    memset(m, 0, sizeof(*m));
    struct mqtt_bytes name = cursor_binary(c);
    uint8_t level = cursor_u8(c);
    uint8_t flags = cursor_u8(c);
    m->keepalive = cursor_u16(c);
    if (c->err)
        return c->err;

    /* Protocol name and level [MQTT-3.1.2-1, MQTT-3.1.2-2]: "MQIsdp" with 3,
     * "MQTT" with 4 or 5. An unknown name is not MQTT at all; a known name
     * with a level it does not go with is an unsupported version (the broker
     * answers CONNACK 0x01 / 0x84). The top bit of the level is the mosquitto
     * bridge marker ("try_private", 0x83/0x84); mosquitto accepts it, so do
     * we, reporting the level without it. */
    bool is_mqtt = bytes_eq(name, "MQTT", 4);
    bool is_mqisdp = bytes_eq(name, "MQIsdp", 6);
    if (!is_mqtt && !is_mqisdp)
        return -ERR_PROTOCOL_NAME;
    uint8_t v = level & 0x7F;
    if (!(is_mqisdp && v == MQTT_V31) && !(is_mqtt && (v == MQTT_V311 || v == MQTT_V5)))
        return -ERR_PROTOCOL_VERSION;
    m->version = v;

    if (flags & 0x01)
        return -ERR_CONNECT_RESERVED; /* [MQTT-3.1.2-3] */
    m->clean_start = flags & 0x02;
    m->will_flag = flags & 0x04;
    m->will_qos = (flags >> 3) & 0x03;
    m->will_retain = flags & 0x20;
    m->password_flag = flags & 0x40;
    m->username_flag = flags & 0x80;
    if (!m->will_flag && (m->will_qos || m->will_retain))
        return -ERR_WILL_FLAGS; /* [MQTT-3.1.2-11, -13, -15] */
    if (m->will_qos == 3)
        return -ERR_BAD_QOS; /* [MQTT-3.1.2-14] */
    /* 5.0 allows a password without a user name (3.1.2.9). */
    if (v != MQTT_V5 && m->password_flag && !m->username_flag)
        return -ERR_PASSWORD_WITHOUT_USERNAME; /* [MQTT-3.1.2-22] */

    int rc;
    if (v == MQTT_V5 && (rc = props__decode(c, PROPS_CTX(MQTT_CONNECT), &m->props)) < 0)
        return rc;

    /* Client id: a UTF-8 string [MQTT-3.1.3-4]. Its length (3.1 said 1..23
     * bytes) and emptiness are broker policy [MQTT-3.1.3-5..8]: decoded as
     * sent. */
    m->client_id = cursor_binary(c);
    if (c->err)
        return c->err;
    if ((rc = utf8__check(m->client_id.ptr, m->client_id.len, false)) < 0)
        return rc;

    if (m->will_flag) {
        if (v == MQTT_V5 && (rc = props__decode(c, PROPS_CTX_WILL, &m->will_props)) < 0)
            return rc;
        m->will_topic = cursor_binary(c);
        m->will_payload = cursor_binary(c);
        if (c->err)
            return c->err;
        /* The will topic is a topic name: UTF-8 [MQTT-3.1.3-10], no
         * wildcards, not empty (it will be published as is). */
        if ((rc = mqtt_topic_name_validate(m->will_topic.ptr, m->will_topic.len)) < 0)
            return rc;
        if ((m->will_props.present & MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT)) &&
            m->will_props.payload_format == 1 &&
            utf8__check(m->will_payload.ptr, m->will_payload.len, true) < 0)
            return -ERR_PAYLOAD_NOT_UTF8; /* 5.0 3.1.3.2.3 */
    }
    if (m->username_flag) {
        m->username = cursor_binary(c);
        if (c->err)
            return c->err;
        if ((rc = utf8__check(m->username.ptr, m->username.len, false)) < 0)
            return rc; /* [MQTT-3.1.3-11] */
    }
    /* The password is binary data [MQTT 3.1.3.5]: not checked as UTF-8. */
    if (m->password_flag)
        m->password = cursor_binary(c);
    return finish(c);
}

static int decode_connack(struct cursor *c, uint8_t version, struct mqtt_connack *m)
{
    memset(m, 0, sizeof(*m));
    uint8_t flags = cursor_u8(c);
    m->reason = cursor_u8(c);
    if (c->err)
        return c->err;
    /* 3.1 has no session present flag: the whole byte is unused there. In
     * 3.1.1 and 5.0, bits 7-1 are reserved [MQTT-3.2.2-1]. Reason codes are
     * not checked: acting on them is the client's business. */
    if (version != MQTT_V31) {
        if (flags & 0xFE)
            return -ERR_RESERVED_FLAGS;
        m->session_present = flags & 0x01;
    }
    int rc;
    if (version == MQTT_V5 && (rc = props__decode(c, PROPS_CTX(MQTT_CONNACK), &m->props)) < 0)
        return rc;
    return finish(c);
}

static int decode_publish(struct cursor *c, uint8_t version, uint8_t flags,
                          struct mqtt_publish *m)
{
    memset(m, 0, sizeof(*m));
    m->qos = (flags >> 1) & 0x03;
    m->dup = flags & 0x08;
    m->retain = flags & 0x01;
    if (m->qos == 3)
        return -ERR_BAD_QOS; /* [MQTT-3.3.1-4] */
    /* DUP must be 0 for QoS 0 [MQTT-3.3.1-2]: a fixed-header flag the packet
     * type forbids. 3.1 states no such rule, so it is kept as received. */
    if (m->dup && m->qos == 0 && version != MQTT_V31)
        return -ERR_RESERVED_FLAGS;
    m->topic = cursor_binary(c);
    if (m->qos)
        m->packet_id = cursor_u16(c);
    if (c->err)
        return c->err;
    int rc;
    /* An empty topic is allowed only in 5.0, where a Topic Alias must then
     * stand for it; the broker checks that [MQTT-3.3.2-1, 5.0 3.3.2.1]. */
    if (m->topic.len == 0) {
        if (version != MQTT_V5)
            return -ERR_TOPIC_EMPTY;
    } else if ((rc = mqtt_topic_name_validate(m->topic.ptr, m->topic.len)) < 0) {
        return rc; /* [MQTT-3.3.2-1, MQTT-3.3.2-2] */
    }
    if (m->qos && m->packet_id == 0)
        return -ERR_PACKET_ID_ZERO; /* [MQTT-2.3.1-1], 5.0 [MQTT-2.2.1-3] */
    if (version == MQTT_V5 && (rc = props__decode(c, PROPS_CTX(MQTT_PUBLISH), &m->props)) < 0)
        return rc;
    m->payload = cursor_bytes(c, cursor_left(c));
    /* Payload Format Indicator 1: the payload is UTF-8 character data
     * [MQTT-3.3.2-4] (well-formed, where U+0000 is allowed). */
    if ((m->props.present & MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT)) &&
        m->props.payload_format == 1 && utf8__check(m->payload.ptr, m->payload.len, true) < 0)
        return -ERR_PAYLOAD_NOT_UTF8;
    return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
static int decode_ack(struct cursor *c, uint8_t version, uint8_t type, struct mqtt_ack *m)
{
    memset(m, 0, sizeof(*m));
    m->packet_id = cursor_u16(c);
    if (c->err)
        return c->err;
    /* An ack names the packet it acknowledges, which never has id 0
     * [MQTT-2.3.1-1]; mosquitto refuses it too. */
    if (m->packet_id == 0)
        return -ERR_PACKET_ID_ZERO;
    /* 5.0: remaining length 2 means reason 0x00, and below 4 there are no
     * properties [MQTT 5.0 3.4.2.1, 3.4.2.2.1]. */
    if (version == MQTT_V5 && cursor_left(c) > 0) {
        m->reason = cursor_u8(c);
        int rc;
        if (cursor_left(c) > 0 && (rc = props__decode(c, PROPS_CTX(type), &m->props)) < 0)
            return rc;
    }
    return finish(c);
}

/* SUBSCRIBE and UNSUBSCRIBE. Every entry is checked here so that the
 * iterators cannot fail; wildcard placement and empty filters are not:
 * the broker answers those per filter (SUBACK 0x80 / 0x8F) after calling
 * mqtt_topic_filter_validate. */
static int decode_subscribe(struct cursor *c, uint8_t version, uint8_t type,
                            struct mqtt_subscribe *m)
{
    memset(m, 0, sizeof(*m));
    bool sub = type == MQTT_SUBSCRIBE;
    m->packet_id = cursor_u16(c);
    if (c->err)
        return c->err;
    if (m->packet_id == 0)
        return -ERR_PACKET_ID_ZERO; /* [MQTT-2.3.1-1], 5.0 [MQTT-2.2.1-3] */
    int rc;
    if (version == MQTT_V5 && (rc = props__decode(c, PROPS_CTX(type), &m->props)) < 0)
        return rc;
    m->entries = cursor_bytes(c, cursor_left(c));
    struct cursor e = cursor_init(m->entries.ptr, m->entries.len);
    uint32_t count = 0;
    while (e.p < e.end) {
        struct mqtt_bytes f = cursor_binary(&e);
        uint8_t o = sub ? cursor_u8(&e) : 0;
        if (e.err)
            return e.err;
        if ((rc = utf8__check(f.ptr, f.len, false)) < 0)
            return rc; /* [MQTT-3.8.3-1, MQTT-3.10.3-1] */
        if (sub) {
            if (version == MQTT_V5) {
                if (o & 0xC0)
                    return -ERR_SUB_OPTIONS_RESERVED; /* 5.0 [MQTT-3.8.3-5] */
                if (((o & MQTT_SUBOPT_RETAIN_HANDLING_MASK) >>
                     MQTT_SUBOPT_RETAIN_HANDLING_SHIFT) == 3)
                    return -ERR_RETAIN_HANDLING; /* 5.0 3.8.3.1 */
            } else if (o & 0xFC) {
                return -ERR_SUB_OPTIONS_RESERVED; /* 3.1.1 [MQTT-3.8.3-4] */
            }
            if ((o & MQTT_SUBOPT_QOS_MASK) == 3)
                return -ERR_BAD_QOS; /* [MQTT-3.8.3-4 in 3.1.1, 5.0 3.8.3.1] */
        }
        /* count is 16 bits; 65,536 filters (at least 196 KiB) is no real
         * client, and the SUBACK could not say as much. */
        if (++count > UINT16_MAX)
            return -ERR_PACKET_TOO_LARGE;
    }
    if (count == 0)
        return -ERR_NO_TOPIC_FILTERS; /* [MQTT-3.8.3-3, MQTT-3.10.3-2] */
    m->count = (uint16_t)count;
    return 0;
}

/* SUBACK and UNSUBACK. */
static int decode_suback(struct cursor *c, uint8_t version, uint8_t type, struct mqtt_suback *m)
{
    memset(m, 0, sizeof(*m));
    m->packet_id = cursor_u16(c);
    if (c->err)
        return c->err;
    if (m->packet_id == 0)
        return -ERR_PACKET_ID_ZERO;
    int rc;
    if (version == MQTT_V5 && (rc = props__decode(c, PROPS_CTX(type), &m->props)) < 0)
        return rc;
    if (type == MQTT_UNSUBACK && version != MQTT_V5)
        return finish(c); /* no payload before 5.0 [MQTT 3.1.1 3.11.3] */
    struct mqtt_bytes r = cursor_bytes(c, cursor_left(c));
    /* One reason per filter [MQTT-3.9.3-1]: at least one. */
    if (r.len == 0)
        return -ERR_NO_TOPIC_FILTERS;
    if (r.len > UINT16_MAX)
        return -ERR_PACKET_TOO_LARGE;
    m->reasons = r.ptr;
    m->count = (uint16_t)r.len;
    return 0;
}

/* DISCONNECT and AUTH: empty before 5.0; in 5.0, remaining length 0 means
 * reason 0x00 and 1 means no properties [MQTT 5.0 3.14.2.1, 3.15.2.1]. */
static int decode_reason(struct cursor *c, uint8_t version, uint8_t type, struct mqtt_reason *m)
{
    memset(m, 0, sizeof(*m));
    if (version == MQTT_V5 && cursor_left(c) > 0) {
        m->reason = cursor_u8(c);
        int rc;
        if (cursor_left(c) > 0 && (rc = props__decode(c, PROPS_CTX(type), &m->props)) < 0)
            return rc;
    }
    return finish(c);
}

/* Fixed-header flags [MQTT-2.1.3-1]: 0b0010 for PUBREL, SUBSCRIBE and
 * UNSUBSCRIBE, 0 for the rest; PUBLISH's are checked by its decoder. 3.1
 * set DUP on a resent PUBREL, SUBSCRIBE or UNSUBSCRIBE (3.1 section 2.1),
 * so 0b1010 passes there. */
static int check_flags(uint8_t type, uint8_t flags, uint8_t version)
{
    switch (type) {
    case MQTT_PUBLISH:
        return 0;
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        if (flags == 0x02 || (version == MQTT_V31 && flags == 0x0A))
            return 0;
        return -ERR_RESERVED_FLAGS;
    default:
        return flags ? -ERR_RESERVED_FLAGS : 0;
    }
}

int mqtt_decode(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_packet *out)
{
    struct cursor c = cursor_init(pkt, len);
    uint8_t b0 = cursor_u8(&c);
    uint32_t rl = cursor_varint(&c);
    if (c.err)
        return c.err;
    if (rl > cursor_left(&c))
        return -ERR_TRUNCATED;
    if (rl < cursor_left(&c))
        return -ERR_TRAILING_BYTES;

    uint8_t type = b0 >> 4;
    uint8_t flags = b0 & 0x0F;
    out->type = type;
    out->flags = flags;
    if (type == 0)
        return -ERR_RESERVED_TYPE;
    /* Before CONNECT the connection has no version yet: anything else is
     * decoded by 3.1.1 rules so that the session can answer it as "first
     * packet must be CONNECT". */
    if (version != MQTT_V31 && version != MQTT_V311 && version != MQTT_V5)
        version = MQTT_V311;
    if (type == MQTT_AUTH && version != MQTT_V5)
        return -ERR_TYPE_NOT_IN_VERSION;
    int rc = check_flags(type, flags, type == MQTT_CONNECT ? MQTT_V311 : version);
    if (rc < 0)
        return rc;

    switch (type) {
    case MQTT_CONNECT:
        return decode_connect(&c, &out->u.connect);
    case MQTT_CONNACK:
        return decode_connack(&c, version, &out->u.connack);
    case MQTT_PUBLISH:
        return decode_publish(&c, version, flags, &out->u.publish);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        return decode_ack(&c, version, type, &out->u.ack);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        return decode_subscribe(&c, version, type, &out->u.subscribe);
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        return decode_suback(&c, version, type, &out->u.suback);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        return finish(&c);
    default: /* DISCONNECT, AUTH */
        return decode_reason(&c, version, type, &out->u.reason);
    }
}

int mqtt_subscribe_next(const struct mqtt_subscribe *s, size_t *pos, struct mqtt_bytes *filter,
                        uint8_t *options)
{
    if (*pos >= s->entries.len)
        return 0;
    struct cursor c = cursor_init(s->entries.ptr + *pos, s->entries.len - *pos);
    struct mqtt_bytes f = cursor_binary(&c);
    uint8_t o = cursor_u8(&c);
    if (c.err) {
        *pos = s->entries.len;
        return 0;
    }
    *pos = (size_t)(c.p - s->entries.ptr);
    if (filter)
        *filter = f;
    if (options)
        *options = o;
    return 1;
}

int mqtt_unsubscribe_next(const struct mqtt_subscribe *s, size_t *pos, struct mqtt_bytes *filter)
{
    if (*pos >= s->entries.len)
        return 0;
    struct cursor c = cursor_init(s->entries.ptr + *pos, s->entries.len - *pos);
    struct mqtt_bytes f = cursor_binary(&c);
    if (c.err) {
        *pos = s->entries.len;
        return 0;
    }
    *pos = (size_t)(c.p - s->entries.ptr);
    if (filter)
        *filter = f;
    return 1;
}
