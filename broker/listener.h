/* Listening sockets, from the config's listeners.
 *
 * A listener with no bind address opens 0.0.0.0 and :: (IPv6-only, so the
 * two share the port); a host name is resolved once at start-up. Each
 * readable event accepts at most LISTENER_ACCEPTS_PER_EVENT connections so
 * a connection storm cannot starve the clients already connected. Over the
 * listener's or the broker's max_connections, a connection is accepted and
 * closed at once (as mosquitto does), logged and counted. When the process
 * is out of file descriptors (EMFILE) accepting pauses for 1 s instead of
 * spinning on an fd that stays readable. A listener with TLS settings
 * (certfile/keyfile or psk_hint) gets a TLS context (tls.h), loaded at
 * start-up, and its connections the TLS transport. */
#ifndef LOOPBOT_BROKER_LISTENER_H
#define LOOPBOT_BROKER_LISTENER_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct conn_set;
struct listener;
struct listener_set;
struct loop;

#define LISTENER_ACCEPTS_PER_EVENT 64
#define LISTENER_BACKLOG 512
#define LISTENER_PAUSE_MS 1000

struct listener_stats {
    uint64_t accepted;
    uint64_t rejected_max_connections;
    uint64_t rejected_rate;       /* over max_connection_rate */
    uint64_t accept_errors;
    uint64_t fd_exhausted_pauses; /* EMFILE/ENFILE/ENOBUFS/ENOMEM */
    uint64_t current;             /* connections open, all listeners */
};

/* Opens every listener in cfg (blocking name resolution happens here, before
 * the loop runs). On failure logs why, closes what it opened and returns
 * NULL. A failure to open an IPv6 socket because the host has no IPv6 is a
 * warning, as long as some socket opened. */
struct listener_set *listener_set_new(struct loop *loop, struct conn_set *cs,
                                      const struct config *cfg);
/* Stops accepting and closes the listening sockets; connections stay. */
void listener_set_stop(struct listener_set *ls);
/* Frees the set (and the listeners' TLS contexts); every connection must be
 * closed first. */
void listener_set_free(struct listener_set *ls);
const struct listener_stats *listener_get_stats(const struct listener_set *ls);
size_t listener_socket_count(const struct listener_set *ls);

/* A connection accepted on l was closed (conn.c calls this; NULL is fine). */
void listener_conn_closed(struct listener *l);
uint16_t listener_port(const struct listener *l);
/* The configuration the listener was made from. */
const struct listener_config *listener_config_of(const struct listener *l);

#endif
