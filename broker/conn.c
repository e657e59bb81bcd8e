/* Connections: framing input, flushing output, backpressure, keepalive and
 * deferred closing, around the lead's struct client (which does no I/O).
 *
 * Lifetime rule: a struct conn is freed only by finalize(), which runs only
 * from the deferred pass (or conn_set_free). Everything else, including the
 * core_io callbacks, only marks and lists, so a conn pointer held by a
 * callback on the stack is always valid until that callback returns. */
#include "broker/conn.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/client.h"
#include "broker/coalesce.h"
#include "broker/core.h"
#include "broker/listener.h"
#include "broker/log.h"
#include "broker/mem.h"
#include "broker/outq.h"
#include "broker/timer_wheel.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "platform/platform.h"

/* ---- intrusive lists ---- */

struct dlink {
    struct dlink *prev, *next; /* next == NULL: not on a list */
};

#define CONN_OF(ptr, member) ((struct conn *)(void *)((char *)(ptr) - offsetof(struct conn, member)))

static void dl_init(struct dlink *h)
{
    h->prev = h->next = h;
}

static bool dl_empty(const struct dlink *h)
{
    return h->next == h;
}

static void dl_push(struct dlink *h, struct dlink *n)
{
    if (n->next)
        return;
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void dl_del(struct dlink *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* Moves every node of from to the empty list to. */
static void dl_take(struct dlink *from, struct dlink *to)
{
    dl_init(to);
    if (dl_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    dl_init(from);
}

static struct dlink *dl_pop(struct dlink *h)
{
    if (dl_empty(h))
        return NULL;
    struct dlink *n = h->next;
    dl_del(n);
    return n;
}

/* ---- state ---- */

enum { TM_CONNECT, TM_KEEPALIVE, TM_LINGER };
enum { FLUSH_DONE, FLUSH_MORE, FLUSH_BLOCKED, FLUSH_ERROR };

struct conn {
    struct conn_set *cs;
    struct client *client;
    struct listener *lst;
    const struct conn_transport *tp;
    void *tpd; /* the transport's per-connection state (TLS session) */
    struct loop_io io;         /* its socket: io.fd */
    struct wheel_node tm;      /* connect timeout, then keepalive, then linger */
    int close_err;
    /* Flags as bits: every byte here is paid once per idle connection. */
    unsigned timer_mode : 2;
    unsigned paused : 2;        /* not reading it: PAUSE_* bits */
    unsigned hs_want : 2;       /* LOOP_READ or LOOP_WRITE: what the handshake waits for */
    unsigned closing : 1;       /* close requested: no more input */
    unsigned clean : 1;         /* the client sent DISCONNECT: no will */
    unsigned io_dead : 1;       /* the socket failed: do not write */
    unsigned dead : 1;          /* finalize running: ignore core_io calls */
    unsigned backlog : 1;       /* pb holds a whole packet (budget or pause stopped us) */
    unsigned read_again : 1;    /* the transport holds input (TLS) */
    unsigned write_armed : 1;   /* write interest: the kernel pushed back */
    unsigned lingering : 1;     /* closing, waiting for the kernel to take the rest */
    unsigned handshaking : 1;   /* the transport's handshake (TLS) is not done */
    uint32_t packets;           /* whole packets handed to the client (wraps) */
    /* Unprocessed input in pb: a half-read packet, or what a budget left.
     * A packet is at most 256 MiB + 5, so 32 bits hold every size (and
     * six 32-bit fields in a row leave no padding). */
    uint32_t pb_len, pb_cap;
    uint32_t pb_total; /* the half-read packet's size once its header is in; 0 = unknown */
    uint8_t *pb;
    /* work: on cs->rep (input to process this turn) or, once closing, on
     * cs->cls; never both, since closing ends input. */
    struct dlink all, pend, work;
};

/* Why a connection is not being read. */
#define PAUSE_OUTPUT 1   /* its own out-queue is over the high watermark */
#define PAUSE_THROTTLE 2 /* it published into a subscriber's full queue */

struct conn_set {
    struct loop *loop;
    struct core *core;
    struct loop_defer *defer;
    uint8_t *rbuf; /* the one read buffer, CONN_READ_BUFFER bytes */
    struct dlink all;
    struct dlink pend; /* output to flush this turn */
    struct dlink rep;  /* input left in user space to process this turn */
    struct dlink cls;  /* to flush and close this turn */
    /* Throttled publishers, until congestion clears: an array, not a link
     * in every connection, since only publishers into a full queue are in
     * it (membership: PAUSE_THROTTLE). */
    struct conn **thr;
    uint32_t nthr, thr_cap;
    struct conn_stats stats;
    /* Every connection's deadline, in CONN_TICK_MS ticks, and the one
     * libevent timer that wakes the loop for the next non-empty slot. */
    struct wheel wheel;
    struct loop_timer *wheel_timer;
    uint32_t wheel_armed; /* the tick wheel_timer is set for, while pending */
    /* Wake-up coalescing: its policy, fed packets queued for clients and
     * the writes that sent them. */
    struct coalesce coalesce;
    uint64_t packets_queued, writes;
    bool shutting_down;
    bool hard; /* conn_set_free: close without flushing */
    loop_fn on_empty;
    void *on_empty_arg;
};

static void close_conn(struct conn *cn, int err);
static void on_defer(void *arg);
static void unpause(struct conn *cn, uint8_t reason);

/* ---- the TCP transport ---- */

static ssize_t tcp_read(struct conn *cn, void *buf, size_t len)
{
    return platform_sock_read(cn->io.fd, buf, len);
}

static ssize_t tcp_writev(struct conn *cn, const struct iovec *iov, int iovcnt)
{
    return platform_sock_writev(cn->io.fd, iov, iovcnt);
}

static size_t tcp_pending(struct conn *cn)
{
    return 0;
}

static void tcp_close(struct conn *cn, void *scratch, size_t scratch_len)
{
    platform_sock_close(cn->io.fd, scratch, scratch_len);
}

const struct conn_transport conn_tcp = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .pending = tcp_pending,
    .close = tcp_close,
};

int conn_fd(const struct conn *cn)
{
    return cn->io.fd;
}

void *conn_transport_data(const struct conn *cn)
{
    return cn->tpd;
}

bool conn_io_dead(const struct conn *cn)
{
    return cn->io_dead;
}

int conn_psk_key(const struct conn *cn, const uint8_t *identity, size_t len, uint8_t *key,
                 size_t cap)
{
    const struct listener_config *lc = cn->lst ? listener_config_of(cn->lst) : NULL;
    return auth_psk_key(core_auth_for(cn->cs->core, lc), identity, len, key, cap);
}

/* ---- helpers ---- */

static uint64_t now_ms(const struct conn *cn)
{
    return loop_now_ms(cn->cs->loop);
}

static void schedule(struct conn_set *cs)
{
    loop_defer_schedule(cs->defer);
}

/* ---- deadlines ---- */

/* 100 ms: a keepalive or timeout fires at most this late, and a busy wheel
 * wakes the loop at most 10 times a second. */
#define CONN_TICK_MS 100u

static uint32_t tick_at_or_after(uint64_t ms)
{
    return (uint32_t)((ms + CONN_TICK_MS - 1) / CONN_TICK_MS);
}

static void wheel_arm(struct conn_set *cs, uint32_t tick)
{
    uint64_t now = loop_now_ms(cs->loop);
    uint64_t at = (uint64_t)tick * CONN_TICK_MS;
    if (loop_timer_start(cs->wheel_timer, at > now ? at - now : 1, false) < 0) {
        log_printf(LOG_T_ERROR, "Error: cannot arm the keepalive timer.");
        return;
    }
    cs->wheel_armed = tick;
}

/* cn's deadline is ms from now (what it is for: cn->timer_mode). */
static void deadline_in(struct conn *cn, uint64_t ms)
{
    struct conn_set *cs = cn->cs;
    wheel_set(&cs->wheel, &cn->tm, tick_at_or_after(loop_now_ms(cs->loop) + ms));
    if (!loop_timer_pending(cs->wheel_timer) || (int32_t)(cn->tm.placed - cs->wheel_armed) < 0)
        wheel_arm(cs, cn->tm.placed);
}

static void on_deadline(void *ctx, struct wheel_node *n);

static void on_wheel_timer(void *arg)
{
    struct conn_set *cs = arg;
    wheel_advance(&cs->wheel, (uint32_t)(loop_now_ms(cs->loop) / CONN_TICK_MS), on_deadline, cs);
    uint32_t next;
    if (!loop_timer_pending(cs->wheel_timer) && wheel_next(&cs->wheel, &next))
        wheel_arm(cs, next);
}

static void update_interest(struct conn *cn)
{
    unsigned ev = 0;
    if (cn->handshaking) {
        ev = cn->closing ? 0 : cn->hs_want;
    } else {
        if (!cn->closing && !cn->paused && !cn->backlog)
            ev |= LOOP_READ;
        if (cn->write_armed && !cn->io_dead)
            ev |= LOOP_WRITE;
    }
    if (loop_io_set(&cn->io, ev) < 0 && !cn->closing) {
        cn->io_dead = true;
        close_conn(cn, -ERR_IO);
    }
}

static struct outq *outq_of(const struct conn *cn)
{
    return client_outq(cn->client);
}

static void pb_release(struct conn *cn)
{
    mem_free(NULL, cn->pb, cn->pb_cap);
    cn->pb = NULL;
    cn->pb_len = cn->pb_cap = cn->pb_total = 0;
}

/* Room for need bytes, growing geometrically but never past a known
 * packet size: a peer announcing 256 MB gets memory as its bytes arrive. */
static int pb_reserve(struct conn *cn, size_t need)
{
    if (need <= cn->pb_cap)
        return 0;
    size_t cap = cn->pb_cap ? cn->pb_cap * 2 : 512;
    if (cap < need)
        cap = need;
    if (cn->pb_total && cap > cn->pb_total)
        cap = cn->pb_total > need ? cn->pb_total : need;
    uint8_t *p = mem_realloc(NULL, cn->pb, cn->pb_cap, cap);
    if (!p)
        return -ERR_NOMEM;
    cn->pb = p;
    cn->pb_cap = (uint32_t)cap;
    return 0;
}

static int pb_append(struct conn *cn, const uint8_t *data, size_t len)
{
    int rc = pb_reserve(cn, cn->pb_len + len);
    if (rc < 0)
        return rc;
    memcpy(cn->pb + cn->pb_len, data, len);
    cn->pb_len += (uint32_t)len;
    return 0;
}

/* The packet size announced by a fixed header that mqtt_scan accepted as
 * "need more": 1 type byte, 1-4 length bytes. Returns false if the length
 * field is not complete yet. */
static bool header_total(const uint8_t *b, size_t len, size_t *total)
{
    uint32_t v = 0;
    for (size_t i = 1; i < len && i < 5; i++) {
        v |= (uint32_t)(b[i] & 0x7f) << (7 * (i - 1));
        if (!(b[i] & 0x80)) {
            *total = 1 + i + v;
            return true;
        }
    }
    return false;
}

/* ---- input ---- */

/* Lists cn as throttled. Without memory for the list it is not throttled
 * (it would never be woken): its messages then wait in the subscriber's
 * queue slack, as they would have in this turn anyway. */
static bool throttle_add(struct conn *cn)
{
    struct conn_set *cs = cn->cs;
    if (cs->nthr == cs->thr_cap) {
        uint32_t cap = cs->thr_cap ? cs->thr_cap * 2 : 16;
        struct conn **v = mem_realloc(NULL, cs->thr, cs->thr_cap * sizeof(*v), cap * sizeof(*v));
        if (!v)
            return false;
        cs->thr = v;
        cs->thr_cap = cap;
    }
    cs->thr[cs->nthr++] = cn;
    return true;
}

/* A throttled connection closes: out of the list (a linear search, but
 * only publishers into a full queue are listed, and only while it is). */
static void throttle_remove(struct conn *cn)
{
    struct conn_set *cs = cn->cs;
    for (uint32_t i = 0; i < cs->nthr; i++)
        if (cs->thr[i] == cn) {
            cs->thr[i] = cs->thr[--cs->nthr];
            return;
        }
}

static void check_backpressure(struct conn *cn)
{
    if (!(cn->paused & PAUSE_OUTPUT) && outq_of(cn)->bytes >= CONN_HIGH_WATER) {
        cn->paused |= PAUSE_OUTPUT;
        cn->cs->stats.backpressure_pauses++;
        log_printf(LOG_T_DEBUG, "Client %s: output over %u bytes, not reading until it drains.",
                   client_name(cn->client), CONN_HIGH_WATER);
    }
}

static void dispatch(struct conn *cn, const uint8_t *pkt, size_t len)
{
    int rc = client_on_packet(cn->client, pkt, len, now_ms(cn));
    cn->packets++;
    if (rc < 0) {
        /* -ERR_PEER_CLOSED from the client means a clean DISCONNECT. */
        if (rc == -ERR_PEER_CLOSED && !cn->closing)
            cn->clean = true;
        close_conn(cn, rc);
        return;
    }
    check_backpressure(cn);
    if (client_throttle_requested(cn->client) && !(cn->paused & PAUSE_THROTTLE) &&
        throttle_add(cn)) {
        cn->paused |= PAUSE_THROTTLE;
        log_printf(LOG_T_DEBUG, "Client %s: a subscriber's queue is full, not reading it.",
                   client_name(cn->client));
    }
}

/* core_io: a fan-out continues in the deferred pass. */
static void conn_fanout_pending(void *ctx)
{
    schedule(ctx);
}

static uint64_t conn_clock_us(void *ctx)
{
    (void)ctx;
    return platform_now_us();
}

/* core_io: no subscriber queue is over its limit now: read them again. */
static void conn_congestion_cleared(void *ctx)
{
    struct conn_set *cs = ctx;
    /* unpause only lists and schedules: the array cannot change under us. */
    uint32_t n = cs->nthr;
    cs->nthr = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct conn *cn = cs->thr[i];
        unpause(cn, PAUSE_THROTTLE);
        if (!cn->closing)
            update_interest(cn);
    }
}

static void framing_error(struct conn *cn, int err)
{
    cn->cs->stats.framing_errors++;
    log_printf(LOG_T_NOTICE, "Client %s sent a bad packet: %s", client_name(cn->client),
               mqtt_err_message(err));
    client_disconnect(cn->client, err, now_ms(cn));
    close_conn(cn, err);
}

/* Hands whole packets in data to the client until the budget, a pause or a
 * close stops it. Returns the bytes consumed. */
static size_t run_packets(struct conn *cn, const uint8_t *data, size_t len, int *budget)
{
    size_t off = 0;
    /* Fan-out counts too: one PUBLISH to 1,000 subscribers is 1,000
     * deliveries, so a read stops once it has caused a turn's worth. */
    const struct core_stats *st = core_stats(cn->cs->core);
    uint64_t sent_before = st->messages_sent;
    uint64_t clock_at = CONN_CLOCK_EVERY;
    uint64_t t0 = platform_now_us();
    while (off < len && *budget > 0 && !cn->closing && !cn->paused) {
        uint64_t sent = st->messages_sent - sent_before;
        if (sent >= clock_at) {
            if (platform_now_us() - t0 >= CONN_INPUT_STEP_US)
                sent = CONN_DELIVERIES_PER_EVENT;
            clock_at = sent + CONN_CLOCK_EVERY;
        }
        if (sent >= CONN_DELIVERIES_PER_EVENT) {
            *budget = 0;
            break;
        }
        int r = mqtt_scan(data + off, len - off, client_max_packet_in(cn->client));
        if (r == 0)
            break;
        if (r < 0) {
            framing_error(cn, r);
            break;
        }
        (*budget)--;
        dispatch(cn, data + off, (size_t)r);
        off += (size_t)r;
    }
    return off;
}

/* Moves bytes from data into the half-read packet in pb. Returns bytes
 * taken or a negative error (framing, or -ERR_NOMEM). */
static int partial_fill(struct conn *cn, const uint8_t *data, size_t len)
{
    uint32_t max = client_max_packet_in(cn->client);
    if (!cn->pb_total) {
        /* The header may straddle pb and data: look at 5 bytes of both. */
        uint8_t hdr[5];
        size_t h = cn->pb_len < 5 ? cn->pb_len : 5;
        memcpy(hdr, cn->pb, h);
        size_t add = 5 - h < len ? 5 - h : len;
        memcpy(hdr + h, data, add);
        h += add;
        int r = mqtt_scan(hdr, h, max);
        if (r < 0)
            return r;
        size_t total;
        if (r > 0)
            total = (size_t)r;
        else if (!header_total(hdr, h, &total)) {
            int rc = pb_append(cn, data, len); /* still less than a header */
            return rc < 0 ? rc : (int)len;
        }
        cn->pb_total = (uint32_t)total;
    }
    size_t need = cn->pb_total - cn->pb_len;
    size_t take = need < len ? need : len;
    int rc = pb_append(cn, data, take);
    return rc < 0 ? rc : (int)take;
}

/* pb holds unprocessed input from its start: decide whether a whole packet
 * waits (process it in the deferred pass) or only a half-read one (read
 * more). */
static void settle(struct conn *cn)
{
    cn->pb_total = 0;
    cn->backlog = false;
    if (cn->pb_len && mqtt_scan(cn->pb, cn->pb_len, client_max_packet_in(cn->client)) != 0)
        cn->backlog = true; /* a whole packet, or an error to report, in order */
    if (cn->backlog && !cn->paused) {
        dl_push(&cn->cs->rep, &cn->work);
        schedule(cn->cs);
    }
    update_interest(cn);
}

/* Input arrived (from the shared buffer): finish a half-read packet, hand
 * every whole packet over in place, keep only what is left. */
static void feed(struct conn *cn, const uint8_t *data, size_t len)
{
    int budget = CONN_PACKETS_PER_EVENT;
    if (cn->pb_len) {
        int r = partial_fill(cn, data, len);
        if (r < 0) {
            if (r == -ERR_NOMEM)
                close_conn(cn, r);
            else
                framing_error(cn, r);
            return;
        }
        data += r;
        len -= (size_t)r;
        if (!cn->pb_total || cn->pb_len < cn->pb_total)
            return; /* all of data went into the half-read packet */
        budget--;
        dispatch(cn, cn->pb, cn->pb_total);
        pb_release(cn);
        if (cn->closing)
            return;
    }
    size_t used = run_packets(cn, data, len, &budget);
    if (cn->closing || used == len)
        return;
    if (budget == 0 && !cn->paused)
        cn->cs->stats.read_yields++;
    if (pb_append(cn, data + used, len - used) < 0) {
        close_conn(cn, -ERR_NOMEM);
        return;
    }
    settle(cn);
}

/* After input: the first packets move a connection from the connect
 * timeout to its keepalive; every packet moves the keepalive deadline. */
static void after_input(struct conn *cn, uint32_t packets_before)
{
    if (cn->closing || cn->packets == packets_before)
        return;
    if (cn->timer_mode == TM_CONNECT) {
        if (!client_connected(cn->client))
            return; /* a slow CONNECT does not extend the connect timeout */
        cn->timer_mode = TM_KEEPALIVE;
    }
    uint32_t ka = client_keepalive_ms(cn->client);
    if (ka)
        deadline_in(cn, ka);
    else
        wheel_del(&cn->cs->wheel, &cn->tm);
}

static void on_readable(struct conn *cn)
{
    struct conn_set *cs = cn->cs;
    ssize_t n = cn->tp->read(cn, cs->rbuf, CONN_READ_BUFFER);
    if (n == -EAGAIN)
        return;
    if (n <= 0) {
        if (n < 0)
            cn->io_dead = true;
        close_conn(cn, n == 0 || n == -ECONNRESET ? -ERR_PEER_CLOSED : -ERR_IO);
        return;
    }
    core_stats(cs->core)->bytes_received += (uint64_t)n;
    uint32_t before = cn->packets;
    feed(cn, cs->rbuf, (size_t)n);
    after_input(cn, before);
    if (!cn->closing)
        update_interest(cn); /* a packet may have paused it */
    if (!cn->closing && cn->tp->pending(cn)) {
        cn->read_again = true;
        dl_push(&cs->rep, &cn->work);
        schedule(cs);
    }
}

/* Deferred pass: input a budget or a pause left in pb, or in the transport. */
static void reprocess(struct conn *cn)
{
    if (cn->closing || cn->paused)
        return; /* maybe_resume lists it again */
    uint32_t before = cn->packets;
    if (cn->backlog) {
        int budget = CONN_PACKETS_PER_EVENT;
        size_t used = run_packets(cn, cn->pb, cn->pb_len, &budget);
        if (cn->closing)
            return;
        if (budget == 0 && used < cn->pb_len)
            cn->cs->stats.read_yields++;
        if (used == cn->pb_len) {
            pb_release(cn);
        } else if (used) {
            memmove(cn->pb, cn->pb + used, cn->pb_len - used);
            cn->pb_len -= (uint32_t)used;
        }
        after_input(cn, before);
        settle(cn);
        /* The transport may still hold input (TLS): next turn. */
        if (cn->read_again && !cn->backlog && !cn->paused && !cn->closing) {
            dl_push(&cn->cs->rep, &cn->work);
            schedule(cn->cs);
        }
    } else if (cn->read_again) {
        cn->read_again = false;
        on_readable(cn);
    }
}

/* ---- output ---- */

static int flush(struct conn *cn, size_t budget)
{
    struct outq *q = outq_of(cn);
    if (cn->handshaking)
        return FLUSH_DONE; /* no MQTT yet: nothing to say to this peer */
    struct core_stats *st = core_stats(cn->cs->core);
    while (q->bytes) {
        if (budget == 0)
            return FLUSH_MORE;
        struct iovec iov[CONN_IOV_MAX];
        int n = outq_iov(q, iov, CONN_IOV_MAX, budget);
        size_t want = 0;
        for (int i = 0; i < n; i++)
            want += iov[i].iov_len;
        ssize_t w = cn->tp->writev(cn, iov, n);
        if (w == -EAGAIN)
            return FLUSH_BLOCKED;
        if (w < 0) {
            cn->io_dead = true;
            return FLUSH_ERROR;
        }
        outq_consume(q, (size_t)w);
        cn->cs->writes++;
        st->bytes_sent += (uint64_t)w;
        budget -= (size_t)w;
        if ((size_t)w < want)
            return FLUSH_BLOCKED;
    }
    return FLUSH_DONE;
}

/* Lifts one pause reason; with none left, input waiting in user space or
 * in the transport is processed this turn. */
static void unpause(struct conn *cn, uint8_t reason)
{
    if (!(cn->paused & reason))
        return;
    cn->paused &= (uint8_t)~reason;
    if (!cn->paused && (cn->backlog || cn->read_again) && !cn->closing) {
        dl_push(&cn->cs->rep, &cn->work);
        schedule(cn->cs);
    }
}

static void maybe_resume(struct conn *cn)
{
    if (outq_of(cn)->bytes < CONN_LOW_WATER)
        unpause(cn, PAUSE_OUTPUT);
}

static void after_flush(struct conn *cn, int r)
{
    struct conn_set *cs = cn->cs;
    if (cn->closing) {
        if (r == FLUSH_DONE || r == FLUSH_ERROR || !cn->lingering) {
            /* finished, failed, or not yet lingering: the close pass decides */
            dl_push(&cs->cls, &cn->work);
            schedule(cs);
        }
        return;
    }
    switch (r) {
    case FLUSH_DONE:
        cn->write_armed = false;
        break;
    case FLUSH_MORE:
        /* The kernel took everything the budget allowed: go on next turn,
         * from the write event if armed, else from the pending list. */
        if (!cn->write_armed) {
            dl_push(&cs->pend, &cn->pend);
            schedule(cs);
        }
        break;
    case FLUSH_BLOCKED:
        if (!cn->write_armed)
            cs->stats.write_pushbacks++;
        cn->write_armed = true;
        break;
    default:
        close_conn(cn, -ERR_IO);
        return;
    }
    maybe_resume(cn);
    update_interest(cn);
}

/* Writes chunk by chunk while the kernel takes them, for at most
 * CONN_FLUSH_STEP_US (after the first chunk). */
static int flush_step_timed(struct conn *cn)
{
    uint64_t t0 = platform_now_us();
    int r;
    do
        r = flush(cn, CONN_WRITE_CHUNK);
    while (r == FLUSH_MORE && platform_now_us() - t0 < CONN_FLUSH_STEP_US);
    return r;
}

static void on_writable(struct conn *cn)
{
    after_flush(cn, flush_step_timed(cn));
}

void conn_wants_write(void *ctx, void *conn)
{
    struct conn *cn = conn;
    (void)ctx;
    cn->cs->packets_queued++;
    if (cn->dead || cn->io_dead || cn->write_armed)
        return; /* the write event will take it */
    dl_push(&cn->cs->pend, &cn->pend);
    schedule(cn->cs);
}

/* ---- closing ---- */

static void close_conn(struct conn *cn, int err)
{
    if (cn->closing || cn->dead)
        return;
    cn->closing = true;
    cn->close_err = err;
    wheel_del(&cn->cs->wheel, &cn->tm);
    dl_del(&cn->work);
    dl_push(&cn->cs->cls, &cn->work);
    schedule(cn->cs);
    update_interest(cn);
}

void conn_close(void *ctx, void *conn, int err)
{
    (void)ctx;
    close_conn(conn, err);
}

static void finalize(struct conn *cn)
{
    struct conn_set *cs = cn->cs;
    cn->dead = true;
    dl_del(&cn->pend);
    dl_del(&cn->work);
    if (cn->paused & PAUSE_THROTTLE)
        throttle_remove(cn);
    dl_del(&cn->all);
    loop_io_fini(&cn->io);
    wheel_del(&cs->wheel, &cn->tm);
    cn->tp->close(cn, cs->rbuf, CONN_READ_BUFFER);
    int err = cn->clean ? 0 : cn->close_err;
    log_printf(LOG_T_DEBUG, "Connection of %s closed: %s.", client_name(cn->client),
               err ? mqtt_err_message(err) : "DISCONNECT");
    /* May publish a will, so may list other connections: never this one
     * (dead). */
    client_free(cn->client, err, loop_now_ms(cs->loop));
    listener_conn_closed(cn->lst);
    pb_release(cn);
    mem_free(NULL, cn, sizeof(*cn));
    cs->stats.closed++;
    cs->stats.current--;
    if (cs->shutting_down && cs->stats.current == 0 && cs->on_empty) {
        loop_fn fn = cs->on_empty;
        cs->on_empty = NULL;
        fn(cs->on_empty_arg);
    }
}

static void on_deadline(void *ctx, struct wheel_node *n)
{
    struct conn_set *cs = ctx;
    struct conn *cn = CONN_OF(n, tm);
    switch (cn->timer_mode) {
    case TM_CONNECT:
        if (cn->handshaking) {
            cs->stats.handshake_timeouts++;
            log_printf(LOG_T_NOTICE, "Client %s did not complete the %s handshake in %u s, closing.",
                       client_name(cn->client), cn->tp->name, CONN_CONNECT_TIMEOUT_MS / 1000);
            close_conn(cn, -ERR_CONNECT_TIMEOUT);
            break;
        }
        cs->stats.connect_timeouts++;
        log_printf(LOG_T_NOTICE, "Client %s sent no CONNECT in %u s, closing.",
                   client_name(cn->client), CONN_CONNECT_TIMEOUT_MS / 1000);
        client_disconnect(cn->client, -ERR_CONNECT_TIMEOUT, now_ms(cn));
        close_conn(cn, -ERR_CONNECT_TIMEOUT);
        break;
    case TM_KEEPALIVE:
        /* Not reading a client because of its own output backlog must not
         * kill it: if it sent anything meanwhile, it is alive. */
        if (cn->backlog || cn->read_again ||
            (cn->paused && platform_sock_pending(cn->io.fd) > 0)) {
            deadline_in(cn, client_keepalive_ms(cn->client));
            break;
        }
        cs->stats.keepalive_timeouts++;
        log_printf(LOG_T_NOTICE, "Client %s has exceeded timeout, disconnecting.",
                   client_name(cn->client));
        client_disconnect(cn->client, -ERR_KEEPALIVE_TIMEOUT, now_ms(cn));
        close_conn(cn, -ERR_KEEPALIVE_TIMEOUT);
        break;
    default: /* linger over: close with whatever is left unsent */
        dl_push(&cs->cls, &cn->work);
        schedule(cs);
        break;
    }
}

/* The close pass for one connection: flush what the kernel takes now; if
 * it pushes back, linger up to CONN_LINGER_MS on write events; then close. */
static void close_step(struct conn *cn)
{
    if (!cn->lingering && !cn->io_dead && !cn->cs->hard) {
        int r = flush_step_timed(cn);
        if (r == FLUSH_BLOCKED || r == FLUSH_MORE) {
            cn->lingering = true;
            cn->write_armed = true;
            cn->timer_mode = TM_LINGER;
            deadline_in(cn, CONN_LINGER_MS);
            update_interest(cn);
            return;
        }
    }
    finalize(cn);
}

/* One slice of the transport's handshake (TLS), from the io callback. */
static void handshake(struct conn *cn)
{
    struct conn_set *cs = cn->cs;
    unsigned want = 0;
    char why[320];
    why[0] = '\0';
    int r = cn->tp->handshake(cn, &want, why, sizeof(why));
    if (r == -EAGAIN) {
        cn->hs_want = (uint8_t)(want ? want : LOOP_READ);
        update_interest(cn);
        return;
    }
    if (r < 0) {
        cs->stats.handshake_failures++;
        log_printf(LOG_T_NOTICE, "Client %s: %s handshake failed: %s", client_name(cn->client),
                   cn->tp->name, why[0] ? why : "unknown error");
        cn->io_dead = true; /* nothing more to send: no close_notify either */
        close_conn(cn, -ERR_IO);
        return;
    }
    cn->handshaking = false;
    log_printf(LOG_T_DEBUG, "Client %s: %s handshake done (%s).", client_name(cn->client),
               cn->tp->name, why);
    const char *id = cn->tp->identity ? cn->tp->identity(cn) : NULL;
    if (id) {
        if (client_set_identity(cn->client, id) < 0) {
            close_conn(cn, -ERR_NOMEM);
            return;
        }
        log_printf(LOG_T_DEBUG, "Client %s: %s identity '%s' is its username.",
                   client_name(cn->client), cn->tp->name, id);
    }
    update_interest(cn);
    if (cn->tp->pending(cn)) {
        cn->read_again = true;
        dl_push(&cs->rep, &cn->work);
        schedule(cs);
    }
}

static void on_io(struct loop_io *io, unsigned events)
{
    struct conn *cn = CONN_OF(io, io);
    if (cn->handshaking) {
        if (!cn->closing)
            handshake(cn);
        return;
    }
    if (events & LOOP_WRITE)
        on_writable(cn);
    if ((events & LOOP_READ) && !cn->closing && !cn->paused && !cn->backlog)
        on_readable(cn);
}

static void flush_step(struct conn *cn)
{
    if (!cn->write_armed && !cn->io_dead)
        after_flush(cn, flush_step_timed(cn));
}

/* One phase of the deferred pass: step for the connections on list (linked
 * through their member at offset link), until budget_us has passed — after
 * at least one, so every phase moves. The time is read after each step
 * (vDSO clock, ~25 ns, against a writev or a close that costs
 * microseconds); the rest stay listed for the next turn. */
static void run_sliced(struct dlink *list, size_t link, void (*step)(struct conn *),
                       uint64_t budget_us)
{
    struct dlink work;
    struct dlink *n;
    uint64_t t0 = platform_now_us();
    dl_take(list, &work);
    while ((n = dl_pop(&work))) {
        step((struct conn *)(void *)((char *)n - link));
        if (platform_now_us() - t0 >= budget_us)
            break;
    }
    while ((n = dl_pop(&work)))
        dl_push(list, n);
}

/* A coalescing window ended: let the policy decide, and say what it
 * decided after a measurement (at most twice a minute). */
static void coalesce_window(struct conn_set *cs)
{
    struct coalesce *co = &cs->coalesce;
    struct coalesce_counts counts = {loop_turns(cs->loop), cs->packets_queued, cs->writes,
                                     platform_thread_cpu_us()};
    enum coalesce_state was = co->state;
    loop_set_wake_interval(cs->loop, coalesce_update(co, loop_now_ms(cs->loop), &counts));
    if (co->state == CO_SETTLED && was != CO_SETTLED)
        log_printf(LOG_T_INFO,
                   "Wake-up coalescing %s: %.1f us of CPU per packet with it, %.1f without.",
                   co->on ? "on" : "off", (double)co->cost_on / 1e3, (double)co->cost_off / 1e3);
}

/* A phase's slice, cut to what is left of the pass's CONN_PASS_US (0: one
 * item only), so the slices of a busy pass do not add up past it. */
static uint64_t pass_left(uint64_t pass_start, uint64_t slice_us)
{
    uint64_t spent = platform_now_us() - pass_start;
    uint64_t left = spent < CONN_PASS_US ? CONN_PASS_US - spent : 0;
    return left < slice_us ? left : slice_us;
}

/* Once per loop turn: a fan-out slice, leftover input, output, closes.
 * Each phase is sliced by time, so a fan-out to thousands of subscribers,
 * a few subscribers with 256 KiB to write each, or thousands of clients
 * leaving at once, is spread over several turns and input and timers are
 * served in between. */
static void on_defer(void *arg)
{
    struct conn_set *cs = arg;
    /* The fan-out slice first, so this pass flushes it. */
    uint64_t t0 = platform_now_us();
    bool fanout_left;
    do
        fanout_left = core_fanout_run(cs->core, loop_now_ms(cs->loop), CONN_FANOUT_CHUNK);
    while (fanout_left && platform_now_us() - t0 < CONN_FANOUT_SLICE_US);
    run_sliced(&cs->rep, offsetof(struct conn, work), reprocess, pass_left(t0, CONN_INPUT_SLICE_US));
    run_sliced(&cs->pend, offsetof(struct conn, pend), flush_step,
               pass_left(t0, CONN_FLUSH_SLICE_US));
    run_sliced(&cs->cls, offsetof(struct conn, work), close_step, pass_left(t0, CONN_CLOSE_SLICE_US));
    if (coalesce_due(&cs->coalesce, loop_now_ms(cs->loop)))
        coalesce_window(cs);
    if (fanout_left || !dl_empty(&cs->rep) || !dl_empty(&cs->pend) || !dl_empty(&cs->cls))
        schedule(cs);
}

/* ---- the set ---- */

struct conn_set *conn_set_new(struct loop *loop)
{
    struct conn_set *cs = mem_calloc(NULL, sizeof(*cs));
    if (!cs)
        return NULL;
    cs->loop = loop;
    dl_init(&cs->all);
    dl_init(&cs->pend);
    dl_init(&cs->rep);
    dl_init(&cs->cls);
    cs->rbuf = mem_alloc(NULL, CONN_READ_BUFFER);
    cs->defer = loop_defer_new(loop, "conn", on_defer, cs);
    cs->wheel_timer = loop_timer_new(loop, "keepalive", on_wheel_timer, cs);
    wheel_init(&cs->wheel, (uint32_t)(loop_now_ms(loop) / CONN_TICK_MS));
    coalesce_init(&cs->coalesce, 0, loop_now_ms(loop));
    if (!cs->rbuf || !cs->defer || !cs->wheel_timer) {
        conn_set_free(cs);
        return NULL;
    }
    return cs;
}

void conn_set_free(struct conn_set *cs)
{
    if (!cs)
        return;
    cs->hard = true;
    cs->on_empty = NULL;
    struct dlink *n;
    while ((n = dl_pop(&cs->all))) {
        struct conn *cn = CONN_OF(n, all);
        if (!cn->closing) {
            cn->closing = true;
            cn->close_err = -ERR_SHUTTING_DOWN;
        }
        finalize(cn);
    }
    loop_defer_free(cs->defer);
    loop_timer_free(cs->wheel_timer);
    mem_free(NULL, cs->thr, cs->thr_cap * sizeof(*cs->thr));
    mem_free(NULL, cs->rbuf, CONN_READ_BUFFER);
    mem_free(NULL, cs, sizeof(*cs));
}

void conn_set_io(struct conn_set *cs, struct core_io *io)
{
    memset(io, 0, sizeof(*io));
    io->ctx = cs;
    io->wants_write = conn_wants_write;
    io->close = conn_close;
    io->congestion_cleared = conn_congestion_cleared;
    io->fanout_pending = conn_fanout_pending;
    io->clock_us = conn_clock_us;
}

void conn_set_coalesce(struct conn_set *cs, uint32_t max_us)
{
    cs->coalesce.max_us = max_us;
    if (!max_us)
        loop_set_wake_interval(cs->loop, 0);
}

void conn_set_core(struct conn_set *cs, struct core *core)
{
    cs->core = core;
}

int conn_accept(struct conn_set *cs, int fd, const char *peer, struct listener *lst,
                const struct conn_transport *tp, void *tpd)
{
    struct conn *cn = mem_calloc(NULL, sizeof(*cn));
    if (!cn)
        return -ERR_NOMEM;
    cn->cs = cs;
    cn->lst = lst;
    cn->tp = tp ? tp : &conn_tcp;
    cn->tpd = tpd;
    cn->handshaking = cn->tp->handshake != NULL;
    cn->hs_want = LOOP_READ;
    /* The label names the transport in the loop's "longest callback". */
    static const struct loop_io_kind tcp_kind = {on_io, "conn"}, tls_kind = {on_io, "tls"};
    loop_io_init(&cn->io, cs->loop, fd, cn->tp == &conn_tcp ? &tcp_kind : &tls_kind);
    cn->client = client_new(cs->core, cn, peer, lst ? listener_config_of(lst) : NULL,
                            loop_now_ms(cs->loop));
    if (!cn->client || loop_io_set(&cn->io, LOOP_READ) < 0) {
        client_free(cn->client, -ERR_NOMEM, loop_now_ms(cs->loop));
        loop_io_fini(&cn->io);
        mem_free(NULL, cn, sizeof(*cn));
        return -ERR_NOMEM;
    }
    cn->timer_mode = TM_CONNECT;
    deadline_in(cn, CONN_CONNECT_TIMEOUT_MS);
    dl_push(&cs->all, &cn->all);
    cs->stats.accepted++;
    cs->stats.current++;
    return 0;
}

void conn_shutdown(struct conn_set *cs, int err, loop_fn on_empty, void *arg)
{
    cs->shutting_down = true;
    cs->on_empty = on_empty;
    cs->on_empty_arg = arg;
    for (struct dlink *n = cs->all.next; n != &cs->all; n = n->next) {
        struct conn *cn = CONN_OF(n, all);
        if (cn->closing)
            continue;
        client_disconnect(cn->client, err, loop_now_ms(cs->loop));
        close_conn(cn, err);
    }
    if (cs->stats.current == 0 && cs->on_empty) {
        cs->on_empty = NULL;
        on_empty(arg);
    }
}

size_t conn_count(const struct conn_set *cs)
{
    return (size_t)cs->stats.current;
}

const struct conn_stats *conn_get_stats(const struct conn_set *cs)
{
    return &cs->stats;
}
