/* mosquitto_passwd files: parse once into a hash map of users, verify with
 * mbedTLS. See passwd.h for the format. */
#include "broker/passwd.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/sha512.h>

#include "broker/mem.h"
#include "broker/textfile.h"
#include "broker/strmap.h"
#include "mqtt/error.h"
#include "platform/platform.h"

#define SALT_MAX 64
#define USER_MAX 65535 /* an MQTT string */
#define SHOW_MAX 60
#define SHOW(s, n) (int)((n) > SHOW_MAX ? SHOW_MAX : (n)), (s), ((n) > SHOW_MAX ? "..." : "")

enum { PW_SHA512 = 6, PW_PBKDF2 = 7 };

struct pw_hash {
    uint8_t type; /* PW_SHA512 or PW_PBKDF2 */
    uint8_t salt_len;
    uint32_t iterations; /* PW_PBKDF2 only */
    uint8_t salt[SALT_MAX];
    uint8_t hash[PASSWD_HASH_LEN];
};

struct pw_entry {
    struct pw_hash h;
    size_t ulen;
    char user[]; /* ulen bytes and a NUL; the map's key */
};

static const uint8_t *entry_key(const void *value, size_t *len)
{
    const struct pw_entry *e = value;
    *len = e->ulen;
    return (const uint8_t *)e->user;
}

struct passwd_db {
    struct strmap users; /* user -> struct pw_entry */
};

/* ---- hashing ---- */

/* Runs the hash h describes over password into out. Returns 0 or
 * -ERR_NOMEM (mbedTLS could not allocate its HMAC context). */
static int digest(const struct pw_hash *h, const uint8_t *pw, size_t plen,
                  uint8_t out[PASSWD_HASH_LEN])
{
    if (h->type == PW_SHA512) {
        mbedtls_sha512_context ctx;
        mbedtls_sha512_init(&ctx);
        int rc = mbedtls_sha512_starts_ret(&ctx, 0);
        if (rc == 0 && plen)
            rc = mbedtls_sha512_update_ret(&ctx, pw, plen);
        if (rc == 0)
            rc = mbedtls_sha512_update_ret(&ctx, h->salt, h->salt_len);
        if (rc == 0)
            rc = mbedtls_sha512_finish_ret(&ctx, out);
        mbedtls_sha512_free(&ctx);
        return rc == 0 ? 0 : -ERR_NOMEM;
    }
    mbedtls_md_context_t md;
    mbedtls_md_init(&md);
    int rc = mbedtls_md_setup(&md, mbedtls_md_info_from_type(MBEDTLS_MD_SHA512), 1);
    if (rc == 0)
        rc = mbedtls_pkcs5_pbkdf2_hmac(&md, pw, plen, h->salt, h->salt_len, h->iterations,
                                       PASSWD_HASH_LEN, out);
    mbedtls_md_free(&md);
    return rc == 0 ? 0 : -ERR_NOMEM;
}

/* Every byte is compared whatever the first difference, so the time taken
 * says nothing about how much of a guessed hash was right. */
static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

static bool b64_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *olen)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) /* mbedTLS skips blanks inside; we do not */
        if (text_is_blank(s[i]))
            return false;
    return mbedtls_base64_decode(out, cap, olen, (const unsigned char *)s, n) == 0;
}

/* Parses "$7$iter$salt$hash" or "$6$salt$hash". */
static int parse_field(const char *f, size_t n, struct pw_hash *h, const char **why)
{
    const char *end = f + n, *p;
    memset(h, 0, sizeof(*h));
    if (n >= 3 && memcmp(f, "$7$", 3) == 0) {
        h->type = PW_PBKDF2;
        uint64_t it = 0;
        for (p = f + 3; p < end && *p >= '0' && *p <= '9'; p++) {
            it = it * 10 + (uint64_t)(*p - '0');
            if (it > PASSWD_ITERATIONS_MAX)
                break;
        }
        if (p == f + 3 || p == end || *p != '$') {
            *why = it > PASSWD_ITERATIONS_MAX
                       ? "iteration count above 100000 (each check would hold the event loop)"
                       : "expected '$7$ITERATIONS$SALT$HASH'";
            return -ERR_INVALID;
        }
        if (it < 1) {
            *why = "iteration count must be 1 or more";
            return -ERR_INVALID;
        }
        h->iterations = (uint32_t)it;
        p++;
    } else if (n >= 3 && memcmp(f, "$6$", 3) == 0) {
        h->type = PW_SHA512;
        p = f + 3;
    } else {
        *why = "password is not a mosquitto_passwd hash ('$7$...' or '$6$...'); hash a plain-text "
               "file with 'loopbot_passwd -U FILE'";
        return -ERR_INVALID;
    }
    const char *dollar = memchr(p, '$', (size_t)(end - p));
    size_t slen;
    if (!dollar || !b64_decode(p, (size_t)(dollar - p), h->salt, sizeof(h->salt), &slen) ||
        slen == 0) {
        *why = "salt is not base64 of 1 to 64 bytes";
        return -ERR_INVALID;
    }
    h->salt_len = (uint8_t)slen;
    p = dollar + 1;
    uint8_t hash[PASSWD_HASH_LEN + 3];
    size_t hlen;
    if (!b64_decode(p, (size_t)(end - p), hash, sizeof(hash), &hlen) || hlen != PASSWD_HASH_LEN) {
        *why = "hash is not base64 of 64 bytes";
        return -ERR_INVALID;
    }
    memcpy(h->hash, hash, PASSWD_HASH_LEN);
    return 0;
}

static int verify(const struct pw_hash *h, const uint8_t *pw, size_t plen)
{
    if (!pw) {
        pw = (const uint8_t *)"";
        plen = 0;
    }
    uint8_t out[PASSWD_HASH_LEN];
    int rc = digest(h, pw, plen, out);
    if (rc < 0)
        return rc;
    bool ok = ct_equal(out, h->hash, PASSWD_HASH_LEN);
    memset(out, 0, sizeof(out));
    return ok ? 1 : 0;
}

int passwd_verify_field(const char *field, size_t flen, const uint8_t *password, size_t plen,
                        const char **why)
{
    const char *dummy;
    struct pw_hash h;
    if (parse_field(field, flen, &h, why ? why : &dummy) < 0)
        return -ERR_INVALID;
    int rc = verify(&h, password, plen);
    return rc < 0 ? 0 : rc;
}

int passwd_hash_pbkdf2(const uint8_t *password, size_t plen, const uint8_t *salt, size_t salt_len,
                       unsigned iterations, char *out, size_t cap)
{
    if (!salt_len || salt_len > SALT_MAX || iterations < 1 || iterations > PASSWD_ITERATIONS_MAX)
        return -ERR_INVALID;
    struct pw_hash h = {.type = PW_PBKDF2, .salt_len = (uint8_t)salt_len, .iterations = iterations};
    memcpy(h.salt, salt, salt_len);
    int rc = digest(&h, password, plen, h.hash);
    if (rc < 0)
        return rc;
    int n = snprintf(out, cap, "$7$%u$", iterations);
    if (n < 0 || (size_t)n >= cap)
        return -ERR_NOSPACE;
    size_t pos = (size_t)n, olen;
    if (mbedtls_base64_encode((unsigned char *)out + pos, cap - pos, &olen, h.salt, salt_len) != 0)
        return -ERR_NOSPACE;
    pos += olen;
    if (pos + 1 >= cap)
        return -ERR_NOSPACE;
    out[pos++] = '$';
    if (mbedtls_base64_encode((unsigned char *)out + pos, cap - pos, &olen, h.hash,
                              PASSWD_HASH_LEN) != 0)
        return -ERR_NOSPACE;
    pos += olen;
    memset(&h, 0, sizeof(h));
    return (int)pos;
}

/* ---- the database ---- */

static void entry_free(struct pw_entry *e)
{
    if (e)
        mem_free(NULL, e, sizeof(*e) + e->ulen + 1);
}

void passwd_free(struct passwd_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->users.cap; i++)
        if (db->users.slots[i])
            entry_free(db->users.slots[i]);
    strmap_free(&db->users);
    mem_free(NULL, db, sizeof(*db));
}

size_t passwd_count(const struct passwd_db *db)
{
    return db ? db->users.count : 0;
}

struct pparse {
    const char *name;
    int line;
    char *err;
    size_t errlen;
};

static int pfail(struct pparse *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pfail(struct pparse *p, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    text_error(p->err, p->errlen, p->name, p->line, fmt, ap);
    va_end(ap);
    return rc;
}

static int parse_line(struct pparse *p, struct passwd_db *db, const char *s, size_t n)
{
    const char *end = s + n;
    int content = text_line_content(&s, &end);
    if (content < 0)
        return pfail(p, -ERR_CONFIG, "line contains a NUL byte (not a text file?)");
    if (!content)
        return 0;
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon)
        return pfail(p, -ERR_CONFIG, "expected 'username:hash', got '%.*s%s'", SHOW(s, (size_t)(end - s)));
    const char *u = s, *uend = colon;
    while (uend > u && text_is_blank(uend[-1]))
        uend--;
    size_t ulen = (size_t)(uend - u);
    if (ulen == 0)
        return pfail(p, -ERR_CONFIG, "empty username");
    if (ulen > USER_MAX)
        return pfail(p, -ERR_CONFIG, "username longer than 65535 bytes");
    const char *f = colon + 1;
    while (f < end && text_is_blank(*f))
        f++;
    if (f == end)
        return pfail(p, -ERR_CONFIG, "user '%.*s%s' has no password hash", SHOW(u, ulen));
    struct pw_hash h;
    const char *why = NULL;
    if (parse_field(f, (size_t)(end - f), &h, &why) < 0)
        return pfail(p, -ERR_CONFIG, "user '%.*s%s': %s", SHOW(u, ulen), why);
    if (strmap_get(&db->users, u, ulen))
        return pfail(p, -ERR_CONFIG, "user '%.*s%s' is listed twice", SHOW(u, ulen));
    struct pw_entry *e = mem_alloc(NULL, sizeof(*e) + ulen + 1);
    if (!e)
        return pfail(p, -ERR_NOMEM, "out of memory");
    e->h = h;
    e->ulen = ulen;
    memcpy(e->user, u, ulen);
    e->user[ulen] = '\0';
    if (strmap_put(&db->users, e) < 0) {
        entry_free(e);
        return pfail(p, -ERR_NOMEM, "out of memory");
    }
    return 0;
}

static uint64_t map_seed(void)
{
    uint64_t seed = 0;
    if (platform_random(&seed, sizeof(seed)) < 0)
        seed = (uint64_t)(uintptr_t)&seed ^ platform_now_us();
    return seed;
}

int passwd_parse(const char *name, const char *text, size_t len, struct passwd_db **out,
                 char *err, size_t errlen)
{
    struct pparse p = {.name = name ? name : "(password file)", .err = err, .errlen = errlen};
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    struct passwd_db *db = mem_calloc(NULL, sizeof(*db));
    if (!db)
        return pfail(&p, -ERR_NOMEM, "out of memory");
    strmap_init(&db->users, map_seed(), entry_key);
    const char *s = text ? text : "", *end = s + (text ? len : 0);
    const char *line;
    size_t n;
    while (text_next_line(&s, end, &line, &n)) {
        p.line++;
        int rc = parse_line(&p, db, line, n);
        if (rc < 0) {
            passwd_free(db);
            return rc;
        }
    }
    *out = db;
    return 0;
}

/* What an unknown user is checked against: the same work as a real entry
 * with mosquitto's defaults. */
static const struct pw_hash decoy = {
    .type = PW_PBKDF2,
    .salt_len = PASSWD_SALT_LEN,
    .iterations = PASSWD_ITERATIONS,
    .salt = "loopbotdecoy",
};

int passwd_check(const struct passwd_db *db, const uint8_t *user, size_t ulen,
                 const uint8_t *password, size_t plen)
{
    const struct pw_entry *e = db ? strmap_get(&db->users, user, ulen) : NULL;
    if (!password)
        plen = 0;
    int rc = verify(e ? &e->h : &decoy, password, plen);
    return e && rc == 1 ? 0 : -ERR_BAD_CREDENTIALS;
}
