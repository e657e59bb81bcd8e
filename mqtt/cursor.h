/* Bounded reader and writer for the codec (internal to mqtt/).
 *
 * The reader never reads past `end`: a read that does not fit sets a sticky
 * error (-ERR_TRUNCATED unless something set another first), moves the
 * cursor to the end and returns zeros, so every later read fails too.
 * Decoders read a run of fields and check `err` once, before they look at
 * the values. The writer is the mirror image: with buf == NULL it only
 * counts, and it never writes past cap. */
#ifndef LOOPBOT_MQTT_CURSOR_H
#define LOOPBOT_MQTT_CURSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mqtt/packet.h"

/* Largest value of a 4-byte variable byte integer [MQTT-1.5.5]. */
#define MQTT_VARINT_MAX 268435455u

struct cursor {
    const uint8_t *p;
    const uint8_t *end;
    int err; /* 0 or the first -ERR_* seen */
};

static inline struct cursor cursor_init(const uint8_t *p, size_t len)
{
    struct cursor c = {p, p ? p + len : p, 0}; /* a NULL buffer has nothing to read */
    return c;
}

static inline size_t cursor_left(const struct cursor *c)
{
    return (size_t)(c->end - c->p);
}

static inline void cursor_fail(struct cursor *c, int err)
{
    if (!c->err)
        c->err = err;
    c->p = c->end;
}

static inline uint8_t cursor_u8(struct cursor *c)
{
    if (c->p >= c->end) {
        cursor_fail(c, -ERR_TRUNCATED);
        return 0;
    }
    return *c->p++;
}

static inline uint16_t cursor_u16(struct cursor *c)
{
    if (cursor_left(c) < 2) {
        cursor_fail(c, -ERR_TRUNCATED);
        return 0;
    }
    uint16_t v = (uint16_t)((c->p[0] << 8) | c->p[1]);
    c->p += 2;
    return v;
}

static inline uint32_t cursor_u32(struct cursor *c)
{
    if (cursor_left(c) < 4) {
        cursor_fail(c, -ERR_TRUNCATED);
        return 0;
    }
    uint32_t v = ((uint32_t)c->p[0] << 24) | ((uint32_t)c->p[1] << 16) |
                 ((uint32_t)c->p[2] << 8) | (uint32_t)c->p[3];
    c->p += 4;
    return v;
}

/* Variable byte integer [MQTT-1.5.5]: at most 4 bytes, a continuation bit on
 * the 4th is -ERR_VARINT_OVERLONG. Non-minimal forms (0x80 0x00) are accepted:
 * the minimal-length rule binds senders, and a lenient reader costs nothing
 * (mosquitto reads them too). */
static inline uint32_t cursor_varint(struct cursor *c)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < 4; i++) {
        if (c->p >= c->end) {
            cursor_fail(c, -ERR_TRUNCATED);
            return 0;
        }
        uint8_t b = *c->p++;
        v |= (uint32_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80))
            return v;
    }
    cursor_fail(c, -ERR_VARINT_OVERLONG);
    return 0;
}

static inline struct mqtt_bytes cursor_bytes(struct cursor *c, size_t n)
{
    struct mqtt_bytes b = {NULL, 0};
    if (cursor_left(c) < n) {
        cursor_fail(c, -ERR_TRUNCATED);
        return b;
    }
    b.ptr = c->p;
    b.len = (uint32_t)n;
    c->p += n;
    return b;
}

/* Two-byte length then that many bytes: a string or binary data [MQTT-1.5.3]. */
static inline struct mqtt_bytes cursor_binary(struct cursor *c)
{
    uint16_t n = cursor_u16(c);
    return cursor_bytes(c, n);
}

struct writer {
    uint8_t *buf; /* NULL: count only */
    size_t len;
    size_t cap;
    int err;
};

static inline void writer_put(struct writer *w, const void *src, size_t n)
{
    if (w->buf) {
        if (w->err || n > w->cap - w->len) {
            if (!w->err)
                w->err = -ERR_NOSPACE;
            return;
        }
        if (n)
            memcpy(w->buf + w->len, src, n);
    }
    w->len += n;
}

static inline void writer_u8(struct writer *w, uint8_t v)
{
    if (w->buf) {
        if (w->err || w->len >= w->cap) {
            if (!w->err)
                w->err = -ERR_NOSPACE;
            return;
        }
        w->buf[w->len] = v;
    }
    w->len++;
}

static inline void writer_u16(struct writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    writer_put(w, b, 2);
}

static inline void writer_u32(struct writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    writer_put(w, b, 4);
}

/* Callers have checked v <= MQTT_VARINT_MAX. Always the minimal form. */
static inline void writer_varint(struct writer *w, uint32_t v)
{
    uint8_t b[4];
    size_t n = 0;
    do {
        uint8_t d = v & 0x7F;
        v >>= 7;
        if (v)
            d |= 0x80;
        b[n++] = d;
    } while (v && n < 4);
    writer_put(w, b, n);
}

/* Callers have checked len <= 65535. */
static inline void writer_binary(struct writer *w, struct mqtt_bytes s)
{
    writer_u16(w, (uint16_t)s.len);
    writer_put(w, s.ptr, s.len);
}

static inline size_t varint_len(uint32_t v)
{
    return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

#endif
