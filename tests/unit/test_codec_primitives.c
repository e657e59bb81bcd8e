/* Codec building blocks: variable byte integers, UTF-8, topic names and
 * filters, shared subscriptions, the error table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/packet.h"

#define S(str) (const uint8_t *)(str), (sizeof(str) - 1)

/* ---- variable byte integers [MQTT-1.5.5] ---- */

struct varint_case {
    uint32_t value;
    uint8_t bytes[4];
    int len;
};

/* The boundaries of the spec's table 1.1 (3.1.1 table 2.4). */
static const struct varint_case varint_cases[] = {
    {0, {0x00}, 1},
    {127, {0x7F}, 1},
    {128, {0x80, 0x01}, 2},
    {321, {0xC1, 0x02}, 2}, /* the spec's worked example */
    {16383, {0xFF, 0x7F}, 2},
    {16384, {0x80, 0x80, 0x01}, 3},
    {2097151, {0xFF, 0xFF, 0x7F}, 3},
    {2097152, {0x80, 0x80, 0x80, 0x01}, 4},
    {268435455, {0xFF, 0xFF, 0xFF, 0x7F}, 4},
};

static void test_varint_size(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(varint_cases) / sizeof(varint_cases[0]); i++)
        assert_int_equal(mqtt_varint_size(varint_cases[i].value), varint_cases[i].len);
    assert_int_equal(mqtt_varint_size(268435456), -ERR_INVALID);
    assert_int_equal(mqtt_varint_size(UINT32_MAX), -ERR_INVALID);
}

/* A PINGREQ-typed header (0xC0) with each remaining length: mqtt_scan and
 * mqtt_decode read the same varint, so this checks both and, through a
 * PUBLISH with a payload of that size, the encoder. */
static void test_varint_scan(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(varint_cases) / sizeof(varint_cases[0]); i++) {
        const struct varint_case *vc = &varint_cases[i];
        uint8_t hdr[5] = {0x30};
        memcpy(hdr + 1, vc->bytes, (size_t)vc->len);
        size_t hlen = 1 + (size_t)vc->len;
        int want = (int)(hlen + vc->value);
        /* header alone: need more unless the packet is empty */
        assert_int_equal(mqtt_scan(hdr, hlen, 0), vc->value == 0 ? want : 0);
        /* every prefix of the header: need more */
        for (size_t k = 1; k < hlen; k++)
            assert_int_equal(mqtt_scan(hdr, k, 0), 0);
        /* the limit decides exactly at the total */
        if (vc->value) {
            assert_int_equal(mqtt_scan(hdr, hlen, (uint32_t)want), 0);
            assert_int_equal(mqtt_scan(hdr, hlen, (uint32_t)want - 1), -ERR_PACKET_TOO_LARGE);
        }
    }
}

static void test_varint_overlong(void **state)
{
    (void)state;
    static const uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    /* The continuation bit on the 4th byte is enough to know. */
    assert_int_equal(mqtt_scan(five, 5, 0), -ERR_VARINT_OVERLONG);
    assert_int_equal(mqtt_scan(five, 6, 0), -ERR_VARINT_OVERLONG);
    struct mqtt_packet p;
    assert_int_equal(mqtt_decode(five, 6, 4, &p), -ERR_VARINT_OVERLONG);
    static const uint8_t five0[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(mqtt_scan(five0, 6, 0), -ERR_VARINT_OVERLONG);
}

/* Choice: non-minimal forms are accepted on input (the minimal rule binds
 * senders); the encoder always writes the minimal form. */
static void test_varint_not_minimal_accepted(void **state)
{
    (void)state;
    static const uint8_t ping[] = {0xC0, 0x80, 0x00};
    assert_int_equal(mqtt_scan(ping, sizeof(ping), 0), 3);
    struct mqtt_packet p;
    assert_int_equal(mqtt_decode(ping, sizeof(ping), 4, &p), 0);
    assert_int_equal(p.type, MQTT_PINGREQ);
    /* "a" as a PUBLISH with remaining length 3 written in 4 bytes */
    static const uint8_t pub[] = {0x30, 0x83, 0x80, 0x80, 0x00, 0x00, 0x01, 'a'};
    assert_int_equal(mqtt_scan(pub, sizeof(pub), 0), (int)sizeof(pub));
    assert_int_equal(mqtt_decode(pub, sizeof(pub), 4, &p), 0);
    assert_int_equal(p.u.publish.topic.len, 1);
    uint8_t out[16];
    assert_int_equal(mqtt_encode(&p, 4, out, sizeof(out)), 5);
    assert_int_equal(out[1], 3);
}

static void test_scan_too_large_before_body(void **state)
{
    (void)state;
    /* A PUBLISH announcing 2 MB: refused from the 4-byte header alone. */
    static const uint8_t hdr[] = {0x30, 0x80, 0x80, 0x80, 0x01};
    assert_int_equal(mqtt_scan(hdr, sizeof(hdr), 1024), -ERR_PACKET_TOO_LARGE);
    /* ...and from half the header: 0xFF 0xFF already means >= 16,383. */
    static const uint8_t half[] = {0x30, 0xFF, 0xFF};
    assert_int_equal(mqtt_scan(half, sizeof(half), 1024), -ERR_PACKET_TOO_LARGE);
    assert_int_equal(mqtt_scan(half, sizeof(half), 0), 0);
    assert_int_equal(mqtt_scan(half, sizeof(half), 100000), 0);
    /* The limit counts the whole packet, header included. */
    static const uint8_t pub[] = {0x30, 0x03, 0x00, 0x01, 'a'};
    assert_int_equal(mqtt_scan(pub, 5, 5), 5);
    assert_int_equal(mqtt_scan(pub, 5, 4), -ERR_PACKET_TOO_LARGE);
    assert_int_equal(mqtt_scan(pub, 2, 4), -ERR_PACKET_TOO_LARGE);
    assert_int_equal(mqtt_scan(pub, 4, 0), 0);
    /* More than one packet in the buffer: the first one's length. */
    static const uint8_t two[] = {0xC0, 0x00, 0xD0, 0x00};
    assert_int_equal(mqtt_scan(two, 4, 0), 2);
    assert_int_equal(mqtt_scan(two, 0, 0), 0);
    static const uint8_t zero[] = {0x00, 0x00};
    assert_int_equal(mqtt_scan(zero, 1, 0), -ERR_RESERVED_TYPE);
}

/* ---- UTF-8 [MQTT-1.5.4] ---- */

struct utf8_case {
    const char *bytes;
    size_t len;
    int err;
};

#define U(str, err) {str, sizeof(str) - 1, err}

static const struct utf8_case utf8_cases[] = {
    U("", 0),
    U("hello/world", 0),
    U("a long ascii run of more than eight bytes", 0),
    U("\x7F", 0),                 /* DEL: a control character, accepted */
    U("\x01\x1F", 0),             /* C0 controls: accepted (SHOULD NOT) */
    U("\xC2\x80", 0),             /* U+0080, the first 2-byte */
    U("\xC2\x9F", 0),             /* C1 control: accepted */
    U("\xDF\xBF", 0),             /* U+07FF */
    U("\xE0\xA0\x80", 0),         /* U+0800 */
    U("\xED\x9F\xBF", 0),         /* U+D7FF, just below the surrogates */
    U("\xEE\x80\x80", 0),         /* U+E000, just above */
    U("\xEF\xBF\xBF", 0),         /* U+FFFF, a non-character: accepted */
    U("\xEF\xBB\xBF" "a", 0),     /* BOM: not to be stripped [MQTT-1.5.4-3] */
    U("\xF0\x90\x80\x80", 0),     /* U+10000 */
    U("\xF4\x8F\xBF\xBF", 0),     /* U+10FFFF, the last code point */
    U("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 0),
    U("\x00", -ERR_UTF8_NULL),
    U("abcdefgh\x00", -ERR_UTF8_NULL),
    U("abc\x00" "defghijk", -ERR_UTF8_NULL),
    U("\xC0\x80", -ERR_UTF8_INVALID), /* overlong U+0000 */
    U("\xC1\xBF", -ERR_UTF8_INVALID), /* overlong U+007F */
    U("\xE0\x80\x80", -ERR_UTF8_INVALID), /* overlong 3-byte */
    U("\xE0\x9F\xBF", -ERR_UTF8_INVALID), /* overlong U+07FF */
    U("\xF0\x80\x80\x80", -ERR_UTF8_INVALID),
    U("\xF0\x8F\xBF\xBF", -ERR_UTF8_INVALID), /* overlong U+FFFF */
    U("\xED\xA0\x80", -ERR_UTF8_SURROGATE),   /* U+D800 */
    U("\xED\xBF\xBF", -ERR_UTF8_SURROGATE),   /* U+DFFF */
    U("ok\xED\xB0\x80", -ERR_UTF8_SURROGATE), /* U+DC00 */
    U("\xF4\x90\x80\x80", -ERR_UTF8_INVALID), /* U+110000 */
    U("\xF5\x80\x80\x80", -ERR_UTF8_INVALID),
    U("\xF8\x88\x80\x80\x80", -ERR_UTF8_INVALID),
    U("\xFE", -ERR_UTF8_INVALID),
    U("\xFF", -ERR_UTF8_INVALID),
    U("\x80", -ERR_UTF8_INVALID),             /* lone continuation */
    U("abcdefgh\xBF", -ERR_UTF8_INVALID),
    U("\xC3", -ERR_UTF8_INVALID),             /* truncated 2-byte */
    U("\xE2\x82", -ERR_UTF8_INVALID),         /* truncated 3-byte */
    U("\xF0\x9F\x98", -ERR_UTF8_INVALID),     /* truncated 4-byte */
    U("\xC3\x28", -ERR_UTF8_INVALID),         /* bad continuation */
    U("\xE2\x28\xA1", -ERR_UTF8_INVALID),
    U("\xF0\x9F\x28\x80", -ERR_UTF8_INVALID),
    U("\xED\xA0", -ERR_UTF8_INVALID),         /* truncated surrogate */
};

static void test_utf8(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const struct utf8_case *c = &utf8_cases[i];
        int rc = mqtt_utf8_validate((const uint8_t *)c->bytes, c->len);
        if (rc != c->err)
            fail_msg("utf8 case %zu: got %s, want %s", i, mqtt_err_name(rc), mqtt_err_name(c->err));
    }
}

/* ---- topic names and filters [MQTT-4.7] ---- */

static void test_topic_name(void **state)
{
    (void)state;
    assert_int_equal(mqtt_topic_name_validate(S("a/b/c")), 0);
    assert_int_equal(mqtt_topic_name_validate(S("/")), 0);
    assert_int_equal(mqtt_topic_name_validate(S("//")), 0);
    assert_int_equal(mqtt_topic_name_validate(S("$SYS/broker")), 0);
    assert_int_equal(mqtt_topic_name_validate(S(" ")), 0);
    assert_int_equal(mqtt_topic_name_validate(S("")), -ERR_TOPIC_EMPTY);
    assert_int_equal(mqtt_topic_name_validate(S("a/+/c")), -ERR_TOPIC_WILDCARD);
    assert_int_equal(mqtt_topic_name_validate(S("#")), -ERR_TOPIC_WILDCARD);
    assert_int_equal(mqtt_topic_name_validate(S("a#")), -ERR_TOPIC_WILDCARD);
    assert_int_equal(mqtt_topic_name_validate(S("a\0b")), -ERR_UTF8_NULL);
    assert_int_equal(mqtt_topic_name_validate(S("a\xC0\x80")), -ERR_UTF8_INVALID);
}

static void test_topic_filter(void **state)
{
    (void)state;
    static const char *ok[] = {"#", "+", "a", "a/b", "a/#", "a/+", "+/+", "+/#", "/+", "/",
                               "a//b", "+/a/#", "$SYS/#", "sport/tennis/+/player1", "/#"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = mqtt_topic_filter_validate((const uint8_t *)ok[i], strlen(ok[i]));
        if (rc != 0)
            fail_msg("filter '%s': %s", ok[i], mqtt_err_name(rc));
    }
    static const char *bad[] = {"a#", "#a", "a/#/b", "#/", "##", "a+", "+a", "a/b+", "+a/b",
                                "a/++", "sport/tennis#", "sport/tennis/#/ranking"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = mqtt_topic_filter_validate((const uint8_t *)bad[i], strlen(bad[i]));
        if (rc != -ERR_FILTER_INVALID)
            fail_msg("filter '%s': %s", bad[i], mqtt_err_name(rc));
    }
    assert_int_equal(mqtt_topic_filter_validate(S("")), -ERR_FILTER_EMPTY);
    assert_int_equal(mqtt_topic_filter_validate(S("a/\xED\xA0\x80")), -ERR_UTF8_SURROGATE);
}

static void test_share_split(void **state)
{
    (void)state;
    struct mqtt_bytes g = {NULL, 0}, f = {NULL, 0};
    assert_int_equal(mqtt_share_split(S("$share/grp/a/b/#"), &g, &f), 1);
    assert_int_equal(g.len, 3);
    assert_memory_equal(g.ptr, "grp", 3);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.ptr, "a/b/#", 5);
    assert_int_equal(mqtt_share_split(S("$share/g/+"), &g, &f), 1);
    assert_int_equal(mqtt_share_split(S("$share/g//"), &g, &f), 1);
    assert_memory_equal(f.ptr, "/", 1);

    /* Not shared: untouched outputs. */
    struct mqtt_bytes g0 = {(const uint8_t *)"x", 1}, f0 = g0;
    assert_int_equal(mqtt_share_split(S("a/b"), &g0, &f0), 0);
    assert_int_equal(mqtt_share_split(S("$share"), &g0, &f0), 0);
    assert_int_equal(mqtt_share_split(S("$shared/g/a"), &g0, &f0), 0);
    assert_int_equal(mqtt_share_split(S("$SHARE/g/a"), &g0, &f0), 0);
    assert_int_equal(g0.len, 1);
    assert_int_equal(f0.len, 1);

    static const char *bad[] = {"$share/", "$share//a", "$share/g", "$share/g/",
                                "$share/g+/a", "$share/#/a", "$share/+/a", "$share/g/a#",
                                "$share/g/#/a", "$share/\xC0\x80/a", "$share/g/a\x00"};
    static const size_t badlen[] = {7, 9, 8, 9, 11, 10, 10, 11, 12, 11, 11};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = mqtt_share_split((const uint8_t *)bad[i], badlen[i], &g, &f);
        if (rc != -ERR_SHARE_INVALID)
            fail_msg("share '%s': %d", bad[i], rc);
    }
}

/* ---- the error table ---- */

static void test_errors(void **state)
{
    (void)state;
    for (int e = 0; e < ERR__COUNT; e++) {
        assert_non_null(mqtt_err_name(e));
        assert_true(strlen(mqtt_err_name(e)) > 0);
        assert_true(strlen(mqtt_err_message(e)) > 0);
        /* positive and negative agree */
        assert_string_equal(mqtt_err_name(e), mqtt_err_name(-e));
        assert_string_equal(mqtt_err_message(e), mqtt_err_message(-e));
        assert_int_equal(mqtt_err_reason(e), mqtt_err_reason(-e));
        /* every failure maps to an MQTT 5 error reason (>= 0x80) */
        if (e != ERR_NONE)
            assert_true(mqtt_err_reason(-e) >= 0x80);
    }
    assert_int_equal(mqtt_err_reason(0), 0x00);
    assert_string_equal(mqtt_err_name(-ERR_VARINT_OVERLONG), "ERR_VARINT_OVERLONG");
    assert_string_equal(mqtt_err_name(ERR_TRUNCATED), "ERR_TRUNCATED");
    assert_int_equal(mqtt_err_reason(-ERR_TRUNCATED), 0x81);          /* malformed */
    assert_int_equal(mqtt_err_reason(-ERR_PROTOCOL_VERSION), 0x84);   /* unsupported version */
    assert_int_equal(mqtt_err_reason(-ERR_PACKET_TOO_LARGE), 0x95);
    assert_int_equal(mqtt_err_reason(-ERR_PROPERTY_DUPLICATE), 0x82); /* protocol error */
    assert_int_equal(mqtt_err_reason(-ERR_PAYLOAD_NOT_UTF8), 0x99);
    assert_int_equal(mqtt_err_reason(-ERR_TOPIC_WILDCARD), 0x90);
    assert_int_equal(mqtt_err_reason(-ERR_FILTER_INVALID), 0x8F);
    assert_int_equal(mqtt_err_reason(ERR_TOPIC_ALIAS_INVALID), 0x94);
    assert_int_equal(mqtt_err_reason(-ERR_NOSPACE), 0x80);
    assert_string_equal(mqtt_err_message(ERR__COUNT), "unknown error");
    assert_string_equal(mqtt_err_message(-ERR__COUNT), "unknown error");
    assert_string_equal(mqtt_err_message(1 << 30), "unknown error");
    assert_string_equal(mqtt_err_message(-2147483647 - 1), "unknown error");
    assert_int_equal(mqtt_err_reason(ERR__COUNT + 5), 0x80);
    assert_int_equal(mqtt_err_reason(-2147483647 - 1), 0x80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_varint_size),
        cmocka_unit_test(test_varint_scan),
        cmocka_unit_test(test_varint_overlong),
        cmocka_unit_test(test_varint_not_minimal_accepted),
        cmocka_unit_test(test_scan_too_large_before_body),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_topic_name),
        cmocka_unit_test(test_topic_filter),
        cmocka_unit_test(test_share_split),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("codec_primitives", tests, NULL, NULL);
}
