/* Listening sockets: accept fairly, enforce max_connections, survive fd
 * exhaustion. */
#include "broker/listener.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "broker/config.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/loop.h"
#include "broker/mem.h"
#include "broker/tls.h"
#include "mqtt/error.h"
#include "platform/platform.h"

#define LISTENER_RESOLVE_MAX 8
#define LISTENER_WARN_EVERY_MS 10000

struct listener {
    struct listener_set *ls;
    const struct listener_config *cfg;
    struct tls_ctx *tls; /* NULL: plain TCP */
    uint16_t port;
    uint32_t max; /* 0 = unlimited */
    uint64_t count;
    uint32_t rate;     /* max_connection_rate; 0 = unlimited */
    uint32_t tokens;   /* connections it may still accept this second */
    uint64_t refill_ms;
};

/* A token bucket of max_connection_rate per second (burst: one second's
 * worth), so a flood of connects costs an accept and a close each, not a
 * session and a CONNECT timeout. */
static bool rate_allows(struct listener *l, uint64_t now_ms)
{
    if (!l->rate)
        return true;
    if (now_ms >= l->refill_ms + 1000 || !l->refill_ms) {
        l->tokens = l->rate;
        l->refill_ms = now_ms;
    } else {
        uint64_t add = (now_ms - l->refill_ms) * l->rate / 1000;
        if (add) {
            l->tokens = l->tokens + add > l->rate ? l->rate : (uint32_t)(l->tokens + add);
            l->refill_ms = now_ms;
        }
    }
    if (!l->tokens)
        return false;
    l->tokens--;
    return true;
}

struct listener_sock {
    struct listener_set *ls;
    struct listener *l;
    struct loop_io io;
    struct loop_timer *pause;
    int fd;
};

struct listener_set {
    struct loop *loop;
    struct conn_set *cs;
    uint32_t max; /* broker-wide, 0 = unlimited */
    struct listener *lst;
    size_t nlst;
    struct listener_sock **socks;
    size_t nsocks;
    struct listener_stats stats;
    uint64_t fd_warned_at;
};

static void pause_accepting(struct listener_sock *s, int err)
{
    struct listener_set *ls = s->ls;
    ls->stats.fd_exhausted_pauses++;
    uint64_t now = loop_now_ms(ls->loop);
    if (!ls->fd_warned_at || now - ls->fd_warned_at >= LISTENER_WARN_EVERY_MS) {
        uint64_t lim = 0;
        platform_raise_nofile(&lim);
        log_printf(LOG_T_WARNING,
                   "Warning: Unable to accept new connection: %s (open files limit %llu); not "
                   "accepting on port %u for %u ms.",
                   strerror(-err), (unsigned long long)lim, s->l->port, LISTENER_PAUSE_MS);
        ls->fd_warned_at = now;
    }
    loop_io_set(&s->io, 0);
    loop_timer_start(s->pause, LISTENER_PAUSE_MS, false);
}

static void on_resume(void *arg)
{
    struct listener_sock *s = arg;
    loop_io_set(&s->io, LOOP_READ);
}

static void on_accept(struct loop_io *io, unsigned events)
{
    struct listener_sock *s = (struct listener_sock *)(void *)((char *)io -
                                                              offsetof(struct listener_sock, io));
    struct listener_set *ls = s->ls;
    struct listener *l = s->l;
    for (int i = 0; i < LISTENER_ACCEPTS_PER_EVENT; i++) {
        char peer[PLATFORM_ADDR_MAX];
        int fd = platform_accept(s->fd, peer, sizeof(peer));
        if (fd == -EAGAIN)
            return;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            pause_accepting(s, fd);
            return;
        }
        if (fd < 0) {
            /* ECONNABORTED, EPROTO, EPERM (firewall): that one client. */
            ls->stats.accept_errors++;
            log_printf(LOG_T_DEBUG, "accept on port %u: %s", l->port, strerror(-fd));
            continue;
        }
        if (!rate_allows(l, platform_now_ms())) {
            ls->stats.rejected_rate++;
            log_printf(LOG_T_DEBUG, "Client connection from %s denied: max_connection_rate %u/s.",
                       peer, l->rate);
            platform_close(fd);
            continue;
        }
        if ((l->max && l->count >= l->max) || (ls->max && ls->stats.current >= ls->max)) {
            ls->stats.rejected_max_connections++;
            log_printf(LOG_T_NOTICE, "Client connection from %s denied: max_connections exceeded.",
                       peer);
            platform_close(fd);
            continue;
        }
        log_printf(LOG_T_NOTICE, "New connection from %s on port %u.", peer, l->port);
        void *tpd = NULL;
        if (l->tls && !(tpd = tls_session_new(l->tls, fd))) {
            log_printf(LOG_T_ERROR, "Error: Out of memory accepting a connection from %s.", peer);
            platform_close(fd);
            continue;
        }
        if (conn_accept(ls->cs, fd, peer, l, l->tls ? &conn_tls : NULL, tpd) < 0) {
            log_printf(LOG_T_ERROR, "Error: Out of memory accepting a connection from %s.", peer);
            tls_session_free(tpd);
            platform_close(fd);
            continue;
        }
        l->count++;
        ls->stats.current++;
        ls->stats.accepted++;
    }
}

static void sock_free(struct listener_sock *s)
{
    loop_io_fini(&s->io);
    loop_timer_free(s->pause);
    platform_close(s->fd);
    mem_free(NULL, s, sizeof(*s));
}

/* Returns 0 (opened, or IPv6 is unavailable here) or -ERR_IO. */
static int open_one(struct listener_set *ls, struct listener *l, const char *addr)
{
    bool v6 = strchr(addr, ':') != NULL;
    /* mosquitto's wording, which people grep for; the address at debug. */
    log_printf(LOG_T_NOTICE, "Opening ipv%d listen socket on port %u.", v6 ? 6 : 4, l->port);
    log_printf(LOG_T_DEBUG, "Binding to %s port %u.", addr, l->port);
    int fd = platform_listen(addr, l->port, LISTENER_BACKLOG, NULL);
    if (fd < 0) {
        if (v6 && (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL || fd == -EPROTONOSUPPORT)) {
            log_printf(LOG_T_WARNING, "Warning: IPv6 is not available (%s): not listening on %s.",
                       strerror(-fd), addr);
            return 0;
        }
        log_printf(LOG_T_ERROR, "Error: Unable to listen on %s port %u: %s.", addr, l->port,
                   strerror(-fd));
        return -ERR_IO;
    }
    struct listener_sock **socks =
        mem_realloc(NULL, ls->socks, ls->nsocks * sizeof(*socks), (ls->nsocks + 1) * sizeof(*socks));
    struct listener_sock *s = socks ? mem_calloc(NULL, sizeof(*s)) : NULL;
    if (socks)
        ls->socks = socks;
    if (!s) {
        platform_close(fd);
        log_printf(LOG_T_ERROR, "Error: Out of memory.");
        return -ERR_NOMEM;
    }
    s->ls = ls;
    s->l = l;
    s->fd = fd;
    static const struct loop_io_kind accept_kind = {on_accept, "accept"};
    loop_io_init(&s->io, ls->loop, fd, &accept_kind);
    s->pause = loop_timer_new(ls->loop, "accept-pause", on_resume, s);
    if (!s->pause || loop_io_set(&s->io, LOOP_READ) < 0) {
        sock_free(s);
        log_printf(LOG_T_ERROR, "Error: Out of memory.");
        return -ERR_NOMEM;
    }
    ls->socks[ls->nsocks++] = s;
    return 0;
}

/* The psk_file in force on lc: its own with per_listener_settings, else
 * the global one (mosquitto's rule). */
static const char *psk_file_of(const struct config *cfg, const struct listener_config *lc)
{
    return cfg->per_listener_settings ? lc->sec.psk_file : cfg->sec.psk_file;
}

struct listener_set *listener_set_new(struct loop *loop, struct conn_set *cs,
                                      const struct config *cfg)
{
    struct listener_set *ls = mem_calloc(NULL, sizeof(*ls));
    if (!ls)
        return NULL;
    ls->loop = loop;
    ls->cs = cs;
    ls->max = cfg->max_connections;
    for (const struct listener_config *lc = cfg->listeners; lc; lc = lc->next)
        ls->nlst++;
    if (ls->nlst) {
        ls->lst = mem_calloc(NULL, ls->nlst * sizeof(*ls->lst));
        if (!ls->lst)
            goto fail;
    }
    size_t i = 0;
    for (const struct listener_config *lc = cfg->listeners; lc; lc = lc->next, i++) {
        struct listener *l = &ls->lst[i];
        l->ls = ls;
        l->cfg = lc;
        l->port = lc->port;
        l->max = lc->max_connections;
        l->rate = lc->max_connection_rate ? lc->max_connection_rate : cfg->max_connection_rate;
    }
    /* Every listener's TLS files load before any socket opens: a bad file
     * stops start-up with nothing listening, and no client can reach one
     * port while another is still loading its keys. */
    i = 0;
    for (const struct listener_config *lc = cfg->listeners; lc; lc = lc->next, i++)
        if (tls_wanted(lc) && !(ls->lst[i].tls = tls_ctx_new(lc, psk_file_of(cfg, lc))))
            goto fail;
    i = 0;
    for (const struct listener_config *lc = cfg->listeners; lc; lc = lc->next, i++) {
        struct listener *l = &ls->lst[i];
        if (!lc->bind_address) {
            if (open_one(ls, l, "0.0.0.0") < 0 || open_one(ls, l, "::") < 0)
                goto fail;
            continue;
        }
        char addrs[LISTENER_RESOLVE_MAX][PLATFORM_ADDR_MAX];
        const char *why = "";
        int n = platform_resolve_passive(lc->bind_address, addrs, LISTENER_RESOLVE_MAX, &why);
        if (n < 0) {
            log_printf(LOG_T_ERROR, "Error: Unable to resolve bind address %s (listener on line %d): %s.",
                       lc->bind_address, lc->line, why);
            goto fail;
        }
        for (int k = 0; k < n; k++)
            if (open_one(ls, l, addrs[k]) < 0)
                goto fail;
    }
    if (ls->nsocks == 0) {
        log_printf(LOG_T_ERROR, "Error: No listening socket could be opened.");
        goto fail;
    }
    return ls;
fail:
    listener_set_free(ls);
    return NULL;
}

void listener_set_stop(struct listener_set *ls)
{
    if (!ls)
        return;
    for (size_t i = 0; i < ls->nsocks; i++)
        sock_free(ls->socks[i]);
    mem_free(NULL, ls->socks, ls->nsocks * sizeof(*ls->socks));
    ls->socks = NULL;
    ls->nsocks = 0;
}

void listener_set_free(struct listener_set *ls)
{
    if (!ls)
        return;
    listener_set_stop(ls);
    for (size_t i = 0; i < ls->nlst; i++)
        tls_ctx_free(ls->lst[i].tls);
    mem_free(NULL, ls->lst, ls->nlst * sizeof(*ls->lst));
    mem_free(NULL, ls, sizeof(*ls));
}

const struct listener_stats *listener_get_stats(const struct listener_set *ls)
{
    return &ls->stats;
}

size_t listener_socket_count(const struct listener_set *ls)
{
    return ls->nsocks;
}

void listener_conn_closed(struct listener *l)
{
    if (!l)
        return;
    l->count--;
    l->ls->stats.current--;
}

const struct listener_config *listener_config_of(const struct listener *l)
{
    return l->cfg;
}

uint16_t listener_port(const struct listener *l)
{
    return l->port;
}
