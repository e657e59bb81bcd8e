/* TLS with mbedTLS 2.28: per-listener contexts and the conn_tls transport.
 *
 * Writes. mbedtls_ssl_write encrypts at most one record (16 KiB, less if
 * the client negotiated a smaller max_fragment_length) per call. When the
 * socket pushes back it returns WANT_WRITE with the record already
 * encrypted and partly sent, and the next call must pass the same length:
 * mbedTLS then only flushes and returns that length (truncated to one
 * record). So the session remembers the length it passed (wpending) and
 * reports nothing as written until the record is out; the out-queue keeps
 * those bytes at its head meanwhile, so the retry sees the same bytes.
 * Small out-queue chunks (a PUBACK is 4 bytes) are gathered into one
 * record in a loop-wide 16 KiB buffer, so a burst of acks costs one record
 * header and MAC, not one per packet; chunks of 16 KiB and more are
 * encrypted in place.
 *
 * Reads. mbedtls_ssl_read returns one record's plaintext at most per call,
 * so a read loops until the buffer is full or the socket is empty. Bytes
 * mbedTLS has decrypted but we have not taken (the buffer filled mid-
 * record) will never wake the fd: pending() reports them and conn.c reads
 * again from its deferred pass. An end of stream or error met after some
 * bytes is kept and returned by the next read, so those bytes go first.
 *
 * Renegotiation is off (mbedTLS's default). A client that asks for it gets
 * a no_renegotiation alert; if that alert cannot be sent at once, mbedTLS
 * would later flush it inside our next mbedtls_ssl_write and report our
 * data as written, so that case closes the connection instead. */
#include "broker/tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

#include "broker/config.h"
#include "broker/log.h"
#include "broker/loop.h"
#include "broker/mem.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "platform/platform.h"

#if MBEDTLS_VERSION_MAJOR != 2
#error "loopbot's TLS is written for mbedTLS 2.x (Debian 12 ships 2.28)"
#endif

/* One TLS record's plaintext: MBEDTLS_SSL_OUT_CONTENT_LEN in Debian's
 * build (and the protocol's maximum). */
#define TLS_RECORD_MAX 16384u
#define TLS_CIPHERS_MAX 64
#define TLS_SUBJECT_MAX 1024
#define TLS_SESSION_CACHE_S 3600

/* ---- the one random generator ---- */

static struct {
    unsigned refs;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
} rng;

/* Seeds the CTR_DRBG from mbedtls_entropy (getrandom(2), which at very
 * early boot waits for the kernel's pool: start-up, not the loop). */
static int rng_ref(char *why, size_t cap)
{
    if (rng.refs) {
        rng.refs++;
        return 0;
    }
    mbedtls_entropy_init(&rng.entropy);
    mbedtls_ctr_drbg_init(&rng.drbg);
    static const char pers[] = "loopbot mqtt broker";
    int r = mbedtls_ctr_drbg_seed(&rng.drbg, mbedtls_entropy_func, &rng.entropy,
                                  (const unsigned char *)pers, sizeof(pers) - 1);
    if (r) {
        mbedtls_strerror(r, why, cap);
        mbedtls_ctr_drbg_free(&rng.drbg);
        mbedtls_entropy_free(&rng.entropy);
        return -1;
    }
    rng.refs = 1;
    return 0;
}

static void rng_unref(void)
{
    if (!rng.refs || --rng.refs)
        return;
    mbedtls_ctr_drbg_free(&rng.drbg);
    mbedtls_entropy_free(&rng.entropy);
}

/* ---- contexts ---- */

struct tls_ctx {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cert; /* our chain */
    mbedtls_pk_context key;
    mbedtls_x509_crt ca;
    mbedtls_x509_crl crl;
    mbedtls_ssl_cache_context cache;
    int suites[TLS_CIPHERS_MAX + 1]; /* 0-terminated; suites[0] == 0: defaults */
    bool rng_held, cache_on;
    bool use_identity, use_subject;
    int line;
    uint16_t port;
};

struct tls_session {
    mbedtls_ssl_context ssl;
    struct tls_ctx *ctx;
    struct conn *cn; /* set by the first handshake slice */
    int fd;
    int psk_err; /* why psk_cb refused: -ERR_NOT_FOUND, -ERR_NOSPACE */
    bool setup; /* mbedtls_ssl_setup done: the 2 x 16 KiB buffers exist */
    bool done;  /* handshake over */
    int read_end;   /* after the bytes read so far: 1 = end of stream, <0 = -errno */
    size_t wpending; /* length given to the mbedtls_ssl_write that said WANT_WRITE */
    char *identity;  /* PSK identity, or certificate CN/subject; NULL = none */
};

bool tls_wanted(const struct listener_config *lc)
{
    return lc->tls.certfile || lc->tls.keyfile || lc->tls.psk_hint;
}

static void lerr(const struct listener_config *lc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void lerr(const struct listener_config *lc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_printf(LOG_T_ERROR, "Error: listener on line %d (port %u): %s.", lc->line,
               (unsigned)lc->port, msg);
}

static const char *mbed_err(int r, char *buf, size_t cap)
{
    mbedtls_strerror(r, buf, cap);
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, " (-0x%04x)", (unsigned)-r);
    return buf;
}

/* mbedTLS's PSK callback: the identity picks the key from psk_file, as the
 * auth module loaded it (and reloads it on SIGHUP); the identity becomes
 * the client's username, as in mosquitto. An unknown identity fails the
 * handshake (mbedTLS sends unknown_psk_identity). */
static int psk_cb(void *arg, mbedtls_ssl_context *ssl, const unsigned char *id, size_t len)
{
    (void)arg;
    struct tls_session *s = ssl->p_bio;
    uint8_t key[MBEDTLS_PSK_MAX_LEN];
    int n = conn_psk_key(s->cn, id, len, key, sizeof(key));
    if (n < 0) {
        s->psk_err = n;
        return -1;
    }
    char *copy = mem_strndup(NULL, id, len);
    if (!copy || mqtt_utf8_validate(id, len) < 0 || memchr(id, 0, len)) {
        mem_strfree(NULL, copy);
        mbedtls_platform_zeroize(key, sizeof(key));
        return -1;
    }
    mem_strfree(NULL, s->identity);
    s->identity = copy;
    int r = mbedtls_ssl_set_hs_psk(ssl, key, (size_t)n);
    mbedtls_platform_zeroize(key, sizeof(key));
    return r;
}

/* ---- cipher suite names ---- */

static bool is_cipher_token(const char *t)
{
    static const char *const c[] = {"AES", "CAMELLIA", "ARIA", "CHACHA20", "NULL", "DES", "3DES"};
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
        if (!strncmp(t, c[i], strlen(c[i])))
            return true;
    return false;
}

/* A spelling-independent key for a suite name: "ECDHE-RSA-AES128-GCM-SHA256"
 * (OpenSSL), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" (IANA) and
 * "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256" (mbedTLS) all give
 * "ECDHE-RSA-AES128-GCM-SHA256". Returns false for names that cannot be a
 * TLS 1.2 suite (e.g. TLS 1.3's "TLS_AES_128_GCM_SHA256"). */
static bool canon_suite(const char *in, char *out, size_t cap)
{
    char tok[16][24];
    int n = 0;
    const char *p = in;
    while (*p) {
        while (*p == '-' || *p == '_')
            p++;
        if (!*p)
            break;
        if (n == 16)
            return false;
        size_t k = 0;
        while (*p && *p != '-' && *p != '_') {
            if (k + 1 >= sizeof(tok[0]))
                return false;
            char c = *p++;
            tok[n][k++] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
        }
        tok[n++][k] = '\0';
    }
    char t[16][48]; /* merged tokens: "CAMELLIA" + "256" */
    int m = 0;
    bool tls = n && !strcmp(tok[0], "TLS"), with = false;
    for (int i = tls ? 1 : 0; i < n; i++) {
        if (!strcmp(tok[i], "WITH")) {
            with = true;
            continue;
        }
        if (!strcmp(tok[i], "CBC"))
            continue;
        bool num = i + 1 < n && tok[i + 1][0] >= '0' && tok[i + 1][0] <= '9';
        if (num && (!strcmp(tok[i], "AES") || !strcmp(tok[i], "CAMELLIA") ||
                    !strcmp(tok[i], "ARIA") || !strcmp(tok[i], "CCM"))) {
            snprintf(t[m++], sizeof(t[0]), "%s%s", tok[i], tok[i + 1]);
            i++;
            continue;
        }
        memcpy(t[m++], tok[i], sizeof(tok[0]));
    }
    if ((tls && !with) || m == 0)
        return false;
    if (m > 1 && !strcmp(t[m - 1], "SHA256") && !strcmp(t[m - 2], "POLY1305"))
        m--;
    size_t o = 0;
    out[0] = '\0';
    if (is_cipher_token(t[0]))
        o = (size_t)snprintf(out, cap, "RSA"); /* OpenSSL leaves plain RSA key exchange out */
    for (int i = 0; i < m && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? "-" : "", t[i]);
    return o < cap;
}

int tls_ciphersuite_id(const char *name)
{
    char mb[96];
    size_t n = strlen(name);
    if (n >= sizeof(mb))
        return 0;
    for (size_t i = 0; i <= n; i++)
        mb[i] = name[i] == '_' ? '-' : name[i];
    const int *enabled = mbedtls_ssl_list_ciphersuites();
    int id = mbedtls_ssl_get_ciphersuite_id(mb);
    if (id)
        for (const int *e = enabled; *e; e++)
            if (*e == id)
                return id;
    char want[96], have[96];
    if (!canon_suite(name, want, sizeof(want)))
        return 0;
    for (const int *e = enabled; *e; e++) {
        const char *nm = mbedtls_ssl_get_ciphersuite_name(*e);
        if (nm && canon_suite(nm, have, sizeof(have)) && !strcmp(want, have))
            return *e;
    }
    return 0;
}

static int parse_ciphers(struct tls_ctx *ctx, const struct listener_config *lc)
{
    const char *p = lc->tls.ciphers;
    int n = 0;
    while (*p) {
        size_t len = strcspn(p, ":, ");
        if (len) {
            char name[96];
            if (len >= sizeof(name)) {
                lerr(lc, "ciphers: name too long: %.40s...", p);
                return -1;
            }
            memcpy(name, p, len);
            name[len] = '\0';
            int id = tls_ciphersuite_id(name);
            if (!id) {
                lerr(lc,
                     "ciphers: unknown or unsupported cipher suite '%s' (give suite names, OpenSSL "
                     "or IANA style, supported by mbedTLS %s for TLS 1.2; see docs/tls.md)",
                     name, MBEDTLS_VERSION_STRING);
                return -1;
            }
            bool dup = false;
            for (int i = 0; i < n; i++)
                dup |= ctx->suites[i] == id;
            if (!dup) {
                if (n == TLS_CIPHERS_MAX) {
                    lerr(lc, "ciphers: more than %d suites", TLS_CIPHERS_MAX);
                    return -1;
                }
                ctx->suites[n++] = id;
            }
        }
        p += len;
        if (*p)
            p++;
    }
    if (!n) {
        lerr(lc, "ciphers: empty list");
        return -1;
    }
    ctx->suites[n] = 0;
    mbedtls_ssl_conf_ciphersuites(&ctx->conf, ctx->suites);
    return 0;
}

/* mosquitto's tls_version is the lowest version allowed. */
static int set_version(struct tls_ctx *ctx, const struct listener_config *lc)
{
    const char *v = lc->tls.tls_version;
    int min = MBEDTLS_SSL_MINOR_VERSION_3;
    if (!v || !strcmp(v, "tlsv1.2")) {
        min = MBEDTLS_SSL_MINOR_VERSION_3;
    } else if (!strcmp(v, "tlsv1.3")) {
        lerr(lc,
             "tls_version tlsv1.3: mbedTLS %s as built by Debian has no TLS 1.3 server "
             "(MBEDTLS_SSL_PROTO_TLS1_3 is absent); use tlsv1.2",
             MBEDTLS_VERSION_STRING);
        return -1;
    } else if (!strcmp(v, "tlsv1.1")) {
#if defined(MBEDTLS_SSL_PROTO_TLS1_1)
        min = MBEDTLS_SSL_MINOR_VERSION_2;
        log_printf(LOG_T_WARNING,
                   "Warning: listener on line %d (port %u): tls_version tlsv1.1 allows TLS 1.1, "
                   "which is deprecated (RFC 8996).",
                   lc->line, (unsigned)lc->port);
#else
        lerr(lc, "tls_version tlsv1.1: not in this mbedTLS build");
        return -1;
#endif
    } else {
        lerr(lc, "tls_version '%s': must be tlsv1.2 (or tlsv1.1; tlsv1.3 is not available)", v);
        return -1;
    }
    mbedtls_ssl_conf_min_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3, min);
    mbedtls_ssl_conf_max_version(&ctx->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    return 0;
}

static void warn_expiry(const struct listener_config *lc, const char *what, const char *path,
                        const mbedtls_x509_crt *crt)
{
    if (mbedtls_x509_time_is_past(&crt->valid_to))
        log_printf(LOG_T_WARNING,
                   "Warning: listener on line %d (port %u): %s %s expired on %04d-%02d-%02d.",
                   lc->line, (unsigned)lc->port, what, path, crt->valid_to.year, crt->valid_to.mon,
                   crt->valid_to.day);
    else if (mbedtls_x509_time_is_future(&crt->valid_from))
        log_printf(LOG_T_WARNING,
                   "Warning: listener on line %d (port %u): %s %s is not valid before "
                   "%04d-%02d-%02d (is the clock set?).",
                   lc->line, (unsigned)lc->port, what, path, crt->valid_from.year,
                   crt->valid_from.mon, crt->valid_from.day);
}

/* mbedTLS says "Read/write of file failed" for a missing file or one the
 * broker's user may not read: say which. */
static bool readable(const struct listener_config *lc, const char *what, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        lerr(lc, "%s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static int load_files(struct tls_ctx *ctx, const struct listener_config *lc)
{
    const struct tls_config *t = &lc->tls;
    char eb[200];
    int r;
    if (t->certfile || t->keyfile) {
        if (!t->certfile || !t->keyfile) {
            lerr(lc, "%s is set but %s is not: both are needed", t->certfile ? "certfile" : "keyfile",
                 t->certfile ? "keyfile" : "certfile");
            return -1;
        }
        if (!readable(lc, "certfile", t->certfile) || !readable(lc, "keyfile", t->keyfile))
            return -1;
        if ((r = mbedtls_x509_crt_parse_file(&ctx->cert, t->certfile)) != 0) {
            lerr(lc, "certfile %s: %s", t->certfile,
                 r > 0 ? "some certificates in it could not be parsed" : mbed_err(r, eb, sizeof(eb)));
            return -1;
        }
        warn_expiry(lc, "certfile", t->certfile, &ctx->cert);
        if ((r = mbedtls_pk_parse_keyfile(&ctx->key, t->keyfile, NULL)) != 0) {
            lerr(lc, "keyfile %s: %s%s", t->keyfile, mbed_err(r, eb, sizeof(eb)),
                 r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED ? " (encrypted keys are not supported)" : "");
            return -1;
        }
        if ((r = mbedtls_pk_check_pair(&ctx->cert.pk, &ctx->key)) != 0) {
            lerr(lc, "keyfile %s does not match the first certificate in certfile %s: %s",
                 t->keyfile, t->certfile, mbed_err(r, eb, sizeof(eb)));
            return -1;
        }
        if ((r = mbedtls_ssl_conf_own_cert(&ctx->conf, &ctx->cert, &ctx->key)) != 0) {
            lerr(lc, "certfile %s: %s", t->certfile, mbed_err(r, eb, sizeof(eb)));
            return -1;
        }
    }
    bool have_ca = false;
    if (t->cafile) {
        if (!readable(lc, "cafile", t->cafile))
            return -1;
        if ((r = mbedtls_x509_crt_parse_file(&ctx->ca, t->cafile)) != 0) {
            lerr(lc, "cafile %s: %s", t->cafile,
                 r > 0 ? "some certificates in it could not be parsed" : mbed_err(r, eb, sizeof(eb)));
            return -1;
        }
        have_ca = true;
    }
    if (t->capath) {
        r = mbedtls_x509_crt_parse_path(&ctx->ca, t->capath);
        if (r < 0) {
            lerr(lc, "capath %s: %s", t->capath, mbed_err(r, eb, sizeof(eb)));
            return -1;
        }
        if (r > 0)
            log_printf(LOG_T_WARNING,
                       "Warning: listener on line %d (port %u): capath %s: %d files are not "
                       "certificates (ignored).",
                       lc->line, (unsigned)lc->port, t->capath, r);
        if (ctx->ca.version == 0) {
            lerr(lc, "capath %s holds no certificate", t->capath);
            return -1;
        }
        have_ca = true;
    }
    bool have_crl = false;
    if (t->crlfile) {
        if (!have_ca) {
            lerr(lc, "crlfile needs cafile or capath");
            return -1;
        }
        if (!readable(lc, "crlfile", t->crlfile))
            return -1;
        if ((r = mbedtls_x509_crl_parse_file(&ctx->crl, t->crlfile)) != 0) {
            lerr(lc, "crlfile %s: %s", t->crlfile, mbed_err(r, eb, sizeof(eb)));
            return -1;
        }
        have_crl = true;
    }
    if (t->require_certificate) {
        if (!have_ca) {
            lerr(lc, "require_certificate true needs cafile or capath to check client "
                     "certificates against");
            return -1;
        }
        mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&ctx->conf, &ctx->ca, have_crl ? &ctx->crl : NULL);
    } else {
        /* mosquitto: client certificates are asked for and checked only with
         * require_certificate true. */
        mbedtls_ssl_conf_authmode(&ctx->conf, MBEDTLS_SSL_VERIFY_NONE);
    }
    if ((t->use_identity_as_username || t->use_subject_as_username) && !t->require_certificate &&
        !t->psk_hint) {
        lerr(lc, "%s needs require_certificate true (without it no client certificate is "
                 "asked for, and every client would be refused)",
             t->use_identity_as_username ? "use_identity_as_username" : "use_subject_as_username");
        return -1;
    }
    return 0;
}

struct tls_ctx *tls_ctx_new(const struct listener_config *lc, const char *psk_file)
{
    struct tls_ctx *ctx = mem_calloc(NULL, sizeof(*ctx));
    if (!ctx) {
        lerr(lc, "out of memory");
        return NULL;
    }
    ctx->line = lc->line;
    ctx->port = lc->port;
    ctx->use_identity = lc->tls.use_identity_as_username;
    ctx->use_subject = lc->tls.use_subject_as_username;
    mbedtls_ssl_config_init(&ctx->conf);
    mbedtls_x509_crt_init(&ctx->cert);
    mbedtls_pk_init(&ctx->key);
    mbedtls_x509_crt_init(&ctx->ca);
    mbedtls_x509_crl_init(&ctx->crl);

    char eb[200];
    if (rng_ref(eb, sizeof(eb)) < 0) {
        lerr(lc, "cannot seed the random generator: %s", eb);
        goto fail;
    }
    ctx->rng_held = true;
    int r = mbedtls_ssl_config_defaults(&ctx->conf, MBEDTLS_SSL_IS_SERVER,
                                        MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (r) {
        lerr(lc, "TLS defaults: %s", mbed_err(r, eb, sizeof(eb)));
        goto fail;
    }
    mbedtls_ssl_conf_rng(&ctx->conf, mbedtls_ctr_drbg_random, &rng.drbg);
    mbedtls_ssl_conf_renegotiation(&ctx->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    if (set_version(ctx, lc) < 0 || load_files(ctx, lc) < 0)
        goto fail;
    if (lc->tls.ciphers && parse_ciphers(ctx, lc) < 0)
        goto fail;
    if (lc->tls.ciphers_tls13)
        log_printf(LOG_T_WARNING,
                   "Warning: listener on line %d (port %u): ciphers_tls1.3 has no effect: mbedTLS "
                   "%s has no TLS 1.3.",
                   lc->line, (unsigned)lc->port, MBEDTLS_VERSION_STRING);
    if (lc->tls.psk_hint) {
        /* The keys themselves are the auth module's (auth_psk_key): it
         * loads psk_file with the password file and reloads it on SIGHUP. */
        if (!psk_file) {
            lerr(lc, "psk_hint is set but no psk_file is: PSK clients could not connect");
            goto fail;
        }
        mbedtls_ssl_conf_psk_cb(&ctx->conf, psk_cb, ctx);
    } else {
        /* Resumed sessions skip the key exchange: a reconnect storm after a
         * Wi-Fi drop costs a hash, not a signature. Not with PSK: a resumed
         * PSK session would not tell us its identity (the username). */
        mbedtls_ssl_cache_init(&ctx->cache);
        /* An hour, not mbedTLS's day: a cached session outlives the
         * certificate check it skips. 50 entries, ~1-2 KiB each. */
        mbedtls_ssl_cache_set_timeout(&ctx->cache, TLS_SESSION_CACHE_S);
        ctx->cache_on = true;
        mbedtls_ssl_conf_session_cache(&ctx->conf, &ctx->cache, mbedtls_ssl_cache_get,
                                       mbedtls_ssl_cache_set);
    }
    if (!lc->tls.certfile && !lc->tls.psk_hint) {
        lerr(lc, "TLS needs certfile and keyfile, or psk_hint and a psk_file");
        goto fail;
    }
    log_printf(LOG_T_INFO,
               "TLS on port %u: TLS 1.%d%s, %s, client certificates %s%s%s%s.",
               (unsigned)lc->port, lc->tls.tls_version && !strcmp(lc->tls.tls_version, "tlsv1.1") ? 1 : 2,
               lc->tls.tls_version && !strcmp(lc->tls.tls_version, "tlsv1.1") ? " to 1.2" : "",
               lc->tls.ciphers ? "configured cipher suites" : "mbedTLS default cipher suites",
               lc->tls.require_certificate ? "required" : "not requested",
               ctx->use_identity ? ", CN is the username" : "",
               ctx->use_subject ? ", subject is the username" : "",
               lc->tls.psk_hint ? ", PSK from psk_file" : "");
    return ctx;
fail:
    tls_ctx_free(ctx);
    return NULL;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (!ctx)
        return;
    mbedtls_ssl_config_free(&ctx->conf);
    if (ctx->cache_on)
        mbedtls_ssl_cache_free(&ctx->cache);
    mbedtls_x509_crt_free(&ctx->cert);
    mbedtls_pk_free(&ctx->key);
    mbedtls_x509_crt_free(&ctx->ca);
    mbedtls_x509_crl_free(&ctx->crl);
    if (ctx->rng_held)
        rng_unref();
    mem_free(NULL, ctx, sizeof(*ctx));
}

/* ---- sessions ---- */

static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
    struct tls_session *s = arg;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    ssize_t n = platform_sock_writev(s->fd, &iov, 1);
    if (n >= 0)
        return (int)n;
    if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    return n == -EPIPE || n == -ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
    struct tls_session *s = arg;
    ssize_t n = platform_sock_read(s->fd, buf, len);
    if (n >= 0)
        return (int)n; /* 0: end of stream, which mbedTLS reports as CONN_EOF */
    if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
        return MBEDTLS_ERR_SSL_WANT_READ;
    return n == -ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
}

void *tls_session_new(struct tls_ctx *ctx, int fd)
{
    struct tls_session *s = mem_calloc(NULL, sizeof(*s));
    if (!s)
        return NULL;
    s->ctx = ctx;
    s->fd = fd;
    mbedtls_ssl_init(&s->ssl);
    return s;
}

void tls_session_free(void *session)
{
    struct tls_session *s = session;
    if (!s)
        return;
    mbedtls_ssl_free(&s->ssl);
    mem_strfree(NULL, s->identity);
    mem_free(NULL, s, sizeof(*s));
}

static const char *alert_name(unsigned a)
{
    switch (a) {
    case 10: return "unexpected_message";
    case 20: return "bad_record_mac";
    case 40: return "handshake_failure";
    case 42: return "bad_certificate";
    case 43: return "unsupported_certificate";
    case 44: return "certificate_revoked";
    case 45: return "certificate_expired";
    case 46: return "certificate_unknown";
    case 47: return "illegal_parameter";
    case 48: return "unknown_ca";
    case 49: return "access_denied";
    case 50: return "decode_error";
    case 51: return "decrypt_error";
    case 70: return "protocol_version";
    case 71: return "insufficient_security";
    case 80: return "internal_error";
    case 86: return "inappropriate_fallback";
    case 90: return "user_canceled";
    case 109: return "missing_extension";
    case 112: return "unrecognized_name";
    case 115: return "unknown_psk_identity";
    default: return "?";
    }
}

static void describe(struct tls_session *s, int r, char *why, size_t cap)
{
    char eb[200];
    if (r == MBEDTLS_ERR_SSL_CONN_EOF) {
        snprintf(why, cap, "the client closed the connection");
        return;
    }
    if (r == MBEDTLS_ERR_NET_CONN_RESET) {
        snprintf(why, cap, "connection reset by the client");
        return;
    }
    mbed_err(r, eb, sizeof(eb));
    if (s->psk_err) {
        snprintf(why, cap, "%s: %s", eb,
                 s->psk_err == -ERR_NOSPACE
                     ? "the identity's key in psk_file is longer than mbedTLS's 32-byte limit"
                     : "PSK identity not in psk_file");
    } else if (r == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && s->ssl.in_msg) {
        unsigned a = s->ssl.in_msg[1];
        snprintf(why, cap, "%s: %s (%u)", eb, alert_name(a), a);
    } else if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        char vb[256];
        int n = mbedtls_x509_crt_verify_info(vb, sizeof(vb), "", mbedtls_ssl_get_verify_result(&s->ssl));
        for (int i = 0; i < n && vb[i]; i++)
            if (vb[i] == '\n')
                vb[i] = i + 1 < n && vb[i + 1] ? ';' : '\0';
        snprintf(why, cap, "%s: %s", eb, n > 0 ? vb : "?");
    } else if (r == MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO || r == MBEDTLS_ERR_SSL_INVALID_RECORD ||
               r == MBEDTLS_ERR_SSL_BAD_INPUT_DATA) {
        snprintf(why, cap, "%s: not a TLS client (plain MQTT on a TLS port?)", eb);
    } else {
        snprintf(why, cap, "%s", eb);
    }
}

/* The identity for use_identity_as_username (subject CN) or
 * use_subject_as_username (the whole subject DN, RFC 2253 as mosquitto
 * prints it). PSK connections already have theirs. */
static int cert_identity(struct tls_session *s, char *why, size_t cap)
{
    struct tls_ctx *ctx = s->ctx;
    if (s->identity || !(ctx->use_identity || ctx->use_subject))
        return 0;
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&s->ssl);
    if (!peer) {
        snprintf(why, cap, "no client certificate, and the listener uses it as the username");
        return -EPROTO;
    }
    char buf[TLS_SUBJECT_MAX];
    size_t len = 0;
    if (ctx->use_subject) {
        int n = tls_subject_rfc2253(&peer->subject, buf, sizeof(buf));
        if (n < 0) {
            snprintf(why, cap, "client certificate subject longer than %u bytes", TLS_SUBJECT_MAX);
            return -EPROTO;
        }
        len = (size_t)n;
    } else {
        /* The first CN in certificate order, as mosquitto's
         * X509_NAME_get_index_by_NID(name, NID_commonName, -1). */
        const mbedtls_x509_name *cn = NULL;
        for (const mbedtls_x509_name *n = &peer->subject; n; n = n->next)
            if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
                cn = n;
                break;
            }
        if (!cn) {
            snprintf(why, cap, "client certificate has no CN, and the listener uses it as the "
                               "username");
            return -EPROTO;
        }
        if (cn->val.len >= sizeof(buf) || memchr(cn->val.p, 0, cn->val.len) ||
            mqtt_utf8_validate(cn->val.p, cn->val.len) < 0) {
            snprintf(why, cap, "client certificate CN is not a valid username (UTF-8, no NUL)");
            return -EPROTO;
        }
        memcpy(buf, cn->val.p, cn->val.len);
        len = cn->val.len;
        buf[len] = '\0';
    }
    s->identity = mem_strndup(NULL, buf, len);
    if (!s->identity) {
        snprintf(why, cap, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int tls_handshake(struct conn *cn, unsigned *want, char *why, size_t cap)
{
    struct tls_session *s = conn_transport_data(cn);
    s->cn = cn;
    if (!s->setup) {
        /* First bytes from the client: now the 2 x 16 KiB buffers. */
        int r = mbedtls_ssl_setup(&s->ssl, &s->ctx->conf);
        if (r) {
            describe(s, r, why, cap);
            return -ENOMEM;
        }
        mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
        s->setup = true;
    }
    uint64_t t0 = platform_now_us();
    while (s->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
        int r = mbedtls_ssl_handshake_step(&s->ssl);
        if (r == MBEDTLS_ERR_SSL_WANT_READ) {
            *want = LOOP_READ;
            return -EAGAIN;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_WRITE) {
            *want = LOOP_WRITE;
            return -EAGAIN;
        }
        if (r) {
            describe(s, r, why, cap);
            return -EPROTO;
        }
        if (s->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER &&
            platform_now_us() - t0 >= TLS_HANDSHAKE_SLICE_US) {
            /* Yield: the socket is writable, so the write event runs the
             * next slice on the next turn, after the other connections. */
            *want = LOOP_WRITE;
            return -EAGAIN;
        }
    }
    s->done = true;
    int r = cert_identity(s, why, cap);
    if (r < 0)
        return r;
    snprintf(why, cap, "%s, %s%s%s%s", mbedtls_ssl_get_version(&s->ssl),
             mbedtls_ssl_get_ciphersuite(&s->ssl), s->identity ? ", identity '" : "",
             s->identity ? s->identity : "", s->identity ? "'" : "");
    return 0;
}

static ssize_t tls_read(struct conn *cn, void *buf, size_t len)
{
    struct tls_session *s = conn_transport_data(cn);
    if (s->read_end)
        return s->read_end > 0 ? 0 : s->read_end;
    size_t got = 0;
    while (got < len) {
        int r = mbedtls_ssl_read(&s->ssl, (unsigned char *)buf + got, len - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == MBEDTLS_ERR_SSL_WANT_READ)
            break;
        int end;
        if (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == MBEDTLS_ERR_SSL_CONN_EOF) {
            end = 1;
        } else if (r == MBEDTLS_ERR_NET_CONN_RESET) {
            end = -ECONNRESET;
        } else {
            char eb[200];
            log_printf(LOG_T_DEBUG, "TLS read on fd %d: %s%s", s->fd, mbed_err(r, eb, sizeof(eb)),
                       r == MBEDTLS_ERR_SSL_WANT_WRITE ? " (the client tried to renegotiate)" : "");
            end = -EPROTO;
        }
        if (got) {
            s->read_end = end;
            break;
        }
        s->read_end = end;
        return end > 0 ? 0 : end;
    }
    return got ? (ssize_t)got : -EAGAIN;
}

/* Gathers up to want bytes from iov (from iov[i] + off) into out. */
static size_t gather(const struct iovec *iov, int iovcnt, int i, size_t off, uint8_t *out,
                     size_t want)
{
    size_t n = 0;
    for (; i < iovcnt && n < want; i++, off = 0) {
        size_t take = iov[i].iov_len - off;
        if (take > want - n)
            take = want - n;
        memcpy(out + n, (const uint8_t *)iov[i].iov_base + off, take);
        n += take;
    }
    return n;
}

static ssize_t tls_writev(struct conn *cn, const struct iovec *iov, int iovcnt)
{
    static uint8_t scratch[TLS_RECORD_MAX]; /* one loop, one gather buffer */
    struct tls_session *s = conn_transport_data(cn);
    size_t done = 0, off = 0;
    int i = 0;
    for (;;) {
        while (i < iovcnt && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i == iovcnt)
            break;
        size_t here = iov[i].iov_len - off;
        size_t want = s->wpending ? s->wpending : TLS_RECORD_MAX;
        const unsigned char *p;
        size_t len;
        if (here >= want || (!s->wpending && i == iovcnt - 1)) {
            p = (const unsigned char *)iov[i].iov_base + off;
            len = here < want ? here : want;
        } else {
            len = gather(iov, iovcnt, i, off, scratch, want);
            p = scratch;
            if (s->wpending && len < s->wpending) {
                /* The out-queue lost the bytes of the record in flight:
                 * the stream cannot be kept consistent. */
                log_printf(LOG_T_ERROR, "TLS write on fd %d: pending record lost.", s->fd);
                return done ? (ssize_t)done : -EIO;
            }
        }
        int r = mbedtls_ssl_write(&s->ssl, p, len);
        if (r == MBEDTLS_ERR_SSL_WANT_WRITE) {
            s->wpending = len;
            return done ? (ssize_t)done : -EAGAIN;
        }
        if (r < 0) {
            char eb[200];
            log_printf(LOG_T_DEBUG, "TLS write on fd %d: %s", s->fd, mbed_err(r, eb, sizeof(eb)));
            return done ? (ssize_t)done : (r == MBEDTLS_ERR_NET_CONN_RESET ? -ECONNRESET : -EIO);
        }
        s->wpending = 0;
        done += (size_t)r;
        /* advance by r */
        size_t adv = (size_t)r;
        while (adv) {
            size_t left = iov[i].iov_len - off;
            if (adv < left) {
                off += adv;
                adv = 0;
            } else {
                adv -= left;
                i++;
                off = 0;
            }
        }
    }
    return (ssize_t)done;
}

static size_t tls_pending(struct conn *cn)
{
    struct tls_session *s = conn_transport_data(cn);
    if (s->read_end)
        return 1;
    if (!s->setup)
        return 0;
    size_t n = mbedtls_ssl_get_bytes_avail(&s->ssl);
    return n ? n : (size_t)mbedtls_ssl_check_pending(&s->ssl);
}

static void tls_close(struct conn *cn, void *scratch, size_t scratch_len)
{
    struct tls_session *s = conn_transport_data(cn);
    if (s->done && !conn_io_dead(cn))
        (void)mbedtls_ssl_close_notify(&s->ssl); /* one non-blocking try */
    platform_sock_close(s->fd, scratch, scratch_len);
    tls_session_free(s);
}

static const char *tls_identity(struct conn *cn)
{
    struct tls_session *s = conn_transport_data(cn);
    return s->identity;
}

const struct conn_transport conn_tls = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .pending = tls_pending,
    .close = tls_close,
    .handshake = tls_handshake,
    .identity = tls_identity,
};

/* ---- subject DN, RFC 2253 as OpenSSL prints it ---- */

struct sb {
    char *p;
    size_t cap, len;
    bool over;
};

static void sb_putc(struct sb *b, char c)
{
    if (b->len + 1 >= b->cap) {
        b->over = true;
        return;
    }
    b->p[b->len++] = c;
}

static void sb_puts(struct sb *b, const char *s)
{
    while (*s)
        sb_putc(b, *s++);
}

static void sb_hex(struct sb *b, unsigned v)
{
    static const char hx[] = "0123456789ABCDEF";
    sb_putc(b, hx[(v >> 4) & 15]);
    sb_putc(b, hx[v & 15]);
}

/* One byte of a UTF-8 value with OpenSSL's ESC_2253 | ESC_CTRL | ESC_MSB. */
static void sb_esc(struct sb *b, uint8_t c, bool first, bool last)
{
    if (c >= 0x80 || c < 0x20 || c == 0x7f) {
        sb_putc(b, '\\');
        sb_hex(b, c);
    } else if (strchr(",+\"\\<>;", c) || (first && (c == '#' || c == ' ')) || (last && c == ' ')) {
        sb_putc(b, '\\');
        sb_putc(b, (char)c);
    } else {
        sb_putc(b, (char)c);
    }
}

static void sb_utf8(struct sb *b, uint32_t cp, bool first, bool last)
{
    uint8_t u[4];
    int n;
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (uint8_t)(0xC0 | cp >> 6);
        u[1] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 2;
    } else {
        u[0] = (uint8_t)(0xE0 | cp >> 12);
        u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (uint8_t)(0x80 | (cp & 0x3F));
        n = 3;
    }
    for (int i = 0; i < n; i++)
        sb_esc(b, u[i], first && i == 0, last && i == n - 1);
}

/* Attributes OpenSSL names that mbedTLS 2.28's table lacks. */
static const char *extra_short_name(const mbedtls_x509_buf *oid)
{
    static const struct {
        const char *der, *sn;
        size_t len;
    } t[] = {
        {"\x09\x92\x26\x89\x93\xF2\x2C\x64\x01\x01", "UID", 10}, /* 0.9.2342.19200300.100.1.1 */
        {"\x55\x04\x09", "street", 3},                               /* 2.5.4.9 */
        {"\x55\x04\x0F", "businessCategory", 3},                     /* 2.5.4.15 */
        {"\x55\x04\x61", "organizationIdentifier", 3},               /* 2.5.4.97 */
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (oid->len == t[i].len && !memcmp(oid->p, t[i].der, t[i].len))
            return t[i].sn;
    return NULL;
}

int tls_subject_rfc2253(const void *namev, char *out, size_t cap)
{
    const mbedtls_x509_name *ents[64];
    int set[64];
    int n = 0, rdn = 0;
    bool merged_prev = false;
    for (const mbedtls_x509_name *e = namev; e && n < 64; e = e->next) {
        if (!e->oid.p) /* an empty name */
            continue;
        if (!merged_prev && n)
            rdn++;
        set[n] = rdn;
        ents[n++] = e;
        merged_prev = e->next_merged;
    }
    struct sb b = {.p = out, .cap = cap};
    if (cap)
        out[0] = '\0';
    for (int k = n - 1; k >= 0; k--) {
        const mbedtls_x509_name *e = ents[k];
        if (k != n - 1)
            sb_putc(&b, set[k] == set[k + 1] ? '+' : ',');
        const char *sn = extra_short_name(&e->oid);
        if (sn || (mbedtls_oid_get_attr_short_name(&e->oid, &sn) == 0 && sn)) {
            sb_puts(&b, !strcmp(sn, "uid") ? "UID" : sn);
            sb_putc(&b, '=');
        } else {
            /* Unknown attribute: dotted OID and the DER value in hex. */
            char oid[64];
            if (mbedtls_oid_get_numeric_string(oid, sizeof(oid), &e->oid) < 0)
                snprintf(oid, sizeof(oid), "?");
            sb_puts(&b, oid);
            sb_puts(&b, "=#");
            sb_hex(&b, (unsigned)e->val.tag);
            size_t l = e->val.len;
            if (l < 0x80) {
                sb_hex(&b, (unsigned)l);
            } else if (l < 0x100) {
                sb_hex(&b, 0x81);
                sb_hex(&b, (unsigned)l);
            } else {
                sb_hex(&b, 0x82);
                sb_hex(&b, (unsigned)(l >> 8));
                sb_hex(&b, (unsigned)l);
            }
            for (size_t i = 0; i < l; i++)
                sb_hex(&b, e->val.p[i]);
            continue;
        }
        const uint8_t *v = e->val.p;
        size_t l = e->val.len;
        if (e->val.tag == MBEDTLS_ASN1_BMP_STRING) {
            for (size_t i = 0; i + 1 < l; i += 2)
                sb_utf8(&b, (uint32_t)v[i] << 8 | v[i + 1], i == 0, i + 2 >= l);
        } else if (e->val.tag == MBEDTLS_ASN1_T61_STRING) {
            for (size_t i = 0; i < l; i++) /* Latin-1, as OpenSSL reads it */
                sb_utf8(&b, v[i], i == 0, i + 1 == l);
        } else {
            for (size_t i = 0; i < l; i++)
                sb_esc(&b, v[i], i == 0, i + 1 == l);
        }
    }
    if (b.over)
        return -1;
    if (cap)
        out[b.len] = '\0';
    return (int)b.len;
}
