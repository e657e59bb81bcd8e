/* mosquitto ACL files, compiled at load into per-user rule lists (a hash map
 * from username) plus the anonymous list and the patterns, each split into
 * deny and grant rules so a check never sorts or allocates for plain topics.
 *
 * Checks (docs/security.md, "How ACL checks combine"):
 *  - the client's own list is its `user` section, or, with no username, the
 *    lines before the first `user` (mosquitto 2.0 gives those to anonymous
 *    clients only); patterns apply to everybody;
 *  - a matching deny rule (own list or pattern) refuses, whatever grants;
 *  - otherwise a matching rule granting the access allows; nothing = refused;
 *  - patterns are skipped for a client whose id or username holds '+' or
 *    '#' (after %c/%u substitution they would widen into wildcards), and for
 *    a client with no id, as mosquitto does;
 *  - SUBSCRIBE: refused when a deny rule covers the whole filter or no read
 *    grant can match any topic the filter matches; messages are still
 *    checked one by one for read when delivered. */
#include "broker/acl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "broker/auth.h"
#include "broker/log.h"
#include "broker/mem.h"
#include "broker/textfile.h"
#include "broker/strmap.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "platform/platform.h"

#define SHOW_MAX 60
#define SHOW(s, n) (int)((n) > SHOW_MAX ? SHOW_MAX : (n)), (s), ((n) > SHOW_MAX ? "..." : "")
/* Pattern expansions up to this size use the stack; longer ones (client
 * ids are up to 64 KiB) allocate. */
#define EXPAND_STACK 512

struct acl_rule {
    char *topic;
    uint32_t len;
    uint8_t access;    /* AUTH_READ | AUTH_WRITE; 0 for deny */
    uint16_t ccount;   /* "%c" occurrences (patterns only) */
    uint16_t ucount;   /* "%u" occurrences (patterns only) */
};

struct acl_vec {
    struct acl_rule *v;
    uint32_t n, cap;
};

struct acl_rules {
    struct acl_vec deny, grant;
};

struct acl_user {
    struct acl_rules r;
    size_t nlen;
    char name[]; /* the map's key */
};

static const uint8_t *user_key(const void *value, size_t *len)
{
    const struct acl_user *u = value;
    *len = u->nlen;
    return (const uint8_t *)u->name;
}

struct acl {
    struct acl_rules anon;     /* before the first `user` line */
    struct acl_rules patterns; /* every `pattern` line */
    struct strmap users;       /* username -> struct acl_user */
};

/* ---- freeing ---- */

static void vec_free(struct acl_vec *v)
{
    for (uint32_t i = 0; i < v->n; i++)
        mem_free(NULL, v->v[i].topic, (size_t)v->v[i].len + 1);
    mem_free(NULL, v->v, (size_t)v->cap * sizeof(*v->v));
    memset(v, 0, sizeof(*v));
}

static void rules_free(struct acl_rules *r)
{
    vec_free(&r->deny);
    vec_free(&r->grant);
}

static void user_free(struct acl_user *u)
{
    rules_free(&u->r);
    mem_free(NULL, u, sizeof(*u) + u->nlen + 1);
}

void acl_free(struct acl *acl)
{
    if (!acl)
        return;
    rules_free(&acl->anon);
    rules_free(&acl->patterns);
    for (size_t i = 0; i < acl->users.cap; i++)
        if (acl->users.slots[i])
            user_free(acl->users.slots[i]);
    strmap_free(&acl->users);
    mem_free(NULL, acl, sizeof(*acl));
}

/* ---- parsing ---- */

struct aparse {
    const char *name;
    int line;
    char *err;
    size_t errlen;
    struct acl *acl;
    struct acl_rules *cur; /* where `topic` lines go */
};

static int afail(struct aparse *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int afail(struct aparse *p, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    text_error(p->err, p->errlen, p->name, p->line, fmt, ap);
    va_end(ap);
    return rc;
}




static uint16_t count_subst(const char *t, size_t n, char which)
{
    unsigned c = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (t[i] == '%' && t[i + 1] == which) {
            c++;
            i++;
        }
    }
    return c > UINT16_MAX ? UINT16_MAX : (uint16_t)c;
}

static int vec_push(struct acl_vec *v, const struct acl_rule *r)
{
    if (v->n == v->cap) {
        uint32_t ncap = v->cap ? v->cap * 2 : 4;
        struct acl_rule *nv =
            mem_realloc(NULL, v->v, (size_t)v->cap * sizeof(*v->v), (size_t)ncap * sizeof(*nv));
        if (!nv)
            return -ERR_NOMEM;
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n++] = *r;
    return 0;
}

static int add_rule(struct aparse *p, struct acl_rules *to, bool pattern, uint8_t access,
                    const char *t, size_t n)
{
    struct acl_rule r = {.len = (uint32_t)n, .access = access};
    if (pattern) {
        r.ccount = count_subst(t, n, 'c');
        r.ucount = count_subst(t, n, 'u');
    }
    r.topic = mem_strndup(NULL, t, n);
    if (!r.topic || vec_push(access ? &to->grant : &to->deny, &r) < 0) {
        mem_free(NULL, r.topic, n + 1);
        return afail(p, -ERR_NOMEM, "out of memory");
    }
    return 0;
}

static int line_user(struct aparse *p, const char *s, const char *end)
{
    size_t n = (size_t)(end - s);
    if (n == 0)
        return afail(p, -ERR_CONFIG, "user: missing username");
    if (n > 65535)
        return afail(p, -ERR_CONFIG, "user: username longer than 65535 bytes");
    struct acl_user *u = strmap_get(&p->acl->users, s, n);
    if (!u) {
        u = mem_calloc(NULL, sizeof(*u) + n + 1);
        if (!u)
            return afail(p, -ERR_NOMEM, "out of memory");
        u->nlen = n;
        memcpy(u->name, s, n);
        if (strmap_put(&p->acl->users, u) < 0) {
            user_free(u);
            return afail(p, -ERR_NOMEM, "out of memory");
        }
    }
    p->cur = &u->r;
    return 0;
}

static int line_topic(struct aparse *p, const char *kw, bool pattern, const char *s, const char *end)
{
    const char *w;
    size_t wn = text_next_word(&s, end, &w);
    if (wn == 0)
        return afail(p, -ERR_CONFIG, "%s: missing topic", kw);
    uint8_t access = AUTH_READ | AUTH_WRITE;
    const char *t = s;
    size_t tn = (size_t)(end - s);
    if (tn == 0) {
        /* One word: it is the topic (mosquitto reads "topic read" so too). */
        t = w;
        tn = wn;
    } else if (text_word_is(w, wn, "read")) {
        access = AUTH_READ;
    } else if (text_word_is(w, wn, "write")) {
        access = AUTH_WRITE;
    } else if (text_word_is(w, wn, "readwrite")) {
        access = AUTH_READ | AUTH_WRITE;
    } else if (text_word_is(w, wn, "deny")) {
        access = 0;
    } else {
        return afail(p, -ERR_CONFIG,
                     "%s: access must be read, write, readwrite or deny, got '%.*s%s' (a topic "
                     "with spaces needs the access word first)", kw, SHOW(w, wn));
    }
    int rc = mqtt_topic_filter_validate((const uint8_t *)t, tn);
    if (rc < 0)
        return afail(p, -ERR_CONFIG, "%s: '%.*s%s' is not a valid topic filter: %s", kw,
                     SHOW(t, tn), mqtt_err_message(rc));
    return add_rule(p, pattern ? &p->acl->patterns : p->cur, pattern, access, t, tn);
}

static int parse_line(struct aparse *p, const char *s, size_t n)
{
    const char *end = s + n;
    int content = text_line_content(&s, &end);
    if (content < 0)
        return afail(p, -ERR_CONFIG, "line contains a NUL byte (not a text file?)");
    if (!content)
        return 0;
    const char *kw;
    size_t kn = text_next_word(&s, end, &kw);
    if (text_word_is(kw, kn, "topic"))
        return line_topic(p, "topic", false, s, end);
    if (text_word_is(kw, kn, "pattern"))
        return line_topic(p, "pattern", true, s, end);
    if (text_word_is(kw, kn, "user"))
        return line_user(p, s, end);
    return afail(p, -ERR_CONFIG, "expected 'topic', 'pattern' or 'user', got '%.*s%s'",
                 SHOW(kw, kn));
}

int acl_parse(const char *name, const char *text, size_t len, struct acl **out, char *err,
              size_t errlen)
{
    struct aparse p = {.name = name ? name : "(acl file)", .err = err, .errlen = errlen};
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    p.acl = mem_calloc(NULL, sizeof(*p.acl));
    if (!p.acl)
        return afail(&p, -ERR_NOMEM, "out of memory");
    uint64_t seed = 0;
    if (platform_random(&seed, sizeof(seed)) < 0)
        seed = platform_now_us();
    strmap_init(&p.acl->users, seed, user_key);
    p.cur = &p.acl->anon;
    const char *s = text ? text : "", *end = s + (text ? len : 0);
    const char *line;
    size_t n;
    while (text_next_line(&s, end, &line, &n)) {
        p.line++;
        int rc = parse_line(&p, line, n);
        if (rc < 0) {
            acl_free(p.acl);
            return rc;
        }
    }
    *out = p.acl;
    return 0;
}

/* ---- filter algebra ---- */

struct levels {
    const uint8_t *s;
    size_t len, pos;
    bool done;
};

static bool lv_next(struct levels *it, const uint8_t **l, size_t *n)
{
    if (it->done)
        return false;
    const uint8_t *start = it->s + it->pos;
    const uint8_t *slash = memchr(start, '/', it->len - it->pos);
    if (slash) {
        *n = (size_t)(slash - start);
        it->pos += *n + 1;
    } else {
        *n = it->len - it->pos;
        it->done = true;
    }
    *l = start;
    return true;
}

static bool is_hash(const uint8_t *l, size_t n)
{
    return n == 1 && l[0] == '#';
}

static bool is_plus(const uint8_t *l, size_t n)
{
    return n == 1 && l[0] == '+';
}

static bool is_dollar(const uint8_t *l, size_t n)
{
    return n > 0 && l[0] == '$';
}

bool acl_filters_intersect(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    struct levels ia = {a, alen, 0, false}, ib = {b, blen, 0, false};
    const uint8_t *la = NULL, *lb = NULL;
    size_t na = 0, nb = 0;
    for (bool first = true;; first = false) {
        bool ha = lv_next(&ia, &la, &na), hb = lv_next(&ib, &lb, &nb);
        if (!ha && !hb)
            return true;
        if (!ha) /* "a/#" also matches "a" */
            return is_hash(lb, nb);
        if (!hb)
            return is_hash(la, na);
        bool wa = is_hash(la, na) || is_plus(la, na), wb = is_hash(lb, nb) || is_plus(lb, nb);
        /* A wildcard in the first level matches no '$' topic [MQTT-4.7.2-1]. */
        if (first && ((wa && !wb && is_dollar(lb, nb)) || (wb && !wa && is_dollar(la, na))))
            return false;
        if (is_hash(la, na) || is_hash(lb, nb))
            return true;
        if (wa || wb)
            continue;
        if (na != nb || memcmp(la, lb, na) != 0)
            return false;
    }
}

bool acl_filter_covers(const uint8_t *d, size_t dlen, const uint8_t *f, size_t flen)
{
    struct levels id = {d, dlen, 0, false}, jf = {f, flen, 0, false};
    const uint8_t *ld, *lf;
    size_t nd, nf;
    for (bool first = true;; first = false) {
        bool hd = lv_next(&id, &ld, &nd), hf = lv_next(&jf, &lf, &nf);
        if (!hd && !hf)
            return true;
        if (hd && is_hash(ld, nd)) {
            bool lit = hf && !is_hash(lf, nf) && !is_plus(lf, nf);
            return !(first && lit && is_dollar(lf, nf));
        }
        if (!hd || !hf || is_hash(lf, nf))
            return false;
        if (is_plus(ld, nd)) {
            if (first && !is_plus(lf, nf) && is_dollar(lf, nf))
                return false;
            continue;
        }
        if (is_plus(lf, nf) || nd != nf || memcmp(ld, lf, nd) != 0)
            return false;
    }
}

/* ---- checks ---- */

struct who {
    const char *id, *user;
    size_t idlen, ulen;
};

enum mode { M_TOPIC, M_INTERSECT, M_COVER };

static bool test(enum mode m, const uint8_t *rule, size_t rlen, const uint8_t *t, size_t tlen)
{
    switch (m) {
    case M_TOPIC:
        return mqtt_topic_matches(rule, rlen, t, tlen);
    case M_INTERSECT:
        return acl_filters_intersect(rule, rlen, t, tlen);
    case M_COVER:
        return acl_filter_covers(rule, rlen, t, tlen);
    }
    return false;
}

/* 1 match, 0 no match, -ERR_NOMEM (a long expansion could not allocate). */
static int rule_test(const struct acl_rule *r, bool pattern, const struct who *w, enum mode m,
                     const uint8_t *t, size_t tlen)
{
    if (!pattern || (r->ccount == 0 && r->ucount == 0))
        return test(m, (const uint8_t *)r->topic, r->len, t, tlen);
    if (r->ucount && !w->user)
        return 0;
    size_t need = r->len + (size_t)r->ccount * w->idlen + (size_t)r->ucount * w->ulen;
    uint8_t stack[EXPAND_STACK] = {0}; /* zeroed: gcc 12 cannot see it is written first */
    uint8_t *buf = need <= sizeof(stack) ? stack : mem_alloc(NULL, need);
    if (!buf)
        return -ERR_NOMEM;
    size_t o = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->topic[i] == '%' && i + 1 < r->len) {
            if (r->topic[i + 1] == 'c') {
                memcpy(buf + o, w->id, w->idlen);
                o += w->idlen;
                i++;
                continue;
            }
            if (r->topic[i + 1] == 'u' && w->user) {
                memcpy(buf + o, w->user, w->ulen);
                o += w->ulen;
                i++;
                continue;
            }
        }
        buf[o++] = (uint8_t)r->topic[i];
    }
    bool hit = test(m, buf, o, t, tlen);
    if (buf != stack)
        mem_free(NULL, buf, need);
    return hit;
}

/* 1 if some rule of v (with the access bits, when grants) matches;
 * deny rules count an expansion failure as a match: fail closed. */
static bool any(const struct acl_vec *v, bool pattern, bool deny, uint8_t access,
                const struct who *w, enum mode m, const uint8_t *t, size_t tlen)
{
    for (uint32_t i = 0; i < v->n; i++) {
        const struct acl_rule *r = &v->v[i];
        if (!deny && !(r->access & access))
            continue;
        int rc = rule_test(r, pattern, w, m, t, tlen);
        if (rc > 0 || (rc < 0 && deny))
            return true;
    }
    return false;
}

static bool has_wildcard(const char *s)
{
    return s && strpbrk(s, "+#") != NULL;
}

int acl_check(const struct acl *acl, const char *client_id, const char *username,
              const uint8_t *topic, size_t len, int access)
{
    if (!acl)
        return 0;
    struct who w = {client_id, username, client_id ? strlen(client_id) : 0,
                    username ? strlen(username) : 0};
    const struct acl_rules *own = &acl->anon;
    if (username) {
        const struct acl_user *u = strmap_get(&acl->users, username, w.ulen);
        own = u ? &u->r : NULL;
    }
    const struct acl_rules *pat = &acl->patterns;
    if (pat->deny.n + pat->grant.n == 0 || !client_id) {
        pat = NULL;
    } else if (has_wildcard(client_id) || has_wildcard(username)) {
        log_printf(LOG_T_DEBUG, "ACL: patterns not applied to client '%s' (username '%s'): '+' "
                                "or '#' in its client id or username.", client_id,
                   username ? username : "");
        pat = NULL;
    }
    enum mode deny_mode = M_TOPIC, grant_mode = M_TOPIC;
    uint8_t want = (uint8_t)access;
    if (access == AUTH_SUBSCRIBE) {
        struct mqtt_bytes group, inner;
        if (mqtt_share_split(topic, len, &group, &inner) == 1) {
            topic = inner.ptr;
            len = inner.len;
        }
        deny_mode = M_COVER;
        grant_mode = M_INTERSECT;
        want = AUTH_READ;
    }
    if ((own && any(&own->deny, false, true, 0, &w, deny_mode, topic, len)) ||
        (pat && any(&pat->deny, true, true, 0, &w, deny_mode, topic, len)))
        return -ERR_NOT_AUTHORIZED;
    if ((own && any(&own->grant, false, false, want, &w, grant_mode, topic, len)) ||
        (pat && any(&pat->grant, true, false, want, &w, grant_mode, topic, len)))
        return 0;
    return -ERR_NOT_AUTHORIZED;
}
