/* A small HTTP listener for operators: GET /metrics (Prometheus text) and
 * GET /healthz (200 "ok" while the loop turns and the MQTT listeners
 * accept, 503 otherwise). Off unless configured; loopback by default. It
 * runs on the broker's loop, so it answers only while the loop turns: a
 * health check that times out means the loop is stuck. */
#ifndef LOOPBOT_BROKER_HTTP_H
#define LOOPBOT_BROKER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct http_server;

struct http_handlers {
    void *arg;
    /* Fills buf like snprintf; returns the length needed. */
    size_t (*metrics)(void *arg, char *buf, size_t cap);
    /* NULL when healthy, else why not (the 503 body). */
    const char *(*unhealthy)(void *arg);
};

/* Listens on addr:port (numeric address). NULL with *why set on failure. */
struct http_server *http_server_new(struct loop *loop, const char *addr, uint16_t port,
                                    const struct http_handlers *h, const char **why);
void http_server_free(struct http_server *s);

#endif
