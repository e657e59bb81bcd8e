/* Authentication and authorisation: one loaded password file + ACL file +
 * allow_anonymous, as mosquitto has them (globally, or per listener with
 * per_listener_settings). Loading reads files, so it happens at start-up
 * and on SIGHUP only, never on the loop's hot path; checks are in memory.
 *
 * Password file: mosquitto_passwd(1) format, "username:$7$..." (PBKDF2-
 * SHA512) and "username:$6$..." (salted SHA512), one per line.
 * ACL file: mosquitto.conf(5) acl_file format ("user", "topic
 * [read|write|readwrite|deny] TOPIC", "pattern ... TOPIC" with %c and %u). */
#ifndef LOOPBOT_BROKER_AUTH_H
#define LOOPBOT_BROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth;
struct security_config;

enum auth_access {
    AUTH_READ = 1,      /* a message may be delivered to the client */
    AUTH_WRITE = 2,     /* the client may publish (also its will) */
    AUTH_SUBSCRIBE = 4, /* the client may subscribe to a filter */
};

/* Loads sec's files. On error returns -ERR_CONFIG (or -ERR_NOMEM) with
 * "FILE:LINE: reason" in err and NULL in *out. */
int auth_load(const struct security_config *sec, struct auth **out, char *err, size_t errlen);
void auth_free(struct auth *a);

/* CONNECT: username may be NULL (anonymous). Returns 0 (allowed),
 * -ERR_NOT_AUTHORIZED (anonymous not allowed, or no password file to check
 * a user against) or -ERR_BAD_CREDENTIALS (unknown user, wrong password).
 * A certificate or PSK identity used as username is checked with
 * password NULL, which passes without a password check. */
int auth_connect_check(const struct auth *a, const uint8_t *username, size_t ulen,
                       const uint8_t *password, size_t plen, bool identity_verified);

/* 0 if client (id, username or NULL) may do access on topic (a topic name
 * for READ/WRITE, a filter for SUBSCRIBE), else -ERR_NOT_AUTHORIZED. With no
 * ACL file everything is allowed. */
int auth_acl_check(const struct auth *a, const char *client_id, const char *username,
                   const uint8_t *topic, size_t len, enum auth_access access);
bool auth_has_acl(const struct auth *a);

/* Added with the implementation (auth.c): */
bool auth_has_password_file(const struct auth *a);
bool auth_allow_anonymous(const struct auth *a); /* true for a == NULL */
/* The pre-shared key psk_file gives identity (ilen bytes): copies it into
 * key (cap bytes) and returns its length, -ERR_NOT_FOUND (no psk_file, or
 * identity not in it) or -ERR_NOSPACE. For the TLS listener's PSK callback. */
int auth_psk_key(const struct auth *a, const uint8_t *identity, size_t ilen, uint8_t *key,
                 size_t cap);

#endif
