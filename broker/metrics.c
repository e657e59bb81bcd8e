#include "broker/metrics.h"

#include <stdarg.h>
#include <stdio.h>

#include "broker/conn.h"
#include "broker/core.h"
#include "broker/listener.h"
#include "broker/loop.h"

struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void metric(struct out *o, const char *name, const char *type, const char *help,
                   double value)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
}

#define COUNTER(o, name, help, v) metric(o, "loopbot_" name, "counter", help, (double)(v))
#define GAUGE(o, name, help, v) metric(o, "loopbot_" name, "gauge", help, (double)(v))

size_t metrics_format(const struct metrics_figures *f, char *buf, size_t cap)
{
    struct out o = {buf, cap, 0};
    if (cap)
        buf[0] = '\0';
    const struct core_stats *c = f->core;
    GAUGE(&o, "uptime_seconds", "Seconds since the broker started.", f->uptime_s);
    GAUGE(&o, "clients_connected", "Clients connected now.", c->clients_connected);
    GAUGE(&o, "clients_total", "Sessions held, online or not.", c->clients_total);
    GAUGE(&o, "clients_maximum", "Most clients connected at once.", c->clients_maximum);
    COUNTER(&o, "messages_received_total", "PUBLISH packets received.", c->messages_received);
    COUNTER(&o, "messages_sent_total", "PUBLISH packets sent.", c->messages_sent);
    COUNTER(&o, "messages_dropped_total",
            "Messages dropped: queue limits, expiry, too large, slow readers.",
            c->messages_dropped);
    COUNTER(&o, "slow_consumers_total", "Times a client's out-queue went over its soft limit.",
            c->slow_consumers);
    COUNTER(&o, "publisher_throttles_total",
            "Times a publisher was not read because a subscriber's queue was full or its "
            "fan-out was being sliced.",
            c->publisher_throttles);
    COUNTER(&o, "fanout_jobs_total",
            "PUBLISHes whose fan-out was too large for one loop callback and went out in slices.",
            c->fanout_jobs);
    COUNTER(&o, "bytes_received_total", "Bytes read from clients.", c->bytes_received);
    COUNTER(&o, "bytes_sent_total", "Bytes written to clients.", c->bytes_sent);
    GAUGE(&o, "retained_messages", "Retained messages stored.", c->retained_count);
    GAUGE(&o, "subscriptions", "Subscriptions held.", c->subscriptions_count);
    GAUGE(&o, "heap_bytes", "Bytes allocated by the broker.", f->heap_bytes);
    COUNTER(&o, "log_lines_dropped_total", "Log lines dropped because the destination blocked.",
            f->log_dropped);
    if (f->loop) {
        const struct loop_stats *l = f->loop;
        COUNTER(&o, "loop_callbacks_total", "Callbacks the event loop dispatched.", l->callbacks);
        COUNTER(&o, "loop_busy_seconds_total", "Time spent inside loop callbacks.",
                (double)l->busy_us / 1e6);
        GAUGE(&o, "loop_busy_ratio", "Busy time over wall time since start.", l->busy_fraction);
        GAUGE(&o, "loop_longest_callback_seconds",
              "The longest single loop callback, by the CPU time it used.",
              (double)l->longest_us / 1e6);
        GAUGE(&o, "loop_longest_callback_wall_seconds",
              "The longest single loop callback by wall time, preemption by other processes "
              "included.",
              (double)l->longest_wall_us / 1e6);
        COUNTER(&o, "loop_slow_callbacks_total", "Callbacks over the slow threshold.",
                l->slow_callbacks);
        GAUGE(&o, "loop_coalesce_microseconds",
              "Wake-up coalescing now: polls wait this long after a wake-up (0 = off).",
              l->wake_interval_us);
        COUNTER(&o, "loop_coalesced_waits_total", "Polls that waited to coalesce wake-ups.",
                l->coalesced_waits);
    }
    if (f->conn) {
        const struct conn_stats *cs = f->conn;
        COUNTER(&o, "connections_accepted_total", "Connections accepted.", cs->accepted);
        COUNTER(&o, "connections_closed_total", "Connections closed.", cs->closed);
        COUNTER(&o, "read_yields_total", "Reads stopped at their per-event budget.",
                cs->read_yields);
        COUNTER(&o, "backpressure_pauses_total",
                "Times reading a client stopped because its output was over 1 MiB.",
                cs->backpressure_pauses);
        COUNTER(&o, "write_pushbacks_total", "Writes the kernel pushed back.",
                cs->write_pushbacks);
        COUNTER(&o, "keepalive_timeouts_total", "Clients dropped for keep alive.",
                cs->keepalive_timeouts);
        COUNTER(&o, "connect_timeouts_total", "Connections that never sent CONNECT in time.",
                cs->connect_timeouts);
        COUNTER(&o, "framing_errors_total", "Connections closed for malformed framing.",
                cs->framing_errors);
        COUNTER(&o, "tls_handshake_failures_total", "TLS handshakes that failed.",
                cs->handshake_failures);
        COUNTER(&o, "tls_handshake_timeouts_total", "TLS handshakes not finished in time.",
                cs->handshake_timeouts);
    }
    if (f->listeners) {
        COUNTER(&o, "connections_rejected_total", "Connections refused over max_connections.",
                f->listeners->rejected_max_connections);
        COUNTER(&o, "connections_rate_limited_total", "Connections refused over max_connection_rate.",
                f->listeners->rejected_rate);
        COUNTER(&o, "accept_pauses_total", "Times accepting paused for lack of descriptors.",
                f->listeners->fd_exhausted_pauses);
    }
    return o.len;
}
