/* The ACL parser over arbitrary bytes, then checks against what it built:
 * the same result contract as fuzz_passwd (0 / -ERR_CONFIG / -ERR_NOMEM,
 * "fuzz.acl:LINE: ..." messages, no leaks, a failing allocation gives
 * -ERR_NOMEM), every check returns 0 or -ERR_NOT_AUTHORIZED, and the filter
 * algebra keeps its laws on the topics the input names. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/acl.h"
#include "broker/auth.h"
#include "broker/mem.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"

#include "alloc_fail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const ids[] = {"c1", "+", "dev/#", NULL};
static const char *const users[] = {NULL, "alice", "bob", "a#"};
static const char *const topics[] = {"a/b", "alice/x", "dev/c1/x", "$SYS/x", "users/alice/inbox",
                                     "#", "+/+", "a//b"};

static void check_all(const struct acl *acl, const uint8_t *t, size_t tlen)
{
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (size_t u = 0; u < sizeof(users) / sizeof(users[0]); u++) {
            for (int acc = AUTH_READ; acc <= AUTH_SUBSCRIBE; acc <<= 1) {
                bool name = mqtt_topic_name_validate(t, tlen) == 0;
                bool filter = mqtt_topic_filter_validate(t, tlen) == 0;
                if ((acc == AUTH_SUBSCRIBE && !filter) || (acc != AUTH_SUBSCRIBE && !name))
                    continue;
                int rc = acl_check(acl, ids[i], users[u], t, tlen, acc);
                if (rc != 0 && rc != -ERR_NOT_AUTHORIZED)
                    abort();
            }
        }
    }
}

static int run(const uint8_t *data, size_t size, bool check)
{
    char err[128];
    memset(err, 'x', sizeof(err));
    struct acl *acl = (struct acl *)&acl;
    int rc = acl_parse("fuzz.acl", (const char *)data, size, &acl, err, sizeof(err));
    if (rc != 0 && rc != -ERR_CONFIG && rc != -ERR_NOMEM)
        abort();
    if (!memchr(err, '\0', sizeof(err)))
        abort();
    if (rc != 0 && (acl != NULL || strncmp(err, "fuzz.acl:", 9) != 0))
        abort();
    if (rc == 0 && (acl == NULL || err[0] != '\0'))
        abort();
    if (rc == 0 && check) {
        for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
            check_all(acl, (const uint8_t *)topics[i], strlen(topics[i]));
        /* The input's last line as a topic too. */
        size_t start = size ? size - 1 : 0;
        while (start > 0 && data[start - 1] != '\n')
            start--;
        const uint8_t *t = data + start;
        size_t tlen = size - (size_t)(t - data);
        if (tlen && t[tlen - 1] == '\n')
            tlen--;
        check_all(acl, t, tlen);
        for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
            const uint8_t *a = (const uint8_t *)topics[i];
            size_t alen = strlen(topics[i]);
            if (mqtt_topic_filter_validate(t, tlen) != 0)
                break;
            if (acl_filters_intersect(a, alen, t, tlen) != acl_filters_intersect(t, tlen, a, alen))
                abort();
            if (!acl_filter_covers(t, tlen, t, tlen))
                abort();
            /* Covering implies intersecting. */
            if (acl_filter_covers(a, alen, t, tlen) && !acl_filters_intersect(a, alen, t, tlen))
                abort();
        }
    }
    acl_free(acl == (struct acl *)&acl ? NULL : acl);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_with_one_alloc_failing(run, data, size);
    return 0;
}
