/* Encoding: every packet type in every version round-trips (encode ->
 * decode -> same fields -> encode -> same bytes); exact bytes for the short
 * forms; -ERR_NOSPACE at every capacity below the size, with nothing
 * written; properties (present fields, user properties from raw, verbatim,
 * several subscription identifiers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/packet.h"

#define B(str) ((struct mqtt_bytes){(const uint8_t *)(str), sizeof(str) - 1})

static const uint8_t user_raw[] = {0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v',
                                   0x26, 0x00, 0x02, 'k', '2', 0x00, 0x00};
#define USER_RAW ((struct mqtt_bytes){user_raw, sizeof(user_raw)})

static uint8_t big_payload[300];

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* The subscription identifiers a props struct stands for, as the encoder
 * reads them. */
static size_t sub_ids_of(const struct mqtt_props *p, uint32_t *out, size_t max)
{
    size_t n = 0;
    if (!(p->present & MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID)))
        return 0;
    if (p->sub_id_count > 1 && p->sub_ids) {
        for (; n < p->sub_id_count && n < max; n++)
            out[n] = p->sub_ids[n];
        return n;
    }
    if (p->sub_id_count > 1) {
        size_t pos = 0;
        while (n < max && mqtt_props_next_sub_id(p, &pos, &out[n]))
            n++;
        return n;
    }
    out[0] = p->sub_id;
    return 1;
}

static void props_check(const struct mqtt_props *a, const struct mqtt_props *b)
{
    uint64_t user = MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
    assert_int_equal(a->present & ~user, b->present & ~user);
#define SCALAR(f, id)                                                                       \
    if (a->present & MQTT_PROP_BIT(id))                                                     \
        assert_int_equal(a->f, b->f);
#define STRING(f, id)                                                                       \
    if (a->present & MQTT_PROP_BIT(id))                                                     \
        assert_true(bytes_eq(a->f, b->f));
    SCALAR(payload_format, MQTT_PROP_PAYLOAD_FORMAT)
    SCALAR(message_expiry, MQTT_PROP_MESSAGE_EXPIRY)
    STRING(content_type, MQTT_PROP_CONTENT_TYPE)
    STRING(response_topic, MQTT_PROP_RESPONSE_TOPIC)
    STRING(correlation_data, MQTT_PROP_CORRELATION_DATA)
    SCALAR(session_expiry, MQTT_PROP_SESSION_EXPIRY)
    STRING(assigned_client_id, MQTT_PROP_ASSIGNED_CLIENT_ID)
    SCALAR(server_keepalive, MQTT_PROP_SERVER_KEEPALIVE)
    STRING(auth_method, MQTT_PROP_AUTH_METHOD)
    STRING(auth_data, MQTT_PROP_AUTH_DATA)
    SCALAR(request_problem_info, MQTT_PROP_REQUEST_PROBLEM_INFO)
    SCALAR(will_delay, MQTT_PROP_WILL_DELAY)
    SCALAR(request_response_info, MQTT_PROP_REQUEST_RESPONSE_INFO)
    STRING(response_info, MQTT_PROP_RESPONSE_INFO)
    STRING(server_reference, MQTT_PROP_SERVER_REFERENCE)
    STRING(reason_string, MQTT_PROP_REASON_STRING)
    SCALAR(receive_max, MQTT_PROP_RECEIVE_MAX)
    SCALAR(topic_alias_max, MQTT_PROP_TOPIC_ALIAS_MAX)
    SCALAR(topic_alias, MQTT_PROP_TOPIC_ALIAS)
    SCALAR(max_qos, MQTT_PROP_MAX_QOS)
    SCALAR(retain_available, MQTT_PROP_RETAIN_AVAILABLE)
    SCALAR(max_packet_size, MQTT_PROP_MAX_PACKET_SIZE)
    SCALAR(wildcard_sub_available, MQTT_PROP_WILDCARD_SUB_AVAILABLE)
    SCALAR(sub_id_available, MQTT_PROP_SUB_ID_AVAILABLE)
    SCALAR(shared_sub_available, MQTT_PROP_SHARED_SUB_AVAILABLE)
#undef SCALAR
#undef STRING
    uint32_t sa[8], sb[8];
    size_t na = sub_ids_of(a, sa, 8), nb = sub_ids_of(b, sb, 8);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++)
        assert_int_equal(sa[i], sb[i]);
    /* user properties, in order */
    size_t pa = 0, pb = 0;
    struct mqtt_bytes ka, va, kb, vb;
    int n = 0;
    for (;;) {
        int ra = mqtt_props_next_user(a, &pa, &ka, &va);
        int rb = mqtt_props_next_user(b, &pb, &kb, &vb);
        assert_int_equal(ra, rb);
        if (!ra)
            break;
        assert_true(bytes_eq(ka, kb));
        assert_true(bytes_eq(va, vb));
        n++;
    }
    assert_int_equal(b->user_count, n);
}

/* a was encoded for version v and decoded into b. */
static void packet_check(const struct mqtt_packet *a, const struct mqtt_packet *b, uint8_t v)
{
    bool v5 = v == MQTT_V5;
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case MQTT_CONNECT: {
        const struct mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
        assert_int_equal(y->version, v);
        assert_int_equal(x->clean_start, y->clean_start);
        assert_int_equal(x->will_flag, y->will_flag);
        assert_int_equal(x->will_qos, y->will_qos);
        assert_int_equal(x->will_retain, y->will_retain);
        assert_int_equal(x->username_flag, y->username_flag);
        assert_int_equal(x->password_flag, y->password_flag);
        assert_int_equal(x->keepalive, y->keepalive);
        assert_true(bytes_eq(x->client_id, y->client_id));
        if (x->will_flag) {
            assert_true(bytes_eq(x->will_topic, y->will_topic));
            assert_true(bytes_eq(x->will_payload, y->will_payload));
            if (v5)
                props_check(&x->will_props, &y->will_props);
        }
        if (x->username_flag)
            assert_true(bytes_eq(x->username, y->username));
        if (x->password_flag)
            assert_true(bytes_eq(x->password, y->password));
        if (v5)
            props_check(&x->props, &y->props);
        break;
    }
    case MQTT_CONNACK:
        assert_int_equal(a->u.connack.session_present && v != MQTT_V31,
                         b->u.connack.session_present);
        assert_int_equal(a->u.connack.reason, b->u.connack.reason);
        if (v5)
            props_check(&a->u.connack.props, &b->u.connack.props);
        break;
    case MQTT_PUBLISH: {
        const struct mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
        assert_int_equal(x->qos, y->qos);
        assert_int_equal(x->dup && (x->qos || v == MQTT_V31), y->dup);
        assert_int_equal(x->retain, y->retain);
        if (x->qos)
            assert_int_equal(x->packet_id, y->packet_id);
        assert_true(bytes_eq(x->topic, y->topic));
        assert_true(bytes_eq(x->payload, y->payload));
        if (v5)
            props_check(&x->props, &y->props);
        break;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
        assert_int_equal(a->u.ack.packet_id, b->u.ack.packet_id);
        if (v5) {
            assert_int_equal(a->u.ack.reason, b->u.ack.reason);
            props_check(&a->u.ack.props, &b->u.ack.props);
        }
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: {
        const struct mqtt_subscribe *x = &a->u.subscribe, *y = &b->u.subscribe;
        assert_int_equal(x->packet_id, y->packet_id);
        assert_int_equal(x->count, y->count);
        size_t pos = 0;
        for (size_t i = 0; i < x->count; i++) {
            struct mqtt_bytes f;
            uint8_t o = 0;
            if (a->type == MQTT_SUBSCRIBE) {
                assert_int_equal(mqtt_subscribe_next(y, &pos, &f, &o), 1);
                uint8_t want = x->options ? x->options[i] : 0;
                assert_int_equal(v5 ? want : (want & 3), o);
            } else {
                assert_int_equal(mqtt_unsubscribe_next(y, &pos, &f), 1);
            }
            assert_true(bytes_eq(x->filters[i], f));
        }
        if (v5)
            props_check(&x->props, &y->props);
        break;
    }
    case MQTT_SUBACK:
    case MQTT_UNSUBACK: {
        const struct mqtt_suback *x = &a->u.suback, *y = &b->u.suback;
        assert_int_equal(x->packet_id, y->packet_id);
        if (a->type == MQTT_SUBACK || v5) {
            assert_int_equal(x->count, y->count);
            assert_memory_equal(x->reasons, y->reasons, x->count);
        } else {
            assert_int_equal(y->count, 0);
        }
        if (v5)
            props_check(&x->props, &y->props);
        break;
    }
    case MQTT_DISCONNECT:
    case MQTT_AUTH:
        if (v5) {
            assert_int_equal(a->u.reason.reason, b->u.reason.reason);
            props_check(&a->u.reason.props, &b->u.reason.props);
        }
        break;
    default:
        break;
    }
}

/* ---- the packets ---- */

#define MAXPKT 40

static const struct mqtt_bytes filters[] = {
    {(const uint8_t *)"a/b", 3}, {(const uint8_t *)"c/+/d", 5}, {(const uint8_t *)"#", 1}};
static const uint8_t options4[] = {0, 1, 2};
static const uint8_t options5[] = {0x01, 0x2E, 0x1A};
static const uint8_t suback_reasons[] = {0x00, 0x01, 0x02, 0x80};
static const uint8_t unsuback_reasons[] = {0x00, 0x11};
static const uint32_t three_sub_ids[] = {1, 200, 268435455};

static void full_props_connect(struct mqtt_props *p)
{
    p->present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX) |
                 MQTT_PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE) |
                 MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX) |
                 MQTT_PROP_BIT(MQTT_PROP_REQUEST_RESPONSE_INFO) |
                 MQTT_PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFO) |
                 MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD) | MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA);
    p->session_expiry = 0xFFFFFFFF;
    p->receive_max = 10;
    p->max_packet_size = 1 << 20;
    p->topic_alias_max = 16;
    p->request_response_info = 1;
    p->request_problem_info = 0;
    p->auth_method = B("SCRAM-SHA-1");
    p->auth_data = B("\x00\x01\x02");
    p->raw = USER_RAW;
}

static size_t build(uint8_t v, struct mqtt_packet *out)
{
    bool v5 = v == MQTT_V5;
    size_t n = 0;
    struct mqtt_packet *p;
#define NEW(t) (p = &out[n++], memset(p, 0, sizeof(*p)), p->type = (t))

    /* CONNECT */
    NEW(MQTT_CONNECT);
    p->u.connect.clean_start = true;
    p->u.connect.keepalive = 60;
    p->u.connect.client_id = B("c1");

    NEW(MQTT_CONNECT);
    {
        struct mqtt_connect *c = &p->u.connect;
        c->keepalive = 0xFFFF;
        c->client_id = B("");
        c->will_flag = true;
        c->will_qos = 2;
        c->will_retain = true;
        c->will_topic = B("will/topic");
        c->will_payload = B("gone\x00\xFF");
        c->username_flag = true;
        c->username = B("user");
        c->password_flag = true;
        c->password = B("\x00\xFFpw");
        if (v5) {
            full_props_connect(&c->props);
            c->will_props.present =
                MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY) | MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) |
                MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
                MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA);
            c->will_props.will_delay = 30;
            c->will_props.payload_format = 0;
            c->will_props.message_expiry = 3600;
            c->will_props.content_type = B("text/plain");
            c->will_props.response_topic = B("resp/x");
            c->will_props.correlation_data = B("\x01\x02");
            c->will_props.raw = USER_RAW;
        }
    }
    if (v5) { /* password without user name, will QoS 0 */
        NEW(MQTT_CONNECT);
        p->u.connect.client_id = B("c3");
        p->u.connect.password_flag = true;
        p->u.connect.password = B("secret");
        p->u.connect.will_flag = true;
        p->u.connect.will_topic = B("w");
        p->u.connect.will_props.present = MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT);
        p->u.connect.will_props.payload_format = 1;
        p->u.connect.will_payload = B("\xC3\xA9t\xC3\xA9");
    }

    /* CONNACK */
    NEW(MQTT_CONNACK);
    p->u.connack.session_present = v != MQTT_V31;
    NEW(MQTT_CONNACK);
    p->u.connack.reason = v5 ? 0x87 : 5;
    if (v5) {
        NEW(MQTT_CONNACK);
        struct mqtt_props *q = &p->u.connack.props;
        q->present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY) |
                     MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID) |
                     MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEPALIVE) |
                     MQTT_PROP_BIT(MQTT_PROP_RESPONSE_INFO) |
                     MQTT_PROP_BIT(MQTT_PROP_SERVER_REFERENCE) |
                     MQTT_PROP_BIT(MQTT_PROP_REASON_STRING) | MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX) |
                     MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX) | MQTT_PROP_BIT(MQTT_PROP_MAX_QOS) |
                     MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) |
                     MQTT_PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE) |
                     MQTT_PROP_BIT(MQTT_PROP_WILDCARD_SUB_AVAILABLE) |
                     MQTT_PROP_BIT(MQTT_PROP_SUB_ID_AVAILABLE) |
                     MQTT_PROP_BIT(MQTT_PROP_SHARED_SUB_AVAILABLE) |
                     MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD) | MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA);
        q->session_expiry = 120;
        q->assigned_client_id = B("auto-1234");
        q->server_keepalive = 30;
        q->response_info = B("resp/");
        q->server_reference = B("other:1883");
        q->reason_string = B("fine");
        q->receive_max = 65535;
        q->topic_alias_max = 10;
        q->max_qos = 1;
        q->retain_available = 0;
        q->max_packet_size = 268435460u;
        q->wildcard_sub_available = 1;
        q->sub_id_available = 1;
        q->shared_sub_available = 0;
        q->auth_method = B("m");
        q->auth_data = B("");
        q->raw = USER_RAW;
    }

    /* PUBLISH */
    NEW(MQTT_PUBLISH);
    p->u.publish.topic = B("a/b");
    p->u.publish.payload = B("hello");
    NEW(MQTT_PUBLISH);
    p->u.publish.topic = B("t");
    p->u.publish.qos = 1;
    p->u.publish.dup = true;
    p->u.publish.retain = true;
    p->u.publish.packet_id = 1;
    NEW(MQTT_PUBLISH);
    p->u.publish.topic = B("\xE6\x97\xA5/\xF0\x9F\x98\x80");
    p->u.publish.qos = 2;
    p->u.publish.packet_id = 65535;
    p->u.publish.payload = (struct mqtt_bytes){big_payload, sizeof(big_payload)};
    NEW(MQTT_PUBLISH); /* DUP at QoS 0: cleared except in 3.1 */
    p->u.publish.topic = B("d");
    p->u.publish.dup = true;
    if (v5) {
        NEW(MQTT_PUBLISH);
        struct mqtt_publish *m = &p->u.publish;
        m->topic = B("x/y");
        m->qos = 1;
        m->packet_id = 7;
        m->payload = B("{\"a\":1}");
        m->props.present = MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) |
                           MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) |
                           MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
                           MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                           MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) |
                           MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
                           MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
        m->props.payload_format = 1;
        m->props.message_expiry = 10;
        m->props.content_type = B("application/json");
        m->props.response_topic = B("reply/here");
        m->props.correlation_data = B("\x00\x00\x01");
        m->props.topic_alias = 3;
        m->props.sub_id = 268435455;
        m->props.sub_id_count = 1;
        m->props.raw = USER_RAW;

        NEW(MQTT_PUBLISH); /* empty topic + alias; three subscription ids */
        m = &p->u.publish;
        m->topic = B("");
        m->payload = B("p");
        m->props.present =
            MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) | MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
        m->props.topic_alias = 1;
        m->props.sub_ids = three_sub_ids;
        m->props.sub_id_count = 3;
    }

    /* PUBACK, PUBREC, PUBREL, PUBCOMP */
    for (uint8_t t = MQTT_PUBACK; t <= MQTT_PUBCOMP; t++) {
        NEW(t);
        p->u.ack.packet_id = 1;
        if (v5) {
            NEW(t);
            p->u.ack.packet_id = 0x1234;
            p->u.ack.reason = 0x10;
            NEW(t);
            p->u.ack.packet_id = 0xFFFF;
            p->u.ack.reason = 0x80;
            p->u.ack.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
            p->u.ack.props.reason_string = B("nope");
            p->u.ack.props.raw = USER_RAW;
            NEW(t); /* reason 0 with properties: the long form */
            p->u.ack.packet_id = 2;
            p->u.ack.props.raw = USER_RAW;
        }
    }

    /* SUBSCRIBE, UNSUBSCRIBE */
    NEW(MQTT_SUBSCRIBE);
    p->u.subscribe.packet_id = 10;
    p->u.subscribe.count = 3;
    p->u.subscribe.filters = filters;
    p->u.subscribe.options = v5 ? options5 : options4;
    if (v5) {
        p->u.subscribe.props.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
        p->u.subscribe.props.sub_id = 99;
        p->u.subscribe.props.raw = USER_RAW;
    }
    NEW(MQTT_SUBSCRIBE);
    p->u.subscribe.packet_id = 11;
    p->u.subscribe.count = 1;
    p->u.subscribe.filters = filters + 2;
    NEW(MQTT_UNSUBSCRIBE);
    p->u.subscribe.packet_id = 12;
    p->u.subscribe.count = 3;
    p->u.subscribe.filters = filters;
    if (v5)
        p->u.subscribe.props.raw = USER_RAW;

    /* SUBACK, UNSUBACK */
    NEW(MQTT_SUBACK);
    p->u.suback.packet_id = 10;
    p->u.suback.count = 4;
    p->u.suback.reasons = suback_reasons;
    if (v5) {
        p->u.suback.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
        p->u.suback.props.reason_string = B("partly");
    }
    NEW(MQTT_UNSUBACK);
    p->u.suback.packet_id = 12;
    if (v5) {
        p->u.suback.count = 2;
        p->u.suback.reasons = unsuback_reasons;
        p->u.suback.props.raw = USER_RAW;
    }

    NEW(MQTT_PINGREQ);
    NEW(MQTT_PINGRESP);

    NEW(MQTT_DISCONNECT);
    if (v5) {
        NEW(MQTT_DISCONNECT);
        p->u.reason.reason = 0x04;
        NEW(MQTT_DISCONNECT);
        p->u.reason.reason = 0x8E;
        p->u.reason.props.present =
            MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_REASON_STRING) |
            MQTT_PROP_BIT(MQTT_PROP_SERVER_REFERENCE);
        p->u.reason.props.reason_string = B("taken over");
        p->u.reason.props.server_reference = B("b2");
        NEW(MQTT_AUTH);
        NEW(MQTT_AUTH);
        p->u.reason.reason = 0x18;
        p->u.reason.props.present =
            MQTT_PROP_BIT(MQTT_PROP_AUTH_METHOD) | MQTT_PROP_BIT(MQTT_PROP_AUTH_DATA);
        p->u.reason.props.auth_method = B("SCRAM-SHA-1");
        p->u.reason.props.auth_data = B("\x00\x01");
    }
#undef NEW
    assert_true(n <= MAXPKT);
    return n;
}

static void roundtrip_version(uint8_t v)
{
    struct mqtt_packet pkts[MAXPKT];
    size_t n = build(v, pkts);
    for (size_t i = 0; i < n; i++) {
        const struct mqtt_packet *a = &pkts[i];
        int size = mqtt_encode(a, v, NULL, 0);
        if (size <= 0)
            fail_msg("v%u packet %zu (type %u): measure %s", v, i, a->type, mqtt_err_name(size));
        uint8_t *buf1 = malloc((size_t)size);
        uint8_t *buf2 = malloc((size_t)size);
        assert_non_null(buf1);
        assert_non_null(buf2);
        assert_int_equal(mqtt_encode(a, v, buf1, (size_t)size), size);
        assert_int_equal(mqtt_scan(buf1, (size_t)size, 0), size);
        struct mqtt_packet b;
        int rc = mqtt_decode(buf1, (size_t)size, v, &b);
        if (rc != 0)
            fail_msg("v%u packet %zu (type %u): decode %s", v, i, a->type, mqtt_err_name(rc));
        packet_check(a, &b, v);
        /* the decoded struct encodes to the same bytes */
        assert_int_equal(mqtt_encode(&b, v, NULL, 0), size);
        assert_int_equal(mqtt_encode(&b, v, buf2, (size_t)size), size);
        assert_memory_equal(buf1, buf2, (size_t)size);
        free(buf1);
        free(buf2);
    }
}

static void test_roundtrip_v31(void **state)
{
    (void)state;
    roundtrip_version(MQTT_V31);
}

static void test_roundtrip_v311(void **state)
{
    (void)state;
    roundtrip_version(MQTT_V311);
}

static void test_roundtrip_v5(void **state)
{
    (void)state;
    roundtrip_version(MQTT_V5);
}

/* Below the size, every capacity gets -ERR_NOSPACE and the buffer is not
 * touched at all. */
static void test_nospace(void **state)
{
    (void)state;
    for (uint8_t v = 3; v <= 5; v++) {
        struct mqtt_packet pkts[MAXPKT];
        size_t n = build(v, pkts);
        for (size_t i = 0; i < n; i++) {
            int size = mqtt_encode(&pkts[i], v, NULL, 0);
            assert_true(size > 0);
            uint8_t *buf = malloc((size_t)size + 16);
            assert_non_null(buf);
            for (int cap = 0; cap < size; cap++) {
                memset(buf, 0xA5, (size_t)size + 16);
                assert_int_equal(mqtt_encode(&pkts[i], v, buf, (size_t)cap), -ERR_NOSPACE);
                for (int k = 0; k < size + 16; k++)
                    assert_int_equal(buf[k], 0xA5);
            }
            memset(buf, 0xA5, (size_t)size + 16);
            assert_int_equal(mqtt_encode(&pkts[i], v, buf, (size_t)size + 16), size);
            for (int k = size; k < size + 16; k++)
                assert_int_equal(buf[k], 0xA5);
            free(buf);
        }
    }
}

static void expect_bytes(const struct mqtt_packet *p, uint8_t v, const uint8_t *want, size_t n)
{
    uint8_t buf[64];
    int rc = mqtt_encode(p, v, buf, sizeof(buf));
    if (rc < 0)
        fail_msg("encode: %s", mqtt_err_name(rc));
    assert_int_equal(rc, (int)n);
    assert_memory_equal(buf, want, n);
}

static void test_exact_bytes(void **state)
{
    (void)state;
    struct mqtt_packet p;
    memset(&p, 0, sizeof(p));
    p.type = MQTT_PUBACK;
    p.u.ack.packet_id = 0x0102;
    p.u.ack.reason = 0x10; /* ignored before 5.0 */
    expect_bytes(&p, 4, (const uint8_t[]){0x40, 0x02, 0x01, 0x02}, 4);
    expect_bytes(&p, 3, (const uint8_t[]){0x40, 0x02, 0x01, 0x02}, 4);
    expect_bytes(&p, 5, (const uint8_t[]){0x40, 0x03, 0x01, 0x02, 0x10}, 5);
    p.u.ack.reason = 0;
    expect_bytes(&p, 5, (const uint8_t[]){0x40, 0x02, 0x01, 0x02}, 4);
    p.type = MQTT_PUBREL;
    expect_bytes(&p, 5, (const uint8_t[]){0x62, 0x02, 0x01, 0x02}, 4);
    p.u.ack.props.present = MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
    p.u.ack.props.reason_string = B("r");
    expect_bytes(&p, 5,
                 (const uint8_t[]){0x62, 0x08, 0x01, 0x02, 0x00, 0x04, 0x1F, 0x00, 0x01, 'r'}, 10);
    expect_bytes(&p, 4, (const uint8_t[]){0x62, 0x02, 0x01, 0x02}, 4);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_DISCONNECT;
    expect_bytes(&p, 5, (const uint8_t[]){0xE0, 0x00}, 2);
    p.u.reason.reason = 0x8B;
    expect_bytes(&p, 5, (const uint8_t[]){0xE0, 0x01, 0x8B}, 3);
    expect_bytes(&p, 4, (const uint8_t[]){0xE0, 0x00}, 2);
    p.type = MQTT_AUTH;
    p.u.reason.reason = 0;
    expect_bytes(&p, 5, (const uint8_t[]){0xF0, 0x00}, 2);
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_TYPE_NOT_IN_VERSION);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_UNSUBACK;
    p.u.suback.packet_id = 5;
    expect_bytes(&p, 4, (const uint8_t[]){0xB0, 0x02, 0x00, 0x05}, 4);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_CONNACK;
    p.u.connack.session_present = true;
    expect_bytes(&p, 4, (const uint8_t[]){0x20, 0x02, 0x01, 0x00}, 4);
    expect_bytes(&p, 3, (const uint8_t[]){0x20, 0x02, 0x00, 0x00}, 4);
    expect_bytes(&p, 5, (const uint8_t[]){0x20, 0x03, 0x01, 0x00, 0x00}, 5);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_PUBLISH;
    p.u.publish.topic = B("a/b");
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 10;
    p.u.publish.payload = B("hi");
    expect_bytes(&p, 4,
                 (const uint8_t[]){0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i'},
                 11);
    expect_bytes(&p, 5,
                 (const uint8_t[]){0x32, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 0x00, 'h',
                                   'i'},
                 12);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_CONNECT;
    p.u.connect.clean_start = true;
    p.u.connect.keepalive = 60;
    p.u.connect.client_id = B("c");
    expect_bytes(&p, 3,
                 (const uint8_t[]){0x10, 0x0F, 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p', 0x03,
                                   0x02, 0x00, 0x3C, 0x00, 0x01, 'c'},
                 17);
    expect_bytes(&p, 5,
                 (const uint8_t[]){0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00,
                                   0x3C, 0x00, 0x00, 0x01, 'c'},
                 16);
}

static void test_encode_invalid(void **state)
{
    (void)state;
    struct mqtt_packet p;
    memset(&p, 0, sizeof(p));
    p.type = MQTT_PUBLISH;
    p.u.publish.topic = B("t");
    p.u.publish.qos = 3;
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID);
    p.u.publish.qos = 1; /* packet id 0 */
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID);
    p.u.publish.qos = 0;
    p.u.publish.topic = (struct mqtt_bytes){big_payload, 65536};
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID);
    p.u.publish.topic = B("");
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID);
    assert_true(mqtt_encode(&p, 5, NULL, 0) > 0);
    /* A property the packet does not allow. */
    p.u.publish.props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    assert_int_equal(mqtt_encode(&p, 5, NULL, 0), -ERR_INVALID);
    assert_true(mqtt_encode(&p, 4, NULL, 0) < 0); /* empty topic */
    p.u.publish.props.present = MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE);
    p.u.publish.props.content_type = (struct mqtt_bytes){big_payload, 70000};
    assert_int_equal(mqtt_encode(&p, 5, NULL, 0), -ERR_INVALID);
    p.u.publish.props.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    p.u.publish.props.sub_id = 0;
    assert_int_equal(mqtt_encode(&p, 5, NULL, 0), -ERR_INVALID);
    p.u.publish.props.present = UINT64_C(1) << 5; /* no such property */
    assert_int_equal(mqtt_encode(&p, 5, NULL, 0), -ERR_INVALID);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_CONNECT;
    p.u.connect.password_flag = true;
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID);
    assert_true(mqtt_encode(&p, 5, NULL, 0) > 0);
    p.u.connect.client_id = (struct mqtt_bytes){big_payload, 65536};
    assert_int_equal(mqtt_encode(&p, 5, NULL, 0), -ERR_INVALID);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_SUBSCRIBE;
    p.u.subscribe.packet_id = 1;
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID); /* no filters */
    p.u.subscribe.count = 1;
    p.u.subscribe.filters = filters;
    static const uint8_t rh3 = 0x30, q3 = 3, res = 0x40;
    p.u.subscribe.options = &rh3;
    assert_int_equal(mqtt_encode(&p, 5, NULL, 0), -ERR_INVALID);
    assert_true(mqtt_encode(&p, 4, NULL, 0) > 0); /* masked to QoS 0 */
    p.u.subscribe.options = &res;
    assert_int_equal(mqtt_encode(&p, 5, NULL, 0), -ERR_INVALID);
    p.u.subscribe.options = &q3;
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID);

    memset(&p, 0, sizeof(p));
    p.type = MQTT_PUBACK;
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID); /* packet id 0 */
    p.type = 0;
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID);
    p.type = MQTT_PINGREQ;
    assert_int_equal(mqtt_encode(&p, 6, NULL, 0), -ERR_INVALID);
    assert_int_equal(mqtt_encode(&p, 0, NULL, 0), -ERR_INVALID);
    p.type = MQTT_SUBACK;
    p.u.suback.packet_id = 1;
    assert_int_equal(mqtt_encode(&p, 4, NULL, 0), -ERR_INVALID); /* no reasons */
}

/* A decoded SUBSCRIBE (filters NULL) re-encodes from its entries, also into
 * another version (a 5.0 subscription bridged to a 3.1.1 peer). */
static void test_subscribe_from_entries(void **state)
{
    (void)state;
    static const uint8_t in[] = {0x82, 0x0C, 0x00, 0x01, 0x00, 0x00, 0x01, 'a',
                                 0x2D, 0x00, 0x02, 'b', '/', 0x02};
    struct mqtt_packet p;
    assert_int_equal(mqtt_decode(in, sizeof(in), 5, &p), 0);
    uint8_t out[32];
    int n = mqtt_encode(&p, 4, out, sizeof(out));
    assert_int_equal(n, 13);
    static const uint8_t want[] = {0x82, 0x0B, 0x00, 0x01, 0x00, 0x01, 'a',
                                   0x01, 0x00, 0x02, 'b', '/', 0x02};
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(mqtt_encode(&p, 5, out, sizeof(out)), (int)sizeof(in));
    assert_memory_equal(out, in, sizeof(in));
}

static void test_props_encode(void **state)
{
    (void)state;
    struct mqtt_props p;
    memset(&p, 0, sizeof(p));
    assert_int_equal(mqtt_props_encode(&p, NULL, 0), 0);
    p.present = MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT);
    p.message_expiry = 0x01020304;
    p.payload_format = 1;
    p.raw = USER_RAW;
    /* Present ones in id order, then user properties from raw. */
    uint8_t want[7 + sizeof(user_raw)] = {0x01, 0x01, 0x02, 0x01, 0x02, 0x03, 0x04};
    memcpy(want + 7, user_raw, sizeof(user_raw));
    assert_int_equal(mqtt_props_encode(&p, NULL, 0), (int)sizeof(want));
    uint8_t buf[64];
    assert_int_equal(mqtt_props_encode(&p, buf, sizeof(buf)), (int)sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    for (size_t cap = 0; cap < sizeof(want); cap++)
        assert_int_equal(mqtt_props_encode(&p, buf, cap), -ERR_NOSPACE);

    /* The broker's stored block as verbatim, appended unchanged to a
     * PUBLISH that adds its own topic alias. */
    struct mqtt_packet pub;
    memset(&pub, 0, sizeof(pub));
    pub.type = MQTT_PUBLISH;
    pub.u.publish.topic = B("t");
    pub.u.publish.props.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    pub.u.publish.props.topic_alias = 2;
    pub.u.publish.props.verbatim = (struct mqtt_bytes){buf, sizeof(want)};
    uint8_t out[64];
    int n = mqtt_encode(&pub, 5, out, sizeof(out));
    assert_int_equal(n, 2 + 3 + 1 + 3 + (int)sizeof(want));
    assert_int_equal(out[5], 3 + sizeof(want));
    assert_memory_equal(out + 6, "\x23\x00\x02", 3);
    assert_memory_equal(out + 9, want, sizeof(want));
    struct mqtt_packet back;
    assert_int_equal(mqtt_decode(out, (size_t)n, 5, &back), 0);
    assert_int_equal(back.u.publish.props.topic_alias, 2);
    assert_int_equal(back.u.publish.props.message_expiry, 0x01020304);
    assert_int_equal(back.u.publish.props.user_count, 2);

    /* Several subscription ids from an array. */
    memset(&p, 0, sizeof(p));
    p.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    p.sub_ids = three_sub_ids;
    p.sub_id_count = 3;
    static const uint8_t ids[] = {0x0B, 0x01, 0x0B, 0xC8, 0x01, 0x0B, 0xFF, 0xFF, 0xFF, 0x7F};
    assert_int_equal(mqtt_props_encode(&p, buf, sizeof(buf)), (int)sizeof(ids));
    assert_memory_equal(buf, ids, sizeof(ids));
}

int main(void)
{
    for (size_t i = 0; i < sizeof(big_payload); i++)
        big_payload[i] = (uint8_t)(i * 7);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_v31),   cmocka_unit_test(test_roundtrip_v311),
        cmocka_unit_test(test_roundtrip_v5),    cmocka_unit_test(test_nospace),
        cmocka_unit_test(test_exact_bytes),     cmocka_unit_test(test_encode_invalid),
        cmocka_unit_test(test_subscribe_from_entries), cmocka_unit_test(test_props_encode),
    };
    return cmocka_run_group_tests_name("codec_roundtrip", tests, NULL, NULL);
}
