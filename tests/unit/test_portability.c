/* Portability: what differs between the build machine and a 32-bit ARM
 * board, checked where it runs (boards/: these run under qemu-user for
 * every board, and with -fsanitize=alignment in the rpi-armhf-alignment
 * preset, because qemu, like the kernel on ARMv7, quietly performs an
 * unaligned load that would fault or trap on other cores).
 *
 *  - Decoding at every buffer offset 0..7: a packet starts wherever the
 *    previous one ended in the read buffer, so no decoder may load a u16 or
 *    u32 through a cast pointer.
 *  - Remaining-length arithmetic at its maximum 268,435,455, where
 *    1 + 4 + length must not wrap a 32-bit int or size_t.
 *  - 32-bit size_t edges of the out-queue and the string map.
 *  - Message expiry with uint64_t milliseconds around 2^32 (49.7 days of
 *    uptime), where a 32-bit `unsigned long` would wrap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/mem.h"
#include "broker/message.h"
#include "broker/outq.h"
#include "broker/strmap.h"
#include "mqtt/packet.h"

#define B(str) ((struct mqtt_bytes){(const uint8_t *)(str), sizeof(str) - 1})
#define MAX_RL 268435455u

/* Aligned to 16 so that arena + off is misaligned by exactly off. */
static uint8_t arena[1024] __attribute__((aligned(16)));

static const uint8_t user_raw[] = {0x26, 0x00, 0x03, 'k', 'e', 'y', 0x00, 0x05, 'v', 'a', 'l', 'u', 'e',
                                   0x26, 0x00, 0x01, 'x', 0x00, 0x00};

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Encodes p into a fresh buffer; returns its length. */
static size_t encode(const struct mqtt_packet *p, uint8_t version, uint8_t *out, size_t cap)
{
    int n = mqtt_encode(p, version, NULL, 0);
    assert_true(n > 0);
    assert_true((size_t)n <= cap);
    assert_int_equal(mqtt_encode(p, version, out, cap), n);
    return (size_t)n;
}

/* Copies pkt to arena + off, frames and decodes it there. */
static const uint8_t *place_and_decode(const uint8_t *pkt, size_t n, size_t off, uint8_t version,
                                       struct mqtt_packet *out)
{
    assert_true(off + n <= sizeof(arena));
    memset(arena, 0xA5, sizeof(arena));
    memcpy(arena + off, pkt, n);
    /* Trailing bytes of the next packet must not change the framing. */
    assert_int_equal(mqtt_scan(arena + off, n + 3, 0), (int)n);
    memset(out, 0, sizeof(*out));
    assert_int_equal(mqtt_decode(arena + off, n, version, out), 0);
    return arena + off;
}

static void test_publish_v5_every_offset(void **state)
{
    (void)state;
    static const uint8_t corr[] = {0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x01};
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 0xBEEF;
    p.u.publish.topic = B("sensors/7/temperature");
    p.u.publish.payload = B("21.5 degrees, 64% humidity");
    struct mqtt_props *pr = &p.u.publish.props;
    pr->present = MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT) | MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY) |
                  MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) | MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                  MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA) | MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
    pr->payload_format = 1;
    pr->message_expiry = 0xFEDCBA98u; /* every byte differs: a byte-order slip shows */
    pr->content_type = B("text/plain");
    pr->response_topic = B("reply/7");
    pr->correlation_data = (struct mqtt_bytes){corr, sizeof(corr)};
    pr->topic_alias = 0x1234;
    pr->raw = (struct mqtt_bytes){user_raw, sizeof(user_raw)};
    uint8_t pkt[256];
    size_t n = encode(&p, MQTT_V5, pkt, sizeof(pkt));

    for (size_t off = 0; off < 8; off++) {
        struct mqtt_packet d;
        const uint8_t *at = place_and_decode(pkt, n, off, MQTT_V5, &d);
        assert_int_equal(d.type, MQTT_PUBLISH);
        const struct mqtt_publish *m = &d.u.publish;
        assert_int_equal(m->qos, 1);
        assert_int_equal(m->packet_id, 0xBEEF);
        assert_true(bytes_eq(m->topic, p.u.publish.topic));
        assert_true(bytes_eq(m->payload, p.u.publish.payload));
        assert_int_equal(m->props.payload_format, 1);
        assert_int_equal(m->props.message_expiry, 0xFEDCBA98u);
        assert_int_equal(m->props.topic_alias, 0x1234);
        assert_true(bytes_eq(m->props.content_type, pr->content_type));
        assert_true(bytes_eq(m->props.response_topic, pr->response_topic));
        assert_true(bytes_eq(m->props.correlation_data, pr->correlation_data));
        /* Views point into the placed copy, not the original. */
        assert_true(m->topic.ptr > at && m->topic.ptr < at + n);
        assert_int_equal(m->props.user_count, 2);
        size_t pos = 0;
        struct mqtt_bytes k, v;
        assert_int_equal(mqtt_props_next_user(&m->props, &pos, &k, &v), 1);
        assert_true(bytes_eq(k, B("key")) && bytes_eq(v, B("value")));
        assert_int_equal(mqtt_props_next_user(&m->props, &pos, &k, &v), 1);
        assert_true(bytes_eq(k, B("x")) && bytes_eq(v, B("")));
        assert_int_equal(mqtt_props_next_user(&m->props, &pos, &k, &v), 0);

        /* Re-encoding from the misaligned views gives the same bytes. */
        uint8_t again[256];
        assert_int_equal(mqtt_encode(&d, MQTT_V5, again, sizeof(again)), (int)n);
        assert_memory_equal(again, pkt, n);
    }
}

static void test_connect_v5_every_offset(void **state)
{
    (void)state;
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    struct mqtt_connect *c = &p.u.connect;
    c->clean_start = true;
    c->keepalive = 0xABCD;
    c->client_id = B("pi-zero-gateway");
    c->will_flag = true;
    c->will_qos = 1;
    c->will_topic = B("status/pi");
    c->will_payload = B("offline");
    c->username_flag = true;
    c->username = B("user");
    c->password_flag = true;
    c->password = B("secret");
    c->props.present = MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY) | MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX) |
                       MQTT_PROP_BIT(MQTT_PROP_MAX_PACKET_SIZE) |
                       MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX);
    c->props.session_expiry = 0xFFFFFFFFu;
    c->props.receive_max = 0x0102;
    c->props.max_packet_size = MAX_RL + 5;
    c->props.topic_alias_max = 0xFFFF;
    c->will_props.present = MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY) | MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY);
    c->will_props.will_delay = 0x80000001u;
    c->will_props.message_expiry = 0x7FFFFFFFu;
    uint8_t pkt[256];
    size_t n = encode(&p, MQTT_V5, pkt, sizeof(pkt));

    for (size_t off = 0; off < 8; off++) {
        struct mqtt_packet d;
        place_and_decode(pkt, n, off, 0, &d);
        const struct mqtt_connect *m = &d.u.connect;
        assert_int_equal(d.type, MQTT_CONNECT);
        assert_int_equal(m->version, MQTT_V5);
        assert_int_equal(m->keepalive, 0xABCD);
        assert_true(bytes_eq(m->client_id, c->client_id));
        assert_true(bytes_eq(m->will_topic, c->will_topic));
        assert_true(bytes_eq(m->password, c->password));
        assert_int_equal(m->props.session_expiry, 0xFFFFFFFFu);
        assert_int_equal(m->props.receive_max, 0x0102);
        assert_int_equal(m->props.max_packet_size, MAX_RL + 5);
        assert_int_equal(m->props.topic_alias_max, 0xFFFF);
        assert_int_equal(m->will_props.will_delay, 0x80000001u);
        assert_int_equal(m->will_props.message_expiry, 0x7FFFFFFFu);
    }
}

static void test_subscribe_v5_every_offset(void **state)
{
    (void)state;
    const struct mqtt_bytes filters[] = {B("sensors/+/temp"), B("$share/g/a/#"), B("x")};
    const uint8_t options[] = {1, 2 | MQTT_SUBOPT_NO_LOCAL, 0x20};
    struct mqtt_packet p = {.type = MQTT_SUBSCRIBE, .flags = 2};
    p.u.subscribe.packet_id = 0x8001;
    p.u.subscribe.count = 3;
    p.u.subscribe.filters = filters;
    p.u.subscribe.options = options;
    p.u.subscribe.props.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    p.u.subscribe.props.sub_id = MAX_RL; /* the largest, a 4-byte varint */
    p.u.subscribe.props.sub_id_count = 1;
    uint8_t pkt[128];
    size_t n = encode(&p, MQTT_V5, pkt, sizeof(pkt));

    for (size_t off = 0; off < 8; off++) {
        struct mqtt_packet d;
        place_and_decode(pkt, n, off, MQTT_V5, &d);
        assert_int_equal(d.u.subscribe.packet_id, 0x8001);
        assert_int_equal(d.u.subscribe.props.sub_id, MAX_RL);
        size_t pos = 0, i = 0;
        struct mqtt_bytes f;
        uint8_t o;
        while (mqtt_subscribe_next(&d.u.subscribe, &pos, &f, &o)) {
            assert_true(i < 3);
            assert_true(bytes_eq(f, filters[i]));
            assert_int_equal(o, options[i]);
            i++;
        }
        assert_int_equal(i, 3);
    }
}

/* The largest remaining length, 268,435,455 = FF FF FF 7F: the whole
 * packet is 268,435,460 bytes, which must come out as a positive int and
 * compare correctly with a 32-bit max_size and size_t length. */
static void test_remaining_length_limits(void **state)
{
    (void)state;
    const uint8_t hdr[] = {0x30, 0xFF, 0xFF, 0xFF, 0x7F};
    assert_int_equal(mqtt_scan(hdr, sizeof(hdr), 0), 0); /* need more */
    assert_int_equal(mqtt_scan(hdr, sizeof(hdr), MAX_RL + 5), 0);
    assert_int_equal(mqtt_scan(hdr, sizeof(hdr), MAX_RL + 4), -ERR_PACKET_TOO_LARGE);
    assert_int_equal(mqtt_scan(hdr, sizeof(hdr), UINT32_MAX), 0);
    assert_int_equal(mqtt_scan(hdr, sizeof(hdr), 1000), -ERR_PACKET_TOO_LARGE);
    /* Refused before the header is complete. */
    assert_int_equal(mqtt_scan(hdr, 3, 1000), -ERR_PACKET_TOO_LARGE);
    /* A fifth length byte is a violation, not a bigger number. */
    const uint8_t overlong[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    assert_int_equal(mqtt_scan(overlong, sizeof(overlong), 0), -ERR_VARINT_OVERLONG);
    /* Every split of the four length bytes. */
    for (size_t len = 1; len <= sizeof(hdr); len++)
        assert_int_equal(mqtt_scan(hdr, len, 0), 0);

    assert_int_equal(mqtt_varint_size(0), 1);
    assert_int_equal(mqtt_varint_size(127), 1);
    assert_int_equal(mqtt_varint_size(128), 2);
    assert_int_equal(mqtt_varint_size(16383), 2);
    assert_int_equal(mqtt_varint_size(16384), 3);
    assert_int_equal(mqtt_varint_size(2097151), 3);
    assert_int_equal(mqtt_varint_size(2097152), 4);
    assert_int_equal(mqtt_varint_size(MAX_RL), 4);
    assert_true(mqtt_varint_size(MAX_RL + 1) < 0);
    assert_true(mqtt_varint_size(UINT32_MAX) < 0);

    /* Measuring the largest PUBLISH: 2 + 1 (topic) + payload = MAX_RL. The
     * encoder only adds lengths when measuring, so the payload view may
     * point at a single byte. */
    static const uint8_t one = 0;
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.topic = B("t");
    p.u.publish.payload = (struct mqtt_bytes){&one, MAX_RL - 3};
    assert_int_equal(mqtt_encode(&p, MQTT_V311, NULL, 0), (int)(MAX_RL + 5));
    p.u.publish.payload.len = MAX_RL - 2;
    assert_true(mqtt_encode(&p, MQTT_V311, NULL, 0) < 0);
    p.u.publish.payload.len = UINT32_MAX;
    assert_true(mqtt_encode(&p, MQTT_V311, NULL, 0) < 0);
}

static void test_outq_size_edges(void **state)
{
    (void)state;
    struct outq q;
    outq_init(&q);
    /* Odd sizes around the chunk size, then one larger than a chunk. */
    static uint8_t data[40000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    const size_t sizes[] = {1, 3, 16383, 16384, 16385, 7, 39999};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(outq_append(&q, data, sizes[i]), 0);
        total += sizes[i];
    }
    assert_int_equal(q.bytes, total);
    /* max_bytes = SIZE_MAX (4 GB on armhf) must not wrap a running sum. */
    struct iovec iov[16];
    int n = outq_iov(&q, iov, 16, SIZE_MAX);
    size_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += iov[i].iov_len;
    assert_int_equal(sum, total);
    /* Consume at odd amounts down to empty. */
    while (q.bytes > 0) {
        size_t step = q.bytes > 4097 ? 4097 : q.bytes;
        outq_consume(&q, step);
    }
    assert_null(q.head);
    outq_clear(&q);

    /* An account limit refuses what it cannot hold, whatever size_t is. */
    struct mem_account acct = {.used = 0, .limit = 1 << 20};
    assert_null(mem_alloc(&acct, (size_t)UINT32_MAX / 2));
    assert_null(mem_alloc(&acct, SIZE_MAX / 2));
    assert_int_equal(acct.used, 0);
    void *small = mem_alloc(&acct, 100);
    assert_non_null(small);
    mem_free(&acct, small, 100);
    assert_int_equal(acct.used, 0);

    /* A length so large that chunk header + length wraps size_t must fail
     * too, not allocate a few bytes and hand them out as SIZE_MAX. */
    outq_init(&q);
    assert_null(outq_reserve(&q, SIZE_MAX - 4));
    assert_null(outq_reserve(&q, SIZE_MAX));
    assert_int_equal(q.bytes, 0);
    outq_clear(&q);
}

/* A map value: the key is a view at an odd offset into a shared buffer
 * (client ids are views into packets, wherever they landed). */
struct odd_item {
    const char *key;
    size_t len;
};

static const uint8_t *odd_key(const void *value, size_t *len)
{
    const struct odd_item *it = value;
    *len = it->len;
    return (const uint8_t *)it->key;
}

static void test_strmap_odd_keys_and_growth(void **state)
{
    (void)state;
    struct strmap m;
    strmap_init(&m, 0x0123456789ABCDEFull, odd_key);
    /* 3000 keys stored back to back at odd offsets. */
    enum { N = 3000 };
    static char keys[N * 16];
    static struct odd_item items[N];
    size_t at = 1;
    for (size_t i = 0; i < N; i++) {
        int w = snprintf(keys + at, 16, "client-%zu", i);
        items[i].key = keys + at;
        items[i].len = (size_t)w;
        at += (size_t)w + 1 + (i & 1);
        assert_int_equal(strmap_put(&m, &items[i]), 0);
        /* Power-of-two capacity, load factor at most 3/4. */
        assert_int_equal(m.cap & (m.cap - 1), 0);
        assert_true(m.count * 4 <= m.cap * 3);
    }
    assert_int_equal(m.count, N);
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(strmap_get(&m, items[i].key, items[i].len), &items[i]);
    for (size_t i = 0; i < N; i += 2)
        assert_ptr_equal(strmap_del(&m, items[i].key, items[i].len), &items[i]);
    assert_int_equal(m.count, N / 2);
    for (size_t i = 0; i < N; i++) {
        void *v = strmap_get(&m, items[i].key, items[i].len);
        if (i % 2)
            assert_ptr_equal(v, &items[i]);
        else
            assert_null(v);
    }
    /* An equal key replaces the value. */
    struct odd_item again = {"client-1", 8};
    assert_int_equal(strmap_put(&m, &again), 0);
    assert_int_equal(m.count, N / 2);
    assert_ptr_equal(strmap_get(&m, "client-1", 8), &again);
    /* The table's byte size fits size_t on 32 bits with room to spare. */
    assert_true(m.cap <= SIZE_MAX / sizeof(*m.slots));
    strmap_free(&m);
    assert_int_equal(m.count, 0);
}

/* Expiry in uint64_t monotonic ms. 2^32 ms is 49.7 days: a Pi that has
 * been up that long must not see messages expire early or never. */
static void test_expiry_near_2_pow_32_ms(void **state)
{
    (void)state;
    const uint64_t T = UINT64_C(1) << 32;
    struct message m;
    memset(&m, 0, sizeof(m));

    m.expiry_ms = T + 500;
    assert_false(message_expired(&m, T - 500));
    assert_int_equal(message_expiry_left(&m, T - 500), 1); /* 1000 ms */
    assert_int_equal(message_expiry_left(&m, T - 501), 2); /* 1001 ms rounds up */
    assert_int_equal(message_expiry_left(&m, T), 1);       /* 500 ms rounds up */
    assert_false(message_expired(&m, T + 499));
    assert_true(message_expired(&m, T + 500));
    assert_int_equal(message_expiry_left(&m, T + 500), 0);
    assert_true(message_expired(&m, T + 501));

    /* Across the boundary by one millisecond. */
    m.expiry_ms = T;
    assert_int_equal(message_expiry_left(&m, T - 1), 1);
    assert_false(message_expired(&m, T - 1));
    assert_true(message_expired(&m, T));

    /* The largest MQTT expiry (2^32 - 1 s) set at an uptime past 2^32 ms:
     * the remaining seconds still fit the 4-byte property exactly. */
    m.expiry_ms = T + 1000 * (T - 1);
    assert_int_equal(message_expiry_left(&m, T), UINT32_MAX);
    assert_int_equal(message_expiry_left(&m, T + 1000), UINT32_MAX - 1);
    /* More than 2^32 - 1 s left saturates instead of wrapping to small. */
    m.expiry_ms = T * 2000;
    assert_int_equal(message_expiry_left(&m, 1), UINT32_MAX);

    /* expiry 0 = never: not expired at any time. */
    m.expiry_ms = 0;
    assert_false(message_expired(&m, T));
    assert_false(message_expired(&m, UINT64_MAX));
}

/* Sizes the rest of the broker assumes on every board. */
static void test_type_sizes(void **state)
{
    (void)state;
    assert_true(sizeof(uint64_t) == 8);
    assert_true(sizeof(size_t) >= 4);
    /* A whole MQTT packet (268,435,460 bytes) fits int and size_t. */
    assert_true((uint64_t)MAX_RL + 5 <= (uint64_t)INT32_MAX);
    assert_true((uint64_t)MAX_RL + 5 <= (uint64_t)SIZE_MAX);
    print_message("size_t %zu bytes, pointer %zu bytes, long %zu bytes\n", sizeof(size_t),
                  sizeof(void *), sizeof(long));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_sizes),
        cmocka_unit_test(test_publish_v5_every_offset),
        cmocka_unit_test(test_connect_v5_every_offset),
        cmocka_unit_test(test_subscribe_v5_every_offset),
        cmocka_unit_test(test_remaining_length_limits),
        cmocka_unit_test(test_outq_size_edges),
        cmocka_unit_test(test_strmap_odd_keys_and_growth),
        cmocka_unit_test(test_expiry_near_2_pow_32_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
