/* loopbot: the executable. Parses the command line like mosquitto, loads
 * the config, opens the listeners and runs the one loop until a signal. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/config.h"
#include "broker/conn.h"
#include "broker/core.h"
#include "broker/http.h"
#include "broker/listener.h"
#include "broker/log.h"
#include "broker/loop.h"
#include "broker/mem.h"
#include "broker/metrics.h"
#include "broker/persist.h"
#include "broker/store.h"
#include "mqtt/error.h"
#include "platform/platform.h"

#ifndef LOOPBOT_VERSION
#define LOOPBOT_VERSION "0.1.0"
#endif

#define DEFAULT_PORT 1883
#define MAX_CLI_PORTS 16
/* A graceful stop waits this long for clients to take their DISCONNECT. */
#define SHUTDOWN_MAX_MS 2000
#define TICK_MS 1000
/* Shutdown waits this long for the store's last commit. */
#define STORE_CLOSE_MAX_MS 5000

struct app {
    struct config cfg;
    struct loop *loop;
    struct conn_set *cs;
    struct core *core;
    struct listener_set *ls;
    struct loop_signal *sig[5];
    struct loop_timer *tick;
    struct loop_timer *stop_timer;
    bool stopping;
    /* What SIGHUP needs to rebuild the config as start-up did. */
    const char *config_file;
    uint16_t ports[MAX_CLI_PORTS];
    int nports;
    bool local_only;
    bool verbose;
    struct auth *auth; /* the global security setup (core_set_auth) */
    struct http_server *http; /* metrics_listener, when configured */
    struct store *store;      /* persistence true */
    struct loop_io store_io; /* its completion fd */
    uint64_t started_ms, last_sys_ms;
};

/* ---- security: password file, ACL, allow_anonymous (auth.h) ---- */

/* Adds the -p ports (or local only mode's loopback listener) to cfg, and
 * in local only mode lets anonymous clients in, as mosquitto 2.0 does
 * whatever the file says. Returns 0 or -ERR_NOMEM. */
static int add_cli_listeners(struct config *cfg, const uint16_t *ports, int nports, bool local_only)
{
    for (int i = 0; i < nports; i++) {
        int rc = 0;
        if (local_only) {
            rc = config_add_listener(cfg, ports[i], "127.0.0.1");
            if (rc == 0)
                rc = config_add_listener(cfg, ports[i], "::1");
        } else {
            rc = config_add_listener(cfg, ports[i], NULL);
        }
        if (rc < 0)
            return rc;
    }
    if (local_only) {
        cfg->sec.allow_anonymous = true;
        for (struct listener_config *l = cfg->listeners; l; l = l->next)
            l->sec.allow_anonymous = true;
    }
    return 0;
}

static void free_listener_auth(struct config *cfg)
{
    for (struct listener_config *l = cfg->listeners; l; l = l->next) {
        auth_free(l->auth);
        l->auth = NULL;
    }
}

/* Loads every password/ACL/PSK file cfg names: the global setup into
 * *global and, with per_listener_settings, one per listener into its
 * l->auth (the first `max` listeners only). All or nothing: on error
 * returns < 0 with "FILE:LINE: reason" in err and nothing allocated. */
static int build_auth(struct config *cfg, size_t max, struct auth **global, char *err,
                      size_t errlen)
{
    int rc = auth_load(&cfg->sec, global, err, errlen);
    if (rc < 0 || !cfg->per_listener_settings)
        return rc;
    size_t i = 0;
    for (struct listener_config *l = cfg->listeners; l && i < max; l = l->next, i++) {
        rc = auth_load(&l->sec, &l->auth, err, errlen);
        if (rc < 0) {
            free_listener_auth(cfg);
            auth_free(*global);
            *global = NULL;
            return rc;
        }
    }
    return 0;
}

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static bool listener_differs(const struct listener_config *a, const struct listener_config *b)
{
    const struct tls_config *x = &a->tls, *y = &b->tls;
    return a->port != b->port || a->max_connections != b->max_connections ||
           str_differs(a->bind_address, b->bind_address) || str_differs(x->cafile, y->cafile) ||
           str_differs(x->capath, y->capath) || str_differs(x->certfile, y->certfile) ||
           str_differs(x->keyfile, y->keyfile) || str_differs(x->crlfile, y->crlfile) ||
           str_differs(x->ciphers, y->ciphers) || str_differs(x->ciphers_tls13, y->ciphers_tls13) ||
           str_differs(x->tls_version, y->tls_version) || str_differs(x->psk_hint, y->psk_hint) ||
           x->require_certificate != y->require_certificate ||
           x->use_identity_as_username != y->use_identity_as_username ||
           x->use_subject_as_username != y->use_subject_as_username;
}

static void swap_sec(struct security_config *a, struct security_config *b)
{
    struct security_config t = *a;
    *a = *b;
    *b = t;
}

/* SIGHUP: re-reads the config file and every password/ACL file, and swaps
 * them in only when all of them loaded: a typo on reload keeps the broker
 * running on the old files. Connected clients stay connected; their next
 * check uses the new files. Listener changes need a restart. */
static void reload(struct app *app)
{
    struct config fresh;
    config_init(&fresh);
    char err[512];
    if (app->config_file && config_load_file(&fresh, app->config_file, err, sizeof(err)) < 0) {
        log_printf(LOG_T_ERROR, "Error: reload failed, keeping the running configuration: %s", err);
        config_free(&fresh);
        return;
    }
    bool local_only = app->local_only;
    if (local_only && fresh.listeners) {
        log_printf(LOG_T_WARNING, "Warning: the configuration now defines listeners; loopbot "
                                  "stays in local only mode until it is restarted.");
        struct config drop; /* config_free frees exactly the list handed to it */
        config_init(&drop);
        drop.listeners = fresh.listeners;
        fresh.listeners = NULL;
        config_free(&drop);
    }
    if (add_cli_listeners(&fresh, app->ports, app->nports, local_only) < 0) {
        log_printf(LOG_T_ERROR, "Error: reload failed: out of memory.");
        config_free(&fresh);
        return;
    }
    size_t live_n = 0, fresh_n = 0;
    for (const struct listener_config *l = app->cfg.listeners; l; l = l->next)
        live_n++;
    for (const struct listener_config *l = fresh.listeners; l; l = l->next)
        fresh_n++;
    size_t n = live_n < fresh_n ? live_n : fresh_n;

    struct auth *global = NULL;
    if (build_auth(&fresh, n, &global, err, sizeof(err)) < 0) {
        log_printf(LOG_T_ERROR, "Error: reload failed, keeping the running password and ACL "
                                "files: %s", err);
        config_free(&fresh);
        return;
    }

    bool restart = live_n != fresh_n;
    struct listener_config *lv = app->cfg.listeners, *fr = fresh.listeners;
    for (size_t i = 0; i < n; i++, lv = lv->next, fr = fr->next) {
        restart |= listener_differs(lv, fr);
        struct auth *old = lv->auth;
        lv->auth = fr->auth; /* NULL unless per_listener_settings */
        fr->auth = old;      /* freed below with fresh */
        swap_sec(&lv->sec, &fr->sec);
    }
    if (restart)
        log_printf(LOG_T_WARNING, "Warning: listener settings (ports, addresses, TLS files, "
                                  "max_connections) changed; they take effect after a restart.");

    /* Everything loaded: swap. Each check reads core->auth / l->auth when it
     * runs, so no client holds the old ones after this. */
    struct config *c = &app->cfg;
    core_set_auth(app->core, global);
    auth_free(app->auth);
    app->auth = global;
    free_listener_auth(&fresh);
    swap_sec(&c->sec, &fresh.sec);
    c->per_listener_settings = fresh.per_listener_settings;
    c->max_inflight_messages = fresh.max_inflight_messages;
    c->max_queued_messages = fresh.max_queued_messages;
    c->max_queued_bytes = fresh.max_queued_bytes;
    c->message_size_limit = fresh.message_size_limit;
    c->max_keepalive = fresh.max_keepalive;
    c->max_packet_size = fresh.max_packet_size;
    c->coalesce_us = fresh.coalesce_us;
    conn_set_coalesce(app->cs, c->coalesce_us);
    c->log_dest = fresh.log_dest;
    c->log_type = app->verbose ? LOG_T_ALL : fresh.log_type;
    c->log_timestamp = fresh.log_timestamp;
    char *old_log_file = c->log_file;
    c->log_file = fresh.log_file;
    fresh.log_file = old_log_file;
    log_open(c);
    for (const struct config_warning *w = fresh.warnings; w; w = w->next)
        log_printf(LOG_T_WARNING, "Warning: %s", w->text);
    config_free(&fresh);
    log_printf(LOG_T_NOTICE, "Reloaded %s: password, ACL and PSK files%s re-read.",
               app->config_file ? app->config_file : "the default configuration",
               c->per_listener_settings ? " (per listener)" : "");
}

static void usage(FILE *out)
{
    fprintf(out,
            "loopbot version %s\n\n"
            "loopbot is an MQTT 5.0/3.1.1/3.1 broker.\n\n"
            "Usage: loopbot [-c config_file] [-p port] [-v]\n"
            "       loopbot [-h | --help] [--version]\n\n"
            " -c : specify the broker config file.\n"
            " -p : start the broker listening on the specified port.\n"
            "      Not recommended in conjunction with the -c option.\n"
            "      May be repeated. Without a listener in the config file, the\n"
            "      port is opened on 127.0.0.1 and ::1 only (local only mode).\n"
            " -v : verbose mode - enable all logging types. This overrides\n"
            "      any logging options given in the config file.\n"
            " -h, --help : display this help.\n"
            " --version : display the version and exit.\n\n"
            "See docs/operations.md for signals, logging and loop statistics.\n",
            LOOPBOT_VERSION);
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < 1 || v > 65535)
        return -ERR_INVALID;
    *port = (uint16_t)v;
    return 0;
}

static void publish_sys(struct app *app, uint64_t now)
{
    struct loop_stats st;
    loop_get_stats(app->loop, &st);
    struct sys_figures f = {
        .version = LOOPBOT_VERSION,
        .uptime_s = (now - app->started_ms) / 1000,
        .heap_bytes = mem_used_total(),
        .loop_busy_fraction = st.busy_fraction,
        .loop_longest_ms = (double)st.longest_us / 1e3,
        .loop_longest_what = st.longest_label,
        .loop_longest_wall_ms = (double)st.longest_wall_us / 1e3,
    };
    core_publish_sys(app->core, &f, now);
    app->last_sys_ms = now;
}

static void on_tick(void *arg)
{
    struct app *app = arg;
    uint64_t now = loop_now_ms(app->loop);
    core_tick(app->core, now);
    uint32_t every = app->cfg.sys_interval;
    if (every && now - app->last_sys_ms >= (uint64_t)every * 1000)
        publish_sys(app, now);
}

/* ---- HTTP /metrics and /healthz (metrics_listener) ---- */

static size_t http_metrics(void *arg, char *buf, size_t cap)
{
    struct app *app = arg;
    struct loop_stats st;
    loop_get_stats(app->loop, &st);
    struct metrics_figures f = {
        .core = core_stats_refresh(app->core),
        .loop = &st,
        .conn = conn_get_stats(app->cs),
        .listeners = listener_get_stats(app->ls),
        .heap_bytes = mem_used_total(),
        .log_dropped = log_dropped_total(),
        .uptime_s = (loop_now_ms(app->loop) - app->started_ms) / 1000,
    };
    return metrics_format(&f, buf, cap);
}

/* Answered from the loop itself, so an answer at all means it turns. */
static const char *http_unhealthy(void *arg)
{
    struct app *app = arg;
    if (app->stopping)
        return "shutting down\n";
    if (listener_socket_count(app->ls) == 0)
        return "no MQTT listener is open\n";
    return NULL;
}

static int start_http(struct app *app)
{
    if (!app->cfg.metrics_port)
        return 0;
    static const struct http_handlers handlers_proto = {NULL, http_metrics, http_unhealthy};
    struct http_handlers h = handlers_proto;
    h.arg = app;
    const char *why = NULL;
    app->http = http_server_new(app->loop, app->cfg.metrics_address, app->cfg.metrics_port, &h,
                                &why);
    if (!app->http) {
        log_printf(LOG_T_ERROR, "Error: metrics_listener %u %s: %s.", app->cfg.metrics_port,
                   app->cfg.metrics_address, why);
        return -ERR_IO;
    }
    log_printf(LOG_T_NOTICE, "Metrics and health checks on http://%s:%u/metrics and /healthz.",
               app->cfg.metrics_address, app->cfg.metrics_port);
    return 0;
}

static void on_all_closed(void *arg)
{
    struct app *app = arg;
    loop_break(app->loop);
}

static void on_stop_timeout(void *arg)
{
    struct app *app = arg;
    log_printf(LOG_T_WARNING, "Warning: %zu connections still open after %u ms; closing them.",
               conn_count(app->cs), SHUTDOWN_MAX_MS);
    loop_break(app->loop);
}

static void log_loop_stats(const struct app *app);

static void on_signal(void *arg, int signo)
{
    struct app *app = arg;
    if (signo == SIGUSR1) {
        /* mosquitto saves its database now; ours is always written. */
        log_printf(LOG_T_NOTICE, "Received SIGUSR1: persistence is written continuously, "
                                 "nothing to save.");
        return;
    }
    if (signo == SIGUSR2) {
        log_printf(LOG_T_NOTICE, "Received SIGUSR2: loop statistics since start or the last "
                                 "SIGUSR2; the longest hold starts over.");
        log_loop_stats(app);
        loop_reset_longest(app->loop);
        return;
    }
    if (signo == SIGHUP) {
        log_reopen();
        log_printf(LOG_T_NOTICE, "Received SIGHUP: log file reopened, reloading configuration.");
        reload(app);
        return;
    }
    if (app->stopping) {
        log_printf(LOG_T_NOTICE, "Received a second %s: exiting now.",
                   signo == SIGINT ? "SIGINT" : "SIGTERM");
        loop_break(app->loop);
        return;
    }
    app->stopping = true;
    platform_notify_stopping(); /* systemd: Type=notify (packaging/loopbot.service) */
    log_printf(LOG_T_NOTICE, "Received %s: disconnecting %zu clients and shutting down.",
               signo == SIGINT ? "SIGINT" : "SIGTERM", conn_count(app->cs));
    listener_set_stop(app->ls);
    loop_timer_stop(app->tick);
    loop_timer_start(app->stop_timer, SHUTDOWN_MAX_MS, false);
    conn_shutdown(app->cs, -ERR_SHUTTING_DOWN, on_all_closed, app);
}

static void log_loop_stats(const struct app *app)
{
    struct loop_stats st;
    loop_get_stats(app->loop, &st);
    log_printf(LOG_T_INFO,
               "Loop: %llu callbacks in %llu turns, busy %.2f%% of %.1f s; longest %.3f ms (%s %s), "
               "%.3f ms wall (%s %s); %llu over %u ms.",
               (unsigned long long)st.callbacks, (unsigned long long)st.turns,
               st.busy_fraction * 100.0, (double)st.wall_us / 1e6, (double)st.longest_us / 1e3,
               st.longest_kind ? st.longest_kind : "-", st.longest_label ? st.longest_label : "-",
               (double)st.longest_wall_us / 1e3, st.longest_wall_kind ? st.longest_wall_kind : "-",
               st.longest_wall_label ? st.longest_wall_label : "-",
               (unsigned long long)st.slow_callbacks, st.slow_threshold_ms);
    const struct conn_stats *cst = conn_get_stats(app->cs);
    log_printf(LOG_T_INFO,
               "Connections: %llu accepted, %llu read yields, %llu backpressure pauses, %llu write "
               "pushbacks, %llu keepalive and %llu connect timeouts, %llu framing errors, %llu TLS "
               "handshake failures; %llu log lines dropped.",
               (unsigned long long)cst->accepted, (unsigned long long)cst->read_yields,
               (unsigned long long)cst->backpressure_pauses,
               (unsigned long long)cst->write_pushbacks,
               (unsigned long long)cst->keepalive_timeouts,
               (unsigned long long)cst->connect_timeouts, (unsigned long long)cst->framing_errors,
               (unsigned long long)(cst->handshake_failures + cst->handshake_timeouts),
               (unsigned long long)log_dropped_total());
}

/* ---- persistence (docs/persistence.md) ---- */

static void on_store_done(struct loop_io *io, unsigned events)
{
    (void)events;
    struct app *app = (struct app *)(void *)((char *)io - offsetof(struct app, store_io));
    persist_completed(app->core, loop_now_ms(app->loop));
}

/* Opens the store and loads it into the core, before the listeners open.
 * An unusable store never stops the gateway: it is set aside (store.c) or,
 * if even a new one cannot be made, the broker runs without persistence,
 * loudly. */
static void start_persistence(struct app *app)
{
    const struct config *c = &app->cfg;
    if (!c->persistence)
        return;
    char why[256] = "";
    int set_aside = 0;
    const char *dir = c->persistence_location[0] ? c->persistence_location : ".";
    struct store *st = store_open(dir, c->persistence_file, c->persistence_sync, &set_aside, why,
                                  sizeof(why));
    if (set_aside)
        log_printf(LOG_T_ERROR, "Error: persistence: %s/%s is unusable (%s): moved aside to "
                                "%s.corrupt-<time>; starting with an EMPTY store.",
                   dir, c->persistence_file, why, c->persistence_file);
    if (!st) {
        log_printf(LOG_T_ERROR, "Error: persistence: cannot open %s/%s (%s): running WITHOUT "
                                "persistence.", dir, c->persistence_file, why);
        return;
    }
    uint64_t t0 = platform_now_ms();
    int rc = persist_attach(app->core, st, loop_now_ms(app->loop), platform_wall_ms());
    if (rc < 0)
        log_printf(LOG_T_ERROR, "Error: persistence: loading %s/%s failed part way (%s); going on "
                                "with what loaded.", dir, c->persistence_file, mqtt_err_message(rc));
    static const struct loop_io_kind store_kind = {on_store_done, "store"};
    loop_io_init(&app->store_io, app->loop, store_fd(st), &store_kind);
    if (loop_io_set(&app->store_io, LOOP_READ) < 0 || store_start(st) < 0) {
        log_printf(LOG_T_ERROR, "Error: persistence: cannot start the store worker: running "
                                "WITHOUT persistence.");
        loop_io_fini(&app->store_io);
        store_close(persist_detach(app->core), STORE_CLOSE_MAX_MS);
        return;
    }
    app->store = st;
    struct persist_counts n;
    persist_get_counts(app->core, &n);
    log_printf(LOG_T_NOTICE, "Persistence: %s/%s (%s): loaded %llu sessions, %llu subscriptions, "
                             "%llu queued messages, %llu retained, %llu wills in %llu ms; %llu "
                             "expired rows dropped.",
               dir, c->persistence_file, c->persistence_sync ? "fsync every commit" : "WAL, NORMAL",
               (unsigned long long)n.sessions, (unsigned long long)n.subscriptions,
               (unsigned long long)n.deliveries, (unsigned long long)n.retained,
               (unsigned long long)n.wills, (unsigned long long)(platform_now_ms() - t0),
               (unsigned long long)n.dropped);
}

/* After every client is gone (their sessions' offline records queued):
 * the last commit, close, join. */
static void stop_persistence(struct app *app)
{
    if (!app->store)
        return;
    struct store_stats s;
    store_get_stats(app->store, &s);
    loop_io_fini(&app->store_io);
    struct store *st = persist_detach(app->core);
    app->store = NULL;
    if (store_close(st, STORE_CLOSE_MAX_MS) < 0)
        log_printf(LOG_T_ERROR, "Error: persistence: the last commit did not finish in %u ms; "
                                "unacknowledged work may be lost.", STORE_CLOSE_MAX_MS);
    log_printf(LOG_T_INFO, "Persistence: %llu commits, %llu records; commit %.2f ms mean, %.2f ms "
                           "max.",
               (unsigned long long)s.commits, (unsigned long long)s.records,
               s.commits ? (double)s.total_commit_us / 1e3 / (double)s.commits : 0.0,
               (double)s.max_commit_us / 1e3);
}

/* Frees whatever was created, in reverse order. */
static void app_free(struct app *app)
{
    http_server_free(app->http);
    conn_set_free(app->cs); /* client_free for each: before core_free */
    app->cs = NULL;
    stop_persistence(app); /* before core_free, which must not touch the store */
    listener_set_free(app->ls);
    core_free(app->core);
    for (int i = 0; i < 5; i++)
        loop_signal_remove(app->sig[i]);
    loop_timer_free(app->tick);
    loop_timer_free(app->stop_timer);
    loop_free(app->loop);
}

int main(int argc, char **argv)
{
    struct app app;
    memset(&app, 0, sizeof(app));
    const char *config_file = NULL;
    uint16_t ports[MAX_CLI_PORTS];
    int nports = 0;
    bool verbose = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("loopbot version %s\n", LOOPBOT_VERSION);
            return 0;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config-file")) {
            if (++i == argc) {
                fprintf(stderr, "Error: -c argument given, but no config file specified.\n\n");
                usage(stderr);
                return 1;
            }
            config_file = argv[i];
        } else if (!strcmp(a, "-p") || !strcmp(a, "--port")) {
            if (++i == argc || parse_port(argv[i], &ports[nports < MAX_CLI_PORTS ? nports : 0]) < 0) {
                fprintf(stderr, "Error: Invalid port given: %s\n", i < argc ? argv[i] : "(none)");
                return 1;
            }
            if (nports == MAX_CLI_PORTS) {
                fprintf(stderr, "Error: Too many -p ports (at most %d).\n", MAX_CLI_PORTS);
                return 1;
            }
            nports++;
        } else {
            fprintf(stderr, "Error: Unknown option '%s'.\n\n", a);
            usage(stderr);
            return 1;
        }
    }

    config_init(&app.cfg);
    if (config_file) {
        char err[512];
        if (config_load_file(&app.cfg, config_file, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s\n", err);
            config_free(&app.cfg);
            return 1;
        }
    }
    /* mosquitto 2.x local only mode: no listener configured means loopback
     * only, with anonymous clients allowed (mosquitto 2.0 allows them there
     * even when the file says allow_anonymous false). */
    bool local_only = app.cfg.listeners == NULL;
    if (nports == 0 && local_only)
        ports[nports++] = DEFAULT_PORT;
    app.config_file = config_file;
    memcpy(app.ports, ports, sizeof(ports));
    app.nports = nports;
    app.local_only = local_only;
    app.verbose = verbose;
    if (add_cli_listeners(&app.cfg, ports, nports, local_only) < 0) {
        fprintf(stderr, "Error: Out of memory.\n");
        config_free(&app.cfg);
        return 1;
    }
    /* A password or ACL file that does not load stops start-up, as in
     * mosquitto, with FILE:LINE: reason. */
    {
        char err[512];
        if (build_auth(&app.cfg, SIZE_MAX, &app.auth, err, sizeof(err)) < 0) {
            fprintf(stderr, "Error: %s\n", err);
            config_free(&app.cfg);
            return 1;
        }
    }
    if (verbose)
        app.cfg.log_type = LOG_T_ALL;

    platform_ignore_sigpipe();
    platform_heap_keep();
    uint64_t nofile = 0;
    int nofile_rc = platform_raise_nofile(&nofile);
    log_open(&app.cfg);
    log_printf(LOG_T_NOTICE, "loopbot version %s starting", LOOPBOT_VERSION);
    if (config_file)
        log_printf(LOG_T_NOTICE, "Config loaded from %s.", config_file);
    else
        log_printf(LOG_T_NOTICE, "Using default config.");
    if (local_only) {
        log_printf(LOG_T_NOTICE, "Starting in local only mode. Connections will only be possible "
                                 "from clients running on this machine.");
        log_printf(LOG_T_NOTICE, "Create a configuration file which defines a listener to allow "
                                 "remote access.");
    }
    for (const struct config_warning *w = app.cfg.warnings; w; w = w->next)
        log_printf(LOG_T_WARNING, "Warning: %s", w->text);
    if (nofile_rc < 0)
        log_printf(LOG_T_WARNING, "Warning: Unable to raise the open files limit: %s.",
                   strerror(-nofile_rc));
    log_printf(LOG_T_DEBUG, "Open files limit: %llu.", (unsigned long long)nofile);

    int exit_code = 1;
    bool started = false;
    struct core_io io;
    app.loop = loop_new();
    if (!app.loop)
        goto out;
    app.cs = conn_set_new(app.loop);
    if (!app.cs)
        goto out;
    conn_set_io(app.cs, &io);
    app.core = core_new(&app.cfg, &io);
    if (!app.core)
        goto out;
    core_set_auth(app.core, app.auth);
    conn_set_core(app.cs, app.core);
    conn_set_coalesce(app.cs, app.cfg.coalesce_us);
    start_persistence(&app); /* everything stored is back before clients come */
    /* Signals first: once a listener accepts, a supervisor may already
     * send SIGHUP, whose default action would kill us. */
    static const int signals[5] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};
    for (int i = 0; i < 5; i++)
        if (!(app.sig[i] = loop_signal_add(app.loop, signals[i], on_signal, &app)))
            goto out;
    app.ls = listener_set_new(app.loop, app.cs, &app.cfg);
    if (!app.ls)
        goto out;
    app.tick = loop_timer_new(app.loop, "tick", on_tick, &app);
    app.stop_timer = loop_timer_new(app.loop, "shutdown", on_stop_timeout, &app);
    if (!app.tick || !app.stop_timer || loop_timer_start(app.tick, TICK_MS, true) < 0)
        goto out;
    if (start_http(&app) < 0)
        goto out;
    app.started_ms = loop_now_ms(app.loop);
    if (app.cfg.sys_interval)
        publish_sys(&app, app.started_ms);

    log_printf(LOG_T_NOTICE, "loopbot version %s running", LOOPBOT_VERSION);
    platform_notify_ready(); /* systemd: listeners are open */
    started = true;
    if (loop_run(app.loop) < 0)
        log_printf(LOG_T_ERROR, "Error: the event loop failed.");
    else
        exit_code = 0;
    log_printf(LOG_T_NOTICE, "loopbot version %s terminating", LOOPBOT_VERSION);
    log_loop_stats(&app);

out:
    if (!started)
        log_printf(LOG_T_ERROR, "Error: loopbot could not start (%s).",
                   !app.loop ? "event loop" : !app.cs || !app.core ? "out of memory" : "see above");
    app_free(&app);
    log_close();
    free_listener_auth(&app.cfg);
    auth_free(app.auth);
    config_free(&app.cfg);
    return exit_code;
}
