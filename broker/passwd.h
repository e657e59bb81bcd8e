/* Password files in mosquitto_passwd(1)'s format, so a file made for
 * mosquitto works unchanged:
 *
 *   user:$7$<iterations>$<base64 salt>$<base64 hash>   PBKDF2-HMAC-SHA512
 *   user:$6$<base64 salt>$<base64 hash>                SHA512(password || salt)
 *
 * '#' starts a comment line; blank lines are skipped. Parsing is pure over a
 * buffer (the fuzz target feeds it bytes); auth.c reads the file. */
#ifndef LOOPBOT_BROKER_PASSWD_H
#define LOOPBOT_BROKER_PASSWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct passwd_db;

/* mosquitto 2.0's defaults, which loopbot_passwd writes too. */
#define PASSWD_ITERATIONS 101
#define PASSWD_SALT_LEN 12
#define PASSWD_HASH_LEN 64
/* A check runs on the event loop: one with a million iterations would hold
 * it for seconds on a Pi, so files asking for more are refused. */
#define PASSWD_ITERATIONS_MAX 100000
/* Longest "$7$..." field loopbot_passwd writes, with its NUL. */
#define PASSWD_HASH_FIELD_MAX 128

/* Parses text (len bytes, need not be NUL-terminated). `name` stands for
 * the file in messages. Returns 0 with *out set (an empty file gives an
 * empty database), -ERR_CONFIG with "name:LINE: reason" in err, or
 * -ERR_NOMEM. */
int passwd_parse(const char *name, const char *text, size_t len, struct passwd_db **out,
                 char *err, size_t errlen);
void passwd_free(struct passwd_db *db);
size_t passwd_count(const struct passwd_db *db);

/* 0 when user is in db and password hashes to its entry, else
 * -ERR_BAD_CREDENTIALS. An unknown user costs the same hash as a known one,
 * so timing does not tell which user names exist. */
int passwd_check(const struct passwd_db *db, const uint8_t *user, size_t ulen,
                 const uint8_t *password, size_t plen);

/* Writes "$7$<iterations>$<salt>$<hash>" for password into out (cap bytes,
 * PASSWD_HASH_FIELD_MAX is enough). salt is salt_len (1..64) bytes.
 * Returns the length written, or -ERR_NOSPACE / -ERR_INVALID / -ERR_NOMEM. */
int passwd_hash_pbkdf2(const uint8_t *password, size_t plen, const uint8_t *salt, size_t salt_len,
                       unsigned iterations, char *out, size_t cap);

/* Verifies password against one hash field ("$7$..." or "$6$..."), as a
 * password file line holds it after "user:". Returns 1 (match), 0 (no
 * match), or -ERR_INVALID when the field is malformed (why, if not NULL,
 * says how). */
int passwd_verify_field(const char *field, size_t flen, const uint8_t *password, size_t plen,
                        const char **why);

#endif
