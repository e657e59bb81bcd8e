/* Fuzz target for the MQTT codec: the input is a stream of packets, read as
 * each protocol version in turn. Every packet mqtt_scan delimits is decoded;
 * a packet that decodes must re-encode, the encoding must decode to the same
 * fields, re-encode to the same bytes, and refuse one byte less of room.
 * Any disagreement abort()s, which both libFuzzer and the corpus replay
 * report. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond))                                                                        \
            abort();                                                                        \
    } while (0)

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void props_check(const struct mqtt_props *a, const struct mqtt_props *b)
{
    CHECK(a->present == b->present);
    CHECK(a->payload_format == b->payload_format);
    CHECK(a->request_problem_info == b->request_problem_info);
    CHECK(a->request_response_info == b->request_response_info);
    CHECK(a->max_qos == b->max_qos);
    CHECK(a->retain_available == b->retain_available);
    CHECK(a->wildcard_sub_available == b->wildcard_sub_available);
    CHECK(a->sub_id_available == b->sub_id_available);
    CHECK(a->shared_sub_available == b->shared_sub_available);
    CHECK(a->server_keepalive == b->server_keepalive);
    CHECK(a->receive_max == b->receive_max);
    CHECK(a->topic_alias_max == b->topic_alias_max);
    CHECK(a->topic_alias == b->topic_alias);
    CHECK(a->message_expiry == b->message_expiry);
    CHECK(a->session_expiry == b->session_expiry);
    CHECK(a->will_delay == b->will_delay);
    CHECK(a->max_packet_size == b->max_packet_size);
    CHECK(a->sub_id == b->sub_id);
    CHECK(a->sub_id_count == b->sub_id_count);
    CHECK(a->user_count == b->user_count);
    CHECK(bytes_eq(a->content_type, b->content_type));
    CHECK(bytes_eq(a->response_topic, b->response_topic));
    CHECK(bytes_eq(a->correlation_data, b->correlation_data));
    CHECK(bytes_eq(a->assigned_client_id, b->assigned_client_id));
    CHECK(bytes_eq(a->auth_method, b->auth_method));
    CHECK(bytes_eq(a->auth_data, b->auth_data));
    CHECK(bytes_eq(a->response_info, b->response_info));
    CHECK(bytes_eq(a->server_reference, b->server_reference));
    CHECK(bytes_eq(a->reason_string, b->reason_string));
    /* raw may be reordered by the encoder, not its repeatable entries */
    size_t pa = 0, pb = 0;
    struct mqtt_bytes ka, va, kb, vb;
    unsigned n = 0;
    for (;;) {
        int ra = mqtt_props_next_user(a, &pa, &ka, &va);
        int rb = mqtt_props_next_user(b, &pb, &kb, &vb);
        CHECK(ra == rb);
        if (!ra)
            break;
        CHECK(bytes_eq(ka, kb) && bytes_eq(va, vb));
        n++;
    }
    CHECK(n == a->user_count);
    pa = pb = 0;
    n = 0;
    for (;;) {
        uint32_t ia, ib;
        int ra = mqtt_props_next_sub_id(a, &pa, &ia);
        int rb = mqtt_props_next_sub_id(b, &pb, &ib);
        CHECK(ra == rb);
        if (!ra)
            break;
        CHECK(ia == ib);
        n++;
    }
    CHECK(n == a->sub_id_count);
}

static void packet_check(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
    CHECK(a->type == b->type);
    switch (a->type) {
    case MQTT_CONNECT: {
        const struct mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
        CHECK(x->version == y->version);
        CHECK(x->clean_start == y->clean_start && x->will_flag == y->will_flag);
        CHECK(x->will_qos == y->will_qos && x->will_retain == y->will_retain);
        CHECK(x->username_flag == y->username_flag && x->password_flag == y->password_flag);
        CHECK(x->keepalive == y->keepalive);
        CHECK(bytes_eq(x->client_id, y->client_id));
        CHECK(bytes_eq(x->will_topic, y->will_topic));
        CHECK(bytes_eq(x->will_payload, y->will_payload));
        CHECK(bytes_eq(x->username, y->username));
        CHECK(bytes_eq(x->password, y->password));
        props_check(&x->props, &y->props);
        props_check(&x->will_props, &y->will_props);
        break;
    }
    case MQTT_CONNACK:
        CHECK(a->u.connack.session_present == b->u.connack.session_present);
        CHECK(a->u.connack.reason == b->u.connack.reason);
        props_check(&a->u.connack.props, &b->u.connack.props);
        break;
    case MQTT_PUBLISH: {
        const struct mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
        CHECK(x->qos == y->qos && x->dup == y->dup && x->retain == y->retain);
        CHECK(x->packet_id == y->packet_id);
        CHECK(bytes_eq(x->topic, y->topic));
        CHECK(bytes_eq(x->payload, y->payload));
        props_check(&x->props, &y->props);
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        CHECK(a->u.ack.packet_id == b->u.ack.packet_id);
        CHECK(a->u.ack.reason == b->u.ack.reason);
        props_check(&a->u.ack.props, &b->u.ack.props);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        CHECK(a->u.subscribe.packet_id == b->u.subscribe.packet_id);
        CHECK(a->u.subscribe.count == b->u.subscribe.count);
        CHECK(bytes_eq(a->u.subscribe.entries, b->u.subscribe.entries));
        props_check(&a->u.subscribe.props, &b->u.subscribe.props);
        break;
    case MQTT_SUBACK:
    case MQTT_UNSUBACK:
        CHECK(a->u.suback.packet_id == b->u.suback.packet_id);
        CHECK(a->u.suback.count == b->u.suback.count);
        CHECK(a->u.suback.count == 0 ||
              memcmp(a->u.suback.reasons, b->u.suback.reasons, a->u.suback.count) == 0);
        props_check(&a->u.suback.props, &b->u.suback.props);
        break;
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        CHECK(a->u.reason.reason == b->u.reason.reason);
        props_check(&a->u.reason.props, &b->u.reason.props);
        break;
    default:
        break;
    }
}

/* Walk what a decoded SUBSCRIBE/UNSUBSCRIBE says it holds. */
static void walk_entries(const struct mqtt_packet *p)
{
    size_t pos = 0;
    unsigned n = 0;
    struct mqtt_bytes f;
    uint8_t o;
    if (p->type == MQTT_SUBSCRIBE) {
        while (mqtt_subscribe_next(&p->u.subscribe, &pos, &f, &o)) {
            CHECK(mqtt_utf8_validate(f.ptr, f.len) == 0);
            (void)mqtt_topic_filter_validate(f.ptr, f.len);
            struct mqtt_bytes g, ff;
            if (mqtt_share_split(f.ptr, f.len, &g, &ff) == 1)
                CHECK(mqtt_topic_filter_validate(ff.ptr, ff.len) == 0);
            n++;
        }
        CHECK(n == p->u.subscribe.count);
    } else if (p->type == MQTT_UNSUBSCRIBE) {
        while (mqtt_unsubscribe_next(&p->u.subscribe, &pos, &f))
            n++;
        CHECK(n == p->u.subscribe.count);
    }
}

static void one_packet(const uint8_t *pkt, size_t len, uint8_t version)
{
    struct mqtt_packet p;
    if (mqtt_decode(pkt, len, version, &p) != 0)
        return;
    walk_entries(&p);
    /* CONNECT carries its own version; the encoder takes it as argument. */
    uint8_t v = p.type == MQTT_CONNECT ? p.u.connect.version : version;
    if (v != MQTT_V31 && v != MQTT_V311 && v != MQTT_V5)
        v = MQTT_V311; /* decoded before CONNECT: 3.1.1 rules */
    int n1 = mqtt_encode(&p, v, NULL, 0);
    CHECK(n1 > 0);
    uint8_t *b1 = malloc((size_t)n1);
    uint8_t *b2 = malloc((size_t)n1);
    CHECK(b1 && b2);
    CHECK(mqtt_encode(&p, v, b1, (size_t)n1 - 1) == -ERR_NOSPACE);
    CHECK(mqtt_encode(&p, v, b1, (size_t)n1) == n1);
    CHECK(mqtt_scan(b1, (size_t)n1, 0) == n1);
    struct mqtt_packet q;
    CHECK(mqtt_decode(b1, (size_t)n1, v, &q) == 0);
    packet_check(&p, &q);
    CHECK(mqtt_encode(&q, v, b2, (size_t)n1) == n1);
    CHECK(memcmp(b1, b2, (size_t)n1) == 0);
    free(b1);
    free(b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t versions[] = {MQTT_V31, MQTT_V311, MQTT_V5};
    for (size_t i = 0; i < sizeof(versions); i++) {
        size_t off = 0;
        while (off < size) {
            int n = mqtt_scan(data + off, size - off, 0);
            if (n <= 0) {
                /* Need more, or a violation: a decode of the rest must fail
                 * too (it cannot be a whole valid packet). */
                struct mqtt_packet p;
                if (n == 0)
                    CHECK(mqtt_decode(data + off, size - off, versions[i], &p) != 0);
                break;
            }
            CHECK((size_t)n <= size - off);
            one_packet(data + off, (size_t)n, versions[i]);
            off += (size_t)n;
        }
    }
    return 0;
}
