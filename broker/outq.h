/* A connection's out-queue: encoded packets waiting for one writev.
 * Chunks are allocated only while bytes are pending, so an idle connection
 * holds none. */
#ifndef LOOPBOT_BROKER_OUTQ_H
#define LOOPBOT_BROKER_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct mem_account;
struct outq_chunk;

struct outq {
    struct outq_chunk *head, *tail;
    size_t bytes;   /* pending */
    size_t head_off; /* bytes of head already written */
};

void outq_init(struct outq *q);
void outq_clear(struct outq *q);
/* Reserves len contiguous bytes at the tail; the caller fills exactly len
 * bytes, e.g. with mqtt_encode. NULL when out of memory. */
uint8_t *outq_reserve(struct outq *q, size_t len);
int outq_append(struct outq *q, const void *data, size_t len); /* 0 or -ERR_NOMEM */
/* Fills up to max iovecs with pending bytes (at most max_bytes in all);
 * returns how many. */
int outq_iov(const struct outq *q, struct iovec *iov, int max, size_t max_bytes);
/* Drops n written bytes from the front, freeing drained chunks. */
void outq_consume(struct outq *q, size_t n);

#endif
