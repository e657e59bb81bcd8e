/* Decoding: byte vectors written by hand from the spec, and a table of
 * malformed inputs with the exact error each must produce. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/packet.h"

/* Hex digits, spaces ignored, into out. Returns the byte count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = hex; *p; p++) {
        int v;
        if (*p >= '0' && *p <= '9')
            v = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            v = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            v = *p - 'A' + 10;
        else
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            assert_true(n < cap);
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    assert_int_equal(hi, -1);
    return n;
}

static bool bytes_is(struct mqtt_bytes b, const char *s)
{
    return b.len == strlen(s) && memcmp(b.ptr, s, b.len) == 0;
}

/* Decode hex as version v, expecting success, and check mqtt_scan agrees on
 * the length. */
static void decode_ok(const char *hex, uint8_t v, struct mqtt_packet *p, uint8_t *buf, size_t cap)
{
    size_t n = unhex(hex, buf, cap);
    assert_int_equal(mqtt_scan(buf, n, 0), (int)n);
    int rc = mqtt_decode(buf, n, v, p);
    if (rc != 0)
        fail_msg("decode %s v%u: %s", hex, v, mqtt_err_name(rc));
}

/* ---- spec vectors ---- */

static void test_connect_v311_spec(void **state)
{
    (void)state;
    /* 3.1.1 figure 3.6 variable header (MQTT, level 4, flags 0xCE, keep
     * alive 10) with client id "cid", will topic "w/t", will message "bye",
     * user "u", password "pw". */
    uint8_t buf[128];
    struct mqtt_packet p;
    decode_ok("10 20 0004 4D515454 04 CE 000A 0003 636964 0003 772F74 0003 627965"
              " 0001 75 0002 7077",
              4, &p, buf, sizeof(buf));
    const struct mqtt_connect *c = &p.u.connect;
    assert_int_equal(p.type, MQTT_CONNECT);
    assert_int_equal(c->version, 4);
    assert_true(c->clean_start);
    assert_true(c->will_flag);
    assert_int_equal(c->will_qos, 1);
    assert_false(c->will_retain);
    assert_true(c->username_flag);
    assert_true(c->password_flag);
    assert_int_equal(c->keepalive, 10);
    assert_true(bytes_is(c->client_id, "cid"));
    assert_true(bytes_is(c->will_topic, "w/t"));
    assert_true(bytes_is(c->will_payload, "bye"));
    assert_true(bytes_is(c->username, "u"));
    assert_true(bytes_is(c->password, "pw"));
    /* the version argument is ignored for CONNECT */
    assert_int_equal(mqtt_decode(buf, 0x22, 0, &p), 0);
    assert_int_equal(mqtt_decode(buf, 0x22, 5, &p), 0);
    assert_int_equal(p.u.connect.version, 4);
}

static void test_connect_v31(void **state)
{
    (void)state;
    /* As a 3.1 client (mosquitto -V mqttv31) sends it. */
    uint8_t buf[64];
    struct mqtt_packet p;
    decode_ok("10 11 0006 4D5149736470 03 02 003C 0003 616263", 3, &p, buf, sizeof(buf));
    assert_int_equal(p.u.connect.version, 3);
    assert_true(bytes_is(p.u.connect.client_id, "abc"));
    assert_int_equal(p.u.connect.keepalive, 60);
    /* 3.1 client ids over 23 bytes are decoded (mosquitto accepts them). */
    decode_ok("10 2A 0006 4D5149736470 03 02 003C 001C 61616161616161616161616161616161616161616161"
              "616161616161",
              3, &p, buf, sizeof(buf));
    assert_int_equal(p.u.connect.client_id.len, 28);
    /* Empty client id: decoded, the broker decides. */
    decode_ok("10 0C 0004 4D515454 04 00 003C 0000", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.u.connect.client_id.len, 0);
    assert_false(p.u.connect.clean_start);
    /* The mosquitto bridge bit on the level. */
    decode_ok("10 0C 0004 4D515454 84 02 003C 0000", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.u.connect.version, 4);
}

static void test_connect_v5_spec(void **state)
{
    (void)state;
    /* 5.0 figure 3-6: MQTT, level 5, flags 0xC2, keep alive 10, properties
     * length 5 with Session Expiry Interval 10; client id "c", user "u",
     * password "p". */
    uint8_t buf[128];
    struct mqtt_packet p;
    decode_ok("10 19 0004 4D515454 05 C2 000A 05 11 0000000A 0001 63 0001 75 0001 70", 5, &p, buf,
              sizeof(buf));
    const struct mqtt_connect *c = &p.u.connect;
    assert_int_equal(c->version, 5);
    assert_true(c->props.present & MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY));
    assert_int_equal(c->props.session_expiry, 10);
    assert_int_equal(c->props.raw.len, 5);
    assert_true(bytes_is(c->username, "u"));
    assert_true(bytes_is(c->password, "p"));

    /* 5.0: password without user name is allowed (3.1.2.9). */
    decode_ok("10 11 0004 4D515454 05 42 000A 00 0001 63 0001 70", 5, &p, buf, sizeof(buf));
    assert_false(p.u.connect.username_flag);
    assert_true(bytes_is(p.u.connect.password, "p"));
    /* Binary password. */
    decode_ok("10 13 0004 4D515454 05 C0 000A 00 0000 0000 0002 FF00", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.connect.password.len, 2);

    /* Will with properties: delay 5, payload format 1, user property k=v. */
    decode_ok("10 26 0004 4D515454 05 2E 003C 00 0001 63"
              " 0E 18 00000005 01 01 26 0001 6B 0001 76"
              " 0003 612F62 0002 6869",
              5, &p, buf, sizeof(buf));
    c = &p.u.connect;
    assert_true(c->will_flag);
    assert_true(c->will_retain);
    assert_int_equal(c->will_qos, 1);
    assert_int_equal(c->will_props.will_delay, 5);
    assert_int_equal(c->will_props.payload_format, 1);
    assert_int_equal(c->will_props.user_count, 1);
    assert_true(bytes_is(c->will_topic, "a/b"));
    assert_true(bytes_is(c->will_payload, "hi"));
    size_t pos = 0;
    struct mqtt_bytes k, v;
    assert_int_equal(mqtt_props_next_user(&c->will_props, &pos, &k, &v), 1);
    assert_true(bytes_is(k, "k"));
    assert_true(bytes_is(v, "v"));
    assert_int_equal(mqtt_props_next_user(&c->will_props, &pos, &k, &v), 0);
}

static void test_publish_spec(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqtt_packet p;
    /* 3.1.1 3.3.2.3 example: topic "a/b", packet id 10, QoS 1. */
    decode_ok("32 09 0003 612F62 000A 6869", 4, &p, buf, sizeof(buf));
    const struct mqtt_publish *m = &p.u.publish;
    assert_int_equal(p.type, MQTT_PUBLISH);
    assert_int_equal(p.flags, 2);
    assert_int_equal(m->qos, 1);
    assert_false(m->dup);
    assert_false(m->retain);
    assert_int_equal(m->packet_id, 10);
    assert_true(bytes_is(m->topic, "a/b"));
    assert_true(bytes_is(m->payload, "hi"));

    /* QoS 0, retain, empty payload: no packet id. */
    decode_ok("31 05 0003 612F62", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.u.publish.qos, 0);
    assert_true(p.u.publish.retain);
    assert_int_equal(p.u.publish.payload.len, 0);

    /* QoS 2 + DUP. */
    decode_ok("3C 06 0001 61 1234 FF", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.u.publish.qos, 2);
    assert_true(p.u.publish.dup);
    assert_int_equal(p.u.publish.packet_id, 0x1234);

    /* 3.1: DUP with QoS 0 is kept (no rule against it there). */
    decode_ok("38 03 0001 61", 3, &p, buf, sizeof(buf));
    assert_true(p.u.publish.dup);

    /* 5.0: empty topic with Topic Alias 0 (the broker rejects alias 0). */
    decode_ok("30 07 0000 03 23 0000 78", 5, &p, buf, sizeof(buf));
    m = &p.u.publish;
    assert_int_equal(m->topic.len, 0);
    assert_true(m->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS));
    assert_int_equal(m->props.topic_alias, 0);
    assert_true(bytes_is(m->payload, "x"));

    /* 5.0: payload format 1 with UTF-8 payload containing U+0000 (well-formed). */
    decode_ok("30 0A 0001 61 02 01 01 C3A9 00 41", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.publish.payload.len, 4);

    /* 5.0: two subscription identifiers (server to client). */
    decode_ok("30 0A 0001 61 05 0B 01 0B 80 01 7A", 5, &p, buf, sizeof(buf));
    m = &p.u.publish;
    assert_int_equal(m->props.sub_id_count, 2);
    assert_int_equal(m->props.sub_id, 1);
    size_t pos = 0;
    uint32_t id;
    assert_int_equal(mqtt_props_next_sub_id(&m->props, &pos, &id), 1);
    assert_int_equal(id, 1);
    assert_int_equal(mqtt_props_next_sub_id(&m->props, &pos, &id), 1);
    assert_int_equal(id, 128);
    assert_int_equal(mqtt_props_next_sub_id(&m->props, &pos, &id), 0);

    /* 5.0: all PUBLISH properties. */
    decode_ok("30 37 0001 61 2C"
              " 01 00 02 0000003C 03 0004 6A736F6E 08 0003 722F74 09 0002 0102"
              " 0B 05 23 0007 26 0001 6B 0001 76 26 0001 6B 0001 77"
              " 7061796C6F6164",
              5, &p, buf, sizeof(buf));
    m = &p.u.publish;
    assert_int_equal(m->props.payload_format, 0);
    assert_int_equal(m->props.message_expiry, 60);
    assert_true(bytes_is(m->props.content_type, "json"));
    assert_true(bytes_is(m->props.response_topic, "r/t"));
    assert_int_equal(m->props.correlation_data.len, 2);
    assert_int_equal(m->props.sub_id, 5);
    assert_int_equal(m->props.topic_alias, 7);
    assert_int_equal(m->props.user_count, 2);
    assert_true(bytes_is(m->payload, "payload"));
    pos = 0;
    struct mqtt_bytes k, v;
    assert_int_equal(mqtt_props_next_user(&m->props, &pos, &k, &v), 1);
    assert_true(bytes_is(v, "v"));
    assert_int_equal(mqtt_props_next_user(&m->props, &pos, &k, &v), 1);
    assert_true(bytes_is(k, "k"));
    assert_true(bytes_is(v, "w"));
    assert_int_equal(mqtt_props_next_user(&m->props, &pos, &k, &v), 0);
}

static void test_acks(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqtt_packet p;
    static const uint8_t types[] = {0x40, 0x50, 0x62, 0x70};
    for (size_t i = 0; i < 4; i++) {
        char hex[64];
        /* 3.1.1 */
        snprintf(hex, sizeof(hex), "%02X 02 ABCD", types[i]);
        decode_ok(hex, 4, &p, buf, sizeof(buf));
        assert_int_equal(p.type, types[i] >> 4);
        assert_int_equal(p.u.ack.packet_id, 0xABCD);
        assert_int_equal(p.u.ack.reason, 0);
        /* 5.0 short form */
        decode_ok(hex, 5, &p, buf, sizeof(buf));
        assert_int_equal(p.u.ack.reason, 0);
        /* 5.0 with reason only */
        snprintf(hex, sizeof(hex), "%02X 03 0001 10", types[i]);
        decode_ok(hex, 5, &p, buf, sizeof(buf));
        assert_int_equal(p.u.ack.reason, 0x10);
        assert_int_equal(p.u.ack.props.raw.len, 0);
        /* 5.0 with reason and reason string */
        snprintf(hex, sizeof(hex), "%02X 09 0001 87 05 1F 0002 6E6F", types[i]);
        decode_ok(hex, 5, &p, buf, sizeof(buf));
        assert_int_equal(p.u.ack.reason, 0x87);
        assert_true(bytes_is(p.u.ack.props.reason_string, "no"));
    }
    /* 3.1: a resent PUBREL may carry DUP. */
    decode_ok("6A 02 0001", 3, &p, buf, sizeof(buf));
    assert_int_equal(p.type, MQTT_PUBREL);
}

static void test_subscribe(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct mqtt_packet p;
    /* 3.1.1 3.8.3 example: "a/b" QoS 1, "c/d" QoS 2. */
    decode_ok("82 0E 000A 0003 612F62 01 0003 632F64 02", 4, &p, buf, sizeof(buf));
    const struct mqtt_subscribe *s = &p.u.subscribe;
    assert_int_equal(s->packet_id, 10);
    assert_int_equal(s->count, 2);
    size_t pos = 0;
    struct mqtt_bytes f;
    uint8_t o;
    assert_int_equal(mqtt_subscribe_next(s, &pos, &f, &o), 1);
    assert_true(bytes_is(f, "a/b"));
    assert_int_equal(o, 1);
    assert_int_equal(mqtt_subscribe_next(s, &pos, &f, &o), 1);
    assert_true(bytes_is(f, "c/d"));
    assert_int_equal(o, 2);
    assert_int_equal(mqtt_subscribe_next(s, &pos, &f, &o), 0);

    /* Wildcard placement and empty filters are left to the broker. */
    decode_ok("82 0A 0001 0002 612B 00 0000 01", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.u.subscribe.count, 2);

    /* 5.0: subscription identifier, all option bits. */
    decode_ok("82 0B 0001 02 0B 2A 0003 242F23 2E", 5, &p, buf, sizeof(buf));
    s = &p.u.subscribe;
    assert_int_equal(s->props.sub_id, 42);
    pos = 0;
    assert_int_equal(mqtt_subscribe_next(s, &pos, &f, &o), 1);
    assert_int_equal(o, 0x2E);

    /* 3.1: SUBSCRIBE with DUP. */
    decode_ok("8A 06 0001 0001 61 00", 3, &p, buf, sizeof(buf));

    /* UNSUBSCRIBE. */
    decode_ok("A2 0C 0005 0003 612F62 0003 632F2B", 4, &p, buf, sizeof(buf));
    s = &p.u.subscribe;
    assert_int_equal(p.type, MQTT_UNSUBSCRIBE);
    assert_int_equal(s->count, 2);
    pos = 0;
    assert_int_equal(mqtt_unsubscribe_next(s, &pos, &f), 1);
    assert_true(bytes_is(f, "a/b"));
    assert_int_equal(mqtt_unsubscribe_next(s, &pos, &f), 1);
    assert_true(bytes_is(f, "c/+"));
    assert_int_equal(mqtt_unsubscribe_next(s, &pos, &f), 0);
    decode_ok("A2 08 0005 00 0001 61 0000", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.subscribe.count, 2);
}

static void test_suback_connack_misc(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct mqtt_packet p;
    decode_ok("90 05 000A 01 80 02", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.u.suback.count, 3);
    assert_int_equal(p.u.suback.reasons[1], 0x80);
    decode_ok("90 04 000A 00 97", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.suback.count, 1);
    assert_int_equal(p.u.suback.reasons[0], 0x97);
    decode_ok("B0 02 000A", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.u.suback.count, 0);
    decode_ok("B0 05 000A 00 00 11", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.suback.count, 2);

    decode_ok("20 02 01 00", 4, &p, buf, sizeof(buf));
    assert_true(p.u.connack.session_present);
    decode_ok("20 02 00 05", 3, &p, buf, sizeof(buf));
    assert_int_equal(p.u.connack.reason, 5);
    decode_ok("20 0E 00 00 0B 21 0014 24 01 25 00 12 0001 78", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.connack.props.receive_max, 20);
    assert_int_equal(p.u.connack.props.max_qos, 1);
    assert_int_equal(p.u.connack.props.retain_available, 0);
    assert_true(bytes_is(p.u.connack.props.assigned_client_id, "x"));

    decode_ok("C0 00", 4, &p, buf, sizeof(buf));
    assert_int_equal(p.type, MQTT_PINGREQ);
    decode_ok("D0 00", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.type, MQTT_PINGRESP);
    decode_ok("E0 00", 4, &p, buf, sizeof(buf));
    decode_ok("E0 00", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.reason.reason, 0);
    decode_ok("E0 01 04", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.reason.reason, 4);
    decode_ok("E0 07 00 05 11 0000012C", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.reason.props.session_expiry, 300);
    decode_ok("F0 00", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.type, MQTT_AUTH);
    decode_ok("F0 0D 18 0B 15 0003 534352 16 0002 0102", 5, &p, buf, sizeof(buf));
    assert_int_equal(p.u.reason.reason, 0x18);
    assert_true(bytes_is(p.u.reason.props.auth_method, "SCR"));
    assert_int_equal(p.u.reason.props.auth_data.len, 2);
    /* Before CONNECT (version 0): decoded by 3.1.1 rules. */
    decode_ok("C0 00", 0, &p, buf, sizeof(buf));
}

/* ---- malformed inputs ---- */

struct bad_case {
    const char *hex;
    uint8_t version;
    int err;
};

#define CONNECT4 "0004 4D515454 04"
#define CONNECT5 "0004 4D515454 05"

static const struct bad_case bad_cases[] = {
    /* framing */
    {"00 00", 4, -ERR_RESERVED_TYPE},
    {"30", 4, -ERR_TRUNCATED},
    {"", 4, -ERR_TRUNCATED},
    {"30 FF FF FF FF 01", 4, -ERR_VARINT_OVERLONG},
    {"30 80", 4, -ERR_TRUNCATED},
    {"30 05 0001 61", 4, -ERR_TRUNCATED},
    {"C0 00 00", 4, -ERR_TRAILING_BYTES},
    {"C0 01 00", 4, -ERR_TRAILING_BYTES},
    {"D0 01 00", 5, -ERR_TRAILING_BYTES},
    {"C1 00", 4, -ERR_RESERVED_FLAGS},
    {"D8 00", 4, -ERR_RESERVED_FLAGS},
    {"12 0C" CONNECT4 "02 003C 0000", 4, -ERR_RESERVED_FLAGS},
    {"60 02 0001", 4, -ERR_RESERVED_FLAGS},
    {"6A 02 0001", 4, -ERR_RESERVED_FLAGS},
    {"63 02 0001", 3, -ERR_RESERVED_FLAGS},
    {"80 06 0001 0001 61 00", 4, -ERR_RESERVED_FLAGS},
    {"A0 05 0001 0001 61", 4, -ERR_RESERVED_FLAGS},
    {"42 02 0001", 5, -ERR_RESERVED_FLAGS},
    {"F1 00", 5, -ERR_RESERVED_FLAGS},
    {"36 05 0001 61 0001", 4, -ERR_BAD_QOS},
    {"38 03 0001 61", 4, -ERR_RESERVED_FLAGS}, /* DUP with QoS 0 */
    {"38 04 0001 61 00", 5, -ERR_RESERVED_FLAGS},
    {"F0 00", 4, -ERR_TYPE_NOT_IN_VERSION},
    {"F0 00", 3, -ERR_TYPE_NOT_IN_VERSION},
    /* CONNECT */
    {"10 0C 0004 4D515458 04 02 003C 0000", 4, -ERR_PROTOCOL_NAME},
    {"10 0C 0004 6D717474 04 02 003C 0000", 4, -ERR_PROTOCOL_NAME},
    {"10 08 0000 04 02 003C 0000", 4, -ERR_PROTOCOL_NAME},
    {"10 0C 0004 4D515454 06 02 003C 0000", 4, -ERR_PROTOCOL_VERSION},
    {"10 0C 0004 4D515454 03 02 003C 0000", 4, -ERR_PROTOCOL_VERSION},
    {"10 0C 0004 4D515454 00 02 003C 0000", 4, -ERR_PROTOCOL_VERSION},
    {"10 0E 0006 4D5149736470 04 02 003C 0000", 4, -ERR_PROTOCOL_VERSION},
    {"10 0C" CONNECT4 "03 003C 0000", 4, -ERR_CONNECT_RESERVED},
    {"10 0C" CONNECT4 "0A 003C 0000", 4, -ERR_WILL_FLAGS},
    {"10 0C" CONNECT4 "22 003C 0000", 4, -ERR_WILL_FLAGS},
    {"10 0C" CONNECT4 "1E 003C 0000", 4, -ERR_BAD_QOS},
    {"10 0C" CONNECT4 "42 003C 0000", 4, -ERR_PASSWORD_WITHOUT_USERNAME},
    {"10 0E 0006 4D5149736470 03 42 003C 0000", 3, -ERR_PASSWORD_WITHOUT_USERNAME},
    {"10 0A" CONNECT4 "02 003C", 4, -ERR_TRUNCATED},
    {"10 0D" CONNECT4 "02 003C 0001 C0", 4, -ERR_UTF8_INVALID},
    {"10 0D" CONNECT4 "02 003C 0001 00", 4, -ERR_UTF8_NULL},
    {"10 11" CONNECT4 "06 003C 0000 0001 23 0000", 4, -ERR_TOPIC_WILDCARD},
    {"10 10" CONNECT4 "06 003C 0000 0000 0000", 4, -ERR_TOPIC_EMPTY},
    {"10 11" CONNECT4 "82 003C 0000 0003 EDA080", 4, -ERR_UTF8_SURROGATE},
    {"10 0F" CONNECT4 "82 003C 0000 0000 00", 4, -ERR_TRAILING_BYTES},
    {"10 0E" CONNECT4 "C2 003C 0000 0000", 4, -ERR_TRUNCATED}, /* password missing */
    {"10 12" CONNECT5 "02 003C 05 27 00000000 0000", 5, -ERR_PROPERTY_VALUE},
    {"10 0F" CONNECT5 "02 003C 02 17 02 0000", 5, -ERR_PROPERTY_VALUE},
    {"10 0F" CONNECT5 "02 003C 02 19 02 0000", 5, -ERR_PROPERTY_VALUE},
    {"10 10" CONNECT5 "02 003C 03 21 0000 0000", 5, -ERR_PROPERTY_VALUE},
    {"10 0F" CONNECT5 "02 003C 02 01 00 0000", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"10 15" CONNECT5 "02 003C 08 11 00000001 11 0000 0000", 5, -ERR_PROPERTY_DUPLICATE},
    {"10 18" CONNECT5 "06 003C 00 0000 05 11 00000000 0001 61 0000", 5,
     -ERR_PROPERTY_NOT_ALLOWED}, /* session expiry in will properties */
    {"10 16" CONNECT5 "06 003C 00 0000 02 01 01 0001 61 0001 FF", 5, -ERR_PAYLOAD_NOT_UTF8},
    {"10 0E" CONNECT5 "02 003C 05 11 0000", 5, -ERR_TRUNCATED},
    /* CONNACK */
    {"20 02 02 00", 4, -ERR_RESERVED_FLAGS},
    {"20 03 00 00 00", 4, -ERR_TRAILING_BYTES},
    {"20 02 00 00", 5, -ERR_TRUNCATED}, /* 5.0 CONNACK has a property length */
    {"20 06 00 00 03 21 0000", 5, -ERR_PROPERTY_VALUE},
    {"20 05 00 00 02 24 02", 5, -ERR_PROPERTY_VALUE},
    {"20 05 00 00 02 25 02", 5, -ERR_PROPERTY_VALUE},
    {"20 05 00 00 02 28 05", 5, -ERR_PROPERTY_VALUE},
    {"20 05 00 00 02 29 02", 5, -ERR_PROPERTY_VALUE},
    {"20 05 00 00 02 2A FF", 5, -ERR_PROPERTY_VALUE},
    {"20 05 00 00 02 18 00", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"20 07 00 00 05 12 0001 C0", 5, -ERR_TRUNCATED},
    {"20 08 00 00 05 12 0002 C080", 5, -ERR_UTF8_INVALID},
    /* PUBLISH */
    {"30 02 0000", 4, -ERR_TOPIC_EMPTY},
    {"30 02 0000", 3, -ERR_TOPIC_EMPTY},
    {"30 03 0001 2B", 4, -ERR_TOPIC_WILDCARD},
    {"30 05 0003 612F23", 5, -ERR_TOPIC_WILDCARD},
    {"30 03 0001 00", 4, -ERR_UTF8_NULL},
    {"30 05 0003 EDA080", 4, -ERR_UTF8_SURROGATE},
    {"30 06 0004 F4908080", 4, -ERR_UTF8_INVALID},
    {"32 05 0001 61 0000", 4, -ERR_PACKET_ID_ZERO},
    {"34 06 0001 61 0000 00", 5, -ERR_PACKET_ID_ZERO},
    {"32 04 0001 61 00", 4, -ERR_TRUNCATED},
    {"30 04 0003 612F", 4, -ERR_TRUNCATED},
    {"30 07 0001 61 02 01 01 FF", 5, -ERR_PAYLOAD_NOT_UTF8},
    {"30 08 0001 61 02 01 01 ED A0", 5, -ERR_PAYLOAD_NOT_UTF8},
    {"30 06 0001 61 02 05 00", 5, -ERR_PROPERTY_UNKNOWN},
    {"30 06 0001 61 02 00 00", 5, -ERR_PROPERTY_UNKNOWN},
    {"30 06 0001 61 02 80 01", 5, -ERR_PROPERTY_UNKNOWN},
    {"30 06 0001 61 02 7F 00", 5, -ERR_PROPERTY_UNKNOWN},
    {"30 09 0001 61 05 11 00000000", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"30 06 0001 61 02 24 01", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"30 0A 0001 61 06 23 0001 23 0002", 5, -ERR_PROPERTY_DUPLICATE},
    {"30 08 0001 61 04 01 00 01 00", 5, -ERR_PROPERTY_DUPLICATE},
    {"30 06 0001 61 02 01 02", 5, -ERR_PROPERTY_VALUE},
    {"30 06 0001 61 02 0B 00", 5, -ERR_PROPERTY_VALUE},
    {"30 05 0001 61 05 01", 5, -ERR_TRUNCATED},
    {"30 03 0001 61", 5, -ERR_TRUNCATED}, /* property length missing */
    {"30 05 0001 61 01 0B", 5, -ERR_TRUNCATED},
    {"30 08 0001 61 FF FF FF FF 01", 5, -ERR_VARINT_OVERLONG},
    {"30 08 0001 61 04 0B FF FF FF", 5, -ERR_TRUNCATED},
    {"30 0A 0001 61 06 0B FF FF FF FF 01", 5, -ERR_VARINT_OVERLONG},
    {"30 08 0001 61 04 03 0001 FF", 5, -ERR_UTF8_INVALID},
    {"30 08 0001 61 04 08 0001 23", 5, -ERR_TOPIC_WILDCARD},
    {"30 0C 0001 61 08 26 0001 61 0002 EDA0", 5, -ERR_UTF8_INVALID},
    {"30 0D 0001 61 09 26 0001 61 0003 EDA080", 5, -ERR_UTF8_SURROGATE},
    /* acks */
    {"40 03 0001 00", 4, -ERR_TRAILING_BYTES},
    {"40 02 0000", 4, -ERR_PACKET_ID_ZERO},
    {"50 02 0000", 5, -ERR_PACKET_ID_ZERO},
    {"40 01 00", 4, -ERR_TRUNCATED},
    {"40 00", 5, -ERR_TRUNCATED},
    {"40 04 0001 00 05", 5, -ERR_TRUNCATED},
    {"40 06 0001 00 01 1F 00", 5, -ERR_TRUNCATED},
    {"40 07 0001 00 03 23 0001", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"62 08 0001 00 03 1F 0000 00", 5, -ERR_TRAILING_BYTES},
    {"70 0A 0001 00 06 1F 0000 1F 0000", 5, -ERR_PROPERTY_DUPLICATE},
    {"50 0A 0001 00 06 26 0001 FF 0000", 5, -ERR_UTF8_INVALID},
    /* SUBSCRIBE / UNSUBSCRIBE */
    {"82 02 0001", 4, -ERR_NO_TOPIC_FILTERS},
    {"82 03 0001 00", 5, -ERR_NO_TOPIC_FILTERS},
    {"82 06 0001 0001 61 04", 4, -ERR_SUB_OPTIONS_RESERVED},
    {"82 06 0001 0001 61 80", 3, -ERR_SUB_OPTIONS_RESERVED},
    {"82 06 0001 0001 61 03", 4, -ERR_BAD_QOS},
    {"82 07 0001 00 0001 61 40", 5, -ERR_SUB_OPTIONS_RESERVED},
    {"82 07 0001 00 0001 61 30", 5, -ERR_RETAIN_HANDLING},
    {"82 07 0001 00 0001 61 03", 5, -ERR_BAD_QOS},
    {"82 06 0000 0001 61 00", 4, -ERR_PACKET_ID_ZERO},
    {"82 06 0001 0001 FF 00", 4, -ERR_UTF8_INVALID},
    {"82 06 0001 0001 00 00", 4, -ERR_UTF8_NULL},
    {"82 05 0001 0001 61", 4, -ERR_TRUNCATED},
    {"82 09 0001 0001 61 00 0002 61", 4, -ERR_TRUNCATED},
    {"82 0B 0001 04 0B 01 0B 02 0001 61 00", 5, -ERR_PROPERTY_DUPLICATE},
    {"82 0A 0001 03 23 0001 0001 61 00", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"82 09 0001 02 0B 00 0001 61 00", 5, -ERR_PROPERTY_VALUE},
    {"A2 02 0001", 4, -ERR_NO_TOPIC_FILTERS},
    {"A2 03 0001 00", 5, -ERR_NO_TOPIC_FILTERS},
    {"A2 04 0001 0001", 4, -ERR_TRUNCATED},
    {"A2 05 0000 0001 61", 4, -ERR_PACKET_ID_ZERO},
    {"A2 05 0001 0001 C1", 4, -ERR_UTF8_INVALID},
    {"A2 08 0001 02 0B 01 0001 61", 5, -ERR_PROPERTY_NOT_ALLOWED},
    /* SUBACK / UNSUBACK */
    {"90 02 0001", 4, -ERR_NO_TOPIC_FILTERS},
    {"90 03 0001 00", 5, -ERR_NO_TOPIC_FILTERS},
    {"90 03 0000 00", 4, -ERR_PACKET_ID_ZERO},
    {"B0 03 0001 00", 4, -ERR_TRAILING_BYTES},
    {"B0 03 0001 00", 5, -ERR_NO_TOPIC_FILTERS},
    {"B0 02 0000", 4, -ERR_PACKET_ID_ZERO},
    {"90 07 0001 03 23 0001 00", 5, -ERR_PROPERTY_NOT_ALLOWED},
    /* DISCONNECT / AUTH */
    {"E0 01 00", 4, -ERR_TRAILING_BYTES},
    {"E0 02 00 00", 3, -ERR_TRAILING_BYTES},
    {"E0 05 00 03 23 0001", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"E0 06 00 04 12 0001 61", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"E0 03 00 05 11", 5, -ERR_TRUNCATED},
    {"E0 03 00 00 00", 5, -ERR_TRAILING_BYTES},
    {"F0 05 18 03 11 0000", 5, -ERR_PROPERTY_NOT_ALLOWED},
    {"F0 0A 18 08 15 0001 61 15 0001 62", 5, -ERR_PROPERTY_DUPLICATE},
    {"F0 07 18 05 15 0002 C0 80", 5, -ERR_UTF8_INVALID},
};

static void test_malformed(void **state)
{
    (void)state;
    size_t n = sizeof(bad_cases) / sizeof(bad_cases[0]);
    assert_true(n >= 40);
    for (size_t i = 0; i < n; i++) {
        const struct bad_case *c = &bad_cases[i];
        uint8_t in[256];
        size_t len = unhex(c->hex, in, sizeof(in));
        /* An exact-size heap copy, so ASan sees any read past the end. */
        uint8_t *buf = malloc(len ? len : 1);
        assert_non_null(buf);
        memcpy(buf, in, len);
        struct mqtt_packet p;
        int rc = mqtt_decode(buf, len, c->version, &p);
        free(buf);
        if (rc != c->err)
            fail_msg("case %zu [%s] v%u: got %s, want %s", i, c->hex, c->version,
                     mqtt_err_name(rc), mqtt_err_name(c->err));
    }
}

/* Every error the decoder can produce appears in the table above. */
static void test_malformed_covers_errors(void **state)
{
    (void)state;
    static const int decoder_errs[] = {
        ERR_VARINT_OVERLONG, ERR_TRUNCATED, ERR_TRAILING_BYTES, ERR_RESERVED_TYPE,
        ERR_RESERVED_FLAGS, ERR_BAD_QOS, ERR_TYPE_NOT_IN_VERSION, ERR_UTF8_INVALID,
        ERR_UTF8_SURROGATE, ERR_UTF8_NULL, ERR_PROTOCOL_NAME, ERR_PROTOCOL_VERSION,
        ERR_CONNECT_RESERVED, ERR_WILL_FLAGS, ERR_PASSWORD_WITHOUT_USERNAME, ERR_TOPIC_EMPTY,
        ERR_TOPIC_WILDCARD, ERR_NO_TOPIC_FILTERS, ERR_SUB_OPTIONS_RESERVED,
        ERR_RETAIN_HANDLING, ERR_PACKET_ID_ZERO, ERR_PROPERTY_UNKNOWN, ERR_PROPERTY_NOT_ALLOWED,
        ERR_PROPERTY_DUPLICATE, ERR_PROPERTY_VALUE, ERR_PAYLOAD_NOT_UTF8,
    };
    for (size_t e = 0; e < sizeof(decoder_errs) / sizeof(decoder_errs[0]); e++) {
        bool found = false;
        for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
            found |= bad_cases[i].err == -decoder_errs[e];
        if (!found)
            fail_msg("no malformed case for %s", mqtt_err_name(decoder_errs[e]));
    }
}

/* Every proper prefix of a valid packet is TRUNCATED for decode and "need
 * more" for scan. */
static void test_prefixes(void **state)
{
    (void)state;
    static const char *valid[] = {
        "10 20 0004 4D515454 04 CE 000A 0003 636964 0003 772F74 0003 627965 0001 75 0002 7077",
        ("30 37 0001 61 2C 01 00 02 0000003C 03 0004 6A736F6E 08 0003 722F74 09 0002 0102"
         " 0B 05 23 0007 26 0001 6B 0001 76 26 0001 6B 0001 77 7061796C6F6164"),
        "82 0E 000A 0003 612F62 01 0003 632F64 02",
    };
    static const uint8_t versions[] = {4, 5, 4};
    for (size_t i = 0; i < 3; i++) {
        uint8_t buf[128];
        size_t n = unhex(valid[i], buf, sizeof(buf));
        for (size_t k = 0; k < n; k++) {
            assert_int_equal(mqtt_scan(buf, k, 0), 0);
            /* Decoding a prefix whose header claims more: truncated. */
            struct mqtt_packet p;
            assert_int_equal(mqtt_decode(buf, k, versions[i], &p), -ERR_TRUNCATED);
        }
    }
}

/* 65,536 filters do not fit the 16-bit count. */
static void test_subscribe_too_many(void **state)
{
    (void)state;
    size_t entries = 65536;
    size_t body = 2 + entries * 4;
    size_t len = 1 + 3 + body;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    buf[0] = 0x82;
    buf[1] = (uint8_t)(0x80 | (body & 0x7F));
    buf[2] = (uint8_t)(0x80 | ((body >> 7) & 0x7F));
    buf[3] = (uint8_t)(body >> 14);
    buf[4] = 0x00;
    buf[5] = 0x01;
    for (size_t i = 0; i < entries; i++) {
        uint8_t *e = buf + 6 + i * 4;
        e[0] = 0;
        e[1] = 1;
        e[2] = 'a';
        e[3] = 0;
    }
    assert_int_equal(mqtt_scan(buf, len, 0), (int)len);
    struct mqtt_packet p;
    assert_int_equal(mqtt_decode(buf, len, 4, &p), -ERR_PACKET_TOO_LARGE);
    /* one fewer fits */
    body -= 4;
    len -= 4;
    buf[1] = (uint8_t)(0x80 | (body & 0x7F));
    buf[2] = (uint8_t)(0x80 | ((body >> 7) & 0x7F));
    buf[3] = (uint8_t)(body >> 14);
    assert_int_equal(mqtt_decode(buf, len, 4, &p), 0);
    assert_int_equal(p.u.subscribe.count, 65535);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_v311_spec),
        cmocka_unit_test(test_connect_v31),
        cmocka_unit_test(test_connect_v5_spec),
        cmocka_unit_test(test_publish_spec),
        cmocka_unit_test(test_acks),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_suback_connack_misc),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_malformed_covers_errors),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_subscribe_too_many),
    };
    return cmocka_run_group_tests_name("codec_decode", tests, NULL, NULL);
}
