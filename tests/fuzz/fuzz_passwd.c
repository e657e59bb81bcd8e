/* The password-file parser over arbitrary bytes: 0, -ERR_CONFIG or
 * -ERR_NOMEM; a NUL-terminated "fuzz.pw:LINE: ..." message in a bounded
 * buffer; nothing leaked; then every user it loaded is checked once (one
 * PBKDF2 each, so inputs stay small). Each input runs again with one
 * allocation failing, which must give -ERR_NOMEM and leak nothing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/mem.h"
#include "broker/passwd.h"
#include "mqtt/error.h"

#include "alloc_fail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const uint8_t *data, size_t size, bool check)
{
    char err[128];
    memset(err, 'x', sizeof(err));
    struct passwd_db *db = (struct passwd_db *)&db;
    int rc = passwd_parse("fuzz.pw", (const char *)data, size, &db, err, sizeof(err));
    if (rc != 0 && rc != -ERR_CONFIG && rc != -ERR_NOMEM)
        abort();
    if (!memchr(err, '\0', sizeof(err)))
        abort();
    if (rc != 0 && (db != NULL || strncmp(err, "fuzz.pw:", 8) != 0))
        abort();
    if (rc == 0 && (db == NULL || err[0] != '\0'))
        abort();
    if (rc == 0 && check && passwd_count(db) <= 4) {
        /* The first line's user name, if any: a wrong password never passes. */
        const uint8_t *colon = memchr(data, ':', size);
        const uint8_t *nl = memchr(data, '\n', size);
        if (colon && (!nl || colon < nl) &&
            passwd_check(db, data, (size_t)(colon - data), (const uint8_t *)"\x01", 1) == 0)
            abort();
    }
    passwd_free(db == (struct passwd_db *)&db ? NULL : db);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_with_one_alloc_failing(run, data, size);
    return 0;
}
