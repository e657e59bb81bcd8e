/* TLS listeners with mbedTLS 2.28: per-listener contexts (certificates,
 * keys, CA, CRL, versions, cipher suites, PSK identities) and conn_tls, the
 * transport that drives one non-blocking mbedTLS session over a socket.
 *
 * mbedTLS is driven by us (mbedtls_ssl_set_bio with our own send/recv over
 * the non-blocking socket): libevent 2.1 has no mbedTLS bufferevent, and we
 * want every byte to go through the connection's own out-queue anyway.
 *
 * The handshake runs from the connection's io callback, a slice at a time:
 * mbedtls_ssl_handshake_step until the socket would block, the handshake is
 * over, or TLS_HANDSHAKE_SLICE_US have passed; then the connection yields
 * (it waits for a write event, which fires on the next turn) so the other
 * connections run between two expensive steps (a private-key signature,
 * an ECDH, a certificate chain check). A TLS connection must finish its
 * handshake and send CONNECT within CONN_CONNECT_TIMEOUT_MS (10 s) of being
 * accepted.
 *
 * The mbedTLS buffers of a session (2 x ~16.7 KiB for the 16 KiB
 * MBEDTLS_SSL_IN/OUT_CONTENT_LEN of Debian's build; ~33 KiB per connected
 * TLS client measured) are allocated only when the client's first bytes
 * arrive, so a connection that never speaks costs no TLS memory. See
 * docs/tls.md. */
#ifndef LOOPBOT_BROKER_TLS_H
#define LOOPBOT_BROKER_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "broker/conn.h"

struct listener_config;
struct tls_ctx;

/* A handshake slice: steps keep running while they are cheap; once this
 * much time has gone the connection yields to the others. One expensive
 * step still runs whole: ServerKeyExchange (ECDHE key + signature: ~1.5 ms
 * with an ECDSA P-256 key, ~2.6 ms with RSA-2048, measured on an x86
 * server core; several times that on a Pi) or ClientKeyExchange (ECDH,
 * ~1 ms). mbedTLS 2.28 cannot split those without MBEDTLS_ECP_RESTARTABLE,
 * which Debian's build leaves off. */
#define TLS_HANDSHAKE_SLICE_US 200u

/* True when lc asks for TLS: certfile/keyfile, or psk_hint. */
bool tls_wanted(const struct listener_config *lc);

/* Builds the TLS context of one listener: loads and checks every file
 * (certificate chain, key, CA file or path, CRL), maps tls_version and
 * ciphers. psk_file is the psk_file in force for this listener (global, or
 * the listener's own with per_listener_settings), may be NULL; the auth
 * module loads it (and reloads it on SIGHUP), and the PSK callback asks it
 * through conn_psk_key, so here it only has to be there. On error
 * logs "Error: listener on line N (port P): what: why." and returns NULL.
 * The first context seeds the one CTR_DRBG (mbedtls_entropy). */
struct tls_ctx *tls_ctx_new(const struct listener_config *lc, const char *psk_file);
/* Every connection using ctx must be closed first. NULL is fine. */
void tls_ctx_free(struct tls_ctx *ctx);

/* A session for a just-accepted fd, to pass to conn_accept. NULL when out
 * of memory. The mbedTLS buffers come later (first bytes from the peer). */
void *tls_session_new(struct tls_ctx *ctx, int fd);
/* Frees a session that conn_accept did not take (does not close fd). */
void tls_session_free(void *session);

/* The TLS transport: conn_accept with tls_session_new's result as its
 * transport data. Its close sends close_notify (best effort, never waits),
 * closes the socket and frees the session. */
extern const struct conn_transport conn_tls;

/* ---- exposed for tests ---- */

/* Maps one cipher suite name, OpenSSL style ("ECDHE-ECDSA-AES128-GCM-SHA256"),
 * IANA style ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") or mbedTLS style
 * ("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"), to an mbedTLS ciphersuite id.
 * Returns the id (> 0), or 0 if this mbedTLS does not know or enable it. */
int tls_ciphersuite_id(const char *name);
/* The subject DN of an mbedtls_x509_name list as OpenSSL's
 * X509_NAME_print_ex(..., XN_FLAG_RFC2253) prints it (what mosquitto uses
 * for use_subject_as_username): last RDN first, "CN=x,O=y", RFC 2253
 * escaping, bytes >= 0x80 and controls as \XX. name is a const
 * mbedtls_x509_name *. Returns the length, or -1 if out does not fit it. */
int tls_subject_rfc2253(const void *name, char *out, size_t cap);

#endif
