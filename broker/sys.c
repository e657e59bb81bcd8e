/* $SYS topics: the broker's figures as retained messages, under mosquitto's
 * names where mosquitto has one, published every sys_interval seconds and
 * only when a value changed (as mosquitto does), so an idle broker sends
 * nothing. */
#include <stdio.h>
#include <string.h>

#include "broker/core_priv.h"
#include "broker/message.h"

/* Exponentially-weighted load averages over 1, 5 and 15 minutes, like
 * mosquitto's $SYS/broker/load/... (per minute rates). */
static const double load_periods_s[SYS_LOADS] = {60.0, 300.0, 900.0};
static const char *const load_names[SYS_LOADS] = {"1min", "5min", "15min"};

static void publish_value(struct core *core, const char *topic, const char *value,
                          uint64_t now_ms)
{
    struct mqtt_bytes t = {(const uint8_t *)topic, (uint32_t)strlen(topic)};
    struct mqtt_bytes v = {(const uint8_t *)value, (uint32_t)strlen(value)};
    struct message *m = message_new(&t, &v, NULL, 0, true, 0, NULL);
    if (!m)
        return; /* the next interval tries again: values are compared, not sent */
    router_publish(core, m, now_ms);
    message_unref(m);
}

/* Publishes topic if its value differs from what slot last held. */
static void publish_if_changed(struct core *core, char *slot, size_t cap, const char *topic,
                               const char *value, uint64_t now_ms)
{
    if (strncmp(slot, value, cap) == 0)
        return;
    snprintf(slot, cap, "%s", value);
    publish_value(core, topic, value, now_ms);
}

static void publish_u64(struct core *core, int idx, const char *topic, uint64_t v,
                        uint64_t now_ms)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    publish_if_changed(core, core->sys.last[idx], sizeof(core->sys.last[idx]), topic, buf,
                       now_ms);
}

static void publish_str(struct core *core, int idx, const char *topic, const char *v,
                        uint64_t now_ms)
{
    publish_if_changed(core, core->sys.last[idx], sizeof(core->sys.last[idx]), topic, v, now_ms);
}

enum {
    S_VERSION,
    S_UPTIME,
    S_CONNECTED,
    S_DISCONNECTED,
    S_TOTAL,
    S_MAXIMUM,
    S_MSG_RECEIVED,
    S_MSG_SENT,
    S_MSG_DROPPED,
    S_PUB_RECEIVED,
    S_BYTES_RECEIVED,
    S_BYTES_SENT,
    S_RETAINED,
    S_SUBSCRIPTIONS,
    S_HEAP,
    S_LOOP_BUSY,
    S_LOOP_LONGEST,
    S_LOOP_LONGEST_WHAT,
    S_LOOP_LONGEST_WALL,
    S_LOAD_FIRST,
    S__COUNT = S_LOAD_FIRST + 3 * SYS_LOADS
};

_Static_assert(S__COUNT <= SYS_SLOTS, "SYS_SLOTS too small");

void core_publish_sys(struct core *core, const struct sys_figures *f, uint64_t now_ms)
{
    struct sys_state *st = &core->sys;
    const struct core_stats *cs = core_stats_refresh(core);
    char buf[64];

    /* Rates since the last call feed the moving averages. */
    uint64_t counters[3] = {cs->messages_received, cs->messages_sent, cs->bytes_received};
    if (st->last_ms && now_ms > st->last_ms) {
        double dt = (double)(now_ms - st->last_ms) / 1000.0;
        for (int k = 0; k < 3; k++) {
            double per_min = (double)(counters[k] - st->prev[k]) * 60.0 / dt;
            for (int i = 0; i < SYS_LOADS; i++) {
                /* dt / (tau + dt): the discrete form of exp decay, no libm */
                double a = dt / (load_periods_s[i] + dt);
                st->load[k][i] += a * (per_min - st->load[k][i]);
            }
        }
    }
    memcpy(st->prev, counters, sizeof(counters));
    st->last_ms = now_ms;

    publish_str(core, S_VERSION, "$SYS/broker/version", f->version, now_ms);
    snprintf(buf, sizeof(buf), "%llu seconds", (unsigned long long)f->uptime_s);
    publish_str(core, S_UPTIME, "$SYS/broker/uptime", buf, now_ms);
    uint64_t disconnected = cs->clients_total > cs->clients_connected
                                ? cs->clients_total - cs->clients_connected
                                : 0;
    publish_u64(core, S_CONNECTED, "$SYS/broker/clients/connected", cs->clients_connected, now_ms);
    publish_u64(core, S_DISCONNECTED, "$SYS/broker/clients/disconnected", disconnected, now_ms);
    publish_u64(core, S_TOTAL, "$SYS/broker/clients/total", cs->clients_total, now_ms);
    publish_u64(core, S_MAXIMUM, "$SYS/broker/clients/maximum", cs->clients_maximum, now_ms);
    publish_u64(core, S_MSG_RECEIVED, "$SYS/broker/messages/received", cs->messages_received,
                now_ms);
    publish_u64(core, S_MSG_SENT, "$SYS/broker/messages/sent", cs->messages_sent, now_ms);
    publish_u64(core, S_MSG_DROPPED, "$SYS/broker/messages/dropped", cs->messages_dropped,
                now_ms);
    publish_u64(core, S_PUB_RECEIVED, "$SYS/broker/publish/messages/received",
                cs->publish_received, now_ms);
    publish_u64(core, S_BYTES_RECEIVED, "$SYS/broker/bytes/received", cs->bytes_received, now_ms);
    publish_u64(core, S_BYTES_SENT, "$SYS/broker/bytes/sent", cs->bytes_sent, now_ms);
    publish_u64(core, S_RETAINED, "$SYS/broker/retained messages/count", cs->retained_count,
                now_ms);
    publish_u64(core, S_SUBSCRIPTIONS, "$SYS/broker/subscriptions/count",
                cs->subscriptions_count, now_ms);
    publish_u64(core, S_HEAP, "$SYS/broker/heap/current", f->heap_bytes, now_ms);
    snprintf(buf, sizeof(buf), "%.1f", f->loop_busy_fraction * 100.0);
    publish_str(core, S_LOOP_BUSY, "$SYS/broker/loop/busy", buf, now_ms);
    snprintf(buf, sizeof(buf), "%.3f", f->loop_longest_ms);
    publish_str(core, S_LOOP_LONGEST, "$SYS/broker/loop/longest_ms", buf, now_ms);
    publish_str(core, S_LOOP_LONGEST_WHAT, "$SYS/broker/loop/longest_what",
                f->loop_longest_what ? f->loop_longest_what : "", now_ms);
    snprintf(buf, sizeof(buf), "%.3f", f->loop_longest_wall_ms);
    publish_str(core, S_LOOP_LONGEST_WALL, "$SYS/broker/loop/longest_wall_ms", buf, now_ms);

    static const char *const load_kinds[3] = {"messages/received", "messages/sent",
                                              "bytes/received"};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < SYS_LOADS; i++) {
            char topic[80];
            snprintf(topic, sizeof(topic), "$SYS/broker/load/%s/%s", load_kinds[k],
                     load_names[i]);
            snprintf(buf, sizeof(buf), "%.2f", st->load[k][i]);
            publish_str(core, S_LOAD_FIRST + k * SYS_LOADS + i, topic, buf, now_ms);
        }
    }
}
