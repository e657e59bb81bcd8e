/* The broker's settings, read from a mosquitto.conf-style file.
 *
 * Syntax as mosquitto.conf(5): one "key value..." per line, '#' starts a
 * comment line, blank lines ignored, keys are case-sensitive. Unknown keys
 * and bad values stop start-up with "file:line: reason". docs/configuration.md
 * lists every key; config.c has one table row per key. */
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

struct auth;

/* Who may connect and what they may do: global, or per listener when
 * per_listener_settings is true (mosquitto's rule). */
struct security_config {
    bool allow_anonymous;
    bool allow_anonymous_set; /* set explicitly in the file */
    char *password_file;      /* mosquitto_passwd format; NULL = none */
    char *acl_file;           /* mosquitto ACL format; NULL = none */
    char *psk_file;           /* "identity:hexkey" lines; NULL = none */
};

/* TLS of one listener (mosquitto's listener TLS options). TLS is on when
 * certfile/keyfile or psk_hint is set. */
struct tls_config {
    char *cafile, *capath, *certfile, *keyfile, *crlfile;
    char *ciphers;      /* mosquitto/OpenSSL-style list; NULL = library defaults */
    char *ciphers_tls13; /* ciphers_tls1.3: TLS 1.3 suites; NULL = library defaults */
    char *tls_version;  /* "tlsv1.2", "tlsv1.3"; NULL = 1.2 and up */
    char *psk_hint;
    bool require_certificate;
    bool use_identity_as_username;
    bool use_subject_as_username;
};

struct listener_config {
    struct listener_config *next;
    char *bind_address; /* NULL = all addresses (IPv4 and IPv6) */
    uint16_t port;
    uint32_t max_connections; /* 0 = unlimited */
    uint32_t max_connection_rate; /* new connections per second; 0 = unlimited */
    int line;            /* where it was defined, for messages; 0 = not from a file */
    struct tls_config tls;
    struct security_config sec; /* used when per_listener_settings is true */
    /* Runtime, not parsed: the loaded password file and ACL this listener
     * uses when per_listener_settings is true (else NULL: the core's). */
    struct auth *auth;
};

/* Something the operator should hear about that does not stop start-up (a
 * deprecated key, a setting that has no effect), as "file:line: text". The
 * broker logs each one at warning level once loading has succeeded. */
struct config_warning {
    struct config_warning *next;
    char *text;
};

struct config {
    struct listener_config *listeners; /* in file order */
    bool per_listener_settings;   /* security per listener (listener_config.sec) */
    struct security_config sec;   /* global allow_anonymous, password_file, acl_file,
                                   * psk_file (per_listener_settings false) */
    uint32_t max_connections;     /* 0 = unlimited (mosquitto's -1) */
    uint32_t max_connection_rate; /* per listener, per second, for listeners that
                                   * set none; 0 = unlimited */
    uint16_t max_inflight_messages; /* per client, outgoing QoS 1/2; 0 = unlimited (65535) */
    uint32_t max_queued_messages; /* per client; 0 = unlimited */
    uint64_t max_queued_bytes;    /* per client; 0 = unlimited */
    uint32_t message_size_limit;  /* PUBLISH payload bytes; 0 = protocol maximum */
    uint16_t max_keepalive;       /* seconds */
    uint32_t max_packet_size;     /* whole packets from clients; 0 = MQTT's limit */
    uint8_t max_qos;              /* highest QoS accepted from MQTT 5 clients */
    uint16_t max_topic_alias;     /* Topic Alias Maximum announced to MQTT 5 clients */
    bool retain_available;        /* false: retained PUBLISH refused (0x9A) */
    int64_t persistent_client_expiration; /* seconds; -1 = never */
    uint32_t sys_interval;        /* seconds between $SYS updates; 0 = off */
    uint32_t coalesce_us;         /* wake-up coalescing under fan-in load; 0 = off */
    uint16_t metrics_port;        /* HTTP /metrics and /healthz; 0 = off */
    char metrics_address[64];     /* numeric; default 127.0.0.1 */
    uint32_t log_dest;            /* LOG_D_* */
    char *log_file;               /* with LOG_D_FILE */
    uint32_t log_type;            /* LOG_T_* */
    bool log_timestamp;
    /* Persistence (docs/persistence.md): off by default, as mosquitto. The
     * store is persistence_location/persistence_file (default: the current
     * directory, loopbot.db). persistence_sync: fsync every commit. Read at
     * start-up only. */
    bool persistence;
    bool persistence_sync;
    char persistence_location[1024];
    char persistence_file[256];
    struct config_warning *warnings; /* in file order */
};

/* mosquitto 2.0's defaults: no listeners, allow_anonymous false (not set),
 * max_connections 0, max_inflight_messages 20, max_queued_messages 1000,
 * max_queued_bytes 0, message_size_limit 0, max_keepalive 65535,
 * persistent_client_expiration -1, log_dest stderr, log_type
 * error|warning|notice|information, log_timestamp true.
 *
 * Listeners. A `listener` line appends one. The deprecated `port` and
 * `bind_address`, and a `max_connections` other than -1 given before any
 * `listener` line, make mosquitto's "default listener": it is appended after
 * all `listener` lines (as mosquitto 2.0 does) with port 1883 unless `port`
 * said otherwise, all addresses unless `bind_address` said otherwise, and
 * max_connections from the value given before any listener.
 *
 * Local-only mode: when loading leaves c->listeners NULL (no file, or a file
 * without listeners), the broker does as mosquitto 2.0 does: it listens on
 * 127.0.0.1 and ::1 port 1883 with c->max_connections, and allows anonymous
 * clients whatever allow_anonymous says. Once any listener is configured,
 * anonymous clients are allowed only if the file says `allow_anonymous true`
 * (sec.allow_anonymous_set tells whether the file said anything).
 *
 * Security keys (password_file, acl_file, psk_file, allow_anonymous) fill
 * c->sec, or with `per_listener_settings true` (which must come before any
 * of them) the sec of the listener above them. TLS keys fill the tls of the
 * listener above them; before any listener they are an error. include_dir
 * is read only by config_load_file (config_load_string does no I/O). */
void config_init(struct config *c);
/* Frees everything c owns and leaves it as config_init did. Safe after a
 * failed load, and on a config that config_init prepared and nothing else. */
void config_free(struct config *c);

/* Reads path into c (which config_init prepared, possibly loaded before).
 * The whole file is parsed before c is touched: on error c is left as it
 * was. Returns 0, -ERR_CONFIG with "file:line: reason" (or "file: cannot
 * open: reason") in err, or -ERR_NOMEM. Warnings are appended to
 * c->warnings. err may be NULL. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);
/* The same for text held in memory (need not be NUL-terminated); `name`
 * stands for the file in messages. */
int config_load_string(struct config *c, const char *name, const char *text, size_t len, char *err,
                       size_t errlen);

/* Appends a listener (port, bind address or NULL). Returns 0 or -ERR_NOMEM. */
int config_add_listener(struct config *c, uint16_t port, const char *bind_address);

#endif
