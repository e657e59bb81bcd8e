/* Authentication and ACLs (auth.h, passwd.h, acl.h): password lines made by
 * the real mosquitto_passwd (fixed vectors, and fresh ones at run time when
 * it is installed), vectors computed independently with Python's hashlib,
 * malformed files with FILE:LINE messages, the ACL semantics table, the
 * CONNECT decision, and every allocation failing in turn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/acl.h"
#include "broker/auth.h"
#include "broker/config.h"
#include "broker/mem.h"
#include "broker/passwd.h"
#include "mqtt/error.h"

#define U(s) (const uint8_t *)(s), strlen(s)
#define F(s) (s), strlen(s) /* a hash field, as text */

static char err[512];

/* ---- password files ---- */

/* Made by Debian's mosquitto_passwd 2.0.11 (-H sha512 for carol's $6$). */
static const char *const mosq_file =
    "alice:$7$101$pVjxlmnnqqwR5AG+$JHfXfyUhYw6AVsJFDIC8VDP02pJS1aQMm+U3GX0acXVFgwOyrhP45+HA4P8Btd83"
    "mX61eK5qJosvYDsQGvrvTg==\n"
    "bob:$7$101$jkGddRAnDO97Gay6$xHAhOUawuwZ0mit7nvNWUvbUvRED8W1WplHFOSeM0+T5vGoGdJwZyfMcES+NSLDOL77"
    "xVnae8oHY/Gv1aD0ZUg==\n"
    "carol:$6$39BDFbqAJDBeIERn$hK2e7j/61e0cQpvSYnw5nRbNHUyuwntFjzlyQXD9mriaJgvi76BWwu0G9lUK35TGZsBsE"
    "SLjIWTnAvOnVm6vQA==\n"
    "user with space:$7$101$/VakW/GxDzQ9bRGe$zRrdtipbPrOy7TAHfundp71dp2RM0y7B3P52kHb9llvnTUbnnRVIfDQ"
    "Bmp8lQm1+Gy6gqwvuSUgpSH+DnkC77g==\n";

/* hashlib.pbkdf2_hmac('sha512', b'correct horse', b'loopbot-salt', 101, 64),
 * hashlib.sha512(b'correct horse' + b'loopbot-salt'), and PBKDF2 of the
 * empty password with 1 iteration. */
static const char *const py_pbkdf2 =
    "$7$101$bG9vcGJvdC1zYWx0$ulWve2MGl/AleghQOfT3Hnf+RhgBLMUhb7gSBVTs4BwbMgqnuCJhUMnQ/agDyCRhBUISdVv"
    "6Wp9UB1uLoqX1pQ==";
static const char *const py_sha512 =
    "$6$bG9vcGJvdC1zYWx0$ov5uMIlXsi9df9NtVhBI7CIX+OuE0eXiKUWu02aPa2ijt5wfkNN3faOkpuuyYGfrNwIk+SoJRQ3"
    "GjriHOgOiwA==";
static const char *const py_empty =
    "$7$1$MDEyMzQ1Njc4OWFi$WgqlNOJISZhObqShOOmaF+sbSSbEyqEuFAJq7xNNWMtFc+37QPCrBOy5nSq/uEjnXdtOU95PWG"
    "pxFNIDT1g8Ag==";

static void test_passwd_mosquitto_vectors(void **state)
{
    (void)state;
    struct passwd_db *db;
    assert_int_equal(passwd_parse("pw", mosq_file, strlen(mosq_file), &db, err, sizeof(err)), 0);
    assert_int_equal(passwd_count(db), 4);
    assert_int_equal(passwd_check(db, U("alice"), U("secret")), 0);
    assert_int_equal(passwd_check(db, U("bob"), U("hunter2")), 0);
    assert_int_equal(passwd_check(db, U("carol"), U("pass6")), 0);
    assert_int_equal(passwd_check(db, U("user with space"), U("p:ss w\xc3\xb6rd")), 0);
    assert_int_equal(passwd_check(db, U("alice"), U("Secret")), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, U("alice"), U("secret ")), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, U("alice"), U("")), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, U("alice"), NULL, 0), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, U("bob"), U("secret")), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, U("carol"), U("pass")), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, U("Alice"), U("secret")), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, U("nobody"), U("secret")), -ERR_BAD_CREDENTIALS);
    assert_int_equal(passwd_check(db, (const uint8_t *)"alice\0", 6, U("secret")),
                     -ERR_BAD_CREDENTIALS);
    passwd_free(db);
    passwd_free(NULL);
}

static void test_passwd_independent_vectors(void **state)
{
    (void)state;
    assert_int_equal(passwd_verify_field(F(py_pbkdf2), U("correct horse"), NULL), 1);
    assert_int_equal(passwd_verify_field(F(py_pbkdf2), U("correct hors"), NULL), 0);
    assert_int_equal(passwd_verify_field(F(py_sha512), U("correct horse"), NULL), 1);
    assert_int_equal(passwd_verify_field(F(py_sha512), U("wrong"), NULL), 0);
    assert_int_equal(passwd_verify_field(F(py_empty), U(""), NULL), 1);
    assert_int_equal(passwd_verify_field(F(py_empty), U("x"), NULL), 0);
    /* The writer makes exactly the line hashlib does. */
    char out[PASSWD_HASH_FIELD_MAX];
    int n = passwd_hash_pbkdf2(U("correct horse"), U("loopbot-salt"), 101, out, sizeof(out));
    assert_int_equal(n, strlen(py_pbkdf2));
    assert_string_equal(out, py_pbkdf2);
    n = passwd_hash_pbkdf2(U(""), U("0123456789ab"), 1, out, sizeof(out));
    assert_string_equal(out, py_empty);
    /* Bounds. */
    assert_int_equal(passwd_hash_pbkdf2(U("x"), U("salt"), 0, out, sizeof(out)), -ERR_INVALID);
    assert_int_equal(passwd_hash_pbkdf2(U("x"), U("salt"), PASSWD_ITERATIONS_MAX + 1, out,
                                        sizeof(out)), -ERR_INVALID);
    assert_int_equal(passwd_hash_pbkdf2(U("x"), (const uint8_t *)"", 0, 101, out, sizeof(out)),
                     -ERR_INVALID);
    assert_int_equal(passwd_hash_pbkdf2(U("x"), U("salt"), 101, out, 20), -ERR_NOSPACE);
    const char *why = NULL;
    assert_int_equal(passwd_verify_field(F("plain"), U("plain"), &why), -ERR_INVALID);
    assert_non_null(strstr(why, "loopbot_passwd -U"));
}

static void run_cmd(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("'%s' exited %d", cmd, rc);
}

/* Fresh lines from the real mosquitto_passwd, read through auth_load. */
static void test_passwd_real_mosquitto_passwd(void **state)
{
    (void)state;
    if (access("/usr/bin/mosquitto_passwd", X_OK) != 0) {
        skip();
        return;
    }
    char dir[] = "/tmp/loopbot-test-auth-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], cmd[1024];
    snprintf(path, sizeof(path), "%s/passwd", dir);
    snprintf(cmd, sizeof(cmd),
             "mosquitto_passwd -c -b %s pbkdf 'pw one' && mosquitto_passwd -b %s other two && "
             "mosquitto_passwd -H sha512 -b %s sha 'pw six'", path, path, path);
    run_cmd(cmd);
    struct security_config sec = {.password_file = path};
    struct auth *a;
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), 0);
    assert_true(auth_has_password_file(a));
    assert_int_equal(auth_connect_check(a, U("pbkdf"), U("pw one"), false), 0);
    assert_int_equal(auth_connect_check(a, U("other"), U("two"), false), 0);
    assert_int_equal(auth_connect_check(a, U("sha"), U("pw six"), false), 0);
    assert_int_equal(auth_connect_check(a, U("sha"), U("pw one"), false), -ERR_BAD_CREDENTIALS);
    assert_int_equal(auth_connect_check(a, U("pbkdf"), U("two"), false), -ERR_BAD_CREDENTIALS);
    auth_free(a);
    unlink(path);
    rmdir(dir);
}

struct bad_line {
    const char *text;
    const char *err;
};

static const struct bad_line bad_pw[] = {
    {"alice\n", "pw:1: expected 'username:hash', got 'alice'"},
    {"# c\n\nalice:\n", "pw:3: user 'alice' has no password hash"},
    {":$6$abc$def\n", "pw:1: empty username"},
    {"alice:secret\n", "pw:1: user 'alice': password is not a mosquitto_passwd hash"},
    {"alice:$5$abc$def\n", "user 'alice': password is not a mosquitto_passwd hash"},
    {"alice:$7$$abc$def\n", "pw:1: user 'alice': expected '$7$ITERATIONS$SALT$HASH'"},
    {"alice:$7$x$abc$def\n", "expected '$7$ITERATIONS$SALT$HASH'"},
    {"alice:$7$0$MTIz$def\n", "iteration count must be 1 or more"},
    {"alice:$7$1000000$MTIz$def\n", "iteration count above 100000"},
    {"alice:$7$99999999999999999999999$MTIz$def\n", "iteration count above 100000"},
    {"alice:$7$101$***$def\n", "salt is not base64 of 1 to 64 bytes"},
    {"alice:$7$101$$def\n", "salt is not base64"},
    {"alice:$6$MTIz\n", "salt is not base64"},
    {"alice:$6$MTIz$MTIz\n", "pw:1: user 'alice': hash is not base64 of 64 bytes"},
    {"alice:$6$MTIz$ov5uMIlXsi9df9NtVhBI7CIX+OuE0eXiKUWu02aPa2ijt5wfkNN3faOkpuuyYGfrNwIk+SoJRQ3GjriH"
     "OgOiwA==:extra\n", "hash is not base64 of 64 bytes"},
    {"a:$6$MTIz$ov5uMIlXsi9df9NtVhBI7CIX+OuE0eXiKUWu02aPa2ijt5wfkNN3faOkpuuyYGfrNwIk+SoJRQ3GjriHOgOi"
     "wA==\r\nb\r\n", "pw:2: expected 'username:hash', got 'b'"},
    {"a:$6$MTIz$ov5uMIlXsi9df9NtVhBI7CIX+OuE0eXiKUWu02aPa2ijt5wfkNN3faOkpuuyYGfrNwIk+SoJRQ3GjriHOgOi"
     "wA==\na:$6$MTIz$ov5uMIlXsi9df9NtVhBI7CIX+OuE0eXiKUWu02aPa2ijt5wfkNN3faOkpuuyYGfrNwIk+SoJRQ3Gjr"
     "iHOgOiwA==\n", "pw:2: user 'a' is listed twice"},
};

static void test_passwd_malformed(void **state)
{
    (void)state;
    size_t base = mem_used_total();
    for (size_t i = 0; i < sizeof(bad_pw) / sizeof(bad_pw[0]); i++) {
        struct passwd_db *db = (struct passwd_db *)&db;
        int rc = passwd_parse("pw", bad_pw[i].text, strlen(bad_pw[i].text), &db, err, sizeof(err));
        if (rc != -ERR_CONFIG || !strstr(err, bad_pw[i].err))
            fail_msg("row %zu: rc %d, err '%s', want '%s'", i, rc, err, bad_pw[i].err);
        assert_null(db);
        assert_int_equal(mem_used_total(), base);
    }
    /* A NUL byte; blank lines, comments, CRLF and blanks around fields. */
    struct passwd_db *db;
    assert_int_equal(passwd_parse("pw", "a\0:b\n", 5, &db, err, sizeof(err)), -ERR_CONFIG);
    assert_non_null(strstr(err, "pw:1: line contains a NUL byte"));
    char text[1024];
    snprintf(text, sizeof(text), "\r\n# comment\n   \n  spaced user  :  %s  \r\n\t#x\n", py_sha512);
    assert_int_equal(passwd_parse("pw", text, strlen(text), &db, err, sizeof(err)), 0);
    assert_int_equal(passwd_count(db), 1);
    assert_int_equal(passwd_check(db, U("spaced user"), U("correct horse")), 0);
    passwd_free(db);
    /* Empty file: no users, nobody gets in with a password. */
    assert_int_equal(passwd_parse("pw", NULL, 0, &db, err, sizeof(err)), 0);
    assert_int_equal(passwd_count(db), 0);
    assert_int_equal(passwd_check(db, U("a"), U("")), -ERR_BAD_CREDENTIALS);
    passwd_free(db);
}

/* ---- ACLs ---- */

static const char *const acl_main =
    "# lines before any user: anonymous clients only (mosquitto 2.0)\n"
    "topic read public/#\n"
    "topic readwrite anon/rw\n"
    "\n"
    "user alice\n"
    "topic readwrite alice/#\n"
    "topic deny alice/secret\n"
    "topic read shared/+/status\n"
    "user bob\n"
    "topic write bob/out\n"
    "topic #\n"
    "  # indented comment\n"
    "pattern readwrite dev/%c/#\n"
    "pattern read users/%u/inbox\n"
    "pattern deny dev/%c/locked\n"
    "user alice\n"
    "topic write alice2/#\n";

#define R AUTH_READ
#define W AUTH_WRITE
#define S AUTH_SUBSCRIBE
#define NO (-ERR_NOT_AUTHORIZED)

struct acl_row {
    const char *acl; /* NULL = acl_main */
    const char *id, *user, *topic;
    int access;
    int want;
};

static const struct acl_row acl_rows[] = {
    /* anonymous: the lines before `user`, and patterns */
    {NULL, "a1", NULL, "public/x", R, 0},
    {NULL, "a1", NULL, "public", R, 0},
    {NULL, "a1", NULL, "public/x", W, NO},
    {NULL, "a1", NULL, "anon/rw", W, 0},
    {NULL, "a1", NULL, "anon/rw/x", W, NO},
    {NULL, "a1", NULL, "alice/x", R, NO},
    {NULL, "a1", NULL, "dev/a1/x", W, 0},
    {NULL, "a1", NULL, "dev/a2/x", W, NO},
    {NULL, "a1", NULL, "users//inbox", R, NO}, /* %u needs a username */
    /* alice: her section (both of them) and patterns, not the anonymous lines */
    {NULL, "c1", "alice", "alice/x", W, 0},
    {NULL, "c1", "alice", "alice/x/y", R, 0},
    {NULL, "c1", "alice", "alice", R, 0},
    {NULL, "c1", "alice", "alice/secret", W, NO},
    {NULL, "c1", "alice", "alice/secret", R, NO},
    {NULL, "c1", "alice", "alice/secret/sub", R, 0},
    {NULL, "c1", "alice", "alice2/z", W, 0},
    {NULL, "c1", "alice", "alice2/z", R, NO},
    {NULL, "c1", "alice", "public/x", R, NO},
    {NULL, "c1", "alice", "shared/a/status", R, 0},
    {NULL, "c1", "alice", "shared/a/status", W, NO},
    {NULL, "c1", "alice", "shared/a/b/status", R, NO},
    {NULL, "c1", "alice", "users/alice/inbox", R, 0},
    {NULL, "c1", "alice", "users/alice/inbox", W, NO},
    {NULL, "c1", "alice", "users/bob/inbox", R, NO},
    {NULL, "c1", "alice", "dev/c1/a", W, 0},
    {NULL, "c1", "alice", "dev/c1/locked", W, NO},
    {NULL, "c1", "alice", "dev/c2/a", W, NO},
    /* bob: '#' (readwrite), but a pattern deny still wins (docs/security.md) */
    {NULL, "b1", "bob", "any/topic", W, 0},
    {NULL, "b1", "bob", "bob/out", R, 0},
    {NULL, "b1", "bob", "dev/b1/locked", W, NO},
    {NULL, "b1", "bob", "$SYS/broker/uptime", R, NO}, /* '#' matches no $ topic */
    {NULL, "b1", "bob", "$SYS/broker/uptime", S, NO},
    /* a user with no section: patterns only */
    {NULL, "z1", "zed", "dev/z1/x", W, 0},
    {NULL, "z1", "zed", "users/zed/inbox", R, 0},
    {NULL, "z1", "zed", "public/x", R, NO},
    {NULL, "z1", "zed", "anything", R, NO},
    /* no client id: no patterns */
    {NULL, NULL, "zed", "users/zed/inbox", R, NO},
    {NULL, NULL, "alice", "alice/x", W, 0},
    /* '+' or '#' in the client id or username: patterns skipped, so "dev/+/#"
     * cannot grant every device; the user's own lines still apply */
    {NULL, "+", "zed", "dev/other/x", W, NO},
    {NULL, "+", "zed", "dev/+/x", W, NO},
    {NULL, "#", NULL, "dev/x", W, NO},
    {NULL, "x#", "alice", "alice/z", W, 0},
    {NULL, "c1", "a+", "users/a+/inbox", R, NO},
    {NULL, "c1", "#", "users/x/inbox", R, NO},
    {NULL, "+", NULL, "anon/rw", W, 0},
    /* '/' in a client id is substituted as text, as mosquitto does */
    {NULL, "x/y", NULL, "dev/x/y/z", W, 0},
    /* SUBSCRIBE: refused only when no topic could ever be delivered */
    {NULL, "c1", "alice", "alice/#", S, 0},
    {NULL, "c1", "alice", "#", S, 0},
    {NULL, "c1", "alice", "+/secret", S, 0},
    {NULL, "c1", "alice", "alice/secret", S, NO},
    {NULL, "c1", "alice", "admin/x", S, NO},
    {NULL, "c1", "alice", "alice2/#", S, NO}, /* write only */
    {NULL, "c1", "alice", "shared/#", S, 0},
    {NULL, "c1", "alice", "shared/+/+", S, 0},
    {NULL, "c1", "alice", "shared/x/status/y", S, NO},
    {NULL, "c1", "alice", "dev/c1/#", S, 0},
    {NULL, "c1", "alice", "dev/c1/locked", S, NO},
    {NULL, "c1", "alice", "dev/+/x", S, 0},
    {NULL, "c1", "alice", "$share/g/alice/x", S, 0},
    {NULL, "c1", "alice", "$share/g/admin/x", S, NO},
    {NULL, "a1", NULL, "public/+", S, 0},
    {NULL, "a1", NULL, "anon/#", S, 0},
    {NULL, "a1", NULL, "alice/#", S, NO},
    {NULL, "b1", "bob", "#", S, 0},
    {NULL, "b1", "bob", "dev/b1/locked", S, NO},
    {NULL, "b1", "bob", "dev/b1/+", S, 0},
    /* deny precedence inside one list, whatever the order of lines */
    {"topic deny a/b\ntopic a/#\n", "c", NULL, "a/b", W, NO},
    {"topic a/#\ntopic deny a/b\n", "c", NULL, "a/b", R, NO},
    {"topic a/#\ntopic deny a/b\n", "c", NULL, "a/c", R, 0},
    {"topic deny #\ntopic a\n", "c", NULL, "a", W, NO},
    {"topic deny #\ntopic a\n", "c", NULL, "a/#", S, NO},
    {"topic deny +/x\ntopic #\n", "c", NULL, "a/#", S, 0}, /* partly denied */
    {"topic deny +/x\ntopic #\n", "c", NULL, "+/x", S, NO},
    /* mosquitto's one-word form: "topic read" is the topic "read" */
    {"topic read\n", "c", NULL, "read", W, 0},
    {"topic write x y\n", "c", NULL, "x y", W, 0},
    {"topic  read   a b  \n", "c", NULL, "a b", R, 0},
    /* %c and %u substituted anywhere, as mosquitto does */
    {"pattern write %u/%c\n", "dev1", "ann", "ann/dev1", W, 0},
    {"pattern write %u/%c\n", "dev1", "ann", "ann/dev2", W, NO},
    {"pattern write a/%c%c\n", "x", NULL, "a/xx", W, 0},
    {"pattern write a/%%c\n", "x", NULL, "a/%x", W, 0},
    {"pattern write plain/topic\n", "x", "u", "plain/topic", W, 0},
    /* an ACL file with nothing in it refuses everything */
    {"", "c", NULL, "a", W, NO},
    {"# only comments\n", "c", "u", "a", S, NO},
};

static struct acl *load_acl(const char *text)
{
    struct acl *acl;
    int rc = acl_parse("acl", text, strlen(text), &acl, err, sizeof(err));
    if (rc != 0)
        fail_msg("acl '%s': %d %s", text, rc, err);
    return acl;
}

static void test_acl_table(void **state)
{
    (void)state;
    struct acl *main_acl = load_acl(acl_main);
    for (size_t i = 0; i < sizeof(acl_rows) / sizeof(acl_rows[0]); i++) {
        const struct acl_row *r = &acl_rows[i];
        struct acl *acl = r->acl ? load_acl(r->acl) : main_acl;
        int got = acl_check(acl, r->id, r->user, U(r->topic), r->access);
        if (got != r->want)
            fail_msg("row %zu: id %s user %s %s '%s': got %d, want %d", i,
                     r->id ? r->id : "(null)", r->user ? r->user : "(null)",
                     r->access == R ? "read" : r->access == W ? "write" : "subscribe", r->topic,
                     got, r->want);
        if (r->acl)
            acl_free(acl);
    }
    acl_free(main_acl);
    /* No ACL: everything. */
    assert_int_equal(acl_check(NULL, "c", NULL, U("x"), W), 0);
}

/* Long client ids expand on the heap, not the stack buffer. */
static void test_acl_long_ids(void **state)
{
    (void)state;
    struct acl *acl = load_acl("pattern readwrite dev/%c/%c/#\npattern deny x/%c\n");
    size_t n = 5000;
    char *id = malloc(n + 1), *topic = malloc(2 * n + 16);
    memset(id, 'i', n);
    id[n] = '\0';
    snprintf(topic, 2 * n + 16, "dev/%s/%s/t", id, id);
    assert_int_equal(acl_check(acl, id, NULL, U(topic), W), 0);
    topic[6] = 'j';
    assert_int_equal(acl_check(acl, id, NULL, U(topic), W), NO);
    /* An expansion that cannot allocate: grants fail closed, denies too. */
    topic[6] = 'i';
    mem_fail_nth(1);
    assert_int_equal(acl_check(acl, id, NULL, U(topic), W), NO);
    mem_fail_nth(0);
    free(id);
    free(topic);
    acl_free(acl);
}

static void test_acl_malformed(void **state)
{
    (void)state;
    static const struct bad_line bad[] = {
        {"topic\n", "acl:1: topic: missing topic"},
        {"# x\npattern   \n", "acl:2: pattern: missing topic"},
        {"topic reed a/b\n", "acl:1: topic: access must be read, write, readwrite or deny, got 'reed'"},
        {"pattern a b c\n", "pattern: access must be read, write, readwrite or deny, got 'a'"},
        {"topic read a/#/b\n", "acl:1: topic: 'a/#/b' is not a valid topic filter"},
        {"topic read a+\n", "is not a valid topic filter"},
        {"\n\npattern deny x/%c#\n", "acl:3: pattern: 'x/%c#' is not a valid topic filter"},
        {"user\n", "acl:1: user: missing username"},
        {"user \t \n", "acl:1: user: missing username"},
        {"user alice\nusr bob\n", "acl:2: expected 'topic', 'pattern' or 'user', got 'usr'"},
        {"topic read \xff\n", "is not a valid topic filter"},
    };
    size_t base = mem_used_total();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct acl *acl = (struct acl *)&acl;
        int rc = acl_parse("acl", bad[i].text, strlen(bad[i].text), &acl, err, sizeof(err));
        if (rc != -ERR_CONFIG || !strstr(err, bad[i].err))
            fail_msg("row %zu: rc %d, err '%s', want '%s'", i, rc, err, bad[i].err);
        assert_null(acl);
        assert_int_equal(mem_used_total(), base);
    }
    struct acl *acl;
    assert_int_equal(acl_parse("acl", "topic a\0\n", 9, &acl, err, sizeof(err)), -ERR_CONFIG);
    assert_non_null(strstr(err, "acl:1: line contains a NUL byte"));
}

struct alg_row {
    const char *a, *b;
    bool intersect; /* some topic matches both */
    bool covers;    /* every topic matching b matches a */
};

static const struct alg_row alg_rows[] = {
    {"a/b", "a/b", true, true},
    {"a/b", "a/c", false, false},
    {"a/#", "a", true, true},
    {"a/#", "a/b/c", true, true},
    {"a/#", "#", true, false},
    {"#", "a/#", true, true},
    {"+", "a", true, true},
    {"+", "a/b", false, false},
    {"+/b", "a/+", true, false},
    {"a/+", "a/+", true, true},
    {"a/b", "a/+", true, false},
    {"a/+/#", "a/#", true, false},
    {"#", "$SYS/x", false, false},
    {"+/x", "$SYS/x", false, false},
    {"$SYS/#", "$SYS/x", true, true},
    {"#", "+/x", true, true},
    {"$SYS/#", "#", false, false},
    {"a//b", "a/+/b", true, false},
    {"a/+/b", "a//b", true, true},
    {"a", "a/b", false, false},
};

static void test_filter_algebra(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(alg_rows) / sizeof(alg_rows[0]); i++) {
        const struct alg_row *r = &alg_rows[i];
        if (acl_filters_intersect(U(r->a), U(r->b)) != r->intersect ||
            acl_filters_intersect(U(r->b), U(r->a)) != r->intersect)
            fail_msg("row %zu: intersect('%s', '%s') != %d", i, r->a, r->b, r->intersect);
        if (acl_filter_covers(U(r->a), U(r->b)) != r->covers)
            fail_msg("row %zu: covers('%s', '%s') != %d", i, r->a, r->b, r->covers);
    }
}

/* ---- auth.h: loading files and CONNECT ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

struct files {
    char dir[64], pw[128], acl[128], psk[128];
};

static void files_make(struct files *f)
{
    strcpy(f->dir, "/tmp/loopbot-test-auth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->pw, sizeof(f->pw), "%s/passwd", f->dir);
    snprintf(f->acl, sizeof(f->acl), "%s/acl", f->dir);
    snprintf(f->psk, sizeof(f->psk), "%s/psk", f->dir);
    write_file(f->pw, mosq_file);
    write_file(f->acl, acl_main);
    write_file(f->psk, "# identity:key\ngateway:00ff10AB\n");
}

static void files_remove(struct files *f)
{
    unlink(f->pw);
    unlink(f->acl);
    unlink(f->psk);
    rmdir(f->dir);
}

static void test_connect_check(void **state)
{
    (void)state;
    struct files f;
    files_make(&f);
    struct auth *a;
    /* No files: anonymous as allow_anonymous says; a username is not
     * checked, but needs allow_anonymous (mosquitto 2.0.11, checked). */
    struct security_config sec = {.allow_anonymous = false};
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), 0);
    assert_int_equal(auth_connect_check(a, NULL, 0, NULL, 0, false), -ERR_NOT_AUTHORIZED);
    assert_int_equal(auth_connect_check(a, U("alice"), U("secret"), false), -ERR_NOT_AUTHORIZED);
    assert_int_equal(auth_connect_check(a, U("cn"), NULL, 0, true), 0);
    assert_false(auth_has_acl(a));
    assert_false(auth_allow_anonymous(a));
    assert_int_equal(auth_acl_check(a, "c", NULL, U("any"), AUTH_WRITE), 0);
    auth_free(a);
    sec.allow_anonymous = true;
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), 0);
    assert_int_equal(auth_connect_check(a, NULL, 0, NULL, 0, false), 0);
    assert_int_equal(auth_connect_check(a, U("anyone"), U("x"), false), 0);
    auth_free(a);

    /* Password file: users are checked whatever allow_anonymous says. */
    sec.password_file = f.pw;
    sec.acl_file = f.acl;
    sec.psk_file = f.psk;
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), 0);
    assert_int_equal(auth_connect_check(a, NULL, 0, NULL, 0, false), 0);
    assert_int_equal(auth_connect_check(a, U("alice"), U("secret"), false), 0);
    assert_int_equal(auth_connect_check(a, U("alice"), U("nope"), false), -ERR_BAD_CREDENTIALS);
    assert_int_equal(auth_connect_check(a, U("alice"), NULL, 0, false), -ERR_BAD_CREDENTIALS);
    assert_int_equal(auth_connect_check(a, U("nobody"), U("x"), false), -ERR_BAD_CREDENTIALS);
    assert_int_equal(auth_connect_check(a, U("CN=device 7"), NULL, 0, true), 0);
    assert_true(auth_has_acl(a));
    assert_int_equal(auth_acl_check(a, "c1", "alice", U("alice/x"), AUTH_WRITE), 0);
    assert_int_equal(auth_acl_check(a, "c1", "alice", U("bob/x"), AUTH_WRITE), NO);
    uint8_t key[64];
    assert_int_equal(auth_psk_key(a, U("gateway"), key, sizeof(key)), 4);
    assert_memory_equal(key, "\x00\xff\x10\xab", 4);
    assert_int_equal(auth_psk_key(a, U("other"), key, sizeof(key)), -ERR_NOT_FOUND);
    assert_int_equal(auth_psk_key(a, U("gateway"), key, 2), -ERR_NOSPACE);
    auth_free(a);
    sec.allow_anonymous = false;
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), 0);
    assert_int_equal(auth_connect_check(a, NULL, 0, NULL, 0, false), -ERR_NOT_AUTHORIZED);
    assert_int_equal(auth_connect_check(a, U("bob"), U("hunter2"), false), 0);
    auth_free(a);
    auth_free(NULL);
    assert_int_equal(auth_connect_check(NULL, NULL, 0, NULL, 0, false), 0);
    assert_int_equal(auth_psk_key(NULL, U("x"), key, sizeof(key)), -ERR_NOT_FOUND);
    files_remove(&f);
}

static void test_load_errors(void **state)
{
    (void)state;
    struct files f;
    files_make(&f);
    struct auth *a = (struct auth *)&a;
    char want[512];
    struct security_config sec = {.password_file = "/nonexistent/passwd"};
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), -ERR_CONFIG);
    assert_string_equal(err, "/nonexistent/passwd: cannot open: No such file or directory");
    assert_null(a);

    write_file(f.pw, "alice:$7$101$pVjxlmnnqqwR5AG+$short\n");
    sec.password_file = f.pw;
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), -ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:1: user 'alice': hash is not base64 of 64 bytes", f.pw);
    assert_string_equal(err, want);

    write_file(f.pw, mosq_file);
    write_file(f.acl, "user a\ntopic readd x\n");
    sec.acl_file = f.acl;
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), -ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:2: topic: access must be", f.acl);
    assert_non_null(strstr(err, want));

    sec.acl_file = NULL;
    static const char *const bad_psk[] = {"id\n", "id:abc\n", "id:zz\n", ":00\n", "a:00\na:11\n"};
    static const char *const why[] = {"expected 'identity:hexkey'", "even number of hex digits",
                                      "not a hex digit", "expected 'identity:hexkey'",
                                      ":2: identity listed twice"};
    sec.psk_file = f.psk;
    for (size_t i = 0; i < 5; i++) {
        write_file(f.psk, bad_psk[i]);
        assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), -ERR_CONFIG);
        if (!strstr(err, why[i]) || strncmp(err, f.psk, strlen(f.psk)) != 0)
            fail_msg("psk row %zu: '%s'", i, err);
    }
    /* A directory opens but does not read. */
    sec.psk_file = f.dir;
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), -ERR_CONFIG);
    assert_non_null(strstr(err, ": cannot read: "));
    assert_int_equal(auth_load(&sec, &a, NULL, 0), -ERR_CONFIG);
    files_remove(&f);
}

/* Every allocation failing in turn: -ERR_NOMEM, nothing leaked. */
static void test_alloc_failures(void **state)
{
    (void)state;
    struct files f;
    files_make(&f);
    struct security_config sec = {.password_file = f.pw, .acl_file = f.acl, .psk_file = f.psk};
    size_t base = mem_used_total();
    struct auth *a;
    mem_fail_nth(0);
    assert_int_equal(auth_load(&sec, &a, err, sizeof(err)), 0);
    auth_free(a);
    unsigned long count = mem_fail_nth(0);
    assert_true(count >= 20);
    assert_int_equal(mem_used_total(), base);
    for (unsigned long n = 1; n <= count; n++) {
        mem_fail_nth(n);
        int rc = auth_load(&sec, &a, err, sizeof(err));
        mem_fail_nth(0);
        if (rc != -ERR_NOMEM)
            fail_msg("allocation %lu failing gave %d (%s)", n, rc, err);
        assert_null(a);
        assert_non_null(strstr(err, "out of memory"));
        if (mem_used_total() != base)
            fail_msg("allocation %lu failing leaked %zu bytes", n, mem_used_total() - base);
    }
    files_remove(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passwd_mosquitto_vectors),
        cmocka_unit_test(test_passwd_independent_vectors),
        cmocka_unit_test(test_passwd_real_mosquitto_passwd),
        cmocka_unit_test(test_passwd_malformed),
        cmocka_unit_test(test_acl_table),
        cmocka_unit_test(test_acl_long_ids),
        cmocka_unit_test(test_acl_malformed),
        cmocka_unit_test(test_filter_algebra),
        cmocka_unit_test(test_connect_check),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
