/* The config parser over arbitrary bytes: it must return 0, -ERR_CONFIG or
 * -ERR_NOMEM, write a NUL-terminated "fuzz.conf:..." message into a bounded
 * buffer, and free everything it allocated. Each input runs twice: as it
 * is, then with one of its allocations failing, which must give -ERR_NOMEM
 * and leak nothing. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/config.h"
#include "broker/mem.h"
#include "mqtt/error.h"

#include "alloc_fail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(const uint8_t *data, size_t size, bool check)
{
    (void)check; /* every run checks everything: config loads are cheap */
    char err[256];
    memset(err, 'x', sizeof(err));
    struct config c;
    config_init(&c);
    int rc = config_load_string(&c, "fuzz.conf", (const char *)data, size, err, sizeof(err));
    if (rc != 0 && rc != -ERR_CONFIG && rc != -ERR_NOMEM)
        abort();
    if (memchr(err, '\0', sizeof(err)) == NULL)
        abort();
    if (rc != 0 && strncmp(err, "fuzz.conf:", 10) != 0)
        abort();
    if (rc == 0 && err[0] != '\0')
        abort();
    /* Walk what was built, so a bad pointer shows here under ASan. */
    for (const struct listener_config *l = c.listeners; l; l = l->next) {
        if (l->port == 0 || (l->bind_address && l->bind_address[0] == '\0'))
            abort();
    }
    for (const struct config_warning *w = c.warnings; w; w = w->next) {
        if (strncmp(w->text, "fuzz.conf:", 10) != 0)
            abort();
    }
    if ((c.log_dest & LOG_D_FILE) != (c.log_file ? (uint32_t)LOG_D_FILE : 0u))
        abort();
    if (rc != 0 && (c.listeners || c.warnings || c.log_file)) /* a failed load changes nothing */
        abort();
    config_free(&c);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_with_one_alloc_failing(run, data, size);
    return 0;
}
