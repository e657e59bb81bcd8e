/* One struct conn per accepted socket: the I/O shell around a struct client.
 *
 * Input: one loop-wide 64 KiB read buffer; whole packets go to
 * client_on_packet straight from it, and a connection owns a buffer only
 * while it holds a half-read packet (or input it was told to leave for the
 * next turn). Output: core_io.wants_write puts the connection on a pending
 * list that the deferred pass flushes with one writev per connection; a
 * write event is armed only when the kernel pushes back. A connection whose
 * out-queue is over 1 MiB is not read until it drains below 256 KiB.
 * Closing is always deferred: flush what can be flushed, close the socket,
 * then client_free, from the deferred pass.
 *
 * Bytes move through a transport (TCP, or TLS in tls.c). A transport with
 * a handshake gets the io callbacks to itself until it is done, one slice
 * per callback, within the CONNECT timeout; then its authenticated
 * identity (if any) becomes the client's username. */
#ifndef LOOPBOT_BROKER_CONN_H
#define LOOPBOT_BROKER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "broker/loop.h"

struct conn;
struct conn_set;
struct core;
struct core_io;
struct listener;

/* Limits per connection and per loop event (see conn.c for the numbers). */
#define CONN_READ_BUFFER 65536u
#define CONN_PACKETS_PER_EVENT 64
/* One read event (or one leftover-input step of the deferred pass) stops
 * before its next packet once it has run CONN_INPUT_STEP_US or caused
 * CONN_DELIVERIES_PER_EVENT deliveries (PUBLISH packets out, fan-out
 * included); the packet that crosses the line still fans out, at most
 * ROUTER_INLINE_US / ROUTER_INLINE_DELIVERIES of it at once. The clock is
 * read every CONN_CLOCK_EVERY deliveries. Time, not only a count: a
 * delivery costs ~0.4 us on average on a 2-core x86 VM, ~2.5 us when 1,000
 * subscriber queues are full and cold in cache, and several times more on
 * a Pi, so a count that is right on one machine holds the loop for
 * milliseconds on another. */
#define CONN_INPUT_STEP_US 300u
#define CONN_DELIVERIES_PER_EVENT 2048u
#define CONN_CLOCK_EVERY 64u
/* The deferred pass's slices, by time: a large fan-out's pending
 * deliveries (in chunks of CONN_FANOUT_CHUNK), leftover input, flushes,
 * closes, each after at least one item. Measured on loopback (2-core VM): a
 * small writev ~10-40 us, a 64 KiB chunk to a subscriber far behind up to
 * ~0.3 ms, a close with its session ~150-200 us (a close in a storm of
 * 10,000, up to 2-4 ms: the kernel's TCP teardown inside close()).
 * Whatever does not fit waits a turn; with CONN_PASS_US a whole pass stays
 * near 1-1.5 ms of CPU. */
#define CONN_FANOUT_SLICE_US 300u
#define CONN_FANOUT_CHUNK 64u
#define CONN_INPUT_SLICE_US 300u
#define CONN_FLUSH_SLICE_US 500u
#define CONN_CLOSE_SLICE_US 300u
/* ...and together, each phase cut to what is left of this (still at least
 * one item each): a leftover-input step of ~0.6-0.9 ms (two fan-out
 * PUBLISHes) plus a full flush slice made closed-loop passes of 1.5-2.3 ms. */
#define CONN_PASS_US 1000u
/* A flush writes CONN_WRITE_CHUNK at a time, while it has more and less
 * than CONN_FLUSH_STEP_US has passed: a 256 KiB writev to a fast
 * subscriber over loopback took ~1.2 ms of CPU (the copy and the
 * receiver's TCP work), one chunk ~0.2 ms. */
#define CONN_WRITE_CHUNK (64u * 1024u)
#define CONN_FLUSH_STEP_US 250u
#define CONN_IOV_MAX 64
#define CONN_HIGH_WATER (1024u * 1024u)
#define CONN_LOW_WATER (256u * 1024u)
#define CONN_CONNECT_TIMEOUT_MS 10000u
#define CONN_LINGER_MS 2000u

/* A byte stream under a connection: TCP, TLS, WebSocket later. The TCP
 * path pays one indirect call per operation and nothing else: handshake
 * and identity are NULL there. */
struct conn_transport {
    const char *name;
    /* Bytes read, 0 at end of stream, -errno (-EAGAIN: nothing now). */
    ssize_t (*read)(struct conn *cn, void *buf, size_t len);
    /* Bytes written, or -errno (-EAGAIN: the kernel pushed back). */
    ssize_t (*writev)(struct conn *cn, const struct iovec *iov, int iovcnt);
    /* Input the transport holds that will not wake the fd (decrypted TLS
     * records): read again without waiting for the socket. */
    size_t (*pending)(struct conn *cn);
    /* Sends what the transport owes the peer at the end (TLS close_notify,
     * never waiting), closes the socket and frees the transport data. */
    void (*close)(struct conn *cn, void *scratch, size_t scratch_len);
    /* NULL, or one slice of the transport's own handshake, run from the io
     * callback before any read or write: 0 when it is complete; -EAGAIN to
     * be called again when *want (LOOP_READ or LOOP_WRITE) is ready
     * (LOOP_WRITE also means "yielding: call me next turn"); another
     * negative value when it failed, with why (why_len bytes) set. On
     * success why may hold a summary for the log ("TLSv1.2, TLS-..."). */
    int (*handshake)(struct conn *cn, unsigned *want, char *why, size_t why_len);
    /* NULL, or the peer identity the handshake authenticated (TLS-PSK
     * identity, client certificate CN or subject), NULL if none: it becomes
     * the client's username (client_set_identity). */
    const char *(*identity)(struct conn *cn);
};

extern const struct conn_transport conn_tcp;

struct conn_stats {
    uint64_t accepted;
    uint64_t closed;
    uint64_t current;
    uint64_t read_yields;         /* a read stopped at its packet budget */
    uint64_t backpressure_pauses; /* reading stopped: out-queue over 1 MiB */
    uint64_t write_pushbacks;     /* the kernel pushed back: EV_WRITE armed */
    uint64_t keepalive_timeouts;
    uint64_t connect_timeouts;
    uint64_t framing_errors;
    uint64_t handshake_failures; /* TLS: bad handshake, plain MQTT on a TLS port... */
    uint64_t handshake_timeouts; /* TLS: handshake not done within the CONNECT timeout */
};

struct conn_set *conn_set_new(struct loop *loop);
/* Closes every connection left at once (no flushing) and frees the set. */
void conn_set_free(struct conn_set *cs);
/* The core_io that core_new needs (ctx is cs). */
void conn_set_io(struct conn_set *cs, struct core_io *io);
/* The core, once core_new has returned; before any conn_accept. */
/* Wake-up coalescing of up to max_us (config coalesce_us; 0 = never),
 * turned on and off by the policy in coalesce.h. */
void conn_set_coalesce(struct conn_set *cs, uint32_t max_us);
void conn_set_core(struct conn_set *cs, struct core *core);

/* Takes over fd (non-blocking; peer like "1.2.3.4:5678"; lst may be NULL)
 * with transport tp (NULL: conn_tcp) whose per-connection state is tpd
 * (tp->close frees it). Returns 0, or -ERR_NOMEM with fd and tpd left to
 * the caller. */
int conn_accept(struct conn_set *cs, int fd, const char *peer, struct listener *lst,
                const struct conn_transport *tp, void *tpd);
/* Graceful stop: client_disconnect(err) for every connection, then flush
 * and close each (a slow reader gets CONN_LINGER_MS). on_empty runs once
 * the last connection is closed (at once if there are none). */
void conn_shutdown(struct conn_set *cs, int err, loop_fn on_empty, void *arg);
size_t conn_count(const struct conn_set *cs);
const struct conn_stats *conn_get_stats(const struct conn_set *cs);

/* The core_io callbacks (ctx is the conn_set, conn a struct conn *). */
void conn_wants_write(void *ctx, void *conn);
void conn_close(void *ctx, void *conn, int err);

/* For transports. */
int conn_fd(const struct conn *cn);
void *conn_transport_data(const struct conn *cn);
/* Whether the socket failed (a transport's close should not write). */
bool conn_io_dead(const struct conn *cn);
/* The TLS-PSK key psk_file gives identity, for the listener cn came in on
 * (auth_psk_key on the security in force there, current after SIGHUP).
 * Returns the key length, -ERR_NOT_FOUND or -ERR_NOSPACE. */
int conn_psk_key(const struct conn *cn, const uint8_t *identity, size_t len, uint8_t *key,
                 size_t cap);

#endif
