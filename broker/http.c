#include "broker/http.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <string.h>

#include "broker/loop.h"
#include "broker/mem.h"

/* /metrics output grows with nothing per client, so a fixed first guess
 * fits; a larger answer gets one retry with the exact size. */
#define METRICS_FIRST_GUESS 8192

struct http_server {
    struct evhttp *http;
    struct http_handlers h;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text,
                       size_t len, const char *type)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(body, text, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code, reason, body);
    evbuffer_free(body);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct http_server *s = arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, "Method Not Allowed");
        return;
    }
    size_t cap = METRICS_FIRST_GUESS;
    for (int attempt = 0; attempt < 2; attempt++) {
        char *buf = mem_alloc(NULL, cap);
        if (!buf)
            break;
        size_t need = s->h.metrics(s->h.arg, buf, cap);
        if (need < cap) {
            reply_text(req, 200, "OK", buf, need, "text/plain; version=0.0.4");
            mem_free(NULL, buf, cap);
            return;
        }
        mem_free(NULL, buf, cap);
        cap = need + 1;
    }
    evhttp_send_error(req, 500, "out of memory");
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
    struct http_server *s = arg;
    const char *why = s->h.unhealthy(s->h.arg);
    if (why)
        reply_text(req, 503, "Service Unavailable", why, strlen(why), "text/plain");
    else
        reply_text(req, 200, "OK", "ok\n", 3, "text/plain");
}

struct http_server *http_server_new(struct loop *loop, const char *addr, uint16_t port,
                                    const struct http_handlers *h, const char **why)
{
    struct http_server *s = mem_calloc(NULL, sizeof(*s));
    if (!s) {
        *why = "out of memory";
        return NULL;
    }
    s->h = *h;
    s->http = evhttp_new(loop__event_base(loop));
    if (!s->http) {
        *why = "cannot create the HTTP server";
        mem_free(NULL, s, sizeof(*s));
        return NULL;
    }
    /* Operators' requests are small: bound what a peer can make us hold. */
    evhttp_set_max_headers_size(s->http, 8192);
    evhttp_set_max_body_size(s->http, 0);
    evhttp_set_timeout(s->http, 10);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_cb(s->http, "/metrics", on_metrics, s);
    evhttp_set_cb(s->http, "/healthz", on_healthz, s);
    if (!evhttp_bind_socket_with_handle(s->http, addr, port)) {
        *why = "cannot listen (address in use or not local?)";
        evhttp_free(s->http);
        mem_free(NULL, s, sizeof(*s));
        return NULL;
    }
    return s;
}

void http_server_free(struct http_server *s)
{
    if (!s)
        return;
    evhttp_free(s->http);
    mem_free(NULL, s, sizeof(*s));
}
