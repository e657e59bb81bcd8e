/* One connection's MQTT protocol state, and the session it is attached to.
 *
 * No I/O here: the connection glue (conn.c) hands in whole packets (framed
 * with mqtt_scan) and the current time; the client answers by appending
 * encoded packets to its out-queue and telling the glue through core_io
 * (wants_write, close). Tests drive it the same way with no sockets. */
#ifndef LOOPBOT_BROKER_CLIENT_H
#define LOOPBOT_BROKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct core;
struct client;
struct listener_config;
struct outq;

/* conn: the glue's handle, passed back in core_io callbacks. lc: the
 * listener it came in on (its security settings apply), or NULL. */
struct client *client_new(struct core *core, void *conn, const char *peer,
                          const struct listener_config *lc, uint64_t now_ms);

/* The transport authenticated the peer (TLS client certificate with
 * use_identity_as_username / use_subject_as_username, or a TLS-PSK
 * identity): that identity becomes the username, and CONNECT's own username
 * and password are ignored, as in mosquitto. Call before any packet. */
int client_set_identity(struct client *c, const char *identity);

/* One whole packet. Returns 0 to go on, or a negative error: the glue must
 * then flush the out-queue (which may now hold a CONNACK or DISCONNECT with
 * the reason) and close the connection. */
int client_on_packet(struct client *c, const uint8_t *pkt, size_t len, uint64_t now_ms);

/* The broker decided to close this connection (keepalive, shutdown, a
 * framing error found by the glue): queues an MQTT 5 DISCONNECT with err's
 * reason code where the protocol allows. The glue flushes, then closes. */
void client_disconnect(struct client *c, int err, uint64_t now_ms);

/* The connection is gone. err is 0 after a normal DISCONNECT (no will), or
 * why it ended (the will is published). Detaches or ends the session and
 * frees c. */
void client_free(struct client *c, int err, uint64_t now_ms);

/* Whether the glue should stop reading this client until the core's
 * congestion_cleared: its PUBLISH reached a subscriber whose queue is over
 * its limit. Asking clears the request. */
bool client_throttle_requested(struct client *c);

struct outq *client_outq(struct client *c);
bool client_connected(const struct client *c);
/* Largest packet accepted from this client, for mqtt_scan. */
uint32_t client_max_packet_in(const struct client *c);
/* 0 = no keepalive (or not connected yet). */
uint32_t client_keepalive_ms(const struct client *c);
/* For log lines: the client id once connected, else the peer address. */
const char *client_name(const struct client *c);

#endif
