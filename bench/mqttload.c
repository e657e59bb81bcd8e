/* mqttload: an MQTT 3.1.1 / 5.0 load generator for benchmarking brokers.
 *
 * One thread, one epoll set, every connection non-blocking. It has its own
 * tiny encoder/decoder on purpose: it must not share the broker's codec, or
 * a codec bug would be invisible to it. See docs/performance.md.
 *
 * Scenarios:
 *   conn    N idle connections (optionally S subscriptions each); broker RSS
 *   fanin   P publishers -> 1 subscriber on a wildcard filter
 *   fanout  1 publisher -> S subscribers on one topic
 *   pairs   N publisher/subscriber pairs, one topic per pair
 *
 * Every payload carries magic, publisher id, sequence number and the send
 * time (CLOCK_MONOTONIC ns). Subscribers check per-publisher order, loss and
 * duplicates and record latency in a log-linear histogram.
 *
 * Output: one line "RESULT key=value ..." on stdout, then a human summary.
 * All traffic goes to 127.0.0.1; every run stops by itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------- options ---------- */

enum scen { SC_CONN, SC_FANIN, SC_FANOUT, SC_PAIRS };
static const char *scen_name[] = {"conn", "fanin", "fanout", "pairs"};

static struct {
    enum scen scen;
    int port;
    int n;             /* conn: connections; pairs: pairs */
    int pubs;          /* fanin */
    int subs;          /* fanout */
    int subs_per_conn; /* conn */
    int qos;
    int proto; /* 4 or 5 */
    int payload;
    double duration, warmup, drain;
    double rate; /* total msg/s, 0 = closed loop */
    int window;
    int keepalive;
    int broker_pid;
    const char *label;
    int max_pending; /* connection handshakes outstanding at once */
    double connect_timeout;
    int sched; /* 'b': SCHED_BATCH (default), 'n': leave the policy alone */
    int window_signal; /* sent to broker_pid as the window starts and ends; 0 = none */
} opt = {
    .scen = SC_FANIN, .port = 1883, .n = 100, .pubs = 100, .subs = 100, .qos = 0,
    .proto = 4, .payload = 64, .duration = 10, .warmup = 2, .drain = 5, .rate = 0,
    .window = 10, .keepalive = 60, .broker_pid = 0, .label = "-", .max_pending = 200,
    .connect_timeout = 120, .sched = 'b',
};

/* ---------- small helpers ---------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mqttload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q && n)
        die("out of memory");
    return q;
}

static void *xcalloc(size_t a, size_t b)
{
    void *q = calloc(a, b);
    if (!q)
        die("out of memory");
    return q;
}

static int errors_printed;
static void warnx_limited(const char *fmt, ...)
{
    if (errors_printed++ >= 20)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mqttload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* Growable bitmap indexed by sequence number. */
struct bits {
    uint8_t *b;
    uint32_t cap; /* bits */
};

static bool bits_test_set(struct bits *s, uint32_t i)
{
    if (i >= s->cap) {
        uint32_t nc = s->cap ? s->cap : 4096;
        while (nc <= i)
            nc *= 2;
        s->b = xrealloc(s->b, nc / 8);
        memset(s->b + s->cap / 8, 0, (nc - s->cap) / 8);
        s->cap = nc;
    }
    uint8_t m = (uint8_t)(1u << (i & 7));
    bool was = s->b[i >> 3] & m;
    s->b[i >> 3] |= m;
    return was;
}

static bool bits_test(const struct bits *s, uint32_t i)
{
    return i < s->cap && (s->b[i >> 3] & (1u << (i & 7)));
}

/* Log-linear latency histogram: exact below 64 ns, then 32 sub-buckets per
 * power of two (about 3% resolution). */
#define HBUCKETS 2048
static uint64_t hist[HBUCKETS];
static uint64_t hist_n, hist_max;

static int hidx(uint64_t v)
{
    if (v < 64)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 5;
    return 64 + (shift - 1) * 32 + (int)((v >> shift) - 32);
}

static uint64_t hval(int idx) /* midpoint of a bucket */
{
    if (idx < 64)
        return (uint64_t)idx;
    int shift = (idx - 64) / 32 + 1;
    uint64_t top = (uint64_t)((idx - 64) % 32 + 32);
    return (top << shift) + ((1ull << shift) >> 1);
}

static void hist_add(uint64_t v)
{
    hist[hidx(v)]++;
    hist_n++;
    if (v > hist_max)
        hist_max = v;
}

static uint64_t hist_pct(double p)
{
    if (!hist_n)
        return 0;
    uint64_t want = (uint64_t)(p * (double)hist_n);
    if (want < 1)
        want = 1;
    uint64_t acc = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        acc += hist[i];
        if (acc >= want) {
            uint64_t v = hval(i);
            return v > hist_max ? hist_max : v;
        }
    }
    return hist_max;
}

/* ---------- /proc readers ---------- */

static long proc_rss_kb(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static double proc_cpu_s(int pid) /* utime + stime, seconds */
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p += 2; /* state is field 3 */
    unsigned long long ut = 0, st = 0;
    /* fields 3..13 skipped, 14 utime, 15 stime */
    if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---------- connections ---------- */

enum role { R_IDLE, R_PUB, R_SUB };
enum cstate { CS_NEW, CS_CONNECTING, CS_CONNACK, CS_UP, CS_DEAD };

#define SLOTS 1024 /* in-flight table per publisher, power of two */
struct slot {
    uint32_t seq;
    uint16_t pid;
    uint8_t st; /* 0 free, 1 awaiting PUBACK/PUBREC, 2 awaiting PUBCOMP */
};

struct track { /* what subscriber s saw from publisher p */
    struct bits seen;
    uint32_t max_seen;
    bool any;
};

struct conn {
    int fd;
    int idx;
    uint8_t role, state;
    bool dirty, blocked;
    uint32_t ev;
    int retries;
    uint8_t *rbuf; /* leftover partial packet */
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t woff, wlen, wcap;
    uint64_t last_tx;
    char topic[48];
    uint16_t topic_len;
    uint16_t recv_max; /* from a v5 CONNACK */
    int subacks_wanted;
    /* publisher */
    int pub_id;
    uint32_t next_seq;
    double tokens, rate_each;
    int inflight;
    uint16_t next_pid;
    struct slot *slots;
    struct bits acked;
    /* subscriber */
    int sub_id;
    struct track **track; /* [npubs] */
    uint8_t *q2;          /* 65536-bit set of QoS 2 ids awaiting PUBREL */
};

static struct conn *conns;
static int nconns, npubs, nsubs;
static struct conn **pubs, **subs;
static int epfd;
static uint8_t *gbuf;
#define GBUF_SIZE (1 << 20)
static struct conn **dirty;
static int ndirty;

enum phase { PH_CONNECT, PH_SUBSCRIBE, PH_SETTLE, PH_HOLD, PH_WARMUP, PH_WINDOW, PH_DRAIN, PH_DONE };
static enum phase phase;
static uint64_t phase_t0, t_now;
static uint64_t win_start, win_end;

static struct {
    uint64_t sent, sent_win, acks, refused, received, recv_win, dups, reorder, misrouted;
    uint64_t bad_payload, proto_err, disconnects, connect_fail, suback_fail, pings, pingresps;
    uint64_t unexpected_ack, qos_downgrade, last_rx;
    int up, pending, opened;
    int subacks_left;
} st;

static void set_events(struct conn *c, uint32_t ev)
{
    if (c->ev == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
        die("epoll_ctl MOD: %s", strerror(errno));
    c->ev = ev;
}

static uint8_t *wreserve(struct conn *c, size_t n)
{
    if (c->woff && c->woff == c->wlen)
        c->woff = c->wlen = 0;
    if (c->wlen + n > c->wcap) {
        if (c->woff) {
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
        }
        if (c->wlen + n > c->wcap) {
            size_t nc = c->wcap ? c->wcap : 256;
            while (nc < c->wlen + n)
                nc *= 2;
            c->wbuf = xrealloc(c->wbuf, nc);
            c->wcap = nc;
        }
    }
    if (!c->dirty) {
        c->dirty = true;
        dirty[ndirty++] = c;
    }
    return c->wbuf + c->wlen;
}

static uint8_t *put_varint(uint8_t *p, uint32_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        *p++ = b | (v ? 0x80 : 0);
    } while (v);
    return p;
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
    *p++ = (uint8_t)(v >> 8);
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t n)
{
    p = put16(p, (uint16_t)n);
    memcpy(p, s, n);
    return p + n;
}

static void conn_close(struct conn *c, bool count_disconnect, const char *why);

static void send_connect(struct conn *c)
{
    char id[40];
    int idn = snprintf(id, sizeof(id), "mqttload-%d-%d", (int)getpid(), c->idx);
    size_t rl = 2 + 4 + 1 + 1 + 2 + (opt.proto == 5 ? 1 : 0) + 2 + (size_t)idn;
    uint8_t *p = wreserve(c, rl + 5), *s = p;
    *p++ = 0x10;
    p = put_varint(p, (uint32_t)rl);
    p = put_str(p, "MQTT", 4);
    *p++ = (uint8_t)opt.proto;
    *p++ = 0x02; /* clean session / clean start */
    p = put16(p, (uint16_t)opt.keepalive);
    if (opt.proto == 5)
        *p++ = 0; /* no properties */
    p = put_str(p, id, (size_t)idn);
    c->wlen += (size_t)(p - s);
}

static void send_subscribe(struct conn *c, uint16_t pid, const char *filter, int qos)
{
    size_t fl = strlen(filter);
    size_t rl = 2 + (opt.proto == 5 ? 1 : 0) + 2 + fl + 1;
    uint8_t *p = wreserve(c, rl + 5), *s = p;
    *p++ = 0x82;
    p = put_varint(p, (uint32_t)rl);
    p = put16(p, pid);
    if (opt.proto == 5)
        *p++ = 0;
    p = put_str(p, filter, fl);
    *p++ = (uint8_t)qos;
    c->wlen += (size_t)(p - s);
    c->subacks_wanted++;
    st.subacks_left++;
}

static void send_small(struct conn *c, uint8_t h, uint16_t pid) /* PUBACK/REC/REL/COMP */
{
    uint8_t *p = wreserve(c, 4);
    p[0] = h;
    p[1] = 2;
    put16(p + 2, pid);
    c->wlen += 4;
}

static void send_2byte(struct conn *c, uint8_t h) /* PINGREQ, DISCONNECT */
{
    uint8_t *p = wreserve(c, 2);
    p[0] = h;
    p[1] = 0;
    c->wlen += 2;
}

#define MAGIC 0x4c425031u /* "LBP1" */

static void send_publish(struct conn *c, uint16_t pid, uint32_t seq)
{
    size_t rl = 2 + c->topic_len + (opt.qos ? 2 : 0) + (opt.proto == 5 ? 1 : 0) + (size_t)opt.payload;
    uint8_t *p = wreserve(c, rl + 5), *s = p;
    *p++ = (uint8_t)(0x30 | (opt.qos << 1));
    p = put_varint(p, (uint32_t)rl);
    p = put_str(p, c->topic, c->topic_len);
    if (opt.qos)
        p = put16(p, pid);
    if (opt.proto == 5)
        *p++ = 0;
    uint32_t hdr[3] = {MAGIC, (uint32_t)c->pub_id, seq};
    uint64_t ts = now_ns();
    memcpy(p, hdr, 12);
    memcpy(p + 12, &ts, 8);
    memset(p + 20, 0, (size_t)opt.payload - 20);
    p += opt.payload;
    c->wlen += (size_t)(p - s);
}

static void flush_conn(struct conn *c)
{
    while (c->wlen > c->woff) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            c->last_tx = t_now;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            c->blocked = true;
            set_events(c, EPOLLIN | EPOLLOUT);
            return;
        }
        conn_close(c, true, n < 0 ? strerror(errno) : "send returned 0");
        return;
    }
    c->woff = c->wlen = 0;
    c->blocked = false;
    if (c->wcap > 65536) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }
    if (c->state == CS_UP || c->state == CS_CONNACK)
        set_events(c, EPOLLIN);
}

static void flush_dirty(void)
{
    for (int i = 0; i < ndirty; i++) {
        struct conn *c = dirty[i];
        c->dirty = false;
        if (c->state != CS_DEAD && c->state != CS_CONNECTING && !c->blocked)
            flush_conn(c);
    }
    ndirty = 0;
}

/* ---------- publishing ---------- */

static bool publishing(void)
{
    return phase == PH_WARMUP || phase == PH_WINDOW;
}

static int inflight_limit(const struct conn *c)
{
    int lim = opt.rate > 0 ? SLOTS : opt.window;
    if (lim > SLOTS)
        lim = SLOTS;
    if (c->recv_max && c->recv_max < lim)
        lim = c->recv_max;
    return lim;
}

static void pump(struct conn *c)
{
    if (c->state != CS_UP || !publishing())
        return;
    int lim = inflight_limit(c);
    int burst = 0;
    for (;;) {
        if (opt.rate > 0 && c->tokens < 1.0)
            return;
        if (opt.rate <= 0 && opt.qos == 0) {
            /* closed loop QoS 0: keep the socket full, stop at EAGAIN */
            if (c->blocked || c->wlen - c->woff >= 16384 || ++burst > 256)
                return;
        }
        uint16_t pid = 0;
        if (opt.qos) {
            if (c->inflight >= lim)
                return;
            pid = c->next_pid;
            struct slot *sl = &c->slots[pid & (SLOTS - 1)];
            if (sl->st)
                return; /* id's slot still busy: wait */
            c->next_pid = (uint16_t)(pid == 65535 ? 1 : pid + 1);
            sl->st = 1;
            sl->pid = pid;
            sl->seq = c->next_seq;
            c->inflight++;
        }
        send_publish(c, pid, c->next_seq);
        c->next_seq++;
        st.sent++;
        if (phase == PH_WINDOW)
            st.sent_win++;
        if (opt.rate > 0)
            c->tokens -= 1.0;
    }
}

static void on_ack(struct conn *c, int type, uint16_t pid, int reason)
{
    struct slot *sl = c->slots ? &c->slots[pid & (SLOTS - 1)] : NULL;
    if (c->role != R_PUB || !sl || sl->pid != pid || sl->st == 0) {
        st.unexpected_ack++;
        warnx_limited("conn %d: unexpected ack type %d for packet id %u", c->idx, type, pid);
        return;
    }
    if (type == 4 || type == 7) { /* PUBACK, PUBCOMP */
        if ((type == 4 && opt.qos != 1) || (type == 7 && sl->st != 2)) {
            st.unexpected_ack++;
            warnx_limited("conn %d: ack type %d in slot state %d", c->idx, type, sl->st);
            return;
        }
        if (reason >= 0x80)
            st.refused++;
        else {
            bits_test_set(&c->acked, sl->seq);
            st.acks++;
        }
        sl->st = 0;
        c->inflight--;
        pump(c);
    } else if (type == 5) { /* PUBREC */
        if (opt.qos != 2) {
            st.unexpected_ack++;
            return;
        }
        if (reason >= 0x80) {
            st.refused++;
            sl->st = 0;
            c->inflight--;
            pump(c);
            return;
        }
        sl->st = 2;
        send_small(c, 0x62, pid);
    }
}

/* ---------- receiving ---------- */

static bool sub_expects(const struct conn *s, int pub_id)
{
    return opt.scen != SC_PAIRS || s->sub_id == pub_id;
}

static void deliver(struct conn *c, const uint8_t *pl, size_t n)
{
    uint32_t hdr[3];
    uint64_t ts;
    if (n < 20) {
        st.bad_payload++;
        return;
    }
    memcpy(hdr, pl, 12);
    memcpy(&ts, pl + 12, 8);
    if (hdr[0] != MAGIC || hdr[1] >= (uint32_t)npubs) {
        st.bad_payload++;
        return;
    }
    int p = (int)hdr[1];
    uint32_t seq = hdr[2];
    if (!sub_expects(c, p)) {
        st.misrouted++;
        return;
    }
    struct track *t = c->track[p];
    if (!t)
        t = c->track[p] = xcalloc(1, sizeof(*t));
    if (bits_test_set(&t->seen, seq)) {
        st.dups++;
        warnx_limited("duplicate: subscriber %d got seq %u of publisher %d again", c->sub_id, seq, p);
        return;
    }
    if (t->any && seq < t->max_seen)
        st.reorder++;
    if (!t->any || seq > t->max_seen)
        t->max_seen = seq;
    t->any = true;
    st.received++;
    st.last_rx = t_now;
    if (phase == PH_WINDOW) {
        st.recv_win++;
        uint64_t now = now_ns();
        hist_add(now > ts ? now - ts : 0);
    }
}

/* MQTT 5 properties: skip them, reading Receive Maximum if present. */
static int get_varint(const uint8_t *p, size_t n, uint32_t *v, size_t *used)
{
    uint32_t val = 0;
    for (size_t i = 0; i < 4; i++) {
        if (i >= n)
            return 0; /* need more */
        val |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = val;
            *used = i + 1;
            return 1;
        }
    }
    return -1;
}

static int skip_props(const uint8_t *p, size_t n, size_t *used, uint16_t *recv_max)
{
    uint32_t len;
    size_t vl;
    if (get_varint(p, n, &len, &vl) != 1 || vl + len > n)
        return -1;
    *used = vl + len;
    const uint8_t *q = p + vl, *end = q + len;
    while (q < end) {
        uint8_t id = *q++;
        size_t need;
        switch (id) {
        case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2a:
            need = 1;
            break;
        case 0x13: case 0x21: case 0x22: case 0x23:
            need = 2;
            break;
        case 0x02: case 0x11: case 0x18: case 0x27:
            need = 4;
            break;
        case 0x0b: {
            uint32_t dummy;
            size_t u;
            if (get_varint(q, (size_t)(end - q), &dummy, &u) != 1)
                return -1;
            need = u;
            break;
        }
        case 0x03: case 0x08: case 0x12: case 0x15: case 0x1a: case 0x1c: case 0x1f:
        case 0x09: case 0x16:
            if (end - q < 2)
                return -1;
            need = 2u + ((size_t)q[0] << 8 | q[1]);
            break;
        case 0x26: {
            if (end - q < 2)
                return -1;
            size_t a = 2u + ((size_t)q[0] << 8 | q[1]);
            if ((size_t)(end - q) < a + 2)
                return -1;
            need = a + 2u + ((size_t)q[a] << 8 | q[a + 1]);
            break;
        }
        default:
            return -1;
        }
        if ((size_t)(end - q) < need)
            return -1;
        if (id == 0x21 && recv_max)
            *recv_max = (uint16_t)(q[0] << 8 | q[1]);
        q += need;
    }
    return 0;
}

static void proto_error(struct conn *c, const char *what)
{
    st.proto_err++;
    warnx_limited("conn %d: protocol error: %s", c->idx, what);
    conn_close(c, true, what);
}

static void handle_packet(struct conn *c, uint8_t h, const uint8_t *b, size_t n)
{
    int type = h >> 4;
    switch (type) {
    case 2: { /* CONNACK */
        if (c->state != CS_CONNACK || n < 2)
            return proto_error(c, "unexpected or short CONNACK");
        if (b[1] != 0) {
            st.connect_fail++;
            warnx_limited("conn %d: CONNACK refused, code 0x%02x", c->idx, b[1]);
            c->retries = 99; /* an answer, not a connect storm: no retry */
            return conn_close(c, true, "connack refused");
        }
        if (opt.proto == 5) {
            size_t used;
            if (skip_props(b + 2, n - 2, &used, &c->recv_max) < 0)
                return proto_error(c, "bad CONNACK properties");
        }
        c->state = CS_UP;
        st.up++;
        st.pending--;
        return;
    }
    case 3: { /* PUBLISH */
        int qos = (h >> 1) & 3;
        if (c->role != R_SUB || qos == 3 || n < 2)
            return proto_error(c, "unexpected PUBLISH");
        size_t tl = (size_t)b[0] << 8 | b[1], off = 2 + tl;
        uint16_t pid = 0;
        if (qos) {
            if (off + 2 > n)
                return proto_error(c, "short PUBLISH");
            pid = (uint16_t)(b[off] << 8 | b[off + 1]);
            off += 2;
            if (pid == 0)
                return proto_error(c, "PUBLISH with packet id 0");
        }
        if (off > n)
            return proto_error(c, "short PUBLISH");
        if (opt.proto == 5) {
            size_t used;
            if (skip_props(b + off, n - off, &used, NULL) < 0)
                return proto_error(c, "bad PUBLISH properties");
            off += used;
        }
        if (qos != opt.qos)
            st.qos_downgrade++;
        if (qos == 2) {
            if (!c->q2)
                c->q2 = xcalloc(8192, 1);
            uint8_t m = (uint8_t)(1u << (pid & 7));
            if (!(c->q2[pid >> 3] & m)) {
                c->q2[pid >> 3] |= m;
                deliver(c, b + off, n - off);
            } /* else: a resend before PUBREL, not a new delivery */
            send_small(c, 0x50, pid);
        } else {
            deliver(c, b + off, n - off);
            if (qos == 1)
                send_small(c, 0x40, pid);
        }
        return;
    }
    case 4: case 5: case 7: { /* PUBACK PUBREC PUBCOMP */
        if (n < 2)
            return proto_error(c, "short ack");
        on_ack(c, type, (uint16_t)(b[0] << 8 | b[1]), n >= 3 ? b[2] : 0);
        return;
    }
    case 6: { /* PUBREL */
        if (n < 2 || (h & 0x0f) != 2)
            return proto_error(c, "bad PUBREL");
        uint16_t pid = (uint16_t)(b[0] << 8 | b[1]);
        if (c->q2)
            c->q2[pid >> 3] &= (uint8_t)~(1u << (pid & 7));
        send_small(c, 0x70, pid);
        return;
    }
    case 9: { /* SUBACK */
        if (n < 3)
            return proto_error(c, "short SUBACK");
        size_t off = 2;
        if (opt.proto == 5) {
            size_t used;
            if (skip_props(b + 2, n - 2, &used, NULL) < 0)
                return proto_error(c, "bad SUBACK properties");
            off += used;
        }
        for (; off < n; off++) {
            if (b[off] >= 0x80) {
                st.suback_fail++;
                warnx_limited("conn %d: subscription refused 0x%02x", c->idx, b[off]);
            } else if (b[off] < opt.qos && c->role == R_SUB) {
                st.qos_downgrade++;
            }
        }
        if (c->subacks_wanted > 0) {
            c->subacks_wanted--;
            st.subacks_left--;
        }
        return;
    }
    case 13:
        st.pingresps++;
        return;
    case 14:
        warnx_limited("conn %d: DISCONNECT from broker, reason 0x%02x", c->idx, n ? b[0] : 0);
        return conn_close(c, true, "DISCONNECT from broker");
    default:
        return proto_error(c, "unexpected packet type");
    }
}

static void on_readable(struct conn *c)
{
    for (int round = 0; round < 4 && c->state != CS_DEAD; round++) {
        size_t have = c->rlen;
        if (have)
            memcpy(gbuf, c->rbuf, have);
        ssize_t n = recv(c->fd, gbuf + have, GBUF_SIZE - have, 0);
        if (n == 0) {
            if (phase != PH_DONE)
                warnx_limited("conn %d: closed by broker", c->idx);
            return conn_close(c, true, "eof");
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            return conn_close(c, true, strerror(errno));
        }
        size_t len = have + (size_t)n, off = 0;
        while (c->state != CS_DEAD) {
            if (len - off < 2)
                break;
            uint32_t rl;
            size_t vl;
            int r = get_varint(gbuf + off + 1, len - off - 1, &rl, &vl);
            if (r < 0)
                return proto_error(c, "bad remaining length");
            if (r == 0 || len - off < 1 + vl + rl)
                break;
            if (1 + vl + rl > GBUF_SIZE / 2)
                return proto_error(c, "packet too large");
            handle_packet(c, gbuf[off], gbuf + off + 1 + vl, rl);
            off += 1 + vl + rl;
        }
        if (c->state == CS_DEAD)
            return;
        c->rlen = len - off;
        if (c->rlen) {
            if (c->rlen > c->rcap) {
                c->rbuf = xrealloc(c->rbuf, c->rlen);
                c->rcap = c->rlen;
            }
            memcpy(c->rbuf, gbuf + off, c->rlen);
        }
        if ((size_t)n < GBUF_SIZE - have)
            return; /* drained */
    }
}

/* ---------- connection lifecycle ---------- */

static void conn_open(struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s (connections open: %d)", strerror(errno), st.up);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->role == R_PUB && opt.rate <= 0 && opt.qos == 0) {
        /* closed loop QoS 0 publishes until EAGAIN: keep the kernel's send
         * buffer small so the backlog (and so the latency) stays bounded */
        int sb = 65536;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->ev = EPOLLOUT;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
        die("epoll_ctl ADD: %s", strerror(errno));
    int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    if (r < 0 && errno != EINPROGRESS) {
        warnx_limited("connect: %s", strerror(errno));
        conn_close(c, false, "connect");
    }
}

static void conn_close(struct conn *c, bool count_disconnect, const char *why)
{
    if (c->state == CS_DEAD)
        return;
    bool handshake = c->state == CS_CONNECTING || c->state == CS_CONNACK || c->state == CS_NEW;
    if (c->state == CS_UP)
        st.up--;
    else
        st.pending--;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = CS_DEAD;
    c->woff = c->wlen = 0;
    c->rlen = 0;
    if (phase == PH_DONE)
        return;
    if (handshake && phase == PH_CONNECT && c->retries < 5) {
        c->retries++; /* refused or reset during a connect storm: try again */
        c->state = CS_NEW;
        st.opened--;
        return;
    }
    if (count_disconnect) {
        st.disconnects++;
        warnx_limited("conn %d lost: %s", c->idx, why);
    }
}

static void on_event(struct conn *c, uint32_t ev)
{
    if (c->state == CS_DEAD || c->state == CS_NEW)
        return;
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            warnx_limited("conn %d: connect: %s", c->idx, strerror(err));
            return conn_close(c, false, "connect");
        }
        if (!(ev & EPOLLOUT))
            return;
        c->state = CS_CONNACK;
        send_connect(c);
        flush_conn(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
    if (c->state != CS_DEAD && (ev & EPOLLOUT)) {
        c->blocked = false;
        flush_conn(c);
        if (c->role == R_PUB)
            pump(c);
    }
}

/* ---------- scenario setup ---------- */

static void setup(void)
{
    switch (opt.scen) {
    case SC_CONN:
        nconns = opt.n;
        npubs = nsubs = 0;
        break;
    case SC_FANIN:
        npubs = opt.pubs;
        nsubs = 1;
        nconns = npubs + 1;
        break;
    case SC_FANOUT:
        npubs = 1;
        nsubs = opt.subs;
        nconns = nsubs + 1;
        break;
    case SC_PAIRS:
        npubs = nsubs = opt.n;
        nconns = 2 * opt.n;
        break;
    }
    conns = xcalloc((size_t)nconns, sizeof(*conns));
    dirty = xcalloc((size_t)nconns, sizeof(*dirty));
    pubs = xcalloc((size_t)npubs + 1, sizeof(*pubs));
    subs = xcalloc((size_t)nsubs + 1, sizeof(*subs));
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->idx = i;
        c->fd = -1;
        c->state = CS_NEW;
        c->role = R_IDLE;
    }
    double each = npubs ? opt.rate / npubs : 0;
    for (int i = 0; i < npubs; i++) {
        struct conn *c = &conns[i];
        c->role = R_PUB;
        c->pub_id = i;
        c->next_pid = 1;
        c->slots = xcalloc(SLOTS, sizeof(struct slot));
        c->rate_each = each;
        c->tokens = (double)i / npubs; /* spread the sends over one period */
        if (opt.scen == SC_FANIN)
            snprintf(c->topic, sizeof(c->topic), "bench/fanin/%d", i);
        else if (opt.scen == SC_FANOUT)
            snprintf(c->topic, sizeof(c->topic), "bench/fanout");
        else
            snprintf(c->topic, sizeof(c->topic), "bench/pair/%d", i);
        c->topic_len = (uint16_t)strlen(c->topic);
        pubs[i] = c;
    }
    for (int i = 0; i < nsubs; i++) {
        struct conn *c = &conns[npubs + i];
        c->role = R_SUB;
        c->sub_id = i;
        c->track = xcalloc((size_t)npubs, sizeof(*c->track));
        subs[i] = c;
    }
}

static void start_subscribing(void)
{
    char f[64];
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state != CS_UP)
            continue;
        if (c->role == R_SUB) {
            if (opt.scen == SC_FANIN)
                snprintf(f, sizeof(f), "bench/fanin/+");
            else if (opt.scen == SC_FANOUT)
                snprintf(f, sizeof(f), "bench/fanout");
            else
                snprintf(f, sizeof(f), "bench/pair/%d", c->sub_id);
            send_subscribe(c, 1, f, opt.qos);
        } else if (c->role == R_IDLE) {
            for (int j = 0; j < opt.subs_per_conn; j++) {
                snprintf(f, sizeof(f), "bench/idle/%d/%d", i, j);
                send_subscribe(c, (uint16_t)(j + 1), f, opt.qos);
            }
        }
    }
}

static void keepalive_scan(void)
{
    uint64_t half = (uint64_t)opt.keepalive * 500000000ull;
    if (!opt.keepalive)
        return;
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state == CS_UP && t_now - c->last_tx > half) {
            send_2byte(c, 0xc0);
            st.pings++;
        }
    }
}

static bool drained(void)
{
    for (int i = 0; i < npubs; i++)
        if (pubs[i]->inflight && pubs[i]->state == CS_UP)
            return false;
    uint64_t fan = opt.scen == SC_FANOUT ? (uint64_t)nsubs : 1;
    uint64_t expected = 0;
    for (int i = 0; i < npubs; i++)
        expected += (uint64_t)pubs[i]->next_seq * fan;
    if (st.received >= expected)
        return true;
    /* nothing more is coming: QoS 0 drops, or lost messages */
    uint64_t quiet = opt.qos ? 1000000000ull : 300000000ull;
    return t_now - (st.last_rx > phase_t0 ? st.last_rx : phase_t0) > quiet;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: mqttload SCENARIO [options]\n"
            "  SCENARIO: conn | fanin | fanout | pairs\n"
            "  -p, --port N           broker port on 127.0.0.1 (1883)\n"
            "  -n N                   conn: connections; pairs: pairs (100)\n"
            "  --pubs N               fanin: publishers (100)\n"
            "  --subs N               fanout: subscribers (100)\n"
            "  --subs-per-conn S      conn: subscriptions per connection (0)\n"
            "  -q, --qos 0|1|2        (0)\n"
            "  --proto 4|5            MQTT 3.1.1 or 5 (4)\n"
            "  --payload BYTES        payload size, >= 20 (64)\n"
            "  --duration S           measurement window / idle hold (10)\n"
            "  --warmup S             before the window (2)\n"
            "  --drain S              at most, after the window (5)\n"
            "  --rate R               total msg/s, 0 = closed loop (0)\n"
            "  --window W             closed loop: unacked QoS>0 messages per publisher (10)\n"
            "  --keepalive S          (60)\n"
            "  --broker-pid PID       read the broker's RSS and CPU from /proc\n"
            "  --label NAME           copied into the result line\n"
            "  --max-pending N        connection handshakes in progress at once (200)\n"
            "  --connect-timeout S    (120)\n"
            "  --sched batch|normal   the generator's scheduling policy (batch: its wakeups\n"
            "                         never preempt the broker under test)\n"
            "  --window-signal usr2   send SIGUSR2 to --broker-pid as the window starts and\n"
            "                         ends (loopbot then logs its loop statistics for it)\n");
    exit(2);
}

static double num(const char *s, const char *name)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || v < 0)
        die("bad value for %s: '%s'", name, s);
    return v;
}

static void parse_args(int argc, char **argv)
{
    if (argc < 2)
        usage();
    int k;
    for (k = 0; k < 4; k++)
        if (!strcmp(argv[1], scen_name[k]))
            break;
    if (k == 4)
        usage();
    opt.scen = (enum scen)k;
    if (opt.scen == SC_CONN)
        opt.n = 1000;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(s1, s2) ((!strcmp(a, s1) || (s2[0] && !strcmp(a, s2))) && (v || (usage(), 0)) && ++i)
        if (ARG("-p", "--port")) opt.port = (int)num(v, a);
        else if (ARG("-n", "--conns")) opt.n = (int)num(v, a);
        else if (ARG("--pubs", "")) opt.pubs = (int)num(v, a);
        else if (ARG("--subs", "")) opt.subs = (int)num(v, a);
        else if (ARG("--subs-per-conn", "")) opt.subs_per_conn = (int)num(v, a);
        else if (ARG("-q", "--qos")) opt.qos = (int)num(v, a);
        else if (ARG("--proto", "")) opt.proto = (int)num(v, a);
        else if (ARG("--payload", "")) opt.payload = (int)num(v, a);
        else if (ARG("--duration", "")) opt.duration = num(v, a);
        else if (ARG("--warmup", "")) opt.warmup = num(v, a);
        else if (ARG("--drain", "")) opt.drain = num(v, a);
        else if (ARG("--rate", "")) opt.rate = num(v, a);
        else if (ARG("--window", "")) opt.window = (int)num(v, a);
        else if (ARG("--keepalive", "")) opt.keepalive = (int)num(v, a);
        else if (ARG("--broker-pid", "")) opt.broker_pid = (int)num(v, a);
        else if (ARG("--window-signal", "")) {
            if (strcmp(v, "usr2") != 0)
                die("--window-signal: only usr2");
            opt.window_signal = SIGUSR2;
        }
        else if (ARG("--label", "")) opt.label = v;
        else if (ARG("--max-pending", "")) opt.max_pending = (int)num(v, a);
        else if (ARG("--connect-timeout", "")) opt.connect_timeout = num(v, a);
        else if (ARG("--sched", "")) opt.sched = !strcmp(v, "batch") ? 'b' : !strcmp(v, "normal") ? 'n' : (usage(), 0);
        else usage();
#undef ARG
    }
    if (opt.qos > 2 || (opt.proto != 4 && opt.proto != 5) || opt.payload < 20 ||
        opt.payload > 65536 || opt.window < 1 || opt.n < 1 || opt.pubs < 1 || opt.subs < 1 ||
        opt.keepalive > 65535 || opt.port < 1 || opt.port > 65535 || opt.max_pending < 1)
        die("option out of range (qos 0-2, proto 4|5, payload 20-65536, counts >= 1)");
}

/* ---------- main ---------- */

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* Generator and broker share the machine's cores. A woken SCHED_OTHER
     * generator preempts the broker mid-callback, and the broker's "longest
     * callback" then measures the scheduler; a SCHED_BATCH task never
     * preempts on wake-up. Same for every broker measured. */
    if (opt.sched == 'b') {
        struct sched_param sp = {0};
        if (sched_setscheduler(0, SCHED_BATCH, &sp) < 0)
            fprintf(stderr, "mqttload: SCHED_BATCH: %s (going on)\n", strerror(errno));
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    setup();
    if ((rlim_t)nconns + 16 > rl.rlim_cur)
        die("%d connections need more than the open-files limit %llu", nconns,
            (unsigned long long)rl.rlim_cur);
    /* hard bound on the whole run */
    alarm((unsigned)(opt.connect_timeout + opt.warmup + opt.duration + opt.drain + 60));

    epfd = epoll_create1(EPOLL_CLOEXEC);
    gbuf = xcalloc(1, GBUF_SIZE);
    struct epoll_event evs[1024];
    long rss_before = proc_rss_kb(opt.broker_pid), rss_conns = -1, rss_subs = -1, rss_end = -1;
    double cpu0 = -1, cpu1 = -1, gcpu0 = 0, gcpu1 = 0;
    uint64_t t_start = now_ns(), last_refill = 0, last_ka = t_start;
    double t_connect = 0, t_subscribe = 0;
    const char *fail = NULL;

    phase = PH_CONNECT;
    phase_t0 = t_now = t_start;
    while (phase != PH_DONE) {
        /* open more connections, a bounded number at a time */
        if (phase == PH_CONNECT) {
            for (int i = 0; i < nconns && st.pending < opt.max_pending; i++)
                if (conns[i].state == CS_NEW) {
                    st.pending++;
                    st.opened++;
                    conn_open(&conns[i]);
                }
        }
        int timeout = 10;
        if (publishing() && opt.rate > 0)
            timeout = 1;
        if (publishing() && opt.rate <= 0 && opt.qos == 0)
            timeout = 0;
        int n = epoll_wait(epfd, evs, 1024, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        t_now = now_ns();
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        t_now = now_ns();
        double in_phase = (double)(t_now - phase_t0) / 1e9;

        switch (phase) {
        case PH_CONNECT:
            if (st.up == nconns) {
                t_connect = in_phase;
                fprintf(stderr, "mqttload: %d connections up in %.1f s\n", nconns, t_connect);
                phase = PH_SETTLE;
                phase_t0 = t_now;
            } else if (in_phase > opt.connect_timeout) {
                fail = "connect timeout";
                phase = PH_DONE;
            } else if (st.pending == 0 && st.opened == nconns && st.up < nconns) {
                fail = "connections failed";
                phase = PH_DONE;
            }
            break;
        case PH_SETTLE: /* let the broker finish allocating, then read RSS */
            if (in_phase >= 1.0) {
                if (rss_conns < 0) {
                    rss_conns = proc_rss_kb(opt.broker_pid);
                    start_subscribing();
                    phase = PH_SUBSCRIBE;
                    phase_t0 = t_now;
                } else {
                    rss_subs = proc_rss_kb(opt.broker_pid);
                    if (opt.scen == SC_CONN) {
                        phase = PH_HOLD;
                        cpu0 = proc_cpu_s(opt.broker_pid);
                    } else {
                        phase = PH_WARMUP;
                        last_refill = t_now;
                    }
                    phase_t0 = t_now;
                }
            }
            break;
        case PH_SUBSCRIBE:
            if (st.subacks_left == 0) {
                t_subscribe = in_phase;
                phase = PH_SETTLE;
                phase_t0 = t_now;
            } else if (in_phase > opt.connect_timeout) {
                fail = "subscribe timeout";
                phase = PH_DONE;
            }
            break;
        case PH_HOLD:
            if (in_phase >= opt.duration) {
                cpu1 = proc_cpu_s(opt.broker_pid);
                rss_end = proc_rss_kb(opt.broker_pid);
                phase = PH_DONE;
            }
            break;
        case PH_WARMUP:
            if (in_phase >= opt.warmup) {
                phase = PH_WINDOW;
                phase_t0 = win_start = t_now;
                if (opt.window_signal && opt.broker_pid > 0)
                    kill(opt.broker_pid, opt.window_signal);
                cpu0 = proc_cpu_s(opt.broker_pid);
                gcpu0 = self_cpu_s();
            }
            break;
        case PH_WINDOW:
            if (in_phase >= opt.duration) {
                cpu1 = proc_cpu_s(opt.broker_pid);
                gcpu1 = self_cpu_s();
                if (opt.window_signal && opt.broker_pid > 0)
                    kill(opt.broker_pid, opt.window_signal);
                rss_end = proc_rss_kb(opt.broker_pid);
                phase = PH_DRAIN;
                phase_t0 = win_end = t_now;
            }
            break;
        case PH_DRAIN:
            if (drained() || in_phase >= opt.drain)
                phase = PH_DONE;
            break;
        default:
            break;
        }

        if (publishing()) {
            if (opt.rate > 0) {
                double dt = (double)(t_now - last_refill) / 1e9;
                last_refill = t_now;
                for (int i = 0; i < npubs; i++) {
                    struct conn *c = pubs[i];
                    double cap = c->rate_each * 0.05;
                    if (cap < 2)
                        cap = 2;
                    c->tokens += c->rate_each * dt;
                    if (c->tokens > cap)
                        c->tokens = cap;
                    pump(c);
                }
            } else {
                for (int i = 0; i < npubs; i++)
                    pump(pubs[i]);
            }
        }
        if (t_now - last_ka > 1000000000ull) {
            last_ka = t_now;
            keepalive_scan();
        }
        flush_dirty();
    }
    double t_total = (double)(now_ns() - t_start) / 1e9;

    /* ---------- accounting ---------- */
    uint64_t lost = 0, unacked = 0, expected = 0;
    for (int p = 0; p < npubs; p++) {
        struct conn *pc = pubs[p];
        for (uint32_t s = 0; s < pc->next_seq; s++) {
            bool ok = opt.qos == 0 || bits_test(&pc->acked, s);
            if (!ok) {
                unacked++;
                continue;
            }
            for (int j = 0; j < nsubs; j++) {
                struct conn *sc = subs[j];
                if (!sub_expects(sc, p))
                    continue;
                expected++;
                if (!sc->track[p] || !bits_test(&sc->track[p]->seen, s))
                    lost++;
            }
        }
    }
    /* polite goodbye, 100 connections per millisecond: a disconnect storm
     * would show up in the broker's longest loop callback and is not what
     * the run measures */
    phase = PH_DONE;
    for (int i = 0; i < nconns; i++) {
        if (conns[i].state == CS_UP) {
            send_2byte(&conns[i], 0xe0);
            flush_conn(&conns[i]);
        }
        if (conns[i].state != CS_DEAD && conns[i].fd >= 0)
            conn_close(&conns[i], false, "done");
        if (i % 100 == 99) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    }

    double win = win_end > win_start ? (double)(win_end - win_start) / 1e9 : opt.duration;
    double bcpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    double cpu_per_m = bcpu >= 0 && st.recv_win ? bcpu / (double)st.recv_win * 1e6 : -1;
    double msg_s = (double)st.recv_win / win;
    double gen_cpu = gcpu1 - gcpu0;
    int nsub_total = opt.scen == SC_CONN ? opt.n * opt.subs_per_conn : nsubs;
    double rss_per_conn = rss_before >= 0 && rss_conns >= 0 ? (rss_conns - rss_before) * 1024.0 / nconns : -1;
    double rss_per_sub = opt.scen == SC_CONN && opt.subs_per_conn && rss_subs >= 0 && rss_conns >= 0
                             ? (rss_subs - rss_conns) * 1024.0 / nsub_total
                             : -1;
    bool qos_ok = opt.qos == 0 || (lost == 0 && st.dups == 0);
    uint64_t errs = st.proto_err + st.disconnects + st.suback_fail + st.connect_fail +
                    st.unexpected_ack + st.bad_payload + st.misrouted;

    printf("RESULT scenario=%s label=%s proto=%d qos=%d conns=%d pubs=%d subs=%d subs_per_conn=%d "
           "payload=%d rate=%.0f window=%d duration=%.2f connect_s=%.2f subscribe_s=%.2f "
           "sent=%" PRIu64 " pub_rate=%.0f acked=%" PRIu64 " refused=%" PRIu64 " received=%" PRIu64
           " msg_s=%.0f expected=%" PRIu64 " lost=%" PRIu64 " unacked=%" PRIu64 " dups=%" PRIu64
           " reorder=%" PRIu64 " p50_us=%.1f p99_us=%.1f max_us=%.1f broker_cpu_s=%.2f "
           "cpu_s_per_M=%.3f gen_cpu_s=%.2f rss_before_kb=%ld rss_conns_kb=%ld rss_subs_kb=%ld "
           "rss_end_kb=%ld rss_per_conn_b=%.0f rss_per_sub_b=%.0f disconnects=%" PRIu64
           " proto_errors=%" PRIu64 " errors=%" PRIu64 " pings=%" PRIu64 " pingresps=%" PRIu64
           " qos_downgrades=%" PRIu64 " ok=%d fail=%s\n",
           scen_name[opt.scen], opt.label, opt.proto, opt.qos, nconns, npubs, nsubs,
           opt.subs_per_conn, opt.payload, opt.rate, opt.window, win, t_connect, t_subscribe,
           st.sent, (double)st.sent_win / win, st.acks, st.refused, st.received, msg_s, expected,
           lost, unacked, st.dups, st.reorder, hist_pct(0.50) / 1e3, hist_pct(0.99) / 1e3,
           hist_max / 1e3, bcpu, cpu_per_m, gen_cpu, rss_before, rss_conns, rss_subs, rss_end,
           rss_per_conn, rss_per_sub, st.disconnects, st.proto_err, errs, st.pings, st.pingresps,
           st.qos_downgrade, !fail && errs == 0 && qos_ok, fail ? "yes" : "no");

    printf("%s %s (MQTT %s, QoS %d) against %s: %d connections, %.1f s total\n",
           scen_name[opt.scen], opt.rate > 0 ? "fixed rate" : "closed loop",
           opt.proto == 5 ? "5" : "3.1.1", opt.qos, opt.label, nconns, t_total);
    if (fail)
        printf("  FAILED: %s (%d of %d connections up)\n", fail, st.up, nconns);
    if (opt.scen == SC_CONN) {
        printf("  broker RSS: %ld kB before, %ld kB with %d connections (%.0f B/conn)", rss_before,
               rss_conns, nconns, rss_per_conn);
        if (opt.subs_per_conn)
            printf(", %ld kB with %d subscriptions (%.0f B/sub)", rss_subs, nsub_total, rss_per_sub);
        printf(", %ld kB at the end; broker CPU while idle %.2f s\n", rss_end, bcpu);
    } else {
        printf("  published %.0f msg/s (target %s), delivered %.0f msg/s in a %.1f s window\n",
               (double)st.sent_win / win, opt.rate > 0 ? "fixed" : "closed loop", msg_s, win);
        printf("  latency p50 %.0f us, p99 %.0f us, max %.0f us; broker CPU %.2f s = %.3f s per "
               "1M deliveries; generator CPU %.2f s\n",
               hist_pct(0.5) / 1e3, hist_pct(0.99) / 1e3, hist_max / 1e3, bcpu, cpu_per_m, gen_cpu);
        printf("  %s: %" PRIu64 " lost of %" PRIu64 " expected, %" PRIu64 " unacked at the end, %" PRIu64
               " duplicates, %" PRIu64 " reordered\n",
               opt.qos ? "QoS check" : "QoS 0 (loss allowed)", lost, expected, unacked, st.dups,
               st.reorder);
    }
    if (errs)
        printf("  errors: %" PRIu64 " disconnects, %" PRIu64 " protocol, %" PRIu64 " suback failures, %" PRIu64
               " refused connects, %" PRIu64 " unexpected acks, %" PRIu64 " bad payloads, %" PRIu64
               " misrouted\n",
               st.disconnects, st.proto_err, st.suback_fail, st.connect_fail, st.unexpected_ack,
               st.bad_payload, st.misrouted);
    return fail ? 1 : 0;
}
