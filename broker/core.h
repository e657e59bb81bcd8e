/* The broker's shared state with no I/O: sessions by client id, the
 * subscription tree, retained messages, counters. The glue gives it a
 * core_io to tell connections about output and closes. */
#ifndef LOOPBOT_BROKER_CORE_H
#define LOOPBOT_BROKER_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct core;

struct core_io {
    void *ctx;
    /* conn's out-queue gained bytes: flush it before the loop sleeps. */
    void (*wants_write)(void *ctx, void *conn);
    /* Close conn once its out-queue is flushed (e.g. taken over by another
     * connection with the same client id). The glue must call client_free
     * for it later, from its deferred pass, never from inside this call. */
    void (*close)(void *ctx, void *conn, int err);
    /* No online session is over its queue limit any more: publishers that
     * were throttled (client_throttle_requested) may be read again. May be
     * NULL. */
    void (*congestion_cleared)(void *ctx);
    /* A fan-out too large for one callback was left for later turns: call
     * core_fanout_run from the deferred pass. NULL: every fan-out is
     * delivered whole, at once. */
    void (*fanout_pending)(void *ctx);
    /* Monotonic microseconds, read every ROUTER_CLOCK_EVERY deliveries so
     * that one PUBLISH's inline fan-out stops after ROUTER_INLINE_US even
     * where deliveries are slow (a Pi, cold caches, page faults), not only
     * after ROUTER_INLINE_DELIVERIES. NULL: by count only. */
    uint64_t (*clock_us)(void *ctx);
};

struct core_stats {
    uint64_t clients_connected;
    uint64_t clients_total;        /* sessions, online or not */
    uint64_t clients_maximum;
    uint64_t messages_received;    /* PUBLISH packets in */
    uint64_t messages_sent;        /* PUBLISH packets out */
    uint64_t messages_dropped;     /* queue limits, expiry, too large, slow readers */
    uint64_t slow_consumers;       /* times a client went over the out-queue soft limit */
    uint64_t publisher_throttles;  /* times a publisher was paused for a full subscriber queue */
    uint64_t fanout_jobs;          /* fan-outs too large for one callback, sliced over turns */
    uint64_t bytes_received;
    uint64_t bytes_sent;
    uint64_t publish_received;
    uint64_t retained_count;
    uint64_t subscriptions_count;
};

/* Figures only the glue knows, for $SYS. */
struct sys_figures {
    const char *version;
    uint64_t uptime_s;
    uint64_t heap_bytes;
    double loop_busy_fraction;
    double loop_longest_ms; /* CPU time; see struct loop_stats */
    const char *loop_longest_what;
    double loop_longest_wall_ms;
};

struct core *core_new(const struct config *cfg, const struct core_io *io);
void core_free(struct core *core);

/* The global security setup (password file, ACL, allow_anonymous) checked
 * at CONNECT and for every publish, subscribe and delivery. The caller
 * keeps ownership and may replace it at any time between loop callbacks
 * (SIGHUP reload); NULL allows everything. */
struct auth;
struct listener_config;
void core_set_auth(struct core *core, struct auth *a);
/* The security that applies to clients of listener lc: its own with
 * per_listener_settings, else the global one (lc NULL: global). */
const struct auth *core_auth_for(const struct core *core, const struct listener_config *lc);

/* Once a second or so: session expiry, delayed wills, message expiry. */
void core_tick(struct core *core, uint64_t now_ms);

/* Counters, for $SYS and /metrics. bytes_* are counted by the glue, on
 * every read and write: this is a plain accessor. */
struct core_stats *core_stats(struct core *core);
/* The stats with their gauges (clients_total, subscriptions_count,
 * retained_count) brought up to date: for readers ($SYS, /metrics). */
const struct core_stats *core_stats_refresh(struct core *core);

/* Publishes the $SYS/broker/... topics whose value changed since the last
 * call (retained, QoS 0): mosquitto's names, plus loop/busy (percent),
 * loop/longest_ms, loop/longest_what and loop/longest_wall_ms. Call every
 * sys_interval. */
void core_publish_sys(struct core *core, const struct sys_figures *f, uint64_t now_ms);

/* Delivers up to max deliveries of pending fan-out jobs, oldest first.
 * Returns whether any remain (call again next turn). */
bool core_fanout_run(struct core *core, uint64_t now_ms, uint32_t max);

#endif
