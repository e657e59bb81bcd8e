/* mosquitto.conf syntax for the keys loopbot supports (config.h says what
 * they mean, docs/configuration.md says it for users).
 *
 * The parser is pure over a buffer: it walks lines in place, with no line
 * buffer to overflow, and allocates only what it keeps (listeners, the log
 * file path, warnings). It fills a scratch copy of the config and commits it
 * only when the whole text parsed, so a bad file on reload leaves the
 * running settings untouched. */
#include "broker/config.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/mem.h"
#include "broker/textfile.h"
#include "mqtt/error.h"

/* A config file is a few KiB; this only stops "-c /dev/zero" from eating
 * the Pi's memory. */
#define CONFIG_FILE_MAX (64u * 1024 * 1024)

/* Values quoted in messages are cut here, so a 64 KiB line makes a readable
 * error rather than a truncated one. */
#define SHOW_MAX 80
#define SHOW(s, n) (int)((n) > SHOW_MAX ? SHOW_MAX : (n)), (s), ((n) > SHOW_MAX ? "..." : "")

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

struct parser {
    struct config *c; /* the scratch copy being filled */
    const char *name; /* the file, for messages */
    int line;
    char *err;
    size_t errlen;
    struct listener_config *cur;   /* the current `listener` block; NULL before the first */
    struct listener_config **tail; /* where the next listener is linked */
    struct config_warning **wtail;
    bool log_dest_set; /* the first log_dest / log_type replaces the default */
    bool log_type_set;
    /* mosquitto's "default listener", made by port, bind_address, or a
     * max_connections other than -1 before any listener */
    uint16_t dl_port; /* 0 = not given: 1883 */
    char *dl_host;
    bool dl_max_connections;
    int dl_line;
    /* security options seen so far: per_listener_settings must come first */
    bool sec_seen;
    /* include_dir: only from a file (config_load_file), only at level 0 */
    bool files_allowed;
    int level;
};

struct option {
    const char *name;
    int (*parse)(struct parser *p, const struct option *o, const char *v, size_t n);
    size_t offset; /* of the field in struct config, for the generic parsers */
    size_t size;
    int64_t min, max;
};

/* ---- messages ---- */

static int fail(struct parser *p, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    text_error(p->err, p->errlen, p->name, p->line, fmt, ap);
    va_end(ap);
    return -ERR_CONFIG;
}

static int nomem(struct parser *p)
{
    fail(p, "out of memory");
    return -ERR_NOMEM;
}

static int warn(struct parser *p, const char *fmt, ...) PRINTF_LIKE(2, 3);
static int warn(struct parser *p, const char *fmt, ...)
{
    char head[64];
    int hn = snprintf(head, sizeof(head), ":%d: ", p->line);
    va_list ap;
    va_start(ap, fmt);
    int bn = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (hn < 0 || bn < 0)
        return nomem(p);
    size_t namelen = strlen(p->name);
    size_t len = namelen + (size_t)hn + (size_t)bn;
    struct config_warning *w = mem_calloc(NULL, sizeof(*w));
    char *text = mem_alloc(NULL, len + 1);
    if (!w || !text) {
        mem_free(NULL, w, sizeof(*w));
        mem_free(NULL, text, len + 1);
        return nomem(p);
    }
    memcpy(text, p->name, namelen);
    memcpy(text + namelen, head, (size_t)hn);
    va_start(ap, fmt);
    vsnprintf(text + namelen + hn, (size_t)bn + 1, fmt, ap);
    va_end(ap);
    w->text = text;
    *p->wtail = w;
    p->wtail = &w->next;
    return 0;
}

/* mosquitto reads "max_keepalive 60 # note" as 60; we read the whole rest of
 * the line as the value, as its man page says, and say why it failed. */
static const char *hash_hint(const char *v, size_t n)
{
    return memchr(v, '#', n) ? " ('#' starts a comment only at the start of a line)" : "";
}

/* ---- lexing ---- */




/* Decimal with an optional '-', nothing else: no '+', no blanks, no
 * trailing junk, no overflow. */
static bool parse_int(const char *v, size_t n, int64_t *out)
{
    bool neg = false;
    size_t i = 0;
    if (n && v[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == n)
        return false;
    uint64_t x = 0;
    for (; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > ((uint64_t)INT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = neg ? -(int64_t)x : (int64_t)x;
    return true;
}

/* ---- value parsers: one per kind of key ---- */

static void store_uint(struct config *c, const struct option *o, uint64_t x)
{
    char *field = (char *)c + o->offset;
    switch (o->size) {
    case 1: {
        uint8_t v = (uint8_t)x;
        memcpy(field, &v, sizeof(v));
        break;
    }
    case 2: {
        uint16_t v = (uint16_t)x;
        memcpy(field, &v, sizeof(v));
        break;
    }
    case 4: {
        uint32_t v = (uint32_t)x;
        memcpy(field, &v, sizeof(v));
        break;
    }
    case 8:
        memcpy(field, &x, sizeof(x));
        break;
    default: /* a table row with a field type opt_number does not handle */
        break;
    }
}

static int opt_number(struct parser *p, const struct option *o, const char *v, size_t n)
{
    int64_t x;
    if (!parse_int(v, n, &x) || x < o->min || x > o->max)
        return fail(p, "%s: expected a number from %lld to %lld, got '%.*s%s'%s", o->name,
                    (long long)o->min, (long long)o->max, SHOW(v, n), hash_hint(v, n));
    store_uint(p->c, o, (uint64_t)x);
    return 0;
}

static int parse_bool(struct parser *p, const struct option *o, const char *v, size_t n, bool *out)
{
    if (text_word_is(v, n, "true"))
        *out = true;
    else if (text_word_is(v, n, "false"))
        *out = false;
    else
        return fail(p, "%s: expected true or false, got '%.*s%s'%s", o->name, SHOW(v, n),
                    hash_hint(v, n));
    return 0;
}

static int opt_bool(struct parser *p, const struct option *o, const char *v, size_t n)
{
    bool b = false;
    int rc = parse_bool(p, o, v, n, &b);
    if (rc == 0)
        memcpy((char *)p->c + o->offset, &b, sizeof(b));
    return rc;
}

/* Where a security option goes: the global settings, or with
 * per_listener_settings true the current listener's. mosquitto 2.0 would
 * put one given before any listener on a hidden default listener on port
 * 1883; loopbot refuses, since that listener is rarely what was meant. */
static int sec_target(struct parser *p, const struct option *o, struct security_config **out)
{
    p->sec_seen = true;
    if (!p->c->per_listener_settings) {
        *out = &p->c->sec;
        return 0;
    }
    if (!p->cur)
        return fail(p, "%s: with per_listener_settings true it applies to a listener: put it "
                       "after a 'listener' line", o->name);
    *out = &p->cur->sec;
    return 0;
}

static int opt_allow_anonymous(struct parser *p, const struct option *o, const char *v, size_t n)
{
    struct security_config *sec = NULL;
    bool b = false;
    int rc = parse_bool(p, o, v, n, &b);
    if (rc == 0)
        rc = sec_target(p, o, &sec);
    if (rc < 0)
        return rc;
    sec->allow_anonymous = b;
    sec->allow_anonymous_set = true;
    return 0;
}

/* per_listener_settings true|false: as mosquitto, it must come before any
 * password_file, acl_file, psk_file or allow_anonymous. */
static int opt_per_listener_settings(struct parser *p, const struct option *o, const char *v,
                                     size_t n)
{
    bool b = false;
    int rc = parse_bool(p, o, v, n, &b);
    if (rc < 0)
        return rc;
    if (b && p->sec_seen)
        return fail(p, "%s: must be set before any other security setting (password_file, "
                       "acl_file, psk_file, allow_anonymous), as mosquitto requires", o->name);
    p->c->per_listener_settings = b;
    return 0;
}

/* A path or other string: the rest of the line, as mosquitto reads it;
 * giving it twice in one scope is an error (mosquitto: "Duplicate ... value"). */
static int set_string(struct parser *p, const struct option *o, char **field, const char *v,
                      size_t n, bool per_listener)
{
    if (*field)
        return fail(p, "%s: given more than once%s", o->name, per_listener ? " for this listener" : "");
    *field = mem_strndup(NULL, v, n);
    return *field ? 0 : nomem(p);
}

/* password_file, acl_file, psk_file: global, or per listener. */
static int opt_sec_path(struct parser *p, const struct option *o, const char *v, size_t n)
{
    struct security_config *sec = NULL;
    int rc = sec_target(p, o, &sec);
    if (rc < 0)
        return rc;
    return set_string(p, o, (char **)((char *)sec + o->offset), v, n, sec != &p->c->sec);
}

/* TLS options belong to the listener above them. */
static int tls_listener(struct parser *p, const struct option *o)
{
    if (!p->cur)
        return fail(p, "%s: is a listener option: put it after a 'listener' line (mosquitto 2.0 "
                       "would silently start a default listener on port 1883 for it)", o->name);
    return 0;
}

static int opt_tls_string(struct parser *p, const struct option *o, const char *v, size_t n)
{
    int rc = tls_listener(p, o);
    if (rc < 0)
        return rc;
    return set_string(p, o, (char **)((char *)&p->cur->tls + o->offset), v, n, true);
}

static int opt_tls_bool(struct parser *p, const struct option *o, const char *v, size_t n)
{
    bool b = false;
    int rc = parse_bool(p, o, v, n, &b);
    if (rc == 0)
        rc = tls_listener(p, o);
    if (rc == 0)
        memcpy((char *)&p->cur->tls + o->offset, &b, sizeof(b));
    return rc;
}

/* tls_version: what mbedTLS 2.28 can offer; mosquitto's tlsv1.1 is gone. */
static int opt_tls_version(struct parser *p, const struct option *o, const char *v, size_t n)
{
    if (!text_word_is(v, n, "tlsv1.2") && !text_word_is(v, n, "tlsv1.3"))
        return fail(p, "%s: expected tlsv1.2 or tlsv1.3, got '%.*s%s'%s", o->name, SHOW(v, n),
                    hash_hint(v, n));
    return opt_tls_string(p, o, v, n);
}

static struct listener_config *listener_new(uint16_t port, const char *addr, size_t addrlen)
{
    struct listener_config *l = mem_calloc(NULL, sizeof(*l));
    if (!l)
        return NULL;
    if (addr) {
        l->bind_address = mem_strndup(NULL, addr, addrlen);
        if (!l->bind_address) {
            mem_free(NULL, l, sizeof(*l));
            return NULL;
        }
    }
    l->port = port;
    return l;
}

/* Port 0 is how mosquitto asks for a unix socket; say so rather than
 * "out of range". */
static int parse_port(struct parser *p, const char *key, const char *v, size_t n, uint16_t *out)
{
    int64_t x;
    if (parse_int(v, n, &x) && x == 0)
        return fail(p, "%s: port 0 means a unix socket in mosquitto, which loopbot does not support "
                       "yet; use a port from 1 to 65535", key);
    if (!parse_int(v, n, &x) || x < 1 || x > 65535)
        return fail(p, "%s: expected a port from 1 to 65535, got '%.*s%s'%s", key, SHOW(v, n),
                    hash_hint(v, n));
    *out = (uint16_t)x;
    return 0;
}

/* "PORT [ADDRESS]", as `listener` and `metrics_listener` take it. */
static int port_and_address(struct parser *p, const struct option *o, const char *v, size_t n,
                            uint16_t *port, const char **addr, size_t *addrlen)
{
    const char *s = v, *end = v + n, *word, *extra;
    size_t len = text_next_word(&s, end, &word);
    *addrlen = text_next_word(&s, end, addr);
    int rc = parse_port(p, o->name, word, len, port);
    if (rc < 0)
        return rc;
    if (text_next_word(&s, end, &extra))
        return fail(p, "%s: expected '%s PORT [ADDRESS]', got '%.*s%s'%s", o->name, o->name,
                    SHOW(v, n), hash_hint(v, n));
    if (*addrlen && (*addr)[0] == '#')
        return fail(p, "%s: '%.*s%s' is not an address%s", o->name, SHOW(*addr, *addrlen),
                    hash_hint(*addr, *addrlen));
    return 0;
}

/* listener PORT [ADDRESS]: starts a listener block. */
static int opt_listener(struct parser *p, const struct option *o, const char *v, size_t n)
{
    uint16_t num;
    const char *addr;
    size_t addrlen;
    int rc = port_and_address(p, o, v, n, &num, &addr, &addrlen);
    if (rc < 0)
        return rc;
    struct listener_config *l = listener_new(num, addrlen ? addr : NULL, addrlen);
    if (!l)
        return nomem(p);
    l->line = p->line;
    *p->tail = l;
    p->tail = &l->next;
    p->cur = l;
    return 0;
}

/* metrics_listener PORT [ADDRESS] (loopbot's own key): the HTTP listener
 * for /metrics and /healthz, on loopback unless an address is given. */
static int opt_metrics_listener(struct parser *p, const struct option *o, const char *v, size_t n)
{
    uint16_t num;
    const char *addr;
    size_t addrlen;
    int rc = port_and_address(p, o, v, n, &num, &addr, &addrlen);
    if (rc < 0)
        return rc;
    if (addrlen >= sizeof(p->c->metrics_address))
        return fail(p, "%s: '%.*s%s' is not a numeric address", o->name, SHOW(addr, addrlen));
    p->c->metrics_port = num;
    if (addrlen) {
        memcpy(p->c->metrics_address, addr, addrlen);
        p->c->metrics_address[addrlen] = '\0';
    }
    return 0;
}

static void default_listener_wanted(struct parser *p)
{
    if (!p->dl_line)
        p->dl_line = p->line;
}

/* port N (deprecated): the default listener's port. */
static int opt_port(struct parser *p, const struct option *o, const char *v, size_t n)
{
    uint16_t num;
    int rc = parse_port(p, o->name, v, n, &num);
    if (rc < 0)
        return rc;
    rc = warn(p, "'port' is deprecated (as in mosquitto 2.0): use 'listener %u' instead", num);
    if (rc == 0 && p->dl_port)
        rc = warn(p, "the default listener's port is given more than once; only the last (%u) "
                     "is used", num);
    p->dl_port = num;
    default_listener_wanted(p);
    return rc;
}

/* bind_address ADDRESS (deprecated): the default listener's address. */
static int opt_bind_address(struct parser *p, const struct option *o, const char *v, size_t n)
{
    const char *s = v, *end = v + n, *addr, *extra;
    size_t addrlen = text_next_word(&s, end, &addr);
    if (text_next_word(&s, end, &extra))
        return fail(p, "%s: expected one address, got '%.*s%s'%s", o->name, SHOW(v, n),
                    hash_hint(v, n));
    if (addr[0] == '#')
        return fail(p, "%s: '%.*s%s' is not an address%s", o->name, SHOW(addr, addrlen),
                    hash_hint(addr, addrlen));
    if (p->dl_host)
        return fail(p, "%s: given more than once", o->name);
    int rc = warn(p, "'bind_address' is deprecated (as in mosquitto 2.0): use 'listener PORT "
                     "%.*s%s' instead", SHOW(addr, addrlen));
    if (rc < 0)
        return rc;
    p->dl_host = mem_strndup(NULL, addr, addrlen);
    if (!p->dl_host)
        return nomem(p);
    default_listener_wanted(p);
    return 0;
}

/* max_connections N: for the current listener; before any listener, for
 * the default listener (which it brings into being, as mosquitto 2.0 does)
 * and the local-only one. -1 = unlimited; mosquitto treats 0 the same. */
static int opt_max_connections(struct parser *p, const struct option *o, const char *v, size_t n)
{
    int64_t x;
    if (!parse_int(v, n, &x) || x < -1 || x > INT32_MAX)
        return fail(p, "%s: expected -1 (unlimited) or a number from 0 to %d, got '%.*s%s'%s",
                    o->name, INT32_MAX, SHOW(v, n), hash_hint(v, n));
    uint32_t u = x < 0 ? 0 : (uint32_t)x;
    if (p->cur) {
        p->cur->max_connections = u;
        return 0;
    }
    p->c->max_connections = u;
    p->dl_max_connections = x != -1;
    if (x == -1)
        return 0;
    default_listener_wanted(p);
    return warn(p, "max_connections before any 'listener' line starts mosquitto's default "
                   "listener on port 1883, all addresses (as mosquitto 2.0 does); put it after a "
                   "'listener' line to limit only that listener");
}

/* max_connection_rate N (loopbot's own): new connections a listener accepts
 * per second; after a 'listener' line that listener's, before any the
 * default for all. */
static int opt_max_connection_rate(struct parser *p, const struct option *o, const char *v,
                                   size_t n)
{
    int64_t x;
    if (!parse_int(v, n, &x) || x < 0 || x > 1000000)
        return fail(p, "%s: expected a number from 0 (unlimited) to 1000000, got '%.*s%s'%s",
                    o->name, SHOW(v, n), hash_hint(v, n));
    if (p->cur)
        p->cur->max_connection_rate = (uint32_t)x;
    else
        p->c->max_connection_rate = (uint32_t)x;
    return 0;
}

/* persistent_client_expiration N{h,d,w,m,y}: a month is 30 days, a year 365,
 * as mosquitto counts them. */
static int opt_expiration(struct parser *p, const struct option *o, const char *v, size_t n)
{
    int64_t unit = 0, x;
    if (n >= 2) {
        switch (v[n - 1]) {
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 86400 * 7; break;
        case 'm': unit = 86400 * 30; break;
        case 'y': unit = 86400 * 365; break;
        default: break;
        }
    }
    if (!unit || !parse_int(v, n - 1, &x) || x < 1)
        return fail(p, "%s: expected a whole number of 1 or more followed by h, d, w, m or y "
                       "(e.g. 14d), got '%.*s%s'%s", o->name, SHOW(v, n), hash_hint(v, n));
    /* The broker counts time in milliseconds: keep seconds * 1000 in range. */
    if (x > INT64_MAX / 1000 / unit)
        return fail(p, "%s: '%.*s%s' is too long", o->name, SHOW(v, n));
    p->c->persistent_client_expiration = x * unit;
    return 0;
}

struct name_bit {
    const char *name;
    uint32_t bit;
};

static const struct name_bit log_dests[] = {
    {"stderr", LOG_D_STDERR},
    {"stdout", LOG_D_STDOUT},
    {"syslog", LOG_D_SYSLOG},
    {"topic", LOG_D_TOPIC},
};

static const struct name_bit log_types[] = {
    {"error", LOG_T_ERROR},
    {"warning", LOG_T_WARNING},
    {"notice", LOG_T_NOTICE},
    {"information", LOG_T_INFO},
    {"debug", LOG_T_DEBUG},
    {"subscribe", LOG_T_SUBSCRIBE},
    {"unsubscribe", LOG_T_UNSUBSCRIBE},
    {"websockets", LOG_T_WEBSOCKETS},
    {"all", LOG_T_ALL},
};

static int find_bit(const struct name_bit *t, size_t count, const char *w, size_t n, uint32_t *bit)
{
    for (size_t i = 0; i < count; i++) {
        if (text_word_is(w, n, t[i].name)) {
            *bit = t[i].bit;
            return 1;
        }
    }
    return 0;
}

/* log_dest DEST, or log_dest file PATH (the rest of the line). May repeat;
 * the first one in a file replaces the default, `none` clears. */
static int opt_log_dest(struct parser *p, const struct option *o, const char *v, size_t n)
{
    struct config *c = p->c;
    const char *s = v, *end = v + n, *w, *extra;
    size_t wn = text_next_word(&s, end, &w);
    uint32_t bit;
    if (!p->log_dest_set) {
        c->log_dest = 0;
        p->log_dest_set = true;
    }
    if (text_word_is(w, wn, "file")) {
        if (s == end)
            return fail(p, "%s: 'file' needs a path, e.g. 'log_dest file /var/log/loopbot.log'",
                        o->name);
        if (c->log_file)
            return fail(p, "%s: only one file destination may be configured", o->name);
        c->log_file = mem_strndup(NULL, s, (size_t)(end - s));
        if (!c->log_file)
            return nomem(p);
        c->log_dest |= LOG_D_FILE;
        return 0;
    }
    if (text_word_is(w, wn, "none")) {
        bit = 0;
    } else if (text_word_is(w, wn, "dlt")) {
        return fail(p, "%s: 'dlt' is a mosquitto destination loopbot does not support", o->name);
    } else if (!find_bit(log_dests, sizeof(log_dests) / sizeof(log_dests[0]), w, wn, &bit)) {
        return fail(p, "%s: expected stderr, stdout, syslog, topic, file PATH or none, got "
                       "'%.*s%s'%s", o->name, SHOW(v, n), hash_hint(v, n));
    }
    if (text_next_word(&s, end, &extra))
        return fail(p, "%s: expected one destination per line, got '%.*s%s'%s", o->name,
                    SHOW(v, n), hash_hint(v, n));
    if (bit) {
        c->log_dest |= bit;
    } else {
        c->log_dest = 0;
        mem_strfree(NULL, c->log_file);
        c->log_file = NULL;
    }
    return 0;
}

/* log_type TYPE: may repeat; the first one in a file replaces the default,
 * `none` clears. */
static int opt_log_type(struct parser *p, const struct option *o, const char *v, size_t n)
{
    const char *s = v, *end = v + n, *w, *extra;
    size_t wn = text_next_word(&s, end, &w);
    uint32_t bit;
    if (text_word_is(w, wn, "none"))
        bit = 0;
    else if (!find_bit(log_types, sizeof(log_types) / sizeof(log_types[0]), w, wn, &bit))
        return fail(p, "%s: expected error, warning, notice, information, debug, subscribe, "
                       "unsubscribe, websockets, all or none, got '%.*s%s'%s", o->name, SHOW(v, n),
                    hash_hint(v, n));
    if (text_next_word(&s, end, &extra))
        return fail(p, "%s: expected one type per line, got '%.*s%s'%s", o->name, SHOW(v, n),
                    hash_hint(v, n));
    if (!p->log_type_set || !bit)
        p->c->log_type = 0;
    p->log_type_set = true;
    p->c->log_type |= bit;
    return 0;
}

/* mosquitto 2.0 accepts retry_interval and ignores it; so do we. */
/* persistence_location DIR, persistence_file NAME: fixed-size fields, so
 * the config keeps owning nothing more. */
static int opt_persist_path(struct parser *p, const struct option *o, const char *v, size_t n)
{
    if (n >= o->size)
        return fail(p, "%s: longer than %zu bytes", o->name, o->size - 1);
    if (o->offset == offsetof(struct config, persistence_file) && memchr(v, '/', n))
        return fail(p, "%s: a file name, not a path: put the directory in persistence_location",
                    o->name);
    char *field = (char *)p->c + o->offset;
    memcpy(field, v, n);
    field[n] = '\0';
    return 0;
}

static int opt_ignored(struct parser *p, const struct option *o, const char *v, size_t n)
{
    return warn(p, "'%s' is no longer used (mosquitto 2.0 ignores it too)", o->name);
}

static int parse_text(struct parser *p, const char *text, size_t len);
static int read_whole(const char *path, char **buf, size_t *len, size_t *cap, char *err,
                      size_t errlen);

static int ascii_upper(int ch)
{
    return ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch;
}

/* mosquitto's include_dir order: by letter ignoring case, then upper case
 * before lower case of the same letter: 00.conf 01.conf A.conf a.conf
 * B.conf b.conf (mosquitto.conf(5)). ASCII only, whatever the locale. */
static int include_cmp(const void *a, const void *b)
{
    const unsigned char *s1 = *(const unsigned char *const *)a;
    const unsigned char *s2 = *(const unsigned char *const *)b;
    for (; *s1 && *s2; s1++, s2++) {
        int d = ascii_upper(*s1) - ascii_upper(*s2);
        if (d)
            return d;
        if (*s1 != *s2)
            return *s1 - *s2;
    }
    return *s1 - *s2;
}

static void names_free(char **names, size_t count, size_t cap)
{
    for (size_t i = 0; i < count; i++)
        mem_strfree(NULL, names[i]);
    mem_free(NULL, names, cap * sizeof(*names));
}

/* The DIR/ *.conf names, sorted; directory errors are the caller's. */
static int include_names(struct parser *p, DIR *d, char ***out, size_t *count, size_t *cap)
{
    struct dirent *de;
    *out = NULL;
    *count = *cap = 0;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= 5 || strcmp(de->d_name + len - 5, ".conf") != 0)
            continue;
        if (*count == *cap) {
            size_t ncap = *cap ? *cap * 2 : 8;
            char **nn = mem_realloc(NULL, *out, *cap * sizeof(**out), ncap * sizeof(**out));
            if (!nn)
                return nomem(p);
            *out = nn;
            *cap = ncap;
        }
        if (!((*out)[*count] = mem_strndup(NULL, de->d_name, len)))
            return nomem(p);
        (*count)++;
    }
    if (*count)
        qsort(*out, *count, sizeof(**out), include_cmp);
    return 0;
}

/* Says where an error inside an included file came from. */
static void include_context(struct parser *p, const char *name, int line)
{
    size_t used = p->err ? strlen(p->err) : 0;
    if (p->err && used < p->errlen)
        snprintf(p->err + used, p->errlen - used, " (in include_dir at %s:%d)", name, line);
}

/* include_dir DIR: reads DIR/ *.conf in mosquitto's order, as if they
 * followed this line; errors name the included file and line. */
static int opt_include_dir(struct parser *p, const struct option *o, const char *v, size_t n)
{
    if (p->level > 0)
        return warn(p, "include_dir is ignored in an included file (mosquitto 2.0 reads it only "
                       "from the main configuration file)");
    if (!p->files_allowed)
        return fail(p, "%s: only read from a configuration file", o->name);
    char *dir = mem_strndup(NULL, v, n);
    if (!dir)
        return nomem(p);
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        int rc = fail(p, "%s: cannot open '%s': %s", o->name, dir, strerror(e));
        mem_strfree(NULL, dir);
        return rc;
    }
    char **names;
    size_t count, cap;
    int rc = include_names(p, d, &names, &count, &cap);
    closedir(d);
    const char *name = p->name;
    int line = p->line;
    bool slash = n && dir[n - 1] == '/';
    for (size_t i = 0; rc == 0 && i < count; i++) {
        size_t plen = n + 1 + strlen(names[i]) + 1;
        char *path = mem_alloc(NULL, plen);
        if (!path) {
            rc = nomem(p);
            break;
        }
        snprintf(path, plen, "%s%s%s", dir, slash ? "" : "/", names[i]);
        char *buf;
        size_t len, bcap;
        rc = read_whole(path, &buf, &len, &bcap, p->err, p->errlen);
        if (rc == 0) {
            p->name = path;
            p->line = 0;
            p->level++;
            rc = parse_text(p, buf ? buf : "", len);
            p->level--;
            p->name = name;
            p->line = line;
            mem_free(NULL, buf, bcap);
        }
        if (rc < 0)
            include_context(p, name, line);
        mem_free(NULL, path, plen);
    }
    names_free(names, count, cap);
    mem_strfree(NULL, dir);
    return rc;
}

#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define NUMBER(f, lo, hi) {#f, opt_number, FIELD(f), lo, hi}
#define SEC(f) offsetof(struct security_config, f), sizeof(((struct security_config *)0)->f)
#define TLS(f) offsetof(struct tls_config, f), sizeof(((struct tls_config *)0)->f)
#define TLS_STRING(f) {#f, opt_tls_string, TLS(f), 0, 0}
#define TLS_BOOL(f) {#f, opt_tls_bool, TLS(f), 0, 0}

/* Every key loopbot reads: adding one is adding a row. */
static const struct option options[] = {
    {"acl_file", opt_sec_path, SEC(acl_file), 0, 0},
    {"allow_anonymous", opt_allow_anonymous, 0, 0, 0, 0},
    {"bind_address", opt_bind_address, 0, 0, 0, 0},
    TLS_STRING(cafile),
    TLS_STRING(capath),
    TLS_STRING(certfile),
    TLS_STRING(ciphers),
    {"ciphers_tls1.3", opt_tls_string, TLS(ciphers_tls13), 0, 0},
    NUMBER(coalesce_us, 0, 10000),
    TLS_STRING(crlfile),
    {"include_dir", opt_include_dir, 0, 0, 0, 0},
    TLS_STRING(keyfile),
    {"listener", opt_listener, 0, 0, 0, 0},
    {"log_dest", opt_log_dest, 0, 0, 0, 0},
    {"log_timestamp", opt_bool, FIELD(log_timestamp), 0, 0},
    {"log_type", opt_log_type, 0, 0, 0, 0},
    {"max_connection_rate", opt_max_connection_rate, 0, 0, 0, 0},
    {"max_connections", opt_max_connections, 0, 0, 0, 0},
    NUMBER(max_inflight_messages, 0, 65535),
    NUMBER(max_keepalive, 0, 65535),
    NUMBER(max_packet_size, 0, 268435460), /* 0 = MQTT's own limit */
    NUMBER(max_qos, 0, 2),
    NUMBER(max_queued_bytes, 0, INT64_MAX),
    NUMBER(max_queued_messages, 0, INT32_MAX),
    NUMBER(max_topic_alias, 0, 65535),
    NUMBER(message_size_limit, 0, 268435455), /* MQTT's largest payload */
    {"metrics_listener", opt_metrics_listener, 0, 0, 0, 0},
    {"password_file", opt_sec_path, SEC(password_file), 0, 0},
    {"per_listener_settings", opt_per_listener_settings, 0, 0, 0, 0},
    {"persistence", opt_bool, FIELD(persistence), 0, 0},
    {"persistence_file", opt_persist_path, FIELD(persistence_file), 0, 0},
    {"persistence_location", opt_persist_path, FIELD(persistence_location), 0, 0},
    {"persistence_sync", opt_bool, FIELD(persistence_sync), 0, 0},
    {"persistent_client_expiration", opt_expiration, 0, 0, 0, 0},
    {"port", opt_port, 0, 0, 0, 0},
    {"psk_file", opt_sec_path, SEC(psk_file), 0, 0},
    TLS_STRING(psk_hint),
    TLS_BOOL(require_certificate),
    {"retain_available", opt_bool, FIELD(retain_available), 0, 0},
    {"retry_interval", opt_ignored, 0, 0, 0, 0},
    NUMBER(sys_interval, 0, 65535),
    {"tls_version", opt_tls_version, TLS(tls_version), 0, 0},
    TLS_BOOL(use_identity_as_username),
    TLS_BOOL(use_subject_as_username),
};

/* Every other option of mosquitto 2.0 (mosquitto.conf(5) and its parser),
 * so a config written for mosquitto gets "not supported yet" rather than
 * "unknown". */
static const char *const mosquitto_options[] = {
    "address", "addresses", "allow_duplicate_messages", "allow_zero_length_clientid",
    "auth_plugin", "auth_plugin_deny_special_chars", "auto_id_prefix", "autosave_interval",
    "autosave_on_changes", "bind_interface", "bridge_alpn", "bridge_attempt_unsubscribe",
    "bridge_bind_address", "bridge_cafile", "bridge_capath", "bridge_certfile", "bridge_identity",
    "bridge_insecure", "bridge_keyfile", "bridge_max_packet_size", "bridge_outgoing_retain",
    "bridge_protocol_version", "bridge_psk", "bridge_require_ocsp", "bridge_tls_version",
    "check_retain_source", "cleansession", "clientid", "clientid_prefixes", "connection",
    "connection_messages", "dhparamfile", "http_dir", "idle_timeout", "keepalive_interval",
    "local_cleansession", "local_clientid", "local_password", "local_username", "log_facility",
    "log_timestamp_format", "max_inflight_bytes", "memory_limit", "mount_point",
    "notification_topic", "notifications", "notifications_local_only", "password", "pid_file", "plugin", "protocol",
    "queue_qos0_messages", "remote_clientid", "remote_password", "remote_username",
    "restart_timeout", "round_robin", "set_tcp_nodelay", "socket_domain", "start_type",
    "threshold", "tls_engine", "tls_engine_kpass_sha1", "tls_keyform", "topic",
    "try_private", "upgrade_outgoing_qos", "use_username_as_clientid", "user", "username",
    "websockets_headers_size", "websockets_log_level",
};

static bool is_mosquitto_option(const char *k, size_t n)
{
    static const char *const prefixes[] = {"auth_opt_", "plugin_opt_"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pl = strlen(prefixes[i]);
        if (n > pl && memcmp(k, prefixes[i], pl) == 0)
            return true;
    }
    for (size_t i = 0; i < sizeof(mosquitto_options) / sizeof(mosquitto_options[0]); i++) {
        if (text_word_is(k, n, mosquitto_options[i]))
            return true;
    }
    return false;
}

/* ---- lines ---- */

static int parse_line(struct parser *p, const char *s, size_t n)
{
    const char *end = s + n;
    int content = text_line_content(&s, &end);
    if (content < 0)
        return fail(p, "line contains a NUL byte (is this a text file, not UTF-16 or binary?)");
    if (!content)
        return 0;
    const char *key;
    size_t keylen = text_next_word(&s, end, &key);
    size_t vlen = (size_t)(end - s);
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if (text_word_is(key, keylen, options[i].name)) {
            if (!vlen)
                return fail(p, "%s: missing value", options[i].name);
            return options[i].parse(p, &options[i], s, vlen);
        }
    }
    if (is_mosquitto_option(key, keylen))
        return fail(p, "'%.*s%s' is a mosquitto option loopbot does not support yet",
                    SHOW(key, keylen));
    return fail(p, "unknown option '%.*s%s'", SHOW(key, keylen));
}

static int parse_text(struct parser *p, const char *text, size_t len)
{
    const char *s = text, *end = text + len;
    /* A UTF-8 byte order mark, as some editors write: not part of the key. */
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    const char *line;
    size_t n;
    while (text_next_line(&s, end, &line, &n)) {
        p->line++;
        int rc = parse_line(p, line, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* mosquitto 2.0 appends its default listener after the explicit ones. */
static int add_default_listener(struct parser *p)
{
    if (!p->dl_port && !p->dl_host && !p->dl_max_connections)
        return 0;
    struct listener_config *l = mem_calloc(NULL, sizeof(*l));
    if (!l)
        return nomem(p);
    l->port = p->dl_port ? p->dl_port : 1883;
    l->bind_address = p->dl_host;
    p->dl_host = NULL;
    l->max_connections = p->c->max_connections;
    l->line = p->dl_line;
    *p->tail = l;
    p->tail = &l->next;
    return 0;
}

/* ---- the contract ---- */

/* The board's memory-sized defaults (generated from boards/<board>/defaults.cmake;
 * docs/raspberry-pi.md lists them). Only config_init reads it. */
#include "broker/board_defaults.h"

void config_init(struct config *c)
{
    memset(c, 0, sizeof(*c));
    c->sec.allow_anonymous = false; /* mosquitto 2.0: refuse anonymous clients */
    c->max_connections = LOOPBOT_DEFAULT_MAX_CONNECTIONS;
    c->max_inflight_messages = 20;
    c->max_queued_messages = LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES;
    c->max_queued_bytes = LOOPBOT_DEFAULT_MAX_QUEUED_BYTES;
    c->message_size_limit = 0;
    c->max_keepalive = 65535;
    c->sys_interval = 10;
    c->coalesce_us = 300;
    snprintf(c->metrics_address, sizeof(c->metrics_address), "127.0.0.1");
    c->max_packet_size = 0;
    c->max_qos = 2;
    c->max_topic_alias = 10;
    c->retain_available = true;
    c->persistent_client_expiration = -1;
    c->log_dest = LOG_D_STDERR;
    c->log_type = LOG_T_ERROR | LOG_T_WARNING | LOG_T_NOTICE | LOG_T_INFO;
    c->log_timestamp = true;
    c->persistence = false;
    c->persistence_sync = false;
    snprintf(c->persistence_file, sizeof(c->persistence_file), "loopbot.db");
}

static void sec_free(struct security_config *s)
{
    mem_strfree(NULL, s->password_file);
    mem_strfree(NULL, s->acl_file);
    mem_strfree(NULL, s->psk_file);
}

static void tls_free(struct tls_config *t)
{
    char *strings[] = {t->cafile,  t->capath,      t->certfile,      t->keyfile, t->crlfile,
                       t->ciphers, t->ciphers_tls13, t->tls_version, t->psk_hint};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        mem_strfree(NULL, strings[i]);
}

void config_free(struct config *c)
{
    if (!c)
        return;
    struct listener_config *l = c->listeners;
    while (l) {
        struct listener_config *next = l->next;
        mem_strfree(NULL, l->bind_address);
        tls_free(&l->tls);
        sec_free(&l->sec); /* l->auth is the broker's (main.c frees it) */
        mem_free(NULL, l, sizeof(*l));
        l = next;
    }
    struct config_warning *w = c->warnings;
    while (w) {
        struct config_warning *next = w->next;
        mem_strfree(NULL, w->text);
        mem_free(NULL, w, sizeof(*w));
        w = next;
    }
    mem_strfree(NULL, c->log_file);
    sec_free(&c->sec);
    config_init(c);
}

int config_add_listener(struct config *c, uint16_t port, const char *bind_address)
{
    struct listener_config *l =
        listener_new(port, bind_address, bind_address ? strlen(bind_address) : 0);
    if (!l)
        return -ERR_NOMEM;
    struct listener_config **tail = &c->listeners;
    while (*tail)
        tail = &(*tail)->next;
    *tail = l;
    return 0;
}

static int load_text(struct config *c, const char *name, const char *text, size_t len, char *err,
                     size_t errlen, bool files_allowed)
{
    if (!text) {
        text = "";
        len = 0;
    }
    /* Parse into a copy that owns only what this text adds. */
    struct config tmp = *c;
    tmp.listeners = NULL;
    tmp.log_file = NULL;
    tmp.warnings = NULL;
    tmp.sec.password_file = tmp.sec.acl_file = tmp.sec.psk_file = NULL;
    struct parser p = {
        .c = &tmp,
        .name = name ? name : "(config)",
        .err = err,
        .errlen = errlen,
        .tail = &tmp.listeners,
        .wtail = &tmp.warnings,
        .files_allowed = files_allowed,
    };
    if (err && errlen)
        err[0] = '\0';
    int rc = parse_text(&p, text, len);
    if (rc == 0)
        rc = add_default_listener(&p);
    if (rc < 0) {
        mem_strfree(NULL, p.dl_host);
        config_free(&tmp);
        return rc;
    }

    struct listener_config **lt = &c->listeners;
    while (*lt)
        lt = &(*lt)->next;
    *lt = tmp.listeners;
    struct config_warning **wt = &c->warnings;
    while (*wt)
        wt = &(*wt)->next;
    *wt = tmp.warnings;
    if (p.log_dest_set) {
        mem_strfree(NULL, c->log_file);
        c->log_file = tmp.log_file;
    }
    tmp.listeners = c->listeners;
    tmp.warnings = c->warnings;
    tmp.log_file = c->log_file;
    /* A path this text set replaces the old one; others stay. */
    char **mine[] = {&tmp.sec.password_file, &tmp.sec.acl_file, &tmp.sec.psk_file};
    char **old[] = {&c->sec.password_file, &c->sec.acl_file, &c->sec.psk_file};
    for (size_t i = 0; i < 3; i++) {
        if (*mine[i])
            mem_strfree(NULL, *old[i]);
        else
            *mine[i] = *old[i];
    }
    *c = tmp;
    return 0;
}

int config_load_string(struct config *c, const char *name, const char *text, size_t len, char *err,
                       size_t errlen)
{
    return load_text(c, name, text, len, err, errlen, false);
}

/* Reads a whole file through mem_alloc (*cap is what to free). Messages are
 * "path: cannot open/read: reason". */
static int read_whole(const char *path, char **out, size_t *outlen, size_t *outcap, char *err,
                      size_t errlen)
{
    *out = NULL;
    *outlen = *outcap = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -ERR_CONFIG;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap == CONFIG_FILE_MAX) {
                char extra;
                if (fread(&extra, 1, 1, f) == 1) {
                    if (err && errlen)
                        snprintf(err, errlen, "%s: larger than %u MiB: not a configuration file?",
                                 path, CONFIG_FILE_MAX >> 20);
                    rc = -ERR_CONFIG;
                } else if (ferror(f)) {
                    int e = errno;
                    if (err && errlen)
                        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(e));
                    rc = -ERR_CONFIG;
                }
                break;
            }
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb = mem_realloc(NULL, buf, cap, ncap);
            if (!nb) {
                if (err && errlen)
                    snprintf(err, errlen, "%s: out of memory", path);
                rc = -ERR_NOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                if (err && errlen)
                    snprintf(err, errlen, "%s: cannot read: %s", path, strerror(e));
                rc = -ERR_CONFIG;
            }
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        mem_free(NULL, buf, cap);
        return rc;
    }
    *out = buf;
    *outlen = len;
    *outcap = cap;
    return 0;
}

int config_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len, cap;
    int rc = read_whole(path, &buf, &len, &cap, err, errlen);
    if (rc < 0)
        return rc;
    rc = load_text(c, path, buf ? buf : "", len, err, errlen, true);
    mem_free(NULL, buf, cap);
    return rc;
}
