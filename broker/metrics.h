/* The broker's figures in Prometheus text format (version 0.0.4), for the
 * HTTP /metrics endpoint. Pure formatting: the caller gathers the figures. */
#ifndef LOOPBOT_BROKER_METRICS_H
#define LOOPBOT_BROKER_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct core_stats;
struct loop_stats;
struct conn_stats;
struct listener_stats;

struct metrics_figures {
    const struct core_stats *core;
    const struct loop_stats *loop;
    const struct conn_stats *conn;
    const struct listener_stats *listeners;
    uint64_t heap_bytes;
    uint64_t log_dropped;
    uint64_t uptime_s;
};

/* Writes the text into buf (cap bytes, NUL-terminated). Returns the length
 * it needed (like snprintf): call again with more room if >= cap. */
size_t metrics_format(const struct metrics_figures *f, char *buf, size_t cap);

#endif
