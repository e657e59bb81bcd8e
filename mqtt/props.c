/* MQTT 5 properties [MQTT-2.2.2]: one table gives each identifier its
 * value type, the packets that may carry it and the field that holds it. */
#include <stddef.h>
#include <string.h>

#include "mqtt/internal.h"

enum prop_type {
    PT_NONE = 0, /* unknown identifier */
    PT_BYTE,
    PT_U16,
    PT_U32,
    PT_VARINT,
    PT_STRING, /* UTF-8 string [MQTT-1.5.4] */
    PT_BINARY, /* binary data [MQTT-1.5.6] */
    PT_PAIR,   /* UTF-8 string pair [MQTT-1.5.7] */
};

struct prop_info {
    uint8_t type;
    uint8_t max;      /* PT_BYTE: largest valid value */
    uint16_t allowed; /* PROPS_CTX bits */
    uint16_t offset;  /* of the field in struct mqtt_props */
};

#define C(t) PROPS_CTX(MQTT_##t)
#define W PROPS_CTX_WILL
#define ACKS (C(PUBACK) | C(PUBREC) | C(PUBREL) | C(PUBCOMP))
#define ALL                                                                                    \
    (C(CONNECT) | C(CONNACK) | C(PUBLISH) | W | ACKS | C(SUBSCRIBE) | C(SUBACK) |             \
     C(UNSUBSCRIBE) | C(UNSUBACK) | C(DISCONNECT) | C(AUTH))
#define F(field) offsetof(struct mqtt_props, field)

/* The table of MQTT 5.0 section 2.2.2.2. */
static const struct prop_info prop_table[64] = {
    [MQTT_PROP_PAYLOAD_FORMAT] = {PT_BYTE, 1, C(PUBLISH) | W, F(payload_format)},
    [MQTT_PROP_MESSAGE_EXPIRY] = {PT_U32, 0, C(PUBLISH) | W, F(message_expiry)},
    [MQTT_PROP_CONTENT_TYPE] = {PT_STRING, 0, C(PUBLISH) | W, F(content_type)},
    [MQTT_PROP_RESPONSE_TOPIC] = {PT_STRING, 0, C(PUBLISH) | W, F(response_topic)},
    [MQTT_PROP_CORRELATION_DATA] = {PT_BINARY, 0, C(PUBLISH) | W, F(correlation_data)},
    [MQTT_PROP_SUBSCRIPTION_ID] = {PT_VARINT, 0, C(PUBLISH) | C(SUBSCRIBE), F(sub_id)},
    [MQTT_PROP_SESSION_EXPIRY] = {PT_U32, 0, C(CONNECT) | C(CONNACK) | C(DISCONNECT),
                                  F(session_expiry)},
    [MQTT_PROP_ASSIGNED_CLIENT_ID] = {PT_STRING, 0, C(CONNACK), F(assigned_client_id)},
    [MQTT_PROP_SERVER_KEEPALIVE] = {PT_U16, 0, C(CONNACK), F(server_keepalive)},
    [MQTT_PROP_AUTH_METHOD] = {PT_STRING, 0, C(CONNECT) | C(CONNACK) | C(AUTH), F(auth_method)},
    [MQTT_PROP_AUTH_DATA] = {PT_BINARY, 0, C(CONNECT) | C(CONNACK) | C(AUTH), F(auth_data)},
    [MQTT_PROP_REQUEST_PROBLEM_INFO] = {PT_BYTE, 1, C(CONNECT), F(request_problem_info)},
    [MQTT_PROP_WILL_DELAY] = {PT_U32, 0, W, F(will_delay)},
    [MQTT_PROP_REQUEST_RESPONSE_INFO] = {PT_BYTE, 1, C(CONNECT), F(request_response_info)},
    [MQTT_PROP_RESPONSE_INFO] = {PT_STRING, 0, C(CONNACK), F(response_info)},
    [MQTT_PROP_SERVER_REFERENCE] = {PT_STRING, 0, C(CONNACK) | C(DISCONNECT),
                                    F(server_reference)},
    [MQTT_PROP_REASON_STRING] = {PT_STRING, 0,
                                 C(CONNACK) | ACKS | C(SUBACK) | C(UNSUBACK) | C(DISCONNECT) |
                                     C(AUTH),
                                 F(reason_string)},
    [MQTT_PROP_RECEIVE_MAX] = {PT_U16, 0, C(CONNECT) | C(CONNACK), F(receive_max)},
    [MQTT_PROP_TOPIC_ALIAS_MAX] = {PT_U16, 0, C(CONNECT) | C(CONNACK), F(topic_alias_max)},
    [MQTT_PROP_TOPIC_ALIAS] = {PT_U16, 0, C(PUBLISH), F(topic_alias)},
    [MQTT_PROP_MAX_QOS] = {PT_BYTE, 1, C(CONNACK), F(max_qos)},
    [MQTT_PROP_RETAIN_AVAILABLE] = {PT_BYTE, 1, C(CONNACK), F(retain_available)},
    [MQTT_PROP_USER_PROPERTY] = {PT_PAIR, 0, ALL, 0},
    [MQTT_PROP_MAX_PACKET_SIZE] = {PT_U32, 0, C(CONNECT) | C(CONNACK), F(max_packet_size)},
    [MQTT_PROP_WILDCARD_SUB_AVAILABLE] = {PT_BYTE, 1, C(CONNACK), F(wildcard_sub_available)},
    [MQTT_PROP_SUB_ID_AVAILABLE] = {PT_BYTE, 1, C(CONNACK), F(sub_id_available)},
    [MQTT_PROP_SHARED_SUB_AVAILABLE] = {PT_BYTE, 1, C(CONNACK), F(shared_sub_available)},
};

#define FIELD(p, off, type) ((type *)(void *)((char *)(p) + (off)))
#define CFIELD(p, off, type) ((const type *)(const void *)((const char *)(p) + (off)))

int props__decode(struct cursor *c, unsigned ctx, struct mqtt_props *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t n = cursor_varint(c);
    if (c->err)
        return c->err;
    /* The block must fit in what is left of the packet [MQTT-2.2.2]. */
    out->raw = cursor_bytes(c, n);
    if (c->err)
        return c->err;

    struct cursor pc = cursor_init(out->raw.ptr, out->raw.len);
    while (pc.p < pc.end) {
        /* Identifiers are variable byte integers, but every defined one is a
         * single byte below 0x80, so any byte not in the table (including a
         * continuation byte) names an unknown property. */
        uint8_t id = *pc.p++;
        const struct prop_info *pi = id < 64 ? &prop_table[id] : NULL;
        if (!pi || pi->type == PT_NONE)
            return -ERR_PROPERTY_UNKNOWN;
        if (!(pi->allowed & ctx))
            return -ERR_PROPERTY_NOT_ALLOWED; /* [MQTT-2.2.2-1] */
        uint64_t bit = MQTT_PROP_BIT(id);
        switch (pi->type) {
        case PT_BYTE: {
            if (out->present & bit)
                return -ERR_PROPERTY_DUPLICATE;
            uint8_t v = cursor_u8(&pc);
            if (pc.err)
                return pc.err;
            /* Every byte property is 0 or 1: a Protocol Error otherwise
             * [MQTT 5.0 3.1.2.11.7-8, 3.2.2.3.4-5, 3.2.2.3.11-13, 3.3.2.3.2]. */
            if (v > pi->max)
                return -ERR_PROPERTY_VALUE;
            *FIELD(out, pi->offset, uint8_t) = v;
            break;
        }
        case PT_U16: {
            if (out->present & bit)
                return -ERR_PROPERTY_DUPLICATE;
            uint16_t v = cursor_u16(&pc);
            if (pc.err)
                return pc.err;
            /* Receive Maximum 0 is a protocol error [MQTT 5.0 3.1.2.11.3,
             * 3.2.2.3.3]. Topic Alias 0 is decoded as is: the broker answers
             * it with ERR_TOPIC_ALIAS_INVALID (0x94) [MQTT-3.3.2-8]. */
            if (id == MQTT_PROP_RECEIVE_MAX && v == 0)
                return -ERR_PROPERTY_VALUE;
            *FIELD(out, pi->offset, uint16_t) = v;
            break;
        }
        case PT_U32: {
            if (out->present & bit)
                return -ERR_PROPERTY_DUPLICATE;
            uint32_t v = cursor_u32(&pc);
            if (pc.err)
                return pc.err;
            /* Maximum Packet Size 0 is a protocol error [MQTT 5.0 3.1.2.11.4]. */
            if (id == MQTT_PROP_MAX_PACKET_SIZE && v == 0)
                return -ERR_PROPERTY_VALUE;
            *FIELD(out, pi->offset, uint32_t) = v;
            break;
        }
        case PT_VARINT: { /* only the Subscription Identifier */
            /* It repeats only in PUBLISH (server to client, one per matching
             * subscription [MQTT-3.3.4-3]); the decoder cannot know the
             * direction, so a broker must itself refuse sub_id_count > 0
             * in a PUBLISH from a client [MQTT-3.3.4-6]. */
            if ((out->present & bit) && ctx != PROPS_CTX(MQTT_PUBLISH))
                return -ERR_PROPERTY_DUPLICATE;
            uint32_t v = cursor_varint(&pc);
            if (pc.err)
                return pc.err;
            if (v == 0) /* 1..268,435,455 [MQTT 5.0 3.8.2.1.2] */
                return -ERR_PROPERTY_VALUE;
            if (out->sub_id_count == UINT16_MAX)
                return -ERR_PACKET_TOO_LARGE;
            if (out->sub_id_count++ == 0)
                out->sub_id = v;
            break;
        }
        case PT_STRING: {
            if (out->present & bit)
                return -ERR_PROPERTY_DUPLICATE;
            struct mqtt_bytes s = cursor_binary(&pc);
            if (pc.err)
                return pc.err;
            int rc = utf8__check(s.ptr, s.len, false);
            if (rc < 0)
                return rc;
            /* The Response Topic is a topic name: no wildcards
             * [MQTT-3.3.2-14]. */
            if (id == MQTT_PROP_RESPONSE_TOPIC && (rc = mqtt_topic_name_validate(s.ptr, s.len)) < 0)
                return rc;
            *FIELD(out, pi->offset, struct mqtt_bytes) = s;
            break;
        }
        case PT_BINARY: {
            if (out->present & bit)
                return -ERR_PROPERTY_DUPLICATE;
            struct mqtt_bytes s = cursor_binary(&pc);
            if (pc.err)
                return pc.err;
            *FIELD(out, pi->offset, struct mqtt_bytes) = s;
            break;
        }
        case PT_PAIR: { /* User Property: may repeat; order kept [MQTT-3.3.2-18] */
            struct mqtt_bytes k = cursor_binary(&pc);
            struct mqtt_bytes v = cursor_binary(&pc);
            if (pc.err)
                return pc.err;
            int rc = utf8__check(k.ptr, k.len, false);
            if (rc == 0)
                rc = utf8__check(v.ptr, v.len, false);
            if (rc < 0)
                return rc;
            if (out->user_count == UINT16_MAX)
                return -ERR_PACKET_TOO_LARGE;
            out->user_count++;
            continue; /* not a single-valued property: no present bit */
        }
        }
        out->present |= bit;
    }
    return 0;
}

/* Skip one property of the block at pc, returning its id (0 at the end or
 * on a malformed block). For iterators over blocks that may not have come
 * through props__decode (an encoder's raw input), so it checks bounds. */
static uint8_t prop_skip(struct cursor *pc, const uint8_t **start)
{
    if (pc->p >= pc->end || pc->err)
        return 0;
    *start = pc->p;
    uint8_t id = cursor_u8(pc);
    if (id >= 64)
        return 0;
    switch (prop_table[id].type) {
    case PT_BYTE:
        cursor_u8(pc);
        break;
    case PT_U16:
        cursor_u16(pc);
        break;
    case PT_U32:
        cursor_u32(pc);
        break;
    case PT_VARINT:
        cursor_varint(pc);
        break;
    case PT_STRING:
    case PT_BINARY:
        cursor_binary(pc);
        break;
    case PT_PAIR:
        cursor_binary(pc);
        cursor_binary(pc);
        break;
    default:
        return 0;
    }
    return pc->err ? 0 : id;
}

int mqtt_props_next_user(const struct mqtt_props *p, size_t *pos, struct mqtt_bytes *key,
                         struct mqtt_bytes *value)
{
    if (*pos >= p->raw.len)
        return 0;
    struct cursor pc = cursor_init(p->raw.ptr + *pos, p->raw.len - *pos);
    const uint8_t *start;
    uint8_t id;
    while ((id = prop_skip(&pc, &start)) != 0) {
        if (id == MQTT_PROP_USER_PROPERTY) {
            struct cursor e = cursor_init(start + 1, (size_t)(pc.p - start - 1));
            struct mqtt_bytes k = cursor_binary(&e);
            struct mqtt_bytes v = cursor_binary(&e);
            if (key)
                *key = k;
            if (value)
                *value = v;
            *pos = (size_t)(pc.p - p->raw.ptr);
            return 1;
        }
    }
    *pos = p->raw.len;
    return 0;
}

int mqtt_props_next_sub_id(const struct mqtt_props *p, size_t *pos, uint32_t *sub_id)
{
    if (*pos >= p->raw.len)
        return 0;
    struct cursor pc = cursor_init(p->raw.ptr + *pos, p->raw.len - *pos);
    const uint8_t *start;
    uint8_t id;
    while ((id = prop_skip(&pc, &start)) != 0) {
        if (id == MQTT_PROP_SUBSCRIPTION_ID) {
            struct cursor e = cursor_init(start + 1, (size_t)(pc.p - start - 1));
            uint32_t v = cursor_varint(&e);
            if (sub_id)
                *sub_id = v;
            *pos = (size_t)(pc.p - p->raw.ptr);
            return 1;
        }
    }
    *pos = p->raw.len;
    return 0;
}

/* Properties written from their fields: every present bit except User
 * Property, which has no field (user properties come from raw). */
static uint64_t fields_present(const struct mqtt_props *p)
{
    return p->present & ~MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
}

/* Sub ids come from sub_ids[] when there are several and the caller gave
 * them; several without sub_ids (a decoded block being re-encoded) are
 * copied from raw. One is written from sub_id. */
static bool sub_ids_from_raw(const struct mqtt_props *p)
{
    return (p->present & MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)) && p->sub_id_count > 1 &&
           !p->sub_ids;
}

/* Copy (w != NULL) or measure the entries of raw with identifier id: user
 * properties, and subscription identifiers when sub_ids_from_raw. */
static size_t raw_copy(const struct mqtt_props *p, uint8_t want, struct writer *w)
{
    if (!p->raw.len)
        return 0;
    struct cursor pc = cursor_init(p->raw.ptr, p->raw.len);
    const uint8_t *start;
    uint8_t id;
    size_t n = 0;
    while ((id = prop_skip(&pc, &start)) != 0) {
        if (id == want) {
            size_t len = (size_t)(pc.p - start);
            if (w)
                writer_put(w, start, len);
            n += len;
        }
    }
    return n;
}

int64_t props__size(const struct mqtt_props *p, unsigned ctx)
{
    int64_t size = 0;
    uint64_t bits = fields_present(p);
    while (bits) {
        unsigned id = (unsigned)__builtin_ctzll(bits);
        bits &= bits - 1;
        const struct prop_info *pi = &prop_table[id];
        if (pi->type == PT_NONE || (ctx && !(pi->allowed & ctx)))
            return -ERR_INVALID;
        switch (pi->type) {
        case PT_BYTE:
            size += 2;
            break;
        case PT_U16:
            size += 3;
            break;
        case PT_U32:
            size += 5;
            break;
        case PT_VARINT:
            if (sub_ids_from_raw(p)) {
                size += (int64_t)raw_copy(p, MQTT_PROP_SUBSCRIPTION_ID, NULL);
                break;
            }
            if (p->sub_id_count > 1) {
                for (unsigned i = 0; i < p->sub_id_count; i++) {
                    if (p->sub_ids[i] == 0 || p->sub_ids[i] > MQTT_VARINT_MAX)
                        return -ERR_INVALID;
                    size += 1 + (int64_t)varint_len(p->sub_ids[i]);
                }
            } else {
                if (p->sub_id == 0 || p->sub_id > MQTT_VARINT_MAX)
                    return -ERR_INVALID;
                size += 1 + (int64_t)varint_len(p->sub_id);
            }
            break;
        default: { /* PT_STRING, PT_BINARY */
            const struct mqtt_bytes *s = CFIELD(p, pi->offset, struct mqtt_bytes);
            if (s->len > 65535)
                return -ERR_INVALID;
            size += 3 + (int64_t)s->len;
            break;
        }
        }
    }
    size += (int64_t)raw_copy(p, MQTT_PROP_USER_PROPERTY, NULL);
    size += (int64_t)p->verbatim.len;
    if (size > (int64_t)MQTT_VARINT_MAX)
        return -ERR_INVALID;
    return size;
}

void props__write(struct writer *w, const struct mqtt_props *p)
{
    uint64_t bits = fields_present(p);
    while (bits) {
        unsigned id = (unsigned)__builtin_ctzll(bits);
        bits &= bits - 1;
        const struct prop_info *pi = &prop_table[id];
        switch (pi->type) {
        case PT_BYTE:
            writer_u8(w, (uint8_t)id);
            writer_u8(w, *CFIELD(p, pi->offset, uint8_t));
            break;
        case PT_U16:
            writer_u8(w, (uint8_t)id);
            writer_u16(w, *CFIELD(p, pi->offset, uint16_t));
            break;
        case PT_U32:
            writer_u8(w, (uint8_t)id);
            writer_u32(w, *CFIELD(p, pi->offset, uint32_t));
            break;
        case PT_VARINT:
            if (sub_ids_from_raw(p)) { /* in place, so the order is kept */
                raw_copy(p, MQTT_PROP_SUBSCRIPTION_ID, w);
                break;
            }
            if (p->sub_id_count > 1) {
                for (unsigned i = 0; i < p->sub_id_count; i++) {
                    writer_u8(w, (uint8_t)id);
                    writer_varint(w, p->sub_ids[i]);
                }
            } else {
                writer_u8(w, (uint8_t)id);
                writer_varint(w, p->sub_id);
            }
            break;
        case PT_STRING:
        case PT_BINARY:
            writer_u8(w, (uint8_t)id);
            writer_binary(w, *CFIELD(p, pi->offset, struct mqtt_bytes));
            break;
        default:
            break;
        }
    }
    raw_copy(p, MQTT_PROP_USER_PROPERTY, w);
    writer_put(w, p->verbatim.ptr, p->verbatim.len);
}

int mqtt_props_encode(const struct mqtt_props *props, uint8_t *buf, size_t cap)
{
    int64_t size = props__size(props, 0);
    if (size < 0)
        return (int)size;
    if (!buf)
        return (int)size;
    if ((size_t)size > cap)
        return -ERR_NOSPACE;
    struct writer w = {buf, 0, cap, 0};
    props__write(&w, props);
    return w.err ? w.err : (int)w.len;
}
