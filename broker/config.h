/* The broker's settings, read from a mosquitto.conf-style file.
 *
 * Syntax as mosquitto.conf(5): one "key value..." per line, '#' starts a
 * comment line, blank lines ignored, keys are case-sensitive. Unknown keys
 * and bad values stop start-up with "file:line: reason". */
#ifndef LOOPBOT_BROKER_CONFIG_H
#define LOOPBOT_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* log_type bits, as mosquitto's names. */
enum {
    LOG_T_ERROR = 1 << 0,
    LOG_T_WARNING = 1 << 1,
    LOG_T_NOTICE = 1 << 2,
    LOG_T_INFO = 1 << 3,
    LOG_T_DEBUG = 1 << 4,
    LOG_T_SUBSCRIBE = 1 << 5,
    LOG_T_UNSUBSCRIBE = 1 << 6,
    LOG_T_WEBSOCKETS = 1 << 7,
    LOG_T_ALL = 0xff,
};

/* log_dest bits. */
enum {
    LOG_D_STDERR = 1 << 0,
    LOG_D_STDOUT = 1 << 1,
    LOG_D_FILE = 1 << 2,
    LOG_D_SYSLOG = 1 << 3,
    LOG_D_TOPIC = 1 << 4,
};

struct listener_config {
    struct listener_config *next;
    char *bind_address; /* NULL = all addresses (IPv4 and IPv6) */
    uint16_t port;
    uint32_t max_connections; /* 0 = unlimited */
    int line;            /* where it was defined, for messages */
};

struct config {
    struct listener_config *listeners; /* in file order */
    bool allow_anonymous;
    bool allow_anonymous_set;     /* set explicitly in the file */
    uint32_t max_connections;     /* 0 = unlimited (mosquitto's -1) */
    uint16_t max_inflight_messages; /* per client, outgoing QoS 1/2; 0 = unlimited (65535) */
    uint32_t max_queued_messages; /* per client; 0 = unlimited */
    uint64_t max_queued_bytes;    /* per client; 0 = unlimited */
    uint32_t message_size_limit;  /* PUBLISH payload bytes; 0 = protocol maximum */
    uint16_t max_keepalive;       /* seconds */
    int64_t persistent_client_expiration; /* seconds; -1 = never */
    uint32_t log_dest;            /* LOG_D_* */
    char *log_file;               /* with LOG_D_FILE */
    uint32_t log_type;            /* LOG_T_* */
    bool log_timestamp;
};

/* Built-in defaults: no listeners (the caller adds the default one),
 * anonymous allowed only for the built-in local-only listener. */
void config_init(struct config *c);
void config_free(struct config *c);

/* Reads path into c (which config_init prepared). On error returns
 * -ERR_CONFIG with "file:line: reason" in err. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);
/* The same for text held in memory; `name` stands for the file in messages. */
int config_load_string(struct config *c, const char *name, const char *text, size_t len, char *err,
                       size_t errlen);

/* Appends a listener (port, bind address or NULL). Returns 0 or -ERR_NOMEM. */
int config_add_listener(struct config *c, uint16_t port, const char *bind_address);

#endif
