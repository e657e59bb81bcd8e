/* One loaded security setup: allow_anonymous, the password file, the ACL
 * file and the PSK file, read at start-up and on SIGHUP (never on the
 * loop's hot path). Each auth_load builds a fresh, immutable struct auth,
 * so a reload swaps whole objects: nothing from an old file survives into
 * the new one. */
#include "broker/auth.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "broker/acl.h"
#include "broker/config.h"
#include "broker/mem.h"
#include "broker/passwd.h"
#include "broker/strmap.h"
#include "mqtt/error.h"
#include "platform/platform.h"

/* Security files are small; this stops "password_file /dev/zero" from
 * eating the Pi's memory. */
#define AUTH_FILE_MAX (64u * 1024 * 1024)
#define PSK_KEY_MAX 64

struct psk_entry {
    uint8_t key[PSK_KEY_MAX];
    size_t keylen;
    size_t idlen;
    char id[];
};

static const uint8_t *psk_key(const void *value, size_t *len)
{
    const struct psk_entry *e = value;
    *len = e->idlen;
    return (const uint8_t *)e->id;
}

struct auth {
    bool allow_anonymous;
    struct passwd_db *pw; /* NULL: no password_file */
    struct acl *acl;      /* NULL: no acl_file */
    struct strmap psk;    /* identity -> struct psk_entry; empty without psk_file */
    bool has_psk;
};

static void psk_free(struct strmap *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i]) {
            struct psk_entry *e = m->slots[i];
            mem_free(NULL, e, sizeof(*e) + e->idlen + 1);
        }
    }
    strmap_free(m);
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    passwd_free(a->pw);
    acl_free(a->acl);
    psk_free(&a->psk);
    mem_free(NULL, a, sizeof(*a));
}

/* Reads a whole file through mem_alloc. *cap is what to free. */
static int read_file(const char *path, char **buf, size_t *len, size_t *cap, char *err,
                     size_t errlen)
{
    *buf = NULL;
    *len = *cap = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -ERR_CONFIG;
    }
    int rc = 0;
    for (;;) {
        if (*len == *cap) {
            if (*cap >= AUTH_FILE_MAX) {
                snprintf(err, errlen, "%s: larger than %u MiB", path, AUTH_FILE_MAX >> 20);
                rc = -ERR_CONFIG;
                break;
            }
            size_t ncap = *cap ? *cap * 2 : 4096;
            char *nb = mem_realloc(NULL, *buf, *cap, ncap);
            if (!nb) {
                snprintf(err, errlen, "%s: out of memory", path);
                rc = -ERR_NOMEM;
                break;
            }
            *buf = nb;
            *cap = ncap;
        }
        size_t got = fread(*buf + *len, 1, *cap - *len, f);
        *len += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                snprintf(err, errlen, "%s: cannot read: %s", path, strerror(e));
                rc = -ERR_CONFIG;
            }
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        mem_free(NULL, *buf, *cap);
        *buf = NULL;
        *len = *cap = 0;
    }
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* "identity:hexkey" lines, as mosquitto's psk_file. */
static int auth_psk_parse(const char *name, const char *text, size_t len, struct strmap *m, char *err,
                   size_t errlen)
{
    const char *s = text ? text : "", *end = s + (text ? len : 0);
    int line = 0;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *b = s, *e = nl ? nl : end;
        s = nl ? nl + 1 : end;
        line++;
        while (b < e && blank(*b))
            b++;
        while (e > b && blank(e[-1]))
            e--;
        if (b == e || *b == '#')
            continue;
        const char *colon = memchr(b, ':', (size_t)(e - b));
        const char *why = NULL;
        if (memchr(b, '\0', (size_t)(e - b)))
            why = "line contains a NUL byte";
        else if (!colon || colon == b || colon + 1 == e)
            why = "expected 'identity:hexkey'";
        else if ((size_t)(e - colon - 1) % 2 || (size_t)(e - colon - 1) / 2 > PSK_KEY_MAX)
            why = "key must be an even number of hex digits, at most 128";
        if (!why) {
            for (const char *h = colon + 1; h < e; h++)
                if (hexval(*h) < 0)
                    why = "key contains a character that is not a hex digit";
        }
        size_t idlen = colon ? (size_t)(colon - b) : 0;
        if (!why && strmap_get(m, b, idlen))
            why = "identity listed twice";
        if (why) {
            snprintf(err, errlen, "%s:%d: %s", name, line, why);
            return -ERR_CONFIG;
        }
        struct psk_entry *pe = mem_calloc(NULL, sizeof(*pe) + idlen + 1);
        if (!pe) {
            snprintf(err, errlen, "%s:%d: out of memory", name, line);
            return -ERR_NOMEM;
        }
        pe->idlen = idlen;
        memcpy(pe->id, b, idlen);
        for (const char *h = colon + 1; h + 1 < e; h += 2)
            pe->key[pe->keylen++] = (uint8_t)(hexval(h[0]) << 4 | hexval(h[1]));
        if (strmap_put(m, pe) < 0) {
            mem_free(NULL, pe, sizeof(*pe) + idlen + 1);
            snprintf(err, errlen, "%s:%d: out of memory", name, line);
            return -ERR_NOMEM;
        }
    }
    return 0;
}

int auth_load(const struct security_config *sec, struct auth **out, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    *out = NULL;
    struct auth *a = mem_calloc(NULL, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return -ERR_NOMEM;
    }
    uint64_t seed = 0;
    if (platform_random(&seed, sizeof(seed)) < 0)
        seed = platform_now_us();
    strmap_init(&a->psk, seed, psk_key);
    a->allow_anonymous = sec->allow_anonymous;

    const char *files[3] = {sec->password_file, sec->acl_file, sec->psk_file};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (!files[i])
            continue;
        char *buf;
        size_t len, cap;
        rc = read_file(files[i], &buf, &len, &cap, err, errlen);
        if (rc < 0)
            break;
        if (i == 0)
            rc = passwd_parse(files[i], buf, len, &a->pw, err, errlen);
        else if (i == 1)
            rc = acl_parse(files[i], buf, len, &a->acl, err, errlen);
        else
            rc = auth_psk_parse(files[i], buf, len, &a->psk, err, errlen);
        if (i == 2)
            a->has_psk = true;
        mem_free(NULL, buf, cap);
    }
    if (rc < 0) {
        auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int auth_connect_check(const struct auth *a, const uint8_t *username, size_t ulen,
                       const uint8_t *password, size_t plen, bool identity_verified)
{
    if (!a)
        return 0;
    /* mosquitto 2.0.11, checked with the real binary: no username needs
     * allow_anonymous; a username with no password file to check it against
     * is let in only when anonymous clients are; a certificate or PSK
     * identity used as the username needs no password. */
    if (!username)
        return a->allow_anonymous ? 0 : -ERR_NOT_AUTHORIZED;
    if (identity_verified)
        return 0;
    if (!a->pw)
        return a->allow_anonymous ? 0 : -ERR_NOT_AUTHORIZED;
    return passwd_check(a->pw, username, ulen, password, password ? plen : 0);
}

int auth_acl_check(const struct auth *a, const char *client_id, const char *username,
                   const uint8_t *topic, size_t len, enum auth_access access)
{
    if (!a || !a->acl)
        return 0;
    return acl_check(a->acl, client_id, username, topic, len, (int)access);
}

bool auth_has_acl(const struct auth *a)
{
    return a && a->acl;
}

bool auth_has_password_file(const struct auth *a)
{
    return a && a->pw;
}

bool auth_allow_anonymous(const struct auth *a)
{
    return !a || a->allow_anonymous;
}

int auth_psk_key(const struct auth *a, const uint8_t *identity, size_t ilen, uint8_t *key,
                 size_t cap)
{
    if (!a || !a->has_psk)
        return -ERR_NOT_FOUND;
    const struct psk_entry *e = strmap_get(&a->psk, identity, ilen);
    if (!e)
        return -ERR_NOT_FOUND;
    if (e->keylen > cap)
        return -ERR_NOSPACE;
    memcpy(key, e->key, e->keylen);
    return (int)e->keylen;
}
