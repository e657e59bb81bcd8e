#include "broker/outq.h"

#include <string.h>

#include "broker/mem.h"
#include "mqtt/error.h"

/* 16 KiB chunks: big enough that a burst of small PUBLISHes costs one
 * allocation and a few iovecs, small enough for a Pi Zero with thousands of
 * clients. A packet larger than that gets a chunk of its own size. An empty
 * queue starts with a small chunk: in a fan-out most subscribers get one
 * small packet per turn, and 1,000 fresh 16 KiB chunks (touched, then
 * freed) cost more than the packets themselves; and when 10,000 clients
 * subscribe at once, each SUBACK waits in its first chunk until its flush,
 * so 512 bytes there cost 130 bytes of RSS per subscription (the heap
 * keeps its high-water mark) where 128 bytes, room for an ack or a 64-byte
 * PUBLISH, cost almost none. */
#define OUTQ_CHUNK 16384
#define OUTQ_FIRST_CHUNK 128

struct outq_chunk {
    struct outq_chunk *next;
    size_t cap;
    size_t len;
    uint8_t data[];
};

void outq_init(struct outq *q)
{
    memset(q, 0, sizeof(*q));
}

static void chunk_free(struct outq *q, struct outq_chunk *ch)
{
    mem_free(NULL, ch, sizeof(*ch) + ch->cap);
}

void outq_clear(struct outq *q)
{
    struct outq_chunk *ch = q->head;
    while (ch) {
        struct outq_chunk *next = ch->next;
        chunk_free(q, ch);
        ch = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
    q->head_off = 0;
}

uint8_t *outq_reserve(struct outq *q, size_t len)
{
    struct outq_chunk *t = q->tail;
    if (len > SIZE_MAX - sizeof(*t))
        return NULL; /* header + len would wrap size_t (32-bit boards) */
    if (!t || t->cap - t->len < len) {
        size_t min = t ? OUTQ_CHUNK : OUTQ_FIRST_CHUNK;
        size_t cap = len > min ? len : min;
        struct outq_chunk *ch = mem_alloc(NULL, sizeof(*ch) + cap);
        if (!ch)
            return NULL;
        ch->next = NULL;
        ch->cap = cap;
        ch->len = 0;
        if (t)
            t->next = ch;
        else
            q->head = ch;
        q->tail = t = ch;
    }
    uint8_t *p = t->data + t->len;
    t->len += len;
    q->bytes += len;
    return p;
}

int outq_append(struct outq *q, const void *data, size_t len)
{
    uint8_t *p = outq_reserve(q, len);
    if (!p)
        return -ERR_NOMEM;
    memcpy(p, data, len);
    return 0;
}

int outq_iov(const struct outq *q, struct iovec *iov, int max, size_t max_bytes)
{
    int n = 0;
    size_t total = 0;
    size_t off = q->head_off;
    for (struct outq_chunk *ch = q->head; ch && n < max && total < max_bytes; ch = ch->next) {
        size_t len = ch->len - off;
        if (len > max_bytes - total)
            len = max_bytes - total;
        if (len) {
            iov[n].iov_base = ch->data + off;
            iov[n].iov_len = len;
            n++;
            total += len;
        }
        off = 0;
    }
    return n;
}

void outq_consume(struct outq *q, size_t n)
{
    if (n > q->bytes)
        n = q->bytes;
    q->bytes -= n;
    while (n && q->head) {
        struct outq_chunk *ch = q->head;
        size_t left = ch->len - q->head_off;
        if (n < left) {
            q->head_off += n;
            return;
        }
        n -= left;
        q->head = ch->next;
        q->head_off = 0;
        if (!q->head)
            q->tail = NULL;
        chunk_free(q, ch);
    }
    /* Fully drained: a tail chunk kept for reuse would be memory an idle
     * connection holds, so free it (done above when head_off reached len). */
    if (q->bytes == 0 && q->head && q->head == q->tail && q->head_off == q->head->len) {
        chunk_free(q, q->head);
        q->head = q->tail = NULL;
        q->head_off = 0;
    }
}
