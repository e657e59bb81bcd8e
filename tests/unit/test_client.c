/* The client state machine and sessions, driven with packets and a fake
 * clock, no sockets: what goes in is encoded with the codec, what comes out
 * is read back from each client's out-queue and decoded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "broker/client.h"
#include "broker/config.h"
#include "broker/core.h"
#include "broker/core_priv.h"
#include "broker/log.h"
#include "broker/mem.h"
#include "broker/outq.h"
#include "broker/persist.h"
#include "broker/store.h"
#include "mqtt/packet.h"

struct fake_conn {
    struct client *c;
    uint8_t version;
    bool close_requested;
    int close_err;
    /* decoded output, kept in rx for the views to stay valid */
    uint8_t rx[65536];
    size_t rx_len, rx_pos;
};

static void fake_wants_write(void *ctx, void *conn)
{
    (void)ctx;
    (void)conn;
}

static void fake_close(void *ctx, void *conn, int err)
{
    (void)ctx;
    struct fake_conn *fc = conn;
    fc->close_requested = true;
    fc->close_err = err;
}

static int congestion_cleared_calls;

static void fake_congestion_cleared(void *ctx)
{
    (void)ctx;
    congestion_cleared_calls++;
}

static int fanout_pending_calls;

static void fake_fanout_pending(void *ctx)
{
    (void)ctx;
    fanout_pending_calls++;
}

/* The core's microsecond clock: each read advances it by clock_step (0: time
 * stands still, so only counts bound a fan-out). */
static uint64_t clock_now, clock_step;

static uint64_t fake_clock_us(void *ctx)
{
    (void)ctx;
    clock_now += clock_step;
    return clock_now;
}

static struct config cfg;
static struct core *core;
static uint64_t now;
static struct fake_conn conns[8];
static struct store *store; /* persistence on (persistence_on) */
static char store_dir[64];

static void base_config(void)
{
    config_init(&cfg); /* mosquitto's defaults */
    cfg.sec.allow_anonymous = true;
}

static int setup(void **state)
{
    (void)state;
    log__mask = LOG_T_ERROR | LOG_T_WARNING;
    base_config();
    static const struct core_io io = {NULL,
                                      fake_wants_write,
                                      fake_close,
                                      fake_congestion_cleared,
                                      fake_fanout_pending,
                                      fake_clock_us};
    clock_now = 1000000;
    clock_step = 0;
    congestion_cleared_calls = 0;
    fanout_pending_calls = 0;
    core = core_new(&cfg, &io);
    assert_non_null(core);
    now = 1000000;
    memset(conns, 0, sizeof(conns));
    return 0;
}

static void persistence_off(void)
{
    if (!store)
        return;
    persist_detach(core);
    assert_int_equal(store_close(store, 5000), 0);
    store = NULL;
    static const char *const files[] = {"loopbot.db", "loopbot.db-wal", "loopbot.db-shm"};
    char path[128];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", store_dir, files[i]);
        unlink(path);
    }
    rmdir(store_dir);
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 8; i++)
        if (conns[i].c)
            client_free(conns[i].c, -ERR_PEER_CLOSED, now);
    persistence_off();
    core_free(core);
    assert_int_equal(mem_used_total(), 0);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

/* NULL only when an allocation was made to fail. */
static struct fake_conn *try_open(int i)
{
    struct fake_conn *fc = &conns[i];
    memset(fc, 0, sizeof(*fc));
    fc->c = client_new(core, fc, "127.0.0.1:1", NULL, now);
    return fc->c ? fc : NULL;
}

static struct fake_conn *open_conn(int i)
{
    struct fake_conn *fc = try_open(i);
    assert_non_null(fc);
    return fc;
}

static void close_conn(struct fake_conn *fc, int err)
{
    client_free(fc->c, err, now);
    fc->c = NULL;
}

static int send_pkt(struct fake_conn *fc, const struct mqtt_packet *p)
{
    static uint8_t buf[320 * 1024];
    uint8_t v = p->type == MQTT_CONNECT ? p->u.connect.version : fc->version;
    int n = mqtt_encode(p, v, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(mqtt_scan(buf, (size_t)n, 0), n);
    return client_on_packet(fc->c, buf, (size_t)n, now);
}

/* Moves everything the client queued into fc->rx. */
static void drain(struct fake_conn *fc)
{
    struct outq *q = client_outq(fc->c);
    struct iovec iov[64];
    int n;
    while ((n = outq_iov(q, iov, 64, SIZE_MAX)) > 0) {
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            assert_true(fc->rx_len + iov[i].iov_len <= sizeof(fc->rx));
            memcpy(fc->rx + fc->rx_len, iov[i].iov_base, iov[i].iov_len);
            fc->rx_len += iov[i].iov_len;
            total += iov[i].iov_len;
        }
        outq_consume(q, total);
    }
}

/* Next packet the client was sent, or 0 if none. */
static int next_pkt(struct fake_conn *fc, struct mqtt_packet *p)
{
    if (fc->c)
        drain(fc);
    if (fc->rx_pos == fc->rx_len)
        return 0;
    int n = mqtt_scan(fc->rx + fc->rx_pos, fc->rx_len - fc->rx_pos, 0);
    assert_true(n > 0);
    assert_int_equal(mqtt_decode(fc->rx + fc->rx_pos, (size_t)n, fc->version, p), 0);
    fc->rx_pos += (size_t)n;
    return 1;
}

static void expect_type(struct fake_conn *fc, uint8_t type, struct mqtt_packet *p)
{
    assert_int_equal(next_pkt(fc, p), 1);
    assert_int_equal(p->type, type);
}

static void expect_nothing(struct fake_conn *fc)
{
    struct mqtt_packet p;
    assert_int_equal(next_pkt(fc, &p), 0);
}

static struct mqtt_packet connect_pkt(uint8_t version, const char *id, bool clean)
{
    struct mqtt_packet p = {.type = MQTT_CONNECT};
    p.u.connect.version = version;
    p.u.connect.clean_start = clean;
    p.u.connect.keepalive = 60;
    p.u.connect.client_id = (struct mqtt_bytes){(const uint8_t *)id, (uint32_t)strlen(id)};
    return p;
}

/* An MQTT 3.1.1 CONNECT on a fresh connection; NULL when an allocation
 * was made to fail on the way. */
static struct fake_conn *try_connect(int i, const char *id, bool clean)
{
    struct fake_conn *fc = try_open(i);
    if (!fc)
        return NULL;
    fc->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, id, clean);
    return send_pkt(fc, &p) < 0 ? NULL : fc;
}

static struct fake_conn *connect_as(int i, uint8_t version, const char *id, bool clean,
                                    bool expect_present)
{
    struct fake_conn *fc = open_conn(i);
    fc->version = version;
    struct mqtt_packet p = connect_pkt(version, id, clean);
    if (version == MQTT_V5 && !clean) {
        p.u.connect.props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
        p.u.connect.props.session_expiry = 3600;
    }
    assert_int_equal(send_pkt(fc, &p), 0);
    struct mqtt_packet ack;
    expect_type(fc, MQTT_CONNACK, &ack);
    assert_int_equal(ack.u.connack.reason, 0);
    assert_int_equal(ack.u.connack.session_present, expect_present);
    return fc;
}

/* Connects with CONNECT properties set by the caller and reads the CONNACK. */
static struct fake_conn *connect_with(int i, const char *id, const struct mqtt_props *props,
                                      struct mqtt_packet *connack)
{
    struct fake_conn *fc = open_conn(i);
    fc->version = MQTT_V5;
    struct mqtt_packet p = connect_pkt(MQTT_V5, id, true);
    p.u.connect.props = *props;
    assert_int_equal(send_pkt(fc, &p), 0);
    expect_type(fc, MQTT_CONNACK, connack);
    assert_int_equal(connack->u.connack.reason, 0);
    return fc;
}

/* A SUBSCRIBE for one filter; *f and *options must outlive the packet. */
static struct mqtt_packet subscribe_pkt(uint16_t packet_id, const struct mqtt_bytes *f,
                                        const uint8_t *options)
{
    struct mqtt_packet p = {.type = MQTT_SUBSCRIBE, .flags = 2};
    p.u.subscribe.packet_id = packet_id;
    p.u.subscribe.count = 1;
    p.u.subscribe.filters = f;
    p.u.subscribe.options = options;
    return p;
}

static void subscribe(struct fake_conn *fc, const char *filter, uint8_t options, uint8_t granted)
{
    struct mqtt_bytes f = {(const uint8_t *)filter, (uint32_t)strlen(filter)};
    struct mqtt_packet p = subscribe_pkt(7, &f, &options);
    assert_int_equal(send_pkt(fc, &p), 0);
    struct mqtt_packet ack;
    expect_type(fc, MQTT_SUBACK, &ack);
    assert_int_equal(ack.u.suback.packet_id, 7);
    assert_int_equal(ack.u.suback.count, 1);
    assert_int_equal(ack.u.suback.reasons[0], granted);
}

static int publish_props(struct fake_conn *fc, const char *topic, const char *payload, uint8_t qos,
                         bool retain, uint16_t packet_id, const struct mqtt_props *props)
{
    struct mqtt_packet p = {.type = MQTT_PUBLISH};
    p.u.publish.qos = qos;
    p.u.publish.retain = retain;
    p.u.publish.packet_id = packet_id;
    p.u.publish.topic = (struct mqtt_bytes){(const uint8_t *)topic, (uint32_t)strlen(topic)};
    p.u.publish.payload = (struct mqtt_bytes){(const uint8_t *)payload, (uint32_t)strlen(payload)};
    if (props)
        p.u.publish.props = *props;
    return send_pkt(fc, &p);
}

static int publish(struct fake_conn *fc, const char *topic, const char *payload, uint8_t qos,
                   bool retain, uint16_t packet_id)
{
    return publish_props(fc, topic, payload, qos, retain, packet_id, NULL);
}

/* Publishes "m0".."m<n-1>" at QoS 1 (packet ids 1..n) and reads each PUBACK. */
static void publish_numbered(struct fake_conn *pub, const char *topic, int n)
{
    struct mqtt_packet a;
    for (int i = 0; i < n; i++) {
        char payload[16];
        snprintf(payload, sizeof(payload), "m%d", i);
        assert_int_equal(publish(pub, topic, payload, 1, false, (uint16_t)(i + 1)), 0);
        expect_type(pub, MQTT_PUBACK, &a);
    }
}

static int ack(struct fake_conn *fc, uint8_t type, uint16_t id)
{
    struct mqtt_packet p = {.type = type, .flags = type == MQTT_PUBREL ? 2 : 0};
    p.u.ack.packet_id = id;
    return send_pkt(fc, &p);
}

static void expect_publish(struct fake_conn *fc, const char *topic, const char *payload,
                           uint8_t qos, struct mqtt_packet *out)
{
    struct mqtt_packet p;
    expect_type(fc, MQTT_PUBLISH, &p);
    assert_int_equal(p.u.publish.qos, qos);
    assert_int_equal(p.u.publish.topic.len, strlen(topic));
    assert_memory_equal(p.u.publish.topic.ptr, topic, strlen(topic));
    assert_int_equal(p.u.publish.payload.len, strlen(payload));
    assert_memory_equal(p.u.publish.payload.ptr, payload, strlen(payload));
    if (out)
        *out = p;
}

/* Persistence on, with the store's writer never started: records only
 * queue, so every ack waits until the test calls commit(). store_close
 * still needs a thread, which qemu-user cannot start: those tests are
 * skipped under emulation (tests/unit/CMakeLists.txt). */
static int persistence_on(void)
{
    snprintf(store_dir, sizeof(store_dir), "/tmp/loopbot-client-XXXXXX");
    assert_non_null(mkdtemp(store_dir));
    char why[256];
    store = store_open(store_dir, "loopbot.db", false, NULL, why, sizeof(why));
    assert_non_null(store);
    return persist_attach(core, store, now, 1700000000000ull);
}

/* As if the store had committed everything queued so far. */
static void commit(void)
{
    client__acks_flush(core, persist_ticket(core), now);
}

/* ---- tests ------------------------------------------------------------ */

static void test_connect_each_version(void **state)
{
    (void)state;
    connect_as(0, MQTT_V31, "a", true, false);
    connect_as(1, MQTT_V311, "b", true, false);
    connect_as(2, MQTT_V5, "c", true, false);
    assert_int_equal(core_stats(core)->clients_connected, 3);
}

/* An idle clean-session client costs the core its client, its session and
 * their two strings (the client id, the peer): the cold parts (will,
 * aliases, queues, ...) are not allocated. 256 bytes is what docs/design.md
 * promises on 64-bit; it was 600 before they moved out. */
static void test_idle_client_cost(void **state)
{
    (void)state;
    connect_as(0, MQTT_V311, "first", true, false); /* the session table has room now */
    size_t before = mem_used_total();
    struct fake_conn *fc = connect_as(1, MQTT_V311, "idle-client", true, false);
    struct mqtt_packet p = {.type = MQTT_PINGREQ};
    assert_int_equal(send_pkt(fc, &p), 0);
    expect_type(fc, MQTT_PINGRESP, &p);
    size_t cost = mem_used_total() - before;
    print_message("idle client: %zu bytes\n", cost);
    assert_true(cost <= 256);
    assert_null(core__session_find(core, (const uint8_t *)"idle-client", 11)->x);
}

/* A transport identity (TLS certificate, PSK) replaces CONNECT's username,
 * and the session keeps it for ACL checks. */
static void test_identity_is_the_username(void **state)
{
    (void)state;
    struct fake_conn *fc = open_conn(0);
    assert_int_equal(client_set_identity(fc->c, "cert-cn"), 0);
    fc->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "dev", true);
    p.u.connect.username_flag = true;
    p.u.connect.username = (struct mqtt_bytes){(const uint8_t *)"ignored", 7};
    assert_int_equal(send_pkt(fc, &p), 0);
    expect_type(fc, MQTT_CONNACK, &p);
    assert_int_equal(p.u.connack.reason, 0);
    assert_string_equal(core__session_find(core, (const uint8_t *)"dev", 3)->username, "cert-cn");
}

static void test_first_packet_must_be_connect(void **state)
{
    (void)state;
    struct fake_conn *fc = open_conn(0);
    fc->version = MQTT_V311;
    assert_int_equal(publish(fc, "a", "x", 0, false, 0), -ERR_FIRST_NOT_CONNECT);
    expect_nothing(fc);
}

static void test_second_connect_closes_with_0x82(void **state)
{
    (void)state;
    struct fake_conn *fc = connect_as(0, MQTT_V5, "c", true, false);
    struct mqtt_packet p = connect_pkt(MQTT_V5, "c", true);
    assert_int_equal(send_pkt(fc, &p), -ERR_SECOND_CONNECT);
    struct mqtt_packet d;
    expect_type(fc, MQTT_DISCONNECT, &d);
    assert_int_equal(d.u.reason.reason, 0x82);
}

static void test_pubsub_qos_levels(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "sub", true, false);
    struct fake_conn *pub = connect_as(1, MQTT_V5, "pub", true, false);
    subscribe(sub, "sensors/#", 2, 2);

    assert_int_equal(publish(pub, "sensors/1/temp", "21.5", 0, false, 0), 0);
    expect_publish(sub, "sensors/1/temp", "21.5", 0, NULL);
    expect_nothing(pub);

    struct mqtt_packet p, a;
    assert_int_equal(publish(pub, "sensors/1/temp", "q1", 1, false, 11), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(a.u.ack.packet_id, 11);
    expect_publish(sub, "sensors/1/temp", "q1", 1, &p);
    assert_int_not_equal(p.u.publish.packet_id, 0);
    assert_int_equal(ack(sub, MQTT_PUBACK, p.u.publish.packet_id), 0);

    assert_int_equal(publish(pub, "sensors/1/temp", "q2", 2, false, 12), 0);
    expect_type(pub, MQTT_PUBREC, &a);
    assert_int_equal(a.u.ack.packet_id, 12);
    expect_publish(sub, "sensors/1/temp", "q2", 2, &p);
    assert_int_equal(ack(sub, MQTT_PUBREC, p.u.publish.packet_id), 0);
    expect_type(sub, MQTT_PUBREL, &a);
    assert_int_equal(a.u.ack.packet_id, p.u.publish.packet_id);
    assert_int_equal(ack(sub, MQTT_PUBCOMP, p.u.publish.packet_id), 0);
    assert_int_equal(ack(pub, MQTT_PUBREL, 12), 0);
    expect_type(pub, MQTT_PUBCOMP, &a);
    assert_int_equal(a.u.ack.reason, 0);
    struct session *s = core__session_find(core, (const uint8_t *)"sub", 3);
    assert_non_null(s->x); /* it held QoS 1/2 messages */
    assert_null(s->x->inflight_head);
    assert_int_equal(s->x->inflight_count, 0);
}

static void test_qos2_duplicate_delivered_once(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "sub", true, false);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    subscribe(sub, "t", 0, 0);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "t", "once", 2, false, 5), 0);
    expect_type(pub, MQTT_PUBREC, &a);
    assert_int_equal(publish(pub, "t", "once", 2, false, 5), 0); /* resent before PUBREL */
    expect_type(pub, MQTT_PUBREC, &a);
    expect_publish(sub, "t", "once", 0, NULL);
    expect_nothing(sub);
    assert_int_equal(ack(pub, MQTT_PUBREL, 5), 0);
    expect_type(pub, MQTT_PUBCOMP, &a);
}

static void test_granted_qos_is_min(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "sub", true, false);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    subscribe(sub, "t", 1, 1);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "t", "x", 2, false, 3), 0);
    expect_type(pub, MQTT_PUBREC, &a);
    expect_publish(sub, "t", "x", 1, NULL);
}

static void test_persistent_session_queues_in_order(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "hub", false, false);
    subscribe(sub, "t", 1, 1);
    close_conn(sub, -ERR_PEER_CLOSED);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    struct mqtt_packet p;
    publish_numbered(pub, "t", 5);
    assert_int_equal(publish(pub, "t", "qos0-dropped", 0, false, 0), 0);
    sub = connect_as(0, MQTT_V311, "hub", false, true);
    for (int i = 0; i < 5; i++) {
        char payload[8];
        snprintf(payload, sizeof(payload), "m%d", i);
        expect_publish(sub, "t", payload, 1, &p);
        assert_int_equal(ack(sub, MQTT_PUBACK, p.u.publish.packet_id), 0);
    }
    expect_nothing(sub);
}

static void test_clean_session_discards(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "hub", false, false);
    subscribe(sub, "t", 1, 1);
    close_conn(sub, -ERR_PEER_CLOSED);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "t", "x", 1, false, 1), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    sub = connect_as(0, MQTT_V311, "hub", true, false);
    expect_nothing(sub);
    /* and its subscription is gone too */
    assert_int_equal(publish(pub, "t", "y", 1, false, 2), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(a.u.ack.reason, 0);
    expect_nothing(sub);
}

static void test_inflight_resent_with_dup(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V5, "hub", false, false);
    subscribe(sub, "t", 2, 2);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    struct mqtt_packet a, p1, p2;
    assert_int_equal(publish(pub, "t", "one", 1, false, 1), 0);
    assert_int_equal(publish(pub, "t", "two", 2, false, 2), 0);
    expect_publish(sub, "t", "one", 1, &p1);
    assert_false(p1.u.publish.dup);
    expect_publish(sub, "t", "two", 2, &p2);
    uint16_t id1 = p1.u.publish.packet_id, id2 = p2.u.publish.packet_id;
    assert_int_equal(ack(sub, MQTT_PUBREC, id2), 0);
    expect_type(sub, MQTT_PUBREL, &a);
    close_conn(sub, -ERR_IO);
    (void)next_pkt(pub, &a);

    sub = connect_as(0, MQTT_V5, "hub", false, true);
    expect_publish(sub, "t", "one", 1, &p1);
    assert_true(p1.u.publish.dup);
    assert_int_equal(p1.u.publish.packet_id, id1);
    expect_type(sub, MQTT_PUBREL, &a);
    assert_int_equal(a.u.ack.packet_id, id2);
}

static void test_takeover_v5_gets_0x8e(void **state)
{
    (void)state;
    struct fake_conn *first = connect_as(0, MQTT_V5, "same", false, false);
    subscribe(first, "t", 1, 1);
    struct fake_conn *second = connect_as(1, MQTT_V5, "same", false, true);
    struct mqtt_packet d;
    expect_type(first, MQTT_DISCONNECT, &d);
    assert_int_equal(d.u.reason.reason, 0x8E);
    assert_true(first->close_requested);
    assert_int_equal(first->close_err, -ERR_TAKEN_OVER);
    close_conn(first, -ERR_TAKEN_OVER); /* the glue frees it later */
    assert_int_equal(core_stats(core)->clients_connected, 1);
    /* the subscription moved with the session */
    struct fake_conn *pub = connect_as(2, MQTT_V311, "pub", true, false);
    assert_int_equal(publish(pub, "t", "still", 0, false, 0), 0);
    expect_publish(second, "t", "still", 0, NULL);
}

static void set_will(struct mqtt_packet *p, const char *topic, const char *payload)
{
    p->u.connect.will_flag = true;
    p->u.connect.will_topic = (struct mqtt_bytes){(const uint8_t *)topic, (uint32_t)strlen(topic)};
    p->u.connect.will_payload =
        (struct mqtt_bytes){(const uint8_t *)payload, (uint32_t)strlen(payload)};
}

static void test_will_on_abnormal_close_only(void **state)
{
    (void)state;
    struct fake_conn *watch = connect_as(0, MQTT_V311, "watch", true, false);
    subscribe(watch, "wills/#", 0, 0);
    struct mqtt_packet a;

    struct fake_conn *w = open_conn(1);
    w->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "dev1", true);
    set_will(&p, "wills/dev1", "gone");
    assert_int_equal(send_pkt(w, &p), 0);
    expect_type(w, MQTT_CONNACK, &a);
    close_conn(w, -ERR_IO);
    expect_publish(watch, "wills/dev1", "gone", 0, NULL);

    w = open_conn(1);
    w->version = MQTT_V311;
    assert_int_equal(send_pkt(w, &p), 0);
    expect_type(w, MQTT_CONNACK, &a);
    struct mqtt_packet d = {.type = MQTT_DISCONNECT};
    assert_int_equal(send_pkt(w, &d), -ERR_PEER_CLOSED);
    close_conn(w, 0);
    expect_nothing(watch);
}

static void test_retained(void **state)
{
    (void)state;
    struct fake_conn *pub = connect_as(0, MQTT_V311, "pub", true, false);
    assert_int_equal(publish(pub, "r/a", "kept", 0, true, 0), 0);
    struct fake_conn *sub = connect_as(1, MQTT_V311, "sub", true, false);
    subscribe(sub, "r/+", 1, 1);
    struct mqtt_packet p;
    expect_publish(sub, "r/a", "kept", 0, &p);
    assert_true(p.u.publish.retain);
    /* live messages are not marked retained [MQTT-3.3.1-9] */
    assert_int_equal(publish(pub, "r/a", "live", 0, true, 0), 0);
    expect_publish(sub, "r/a", "live", 0, &p);
    assert_false(p.u.publish.retain);
    /* an empty retained payload clears it */
    assert_int_equal(publish(pub, "r/a", "", 0, true, 0), 0);
    expect_publish(sub, "r/a", "", 0, NULL);
    struct fake_conn *late = connect_as(2, MQTT_V311, "late", true, false);
    subscribe(late, "r/#", 0, 0);
    expect_nothing(late);
}

static void test_keepalive_limits(void **state)
{
    (void)state;
    cfg.max_keepalive = 10;
    /* 3.1.1 cannot be told a lower keep alive: it keeps its own */
    struct fake_conn *fc = open_conn(0);
    fc->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "k", true);
    p.u.connect.keepalive = 60;
    assert_int_equal(send_pkt(fc, &p), 0);
    struct mqtt_packet a;
    expect_type(fc, MQTT_CONNACK, &a);
    assert_int_equal(a.u.connack.reason, 0);
    assert_int_equal(client_keepalive_ms(fc->c), 90000);

    for (int ka = 0; ka <= 60; ka += 60) {
        fc = open_conn(1 + ka / 60);
        fc->version = MQTT_V5;
        p = connect_pkt(MQTT_V5, ka ? "k5" : "k0", true);
        p.u.connect.keepalive = (uint16_t)ka;
        assert_int_equal(send_pkt(fc, &p), 0);
        expect_type(fc, MQTT_CONNACK, &a);
        assert_int_equal(a.u.connack.reason, 0);
        assert_true(a.u.connack.props.present & MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEPALIVE));
        assert_int_equal(a.u.connack.props.server_keepalive, 10);
        assert_int_equal(client_keepalive_ms(fc->c), 15000);
    }
}

static void test_empty_client_id(void **state)
{
    (void)state;
    struct fake_conn *fc = open_conn(0);
    fc->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "", false);
    assert_true(send_pkt(fc, &p) < 0);
    struct mqtt_packet a;
    expect_type(fc, MQTT_CONNACK, &a);
    assert_int_equal(a.u.connack.reason, 0x02);
    close_conn(fc, -ERR_CLIENT_ID_INVALID);

    fc = open_conn(1);
    fc->version = MQTT_V5;
    p = connect_pkt(MQTT_V5, "", true);
    assert_int_equal(send_pkt(fc, &p), 0);
    expect_type(fc, MQTT_CONNACK, &a);
    assert_true(a.u.connack.props.present & MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_ID));
    assert_true(a.u.connack.props.assigned_client_id.len > 5);
}

static void test_queue_limit_drops_newest(void **state)
{
    (void)state;
    cfg.max_queued_messages = 3;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "hub", false, false);
    subscribe(sub, "t", 1, 1);
    close_conn(sub, -ERR_PEER_CLOSED);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    struct mqtt_packet p;
    publish_numbered(pub, "t", 5);
    assert_int_equal(core_stats(core)->messages_dropped, 2);
    sub = connect_as(0, MQTT_V311, "hub", false, true);
    expect_publish(sub, "t", "m0", 1, &p);
    expect_publish(sub, "t", "m1", 1, &p);
    expect_publish(sub, "t", "m2", 1, &p);
    expect_nothing(sub);
}

static void test_receive_maximum_window(void **state)
{
    (void)state;
    struct mqtt_props props = {.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX), .receive_max = 2};
    struct mqtt_packet a, m;
    struct fake_conn *sub = connect_with(0, "slow", &props, &a);
    subscribe(sub, "t", 1, 1);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    for (int i = 0; i < 4; i++)
        assert_int_equal(publish(pub, "t", "x", 1, false, (uint16_t)(i + 1)), 0);
    expect_publish(sub, "t", "x", 1, &m);
    uint16_t first = m.u.publish.packet_id;
    expect_publish(sub, "t", "x", 1, &m);
    expect_nothing(sub); /* window of 2 is full */
    assert_int_equal(ack(sub, MQTT_PUBACK, first), 0);
    expect_publish(sub, "t", "x", 1, &m);
    expect_nothing(sub);
}

static void test_no_local_and_overlap(void **state)
{
    (void)state;
    struct fake_conn *c = connect_as(0, MQTT_V5, "me", true, false);
    subscribe(c, "a/#", MQTT_SUBOPT_NO_LOCAL | 1, 1);
    struct fake_conn *other = connect_as(1, MQTT_V5, "other", true, false);
    subscribe(other, "a/#", 0, 0);
    subscribe(other, "a/+", 1, 1);
    struct mqtt_packet a;
    assert_int_equal(publish(c, "a/b", "x", 1, false, 1), 0);
    expect_type(c, MQTT_PUBACK, &a);
    expect_nothing(c); /* No Local */
    expect_publish(other, "a/b", "x", 1, NULL); /* once, at the higher QoS */
    expect_nothing(other);
}

static void test_session_expiry_v5(void **state)
{
    (void)state;
    struct fake_conn *fc = open_conn(0);
    fc->version = MQTT_V5;
    struct mqtt_packet p = connect_pkt(MQTT_V5, "exp", false);
    p.u.connect.props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    p.u.connect.props.session_expiry = 10;
    assert_int_equal(send_pkt(fc, &p), 0);
    close_conn(fc, -ERR_IO);
    assert_non_null(core__session_find(core, (const uint8_t *)"exp", 3));
    now += 9000;
    core_tick(core, now);
    assert_non_null(core__session_find(core, (const uint8_t *)"exp", 3));
    now += 2000;
    core_tick(core, now);
    assert_null(core__session_find(core, (const uint8_t *)"exp", 3));
}

static void test_invalid_filter_gets_failure_code(void **state)
{
    (void)state;
    struct fake_conn *c3 = connect_as(0, MQTT_V311, "c3", true, false);
    subscribe(c3, "a/#/b", 0, 0x80);
    struct fake_conn *c5 = connect_as(1, MQTT_V5, "c5", true, false);
    subscribe(c5, "a+", 0, 0x8F);
}

static void test_unsubscribe(void **state)
{
    (void)state;
    struct fake_conn *c = connect_as(0, MQTT_V5, "u", true, false);
    subscribe(c, "t", 0, 0);
    struct mqtt_bytes filters[2] = {{(const uint8_t *)"t", 1}, {(const uint8_t *)"nope", 4}};
    struct mqtt_packet p = {.type = MQTT_UNSUBSCRIBE, .flags = 2};
    p.u.subscribe.packet_id = 9;
    p.u.subscribe.count = 2;
    p.u.subscribe.filters = filters;
    assert_int_equal(send_pkt(c, &p), 0);
    struct mqtt_packet a;
    expect_type(c, MQTT_UNSUBACK, &a);
    assert_int_equal(a.u.suback.count, 2);
    assert_int_equal(a.u.suback.reasons[0], 0x00);
    assert_int_equal(a.u.suback.reasons[1], 0x11);
    assert_int_equal(publish(c, "t", "x", 0, false, 0), 0);
    expect_nothing(c);
}

static void test_message_size_limit(void **state)
{
    (void)state;
    cfg.message_size_limit = 4;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "sub", true, false);
    subscribe(sub, "t", 1, 1);
    struct fake_conn *pub = connect_as(1, MQTT_V5, "pub", true, false);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "t", "too long", 1, false, 1), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(a.u.ack.reason, 0x95);
    expect_nothing(sub);
    assert_int_equal(publish(pub, "t", "ok", 1, false, 2), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(a.u.ack.reason, 0);
    expect_publish(sub, "t", "ok", 1, NULL);
}


/* ---- MQTT 5 features -------------------------------------------------- */

static void test_topic_alias_from_client(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "sub", true, false);
    subscribe(sub, "a/#", 0, 0);
    struct fake_conn *pub = connect_as(1, MQTT_V5, "pub", true, false);
    struct mqtt_props props = {.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS), .topic_alias = 1};
    assert_int_equal(publish_props(pub, "a/b", "1", 0, false, 0, &props), 0);
    assert_int_equal(publish_props(pub, "", "2", 0, false, 0, &props), 0);
    expect_publish(sub, "a/b", "1", 0, NULL);
    expect_publish(sub, "a/b", "2", 0, NULL); /* resolved through the alias */
    props.topic_alias = 2; /* never set */
    assert_int_equal(publish_props(pub, "", "3", 0, false, 0, &props), -ERR_TOPIC_ALIAS_INVALID);
    struct mqtt_packet d;
    expect_type(pub, MQTT_DISCONNECT, &d);
    assert_int_equal(d.u.reason.reason, 0x94);
    assert_true(d.u.reason.props.present & MQTT_PROP_BIT(MQTT_PROP_REASON_STRING));
}

static void test_topic_alias_above_maximum(void **state)
{
    (void)state;
    struct fake_conn *pub = connect_as(0, MQTT_V5, "pub", true, false);
    struct mqtt_props props = {.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS),
                               .topic_alias = (uint16_t)(cfg.max_topic_alias + 1)};
    assert_int_equal(publish_props(pub, "a", "x", 0, false, 0, &props), -ERR_TOPIC_ALIAS_INVALID);
    struct fake_conn *pub2 = connect_as(1, MQTT_V5, "pub2", true, false);
    struct mqtt_props none = {0};
    assert_int_equal(publish_props(pub2, "", "x", 0, false, 0, &none), -ERR_PROTOCOL);
}

static void test_topic_alias_to_client(void **state)
{
    (void)state;
    struct mqtt_props props = {.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX),
                               .topic_alias_max = 5};
    struct mqtt_packet a, m;
    struct fake_conn *sub = connect_with(0, "sub", &props, &a);
    subscribe(sub, "t/#", 0, 0);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    assert_int_equal(publish(pub, "t/one", "1", 0, false, 0), 0);
    assert_int_equal(publish(pub, "t/one", "2", 0, false, 0), 0);
    expect_publish(sub, "t/one", "1", 0, &m);
    assert_true(m.u.publish.props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS));
    uint16_t alias = m.u.publish.props.topic_alias;
    assert_true(alias >= 1 && alias <= 5);
    expect_type(sub, MQTT_PUBLISH, &m);
    assert_int_equal(m.u.publish.topic.len, 0);
    assert_int_equal(m.u.publish.props.topic_alias, alias);
    /* a client that did not ask for aliases never gets one */
    struct fake_conn *plain = connect_as(2, MQTT_V5, "plain", true, false);
    subscribe(plain, "t/#", 0, 0);
    assert_int_equal(publish(pub, "t/one", "3", 0, false, 0), 0);
    expect_publish(plain, "t/one", "3", 0, &m);
    assert_false(m.u.publish.props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS));
}

static struct fake_conn *connect_with_will(int i, const char *id, uint32_t expiry, uint32_t delay)
{
    struct fake_conn *fc = open_conn(i);
    fc->version = MQTT_V5;
    struct mqtt_packet p = connect_pkt(MQTT_V5, id, false);
    p.u.connect.props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    p.u.connect.props.session_expiry = expiry;
    set_will(&p, "wills/x", id);
    p.u.connect.will_props.present |= MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY);
    p.u.connect.will_props.will_delay = delay;
    assert_int_equal(send_pkt(fc, &p), 0);
    struct mqtt_packet a;
    expect_type(fc, MQTT_CONNACK, &a);
    return fc;
}

static void test_will_delay(void **state)
{
    (void)state;
    struct fake_conn *watch = connect_as(0, MQTT_V311, "watch", true, false);
    subscribe(watch, "wills/#", 0, 0);
    struct fake_conn *w = connect_with_will(1, "dev", 60, 5);
    close_conn(w, -ERR_IO);
    now += 4000;
    core_tick(core, now);
    expect_nothing(watch);
    now += 2000;
    core_tick(core, now);
    expect_publish(watch, "wills/x", "dev", 0, NULL);

    /* reconnecting within the delay cancels it */
    w = connect_with_will(1, "dev2", 60, 5);
    close_conn(w, -ERR_IO);
    now += 2000;
    core_tick(core, now);
    struct mqtt_packet p = connect_pkt(MQTT_V5, "dev2", false);
    w = open_conn(1);
    w->version = MQTT_V5;
    assert_int_equal(send_pkt(w, &p), 0);
    now += 10000;
    core_tick(core, now);
    expect_nothing(watch);

    /* the session ending first publishes it then */
    w = connect_with_will(2, "dev3", 2, 10);
    close_conn(w, -ERR_IO);
    now += 3000;
    core_tick(core, now);
    expect_publish(watch, "wills/x", "dev3", 0, NULL);
    assert_null(core__session_find(core, (const uint8_t *)"dev3", 4));
}

static void test_shared_subscription_handoff(void **state)
{
    (void)state;
    struct fake_conn *a = connect_as(0, MQTT_V5, "a", true, false);
    struct fake_conn *b = connect_as(1, MQTT_V5, "b", true, false);
    subscribe(a, "$share/g/s/#", 1, 1);
    subscribe(b, "$share/g/s/#", 1, 1);
    struct fake_conn *pub = connect_as(2, MQTT_V311, "pub", true, false);
    struct mqtt_packet m;
    publish_numbered(pub, "s/1", 4);
    int got_a = 0, got_b = 0;
    while (next_pkt(a, &m))
        got_a++; /* a never acknowledges */
    while (next_pkt(b, &m)) {
        got_b++;
        assert_int_equal(ack(b, MQTT_PUBACK, m.u.publish.packet_id), 0);
    }
    assert_int_equal(got_a, 2);
    assert_int_equal(got_b, 2);
    close_conn(a, -ERR_IO);
    /* a's two unacknowledged messages go to b */
    int moved = 0;
    while (next_pkt(b, &m)) {
        assert_int_equal(m.type, MQTT_PUBLISH);
        moved++;
    }
    assert_int_equal(moved, 2);
}

static void test_server_limits(void **state)
{
    (void)state;
    cfg.max_qos = 1;
    cfg.max_packet_size = 1000;
    struct mqtt_props none = {0};
    struct mqtt_packet a;
    struct fake_conn *c = connect_with(0, "lim", &none, &a);
    const struct mqtt_props *ap = &a.u.connack.props;
    assert_true(ap->present & MQTT_PROP_BIT(MQTT_PROP_MAX_QOS));
    assert_int_equal(ap->max_qos, 1);
    assert_true(ap->present & MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX));
    assert_int_equal(ap->receive_max, 20);
    assert_int_equal(ap->topic_alias_max, 10);
    assert_int_equal(ap->max_packet_size, 1000);
    assert_int_equal(ap->retain_available, 1);
    assert_int_equal(ap->shared_sub_available, 1);
    assert_int_equal(client_max_packet_in(c->c), 1000);
    subscribe(c, "t", 2, 1); /* granted at most the server's maximum */
    assert_int_equal(publish(c, "t", "x", 2, false, 1), -ERR_QOS_NOT_SUPPORTED);
    expect_type(c, MQTT_DISCONNECT, &a);
    assert_int_equal(a.u.reason.reason, 0x9B);
}

static void test_forwarded_expiry_is_reduced(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V5, "hub", false, false);
    subscribe(sub, "t", 1, 1);
    close_conn(sub, -ERR_PEER_CLOSED);
    struct fake_conn *pub = connect_as(1, MQTT_V5, "pub", true, false);
    struct mqtt_props props = {.present = MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY),
                               .message_expiry = 10};
    assert_int_equal(publish_props(pub, "t", "soon", 1, false, 1, &props), 0);
    props.message_expiry = 2;
    assert_int_equal(publish_props(pub, "t", "gone", 1, false, 2, &props), 0);
    now += 3000;
    sub = connect_as(0, MQTT_V5, "hub", false, true);
    struct mqtt_packet m;
    expect_publish(sub, "t", "soon", 1, &m);
    assert_true(m.u.publish.props.present & MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY));
    assert_int_equal(m.u.publish.props.message_expiry, 7);
    expect_nothing(sub); /* "gone" expired while queued */
}

static void test_subscription_ids_and_user_properties(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V5, "sub", true, false);
    struct mqtt_bytes f = {(const uint8_t *)"r/#", 3};
    uint8_t opt = 0;
    struct mqtt_packet s = subscribe_pkt(3, &f, &opt);
    s.u.subscribe.props.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_ID);
    s.u.subscribe.props.sub_id = 42;
    assert_int_equal(send_pkt(sub, &s), 0);
    struct mqtt_packet a, m;
    expect_type(sub, MQTT_SUBACK, &a);

    /* a publish with user properties and a response topic, as raw props */
    struct fake_conn *pub = connect_as(1, MQTT_V5, "pub", true, false);
    uint8_t raw[64];
    struct mqtt_props up = {.present = MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
                                       MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA),
                            .response_topic = {(const uint8_t *)"reply", 5},
                            .correlation_data = {(const uint8_t *)"\x01\x02", 2}};
    static const uint8_t users[] = {0x26, 0, 1, 'k', 0, 1, '1', 0x26, 0, 1, 'k', 0, 1, '2'};
    up.verbatim = (struct mqtt_bytes){users, sizeof(users)};
    int n = mqtt_props_encode(&up, raw, sizeof(raw));
    assert_true(n > 0);
    struct mqtt_props sent = up;
    sent.verbatim.len = 0;
    sent.raw = (struct mqtt_bytes){raw, (uint32_t)n}; /* user props copied from raw, in order */
    assert_int_equal(publish_props(pub, "r/1", "req", 0, false, 0, &sent), 0);
    expect_publish(sub, "r/1", "req", 0, &m);
    const struct mqtt_props *mp = &m.u.publish.props;
    assert_int_equal(mp->sub_id, 42);
    assert_int_equal(mp->response_topic.len, 5);
    assert_memory_equal(mp->correlation_data.ptr, "\x01\x02", 2);
    assert_int_equal(mp->user_count, 2);
    size_t pos = 0;
    struct mqtt_bytes k, v;
    assert_int_equal(mqtt_props_next_user(mp, &pos, &k, &v), 1);
    assert_memory_equal(v.ptr, "1", 1);
    assert_int_equal(mqtt_props_next_user(mp, &pos, &k, &v), 1);
    assert_memory_equal(v.ptr, "2", 1);
}


static void test_slow_consumer(void **state)
{
    (void)state;
    struct fake_conn *sub = connect_as(0, MQTT_V311, "slow", true, false);
    subscribe(sub, "t", 0, 0);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    static char payload[3001];
    memset(payload, 'x', sizeof(payload) - 1);
    /* the subscriber never reads: its out-queue fills to the soft limit */
    for (int i = 0; i < 400; i++)
        assert_int_equal(publish(pub, "t", payload, 0, false, 0), 0);
    struct outq *q = client_outq(sub->c);
    assert_true(q->bytes >= SESSION_OUT_SOFT_LIMIT);
    assert_true(q->bytes < SESSION_OUT_SOFT_LIMIT + 4000); /* then dropped */
    assert_true(core_stats(core)->messages_dropped > 0);
    assert_false(sub->close_requested);
    now += SESSION_SLOW_CLOSE_MS;
    assert_int_equal(publish(pub, "t", payload, 0, false, 0), 0);
    assert_true(sub->close_requested);
    assert_int_equal(sub->close_err, -ERR_QUOTA_EXCEEDED);
    assert_false(pub->close_requested);
}


static int count_publishes(struct fake_conn *fc, const char *topic, char *value, size_t cap)
{
    struct mqtt_packet m;
    int n = 0, hits = 0;
    while (next_pkt(fc, &m)) {
        assert_int_equal(m.type, MQTT_PUBLISH);
        n++;
        const struct mqtt_publish *p = &m.u.publish;
        if (topic && p->topic.len == strlen(topic) && memcmp(p->topic.ptr, topic, p->topic.len) == 0) {
            hits++;
            snprintf(value, cap, "%.*s", (int)p->payload.len, (const char *)p->payload.ptr);
        }
    }
    return topic ? hits : n;
}

static void test_sys_topics(void **state)
{
    (void)state;
    struct fake_conn *all = connect_as(0, MQTT_V311, "all", true, false);
    subscribe(all, "#", 0, 0);
    struct fake_conn *sys = connect_as(1, MQTT_V311, "sys", true, false);
    subscribe(sys, "$SYS/#", 0, 0);
    struct sys_figures f = {.version = "test", .uptime_s = 1, .loop_busy_fraction = 0.25,
                            .loop_longest_ms = 1.5, .loop_longest_what = "read",
                            .loop_longest_wall_ms = 4.25};
    core_publish_sys(core, &f, now);
    char value[64] = "";
    assert_int_equal(count_publishes(sys, "$SYS/broker/clients/connected", value, sizeof(value)), 1);
    assert_string_equal(value, "2");
    assert_int_equal(count_publishes(all, NULL, NULL, 0), 0); /* "#" does not match $SYS */
    /* only what changed is published again */
    now += 10000;
    f.uptime_s = 11;
    core_publish_sys(core, &f, now);
    int n = count_publishes(sys, "$SYS/broker/uptime", value, sizeof(value));
    assert_int_equal(n, 1);
    assert_string_equal(value, "11 seconds");
    core_publish_sys(core, &f, now);
    /* only messages/sent moved (the $SYS messages themselves were sent) */
    assert_int_equal(count_publishes(sys, NULL, NULL, 0), 1);
    /* retained: a late subscriber gets the current values at once */
    struct fake_conn *late = connect_as(2, MQTT_V311, "late", true, false);
    subscribe(late, "$SYS/broker/loop/busy", 0, 0);
    assert_int_equal(count_publishes(late, "$SYS/broker/loop/busy", value, sizeof(value)), 1);
    assert_string_equal(value, "25.0");
    subscribe(late, "$SYS/broker/loop/longest_wall_ms", 0, 0);
    assert_int_equal(count_publishes(late, "$SYS/broker/loop/longest_wall_ms", value, sizeof(value)),
                     1);
    assert_string_equal(value, "4.250");
}


static void test_full_queue_throttles_publisher(void **state)
{
    (void)state;
    cfg.max_queued_messages = 3;
    struct mqtt_props props = {.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAX), .receive_max = 1};
    struct mqtt_packet a, m;
    struct fake_conn *sub = connect_with(0, "slow", &props, &a);
    subscribe(sub, "t", 1, 1);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    for (int i = 0; i < 8; i++) {
        char payload[8];
        snprintf(payload, sizeof(payload), "m%d", i);
        assert_int_equal(publish(pub, "t", payload, 1, false, (uint16_t)(i + 1)), 0);
        expect_type(pub, MQTT_PUBACK, &a);
        /* 1 in flight + 3 queued fit; from the 5th on it is over the limit
         * (the glue stops reading at the first request) */
        assert_int_equal(client_throttle_requested(pub->c), i >= 4);
    }
    /* acknowledged messages are never dropped for an online subscriber */
    assert_int_equal(core_stats(core)->messages_dropped, 0);
    assert_int_equal(core_stats(core)->publisher_throttles, 4);
    for (int i = 0; i < 8; i++) {
        char payload[8];
        snprintf(payload, sizeof(payload), "m%d", i);
        expect_publish(sub, "t", payload, 1, &m);
        expect_nothing(sub); /* window of 1 */
        /* 7 - i still queued: publishers resume at half the limit (1) */
        assert_int_equal(congestion_cleared_calls, i < 6 ? 0 : 1);
        assert_int_equal(ack(sub, MQTT_PUBACK, m.u.publish.packet_id), 0);
    }
    assert_int_equal(congestion_cleared_calls, 1);
}

/* n offline sessions "s0".."s<n-1>", kept (they queue QoS 1), each
 * subscribed to "big" at QoS 1; the last one to also_last too (if set). */
static void offline_subscribers(int n, const char *also_last)
{
    char id[32];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "s%d", i);
        struct fake_conn *fc = connect_as(0, MQTT_V311, id, false, false);
        subscribe(fc, "big", 1, 1);
        if (also_last && i == n - 1)
            subscribe(fc, also_last, 1, 1);
        close_conn(fc, -ERR_PEER_CLOSED);
    }
}

/* One PUBLISH to more sessions than one callback may serve: the first
 * ROUTER_INLINE_DELIVERIES at once, the rest in slices (core_fanout_run)
 * with the publisher throttled until the last one; a session destroyed
 * before its slice is skipped and freed by the slice (ASan, and teardown's
 * leak check, watch this). */
static void test_large_fanout_is_sliced(void **state)
{
    (void)state;
    enum { N = ROUTER_INLINE_DELIVERIES + 100 };
    char id[32];
    offline_subscribers(N, NULL);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "big", "hello", 1, false, 1), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(fanout_pending_calls, 1);
    assert_int_equal(core_stats(core)->fanout_jobs, 1);
    assert_true(client_throttle_requested(pub->c));
    /* Every other session ends before the slices run: a clean start
     * discards the old one (deferred or not). */
    for (int i = 1; i < N - 1; i += 2) {
        snprintf(id, sizeof(id), "s%d", i);
        struct fake_conn *fc = connect_as(2, MQTT_V311, id, true, false);
        close_conn(fc, -ERR_PEER_CLOSED);
    }
    assert_true(core_fanout_run(core, now, 10));
    assert_int_equal(congestion_cleared_calls, 0);
    while (core_fanout_run(core, now, 10))
        ;
    assert_int_equal(congestion_cleared_calls, 1);
    assert_false(core_fanout_run(core, now, 10));
    /* The first and the last session (inline and sliced) have it. */
    snprintf(id, sizeof(id), "s%d", N - 1);
    struct fake_conn *last = connect_as(3, MQTT_V311, id, false, true);
    expect_publish(last, "big", "hello", 1, NULL);
    struct fake_conn *first = connect_as(4, MQTT_V311, "s0", false, true);
    expect_publish(first, "big", "hello", 1, NULL);
}

/* Slow deliveries: a fan-out well under ROUTER_INLINE_DELIVERIES still
 * stops at once after ROUTER_INLINE_US, checked every ROUTER_CLOCK_EVERY
 * deliveries, and the rest is sliced like a large one. */
static void test_slow_fanout_is_sliced_by_time(void **state)
{
    (void)state;
    enum { N = 500 };
    char id[32];
    offline_subscribers(N, NULL);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    /* 100 us per ROUTER_CLOCK_EVERY deliveries: over ROUTER_INLINE_US at
     * the third check. */
    clock_step = 100;
    _Static_assert(3 * 100 >= ROUTER_INLINE_US && 2 * 100 < ROUTER_INLINE_US, "the step");
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "big", "hello", 1, false, 1), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(core_stats(core)->fanout_jobs, 1);
    /* Read at the start and after 64, 128 and 192 deliveries, then no more. */
    assert_int_equal(clock_now, 1000000 + 4 * 100);
    assert_true(client_throttle_requested(pub->c));
    clock_step = 0;
    while (core_fanout_run(core, now, 64))
        ;
    assert_int_equal(congestion_cleared_calls, 1);
    struct fake_conn *first = connect_as(2, MQTT_V311, "s0", false, true);
    expect_publish(first, "big", "hello", 1, NULL);
    snprintf(id, sizeof(id), "s%d", N - 1);
    struct fake_conn *last = connect_as(3, MQTT_V311, id, false, true);
    expect_publish(last, "big", "hello", 1, NULL);
}

/* Without time passing, the same fan-out is delivered whole at once. */
static void test_fast_fanout_is_delivered_at_once(void **state)
{
    (void)state;
    enum { N = 500 };
    offline_subscribers(N, NULL);
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "big", "hello", 1, false, 1), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(core_stats(core)->fanout_jobs, 0);
    assert_false(client_throttle_requested(pub->c));
}

/* A will (the broker's own message: no publisher to hold back) routed while
 * a sliced fan-out is pending queues behind it whole: a session that the
 * pending slices still have to reach gets the earlier message first. */
static void test_will_waits_behind_pending_slices(void **state)
{
    (void)state;
    enum { N = ROUTER_INLINE_DELIVERIES + 10 };
    char id[32];
    offline_subscribers(N, "small");
    struct fake_conn *pub = connect_as(1, MQTT_V311, "pub", true, false);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "big", "first", 1, false, 1), 0);
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(core_stats(core)->fanout_jobs, 1);
    struct fake_conn *w = open_conn(2);
    w->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "dev", true);
    set_will(&p, "small", "will");
    p.u.connect.will_qos = 1;
    assert_int_equal(send_pkt(w, &p), 0);
    expect_type(w, MQTT_CONNACK, &a);
    close_conn(w, -ERR_IO); /* the will goes out, behind the slices */
    assert_int_equal(core_stats(core)->fanout_jobs, 2);
    while (core_fanout_run(core, now, 100))
        ;
    snprintf(id, sizeof(id), "s%d", N - 1);
    struct fake_conn *last = connect_as(3, MQTT_V311, id, false, true);
    struct mqtt_packet m;
    expect_publish(last, "big", "first", 1, &m);
    expect_publish(last, "small", "will", 1, &m);
}

/* With persistence on, acknowledgements wait for the store to commit what
 * their packet caused, and keep their order. */
static void test_acks_wait_for_commit(void **state)
{
    (void)state;
#ifdef LOOPBOT_TEST_NO_THREADS
    skip();
#endif
    assert_int_equal(persistence_on(), 0);
    struct fake_conn *pub = connect_as(0, MQTT_V311, "pub", false, false);
    struct mqtt_packet a;
    assert_int_equal(publish(pub, "t", "one", 1, false, 1), 0);
    assert_int_equal(publish(pub, "t", "two", 2, false, 2), 0);
    expect_nothing(pub);
    commit();
    expect_type(pub, MQTT_PUBACK, &a);
    assert_int_equal(a.u.ack.packet_id, 1);
    expect_type(pub, MQTT_PUBREC, &a);
    assert_int_equal(a.u.ack.packet_id, 2);
    assert_int_equal(ack(pub, MQTT_PUBREL, 2), 0);
    expect_nothing(pub);
    commit();
    expect_type(pub, MQTT_PUBCOMP, &a);
    assert_int_equal(a.u.ack.packet_id, 2);
    expect_nothing(pub);
}

/* Runs a whole scenario failing the n-th allocation for every n: nothing
 * may crash or leak (teardown checks mem_used_total() == 0). */
static void scenario(void)
{
    struct fake_conn *sub = try_connect(0, "hub", false);
    if (!sub)
        return;
    struct mqtt_bytes f = {(const uint8_t *)"t/#", 3};
    uint8_t opt = 1;
    struct mqtt_packet s = subscribe_pkt(1, &f, &opt);
    (void)send_pkt(sub, &s);
    close_conn(sub, -ERR_IO);
    struct fake_conn *pub = try_open(1);
    if (!pub)
        return;
    pub->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "pub", true);
    set_will(&p, "t/will", "bye");
    if (send_pkt(pub, &p) < 0)
        return;
    (void)publish(pub, "t/1", "a", 1, true, 1);
    (void)publish(pub, "t/2", "b", 2, false, 2);
    (void)ack(pub, MQTT_PUBREL, 2);
    close_conn(pub, -ERR_IO);
    (void)try_connect(0, "hub", false);
}

/* The same for MQTT 5: aliases both ways (from a client with and without
 * a will), a delayed will, a shared group whose member leaves with
 * messages in flight. */
static void scenario_v5(void)
{
    struct fake_conn *a = try_open(0), *b = try_open(1), *w = try_open(2);
    if (!a || !b || !w)
        return;
    a->version = b->version = w->version = MQTT_V5;
    struct mqtt_packet p = connect_pkt(MQTT_V5, "a", true);
    p.u.connect.props.present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAX);
    p.u.connect.props.topic_alias_max = 4;
    if (send_pkt(a, &p) < 0)
        return;
    p = connect_pkt(MQTT_V5, "b", true);
    if (send_pkt(b, &p) < 0)
        return;
    p = connect_pkt(MQTT_V5, "w", false);
    p.u.connect.props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY);
    p.u.connect.props.session_expiry = 30;
    set_will(&p, "s/will", "w");
    p.u.connect.will_props.present |= MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY);
    p.u.connect.will_props.will_delay = 1;
    if (send_pkt(w, &p) < 0)
        return;
    struct mqtt_bytes f = {(const uint8_t *)"$share/g/s/#", 12};
    uint8_t opt = 1;
    struct mqtt_packet sub = subscribe_pkt(1, &f, &opt);
    (void)send_pkt(a, &sub);
    (void)send_pkt(b, &sub);
    struct mqtt_props props = {.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS), .topic_alias = 1};
    for (uint16_t i = 1; i <= 4; i++)
        (void)publish_props(w, i == 1 ? "s/x" : "", "m", 1, false, i, &props);
    (void)publish_props(b, "s/y", "n", 0, false, 0, &props); /* b's first alias */
    close_conn(a, -ERR_IO);
    close_conn(w, -ERR_IO);
    now += 2000;
    core_tick(core, now);
}

/* The rarely used parts of a client: a transport identity, and warnings
 * about a client repeating a mistake. */
static void scenario_cold(void)
{
    cfg.message_size_limit = 4;
    struct fake_conn *fc = try_open(0);
    if (!fc || client_set_identity(fc->c, "dev") < 0)
        return;
    fc->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "dev", true);
    if (send_pkt(fc, &p) < 0)
        return;
    (void)publish(fc, "$SYS/x", "a", 1, false, 1);   /* denied: logged */
    (void)publish(fc, "t", "too long", 1, false, 2); /* too large: counted, not logged */
}

/* A subscriber that stops reading: the slow-consumer clock starts. */
static void scenario_slow(void)
{
    static char big[300 * 1024];
    memset(big, 'x', sizeof(big) - 1);
    struct fake_conn *sub = try_open(0), *pub = try_open(1);
    if (!sub || !pub)
        return;
    sub->version = pub->version = MQTT_V311;
    struct mqtt_packet p = connect_pkt(MQTT_V311, "slow", true);
    if (send_pkt(sub, &p) < 0)
        return;
    p = connect_pkt(MQTT_V311, "pub", true);
    if (send_pkt(pub, &p) < 0)
        return;
    struct mqtt_bytes f = {(const uint8_t *)"t", 1};
    uint8_t opt = 0;
    struct mqtt_packet s = subscribe_pkt(1, &f, &opt);
    if (send_pkt(sub, &s) < 0)
        return;
    for (int i = 0; i < 6; i++) /* 1 MiB unread after the 4th */
        (void)publish(pub, "t", big, 0, false, 0);
}

#ifndef LOOPBOT_TEST_NO_THREADS
/* Acks waiting for the store, past the first 8 slots of their ring. */
static void scenario_persist(void)
{
    if (persistence_on() < 0)
        return;
    struct fake_conn *pub = try_connect(0, "pub", false);
    if (!pub)
        return;
    for (uint16_t i = 1; i <= 9; i++)
        (void)publish(pub, "t", "x", 1, false, i);
    commit();
    (void)publish(pub, "t", "y", 2, false, 10);
    (void)ack(pub, MQTT_PUBREL, 10);
    commit();
}
#endif

static void fail_each_allocation(void (*run)(void))
{
    teardown(NULL);
    setup(NULL);
    mem_fail_nth(0);
    run();
    unsigned long total = mem_fail_nth(0);
    assert_true(total > 5);
    for (unsigned long n = 1; n <= total; n++) {
        teardown(NULL);
        setup(NULL);
        mem_fail_nth(n);
        run();
        mem_fail_nth(0);
    }
}

static void test_allocation_failures(void **state)
{
    (void)state;
    fail_each_allocation(scenario);
    fail_each_allocation(scenario_v5);
    fail_each_allocation(scenario_cold);
    fail_each_allocation(scenario_slow);
#ifndef LOOPBOT_TEST_NO_THREADS
    fail_each_allocation(scenario_persist);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_each_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_client_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_is_the_username, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_packet_must_be_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_connect_closes_with_0x82, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_qos_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qos2_duplicate_delivered_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_granted_qos_is_min, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistent_session_queues_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clean_session_discards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_resent_with_dup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_v5_gets_0x8e, setup, teardown),
        cmocka_unit_test_setup_teardown(test_will_on_abnormal_close_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_client_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_limit_drops_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_maximum_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_local_and_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_expiry_v5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_filter_gets_failure_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_size_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_alias_from_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_alias_above_maximum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_alias_to_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_will_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_subscription_handoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forwarded_expiry_is_reduced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscription_ids_and_user_properties, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_consumer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sys_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_queue_throttles_publisher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_fanout_is_sliced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_fanout_is_sliced_by_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fast_fanout_is_delivered_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_will_waits_behind_pending_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acks_wait_for_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allocation_failures, setup, teardown),
    };
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
