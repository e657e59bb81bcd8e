/* ACL files in mosquitto's acl_file format (mosquitto.conf(5)):
 *
 *   # comment
 *   topic [read|write|readwrite|deny] TOPIC     before any `user`: anonymous clients
 *   user NAME                                   starts NAME's section
 *   topic [read|write|readwrite|deny] TOPIC     in a section: that user only
 *   pattern [read|write|readwrite|deny] TOPIC   anywhere: every client, with %c
 *                                               (client id) and %u (username)
 *
 * The access word is optional (readwrite); a line with one word after
 * `topic` takes it as the topic, as mosquitto does. docs/security.md says
 * how checks combine. Parsing is pure over a buffer; auth.c reads files. */
#ifndef LOOPBOT_BROKER_ACL_H
#define LOOPBOT_BROKER_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acl;

/* Returns 0 with *out set, -ERR_CONFIG with "name:LINE: reason" in err, or
 * -ERR_NOMEM. */
int acl_parse(const char *name, const char *text, size_t len, struct acl **out, char *err,
              size_t errlen);
void acl_free(struct acl *acl);

/* access is one of AUTH_READ, AUTH_WRITE, AUTH_SUBSCRIBE (auth.h). client_id
 * and username may be NULL. Returns 0 (allowed) or -ERR_NOT_AUTHORIZED. */
int acl_check(const struct acl *acl, const char *client_id, const char *username,
              const uint8_t *topic, size_t len, int access);

/* Filter algebra over valid topic filters, exported for the tests:
 * whether some topic name matches both a and b, and whether every topic
 * name that matches f also matches d. Both follow the '$' rule
 * [MQTT-4.7.2-1]. */
bool acl_filters_intersect(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);
bool acl_filter_covers(const uint8_t *d, size_t dlen, const uint8_t *f, size_t flen);

#endif
