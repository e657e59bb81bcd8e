/* Encoding of MQTT 3.1, 3.1.1 and 5.0 packets.
 *
 * Each encoder first adds up the remaining length (plain arithmetic; the
 * only walk is over user properties in props.raw), which also answers a
 * NULL buffer, then checks the capacity once and writes. So a buffer that
 * is too small gets nothing written into it, and the writer's own bound
 * check is a second line of defence, not the first. The encoder trusts
 * the broker's strings to be valid UTF-8 (they were checked when they came
 * in); it refuses only what it cannot represent or what the peer's
 * decoder must reject (QoS 3, packet id 0, a property not allowed in the
 * packet). */
#include <string.h>

#include "mqtt/internal.h"

#define STR_MAX 65535u

/* Starts the packet: with a NULL buffer reports the total size (> 0),
 * else checks the capacity and writes the fixed header (returns 0). */
static int64_t begin(struct writer *w, uint8_t b0, uint64_t rl)
{
    if (rl > MQTT_VARINT_MAX)
        return -ERR_INVALID; /* remaining length is at most 268,435,455 (2.1.4) */
    uint64_t total = 1 + varint_len((uint32_t)rl) + rl;
    if (!w->buf)
        return (int64_t)total;
    if (total > w->cap)
        return -ERR_NOSPACE;
    writer_u8(w, b0);
    writer_varint(w, (uint32_t)rl);
    return 0;
}

static bool str_ok(struct mqtt_bytes b)
{
    return b.len <= STR_MAX && (b.ptr || b.len == 0);
}

/* Property length prefix plus block, for 5.0. */
static uint64_t props_part(int64_t size)
{
    return varint_len((uint32_t)size) + (uint64_t)size;
}

static void props_write(struct writer *w, const struct mqtt_props *p, int64_t size)
{
    writer_varint(w, (uint32_t)size);
    props__write(w, p);
}

static int64_t encode_connect(const struct mqtt_connect *m, uint8_t v, struct writer *w)
{
    if (m->will_flag && m->will_qos > 2)
        return -ERR_INVALID;
    if (v != MQTT_V5 && m->password_flag && !m->username_flag)
        return -ERR_INVALID; /* [MQTT-3.1.2-22] */
    if (!str_ok(m->client_id) || !str_ok(m->username) || !str_ok(m->password) ||
        !str_ok(m->will_topic) || !str_ok(m->will_payload))
        return -ERR_INVALID;
    if (m->will_flag && m->will_topic.len == 0)
        return -ERR_INVALID;

    uint64_t rl = (v == MQTT_V31 ? 2 + 6 : 2 + 4) + 1 + 1 + 2; /* 3.1.2: name, level, flags, keep alive */
    int64_t ps = 0, wps = 0;
    if (v == MQTT_V5) {
        if ((ps = props__size(&m->props, PROPS_CTX(MQTT_CONNECT))) < 0)
            return ps;
        rl += props_part(ps);
    }
    rl += 2 + (uint64_t)m->client_id.len;
    if (m->will_flag) {
        if (v == MQTT_V5) {
            if ((wps = props__size(&m->will_props, PROPS_CTX_WILL)) < 0)
                return wps;
            rl += props_part(wps);
        }
        rl += 2 + (uint64_t)m->will_topic.len + 2 + (uint64_t)m->will_payload.len;
    }
    if (m->username_flag)
        rl += 2 + (uint64_t)m->username.len;
    if (m->password_flag)
        rl += 2 + (uint64_t)m->password.len;

    int64_t rc = begin(w, MQTT_CONNECT << 4, rl);
    if (rc)
        return rc;
    if (v == MQTT_V31) {
        writer_u16(w, 6);
        writer_put(w, "MQIsdp", 6);
    } else {
        writer_u16(w, 4);
        writer_put(w, "MQTT", 4);
    }
    writer_u8(w, v);
    uint8_t flags = 0;
    if (m->clean_start)
        flags |= 0x02;
    if (m->will_flag) {
        flags |= 0x04 | (uint8_t)(m->will_qos << 3);
        if (m->will_retain)
            flags |= 0x20;
    }
    if (m->password_flag)
        flags |= 0x40;
    if (m->username_flag)
        flags |= 0x80;
    writer_u8(w, flags);
    writer_u16(w, m->keepalive);
    if (v == MQTT_V5)
        props_write(w, &m->props, ps);
    writer_binary(w, m->client_id);
    if (m->will_flag) {
        if (v == MQTT_V5)
            props_write(w, &m->will_props, wps);
        writer_binary(w, m->will_topic);
        writer_binary(w, m->will_payload);
    }
    if (m->username_flag)
        writer_binary(w, m->username);
    if (m->password_flag)
        writer_binary(w, m->password);
    return 0;
}

static int64_t encode_connack(const struct mqtt_connack *m, uint8_t v, struct writer *w)
{
    uint64_t rl = 2;
    int64_t ps = 0;
    if (v == MQTT_V5) {
        if ((ps = props__size(&m->props, PROPS_CTX(MQTT_CONNACK))) < 0)
            return ps;
        rl += props_part(ps);
    }
    int64_t rc = begin(w, MQTT_CONNACK << 4, rl);
    if (rc)
        return rc;
    /* 3.1 has no session present flag (the byte is unused). */
    writer_u8(w, (v != MQTT_V31 && m->session_present) ? 0x01 : 0x00);
    writer_u8(w, m->reason);
    if (v == MQTT_V5)
        props_write(w, &m->props, ps);
    return 0;
}

static int64_t encode_publish(const struct mqtt_publish *m, uint8_t v, struct writer *w)
{
    if (m->qos > 2 || (m->qos && m->packet_id == 0) || !str_ok(m->topic) ||
        (m->payload.len && !m->payload.ptr))
        return -ERR_INVALID;
    if (m->topic.len == 0 && v != MQTT_V5)
        return -ERR_INVALID; /* only 5.0 has topic aliases */
    uint64_t rl = 2 + (uint64_t)m->topic.len + (m->qos ? 2 : 0) + m->payload.len;
    int64_t ps = 0;
    if (v == MQTT_V5) {
        if ((ps = props__size(&m->props, PROPS_CTX(MQTT_PUBLISH))) < 0)
            return ps;
        rl += props_part(ps);
    }
    /* DUP is cleared at QoS 0 [MQTT-3.3.1-2], so a message resent at a
     * downgraded QoS is still valid; 3.1 has no such rule. */
    bool dup = m->dup && (m->qos || v == MQTT_V31);
    uint8_t b0 = (uint8_t)((MQTT_PUBLISH << 4) | (dup ? 0x08 : 0) | (m->qos << 1) |
                           (m->retain ? 0x01 : 0));
    int64_t rc = begin(w, b0, rl);
    if (rc)
        return rc;
    writer_binary(w, m->topic);
    if (m->qos)
        writer_u16(w, m->packet_id);
    if (v == MQTT_V5)
        props_write(w, &m->props, ps);
    writer_put(w, m->payload.ptr, m->payload.len);
    return 0;
}

static int64_t encode_ack(const struct mqtt_ack *m, uint8_t type, uint8_t v, struct writer *w)
{
    if (m->packet_id == 0)
        return -ERR_INVALID;
    uint8_t b0 = (uint8_t)((type << 4) | (type == MQTT_PUBREL ? 0x02 : 0));
    uint64_t rl = 2;
    int64_t ps = 0;
    if (v == MQTT_V5) {
        if ((ps = props__size(&m->props, PROPS_CTX(type))) < 0)
            return ps;
        /* Short forms: reason 0 and no properties is 2 bytes, no
         * properties is 3 [MQTT 5.0 3.4.2.1]. */
        if (ps > 0)
            rl = 3 + props_part(ps);
        else if (m->reason != 0)
            rl = 3;
    }
    int64_t rc = begin(w, b0, rl);
    if (rc)
        return rc;
    writer_u16(w, m->packet_id);
    if (rl >= 3)
        writer_u8(w, m->reason);
    if (rl > 3)
        props_write(w, &m->props, ps);
    return 0;
}

/* Subscription options as the peer's version has them: before 5.0 only the
 * QoS bits exist (a 5.0 subscription bridged to a 3.1.1 peer loses the
 * rest); 5.0 refuses reserved bits and retain handling 3. */
static int sub_option(uint8_t o, uint8_t v, uint8_t *out)
{
    if ((o & MQTT_SUBOPT_QOS_MASK) == 3)
        return -ERR_INVALID;
    if (v != MQTT_V5) {
        *out = o & MQTT_SUBOPT_QOS_MASK;
        return 0;
    }
    if ((o & 0xC0) ||
        ((o & MQTT_SUBOPT_RETAIN_HANDLING_MASK) >> MQTT_SUBOPT_RETAIN_HANDLING_SHIFT) == 3)
        return -ERR_INVALID;
    *out = o;
    return 0;
}

/* SUBSCRIBE and UNSUBSCRIBE, from filters[] (and options[]) or, when
 * filters is NULL, from a decoded packet's entries. */
static int64_t encode_subscribe(const struct mqtt_subscribe *m, uint8_t type, uint8_t v,
                                struct writer *w)
{
    bool sub = type == MQTT_SUBSCRIBE;
    if (m->packet_id == 0)
        return -ERR_INVALID;
    uint64_t rl = 2;
    int64_t ps = 0;
    if (v == MQTT_V5) {
        if ((ps = props__size(&m->props, PROPS_CTX(type))) < 0)
            return ps;
        rl += props_part(ps);
    }
    size_t n = 0;
    uint8_t o = 0;
    if (m->filters) {
        for (n = 0; n < m->count; n++) {
            if (!str_ok(m->filters[n]))
                return -ERR_INVALID;
            if (sub && sub_option(m->options ? m->options[n] : 0, v, &o) < 0)
                return -ERR_INVALID;
            rl += 2 + (uint64_t)m->filters[n].len + (sub ? 1 : 0);
        }
    } else {
        size_t pos = 0;
        struct mqtt_bytes f;
        uint8_t opt = 0;
        while (sub ? mqtt_subscribe_next(m, &pos, &f, &opt) : mqtt_unsubscribe_next(m, &pos, &f)) {
            if (sub && sub_option(opt, v, &o) < 0)
                return -ERR_INVALID;
            rl += 2 + (uint64_t)f.len + (sub ? 1 : 0);
            n++;
        }
    }
    if (n == 0 || n > UINT16_MAX)
        return -ERR_INVALID; /* [MQTT-3.8.3-3, MQTT-3.10.3-2] */

    int64_t rc = begin(w, (uint8_t)((type << 4) | 0x02), rl);
    if (rc)
        return rc;
    writer_u16(w, m->packet_id);
    if (v == MQTT_V5)
        props_write(w, &m->props, ps);
    if (m->filters) {
        for (size_t i = 0; i < m->count; i++) {
            writer_binary(w, m->filters[i]);
            if (sub) {
                sub_option(m->options ? m->options[i] : 0, v, &o);
                writer_u8(w, o);
            }
        }
    } else {
        size_t pos = 0;
        struct mqtt_bytes f;
        uint8_t opt = 0;
        while (sub ? mqtt_subscribe_next(m, &pos, &f, &opt) : mqtt_unsubscribe_next(m, &pos, &f)) {
            writer_binary(w, f);
            if (sub) {
                sub_option(opt, v, &o);
                writer_u8(w, o);
            }
        }
    }
    return 0;
}

static int64_t encode_suback(const struct mqtt_suback *m, uint8_t type, uint8_t v,
                             struct writer *w)
{
    if (m->packet_id == 0)
        return -ERR_INVALID;
    /* UNSUBACK has no payload before 5.0 [MQTT 3.1.1 3.11.3]. */
    bool reasons = type == MQTT_SUBACK || v == MQTT_V5;
    if (reasons && (m->count == 0 || !m->reasons))
        return -ERR_INVALID; /* one per filter [MQTT-3.9.3-1] */
    uint64_t rl = 2 + (reasons ? m->count : 0);
    int64_t ps = 0;
    if (v == MQTT_V5) {
        if ((ps = props__size(&m->props, PROPS_CTX(type))) < 0)
            return ps;
        rl += props_part(ps);
    }
    int64_t rc = begin(w, (uint8_t)(type << 4), rl);
    if (rc)
        return rc;
    writer_u16(w, m->packet_id);
    if (v == MQTT_V5)
        props_write(w, &m->props, ps);
    if (reasons)
        writer_put(w, m->reasons, m->count);
    return 0;
}

/* DISCONNECT and AUTH: empty for reason 0 without properties, 1 byte for a
 * reason without properties [MQTT 5.0 3.14.2.1, 3.15.2.1]. */
static int64_t encode_reason(const struct mqtt_reason *m, uint8_t type, uint8_t v,
                             struct writer *w)
{
    uint64_t rl = 0;
    int64_t ps = 0;
    if (v == MQTT_V5) {
        if ((ps = props__size(&m->props, PROPS_CTX(type))) < 0)
            return ps;
        if (ps > 0)
            rl = 1 + props_part(ps);
        else if (m->reason != 0)
            rl = 1;
    }
    int64_t rc = begin(w, (uint8_t)(type << 4), rl);
    if (rc)
        return rc;
    if (rl >= 1)
        writer_u8(w, m->reason);
    if (rl > 1)
        props_write(w, &m->props, ps);
    return 0;
}

int mqtt_encode(const struct mqtt_packet *p, uint8_t version, uint8_t *buf, size_t cap)
{
    if (!p || (version != MQTT_V31 && version != MQTT_V311 && version != MQTT_V5))
        return -ERR_INVALID;
    struct writer w = {buf, 0, buf ? cap : 0, 0};
    int64_t rc;
    switch (p->type) {
    case MQTT_CONNECT:
        /* The version argument decides; connect.version is not consulted. */
        rc = encode_connect(&p->u.connect, version, &w);
        break;
    case MQTT_CONNACK:
        rc = encode_connack(&p->u.connack, version, &w);
        break;
    case MQTT_PUBLISH:
        rc = encode_publish(&p->u.publish, version, &w);
        break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        rc = encode_ack(&p->u.ack, p->type, version, &w);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        rc = encode_subscribe(&p->u.subscribe, p->type, version, &w);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        rc = encode_suback(&p->u.suback, p->type, version, &w);
        break;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
        rc = begin(&w, (uint8_t)(p->type << 4), 0);
        break;
    case MQTT_DISCONNECT:
        rc = encode_reason(&p->u.reason, p->type, version, &w);
        break;
    case MQTT_AUTH:
        if (version != MQTT_V5)
            return -ERR_TYPE_NOT_IN_VERSION;
        rc = encode_reason(&p->u.reason, p->type, version, &w);
        break;
    default:
        return -ERR_INVALID;
    }
    if (rc != 0)
        return (int)rc; /* an error, or the size when only measuring */
    return w.err ? w.err : (int)w.len;
}
