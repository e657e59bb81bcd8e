/* The config parser: every key with good and bad values, file:line in
 * messages, syntax (comments, blanks, CRLF, long lines), listeners and the
 * deprecated default listener, warnings, files, and every allocation
 * failing in turn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/board_defaults.h" /* the built-in defaults of this build */
#include "broker/config.h"
#include "broker/mem.h"
#include "mqtt/error.h"

#define NAME "test.conf"

static char err[512];

static int load(struct config *c, const char *text)
{
    return config_load_string(c, NAME, text, strlen(text), err, sizeof(err));
}

static size_t count_listeners(const struct config *c)
{
    size_t n = 0;
    for (const struct listener_config *l = c->listeners; l; l = l->next)
        n++;
    return n;
}

static size_t count_warnings(const struct config *c)
{
    size_t n = 0;
    for (const struct config_warning *w = c->warnings; w; w = w->next)
        n++;
    return n;
}

static const struct listener_config *nth_listener(const struct config *c, size_t i)
{
    const struct listener_config *l = c->listeners;
    while (l && i--)
        l = l->next;
    return l;
}

/* A field by name, so a table row can say which one it checks. */
static int64_t field(const struct config *c, const char *name)
{
    if (!strcmp(name, "allow_anonymous"))
        return c->sec.allow_anonymous;
    if (!strcmp(name, "allow_anonymous_set"))
        return c->sec.allow_anonymous_set;
    if (!strcmp(name, "per_listener_settings"))
        return c->per_listener_settings;
    if (!strcmp(name, "max_connections"))
        return c->max_connections;
    if (!strcmp(name, "max_inflight_messages"))
        return c->max_inflight_messages;
    if (!strcmp(name, "max_queued_messages"))
        return c->max_queued_messages;
    if (!strcmp(name, "max_queued_bytes"))
        return (int64_t)c->max_queued_bytes;
    if (!strcmp(name, "message_size_limit"))
        return c->message_size_limit;
    if (!strcmp(name, "max_keepalive"))
        return c->max_keepalive;
    if (!strcmp(name, "coalesce_us"))
        return c->coalesce_us;
    if (!strcmp(name, "persistent_client_expiration"))
        return c->persistent_client_expiration;
    if (!strcmp(name, "log_dest"))
        return c->log_dest;
    if (!strcmp(name, "log_type"))
        return c->log_type;
    if (!strcmp(name, "log_timestamp"))
        return c->log_timestamp;
    if (!strcmp(name, "listeners"))
        return (int64_t)count_listeners(c);
    if (!strcmp(name, "warnings"))
        return (int64_t)count_warnings(c);
    if (!strncmp(name, "l0.", 3) || !strncmp(name, "l1.", 3)) {
        const struct listener_config *l = nth_listener(c, (size_t)(name[1] - '0'));
        if (!l)
            return -999;
        if (!strcmp(name + 3, "port"))
            return l->port;
        if (!strcmp(name + 3, "max_connections"))
            return l->max_connections;
        if (!strcmp(name + 3, "line"))
            return l->line;
        if (!strcmp(name + 3, "allow_anonymous"))
            return l->sec.allow_anonymous;
        if (!strcmp(name + 3, "require_certificate"))
            return l->tls.require_certificate;
        if (!strcmp(name + 3, "use_identity_as_username"))
            return l->tls.use_identity_as_username;
        if (!strcmp(name + 3, "use_subject_as_username"))
            return l->tls.use_subject_as_username;
    }
    fail_msg("test table names unknown field '%s'", name);
    return 0;
}

struct check {
    const char *field;
    int64_t value;
};

struct row {
    const char *text;
    int rc;
    const char *err;         /* expected substring of the message, for failures */
    struct check checks[3];  /* fields after a successful load */
};

#define DEFAULT_TYPES (LOG_T_ERROR | LOG_T_WARNING | LOG_T_NOTICE | LOG_T_INFO)
#define DAY 86400

static const struct row rows[] = {
    /* allow_anonymous */
    {"allow_anonymous true\n", 0, NULL, {{"allow_anonymous", 1}, {"allow_anonymous_set", 1}}},
    {"allow_anonymous false\n", 0, NULL, {{"allow_anonymous", 0}, {"allow_anonymous_set", 1}}},
    {"allow_anonymous yes\n", -ERR_CONFIG,
     NAME ":1: allow_anonymous: expected true or false, got 'yes'", {{0}}},
    {"allow_anonymous TRUE\n", -ERR_CONFIG, "expected true or false, got 'TRUE'", {{0}}},
    {"allow_anonymous true extra\n", -ERR_CONFIG, "got 'true extra'", {{0}}},
    {"allow_anonymous true # note\n", -ERR_CONFIG, "'#' starts a comment only", {{0}}},
    {"allow_anonymous\n", -ERR_CONFIG, NAME ":1: allow_anonymous: missing value", {{0}}},
    {"allow_anonymous   \n", -ERR_CONFIG, "allow_anonymous: missing value", {{0}}},
    /* listener */
    {"listener 1883\n", 0, NULL, {{"listeners", 1}, {"l0.port", 1883}, {"l0.max_connections", 0}}},
    {"listener 1\n", 0, NULL, {{"l0.port", 1}}},
    {"listener 65535\n", 0, NULL, {{"l0.port", 65535}, {"warnings", 0}}},
    {"listener 0\n", -ERR_CONFIG, NAME ":1: listener: port 0 means a unix socket", {{0}}},
    {"listener 65536\n", -ERR_CONFIG, "listener: expected a port from 1 to 65535, got '65536'", {{0}}},
    {"listener -1\n", -ERR_CONFIG, "expected a port from 1 to 65535, got '-1'", {{0}}},
    {"listener abc\n", -ERR_CONFIG, "expected a port from 1 to 65535, got 'abc'", {{0}}},
    {"listener 18x83\n", -ERR_CONFIG, "got '18x83'", {{0}}},
    {"listener 1883 127.0.0.1 extra\n", -ERR_CONFIG,
     "listener: expected 'listener PORT [ADDRESS]', got '1883 127.0.0.1 extra'", {{0}}},
    {"listener\n", -ERR_CONFIG, "listener: missing value", {{0}}},
    {"listener 1883 #all\n", -ERR_CONFIG,
     "listener: '#all' is not an address ('#' starts a comment only at the start of a line)", {{0}}},
    {"listener 1883 # all addresses\n", -ERR_CONFIG, "got '1883 # all addresses' ('#' starts", {{0}}},
    /* port and bind_address (deprecated): the default listener */
    {"port 1884\n", 0, NULL, {{"listeners", 1}, {"l0.port", 1884}, {"warnings", 1}}},
    {"port 1884\nport 1885\n", 0, NULL, {{"listeners", 1}, {"l0.port", 1885}, {"warnings", 3}}},
    {"port 0\n", -ERR_CONFIG, "port: port 0 means a unix socket", {{0}}},
    {"port 70000\n", -ERR_CONFIG, "port: expected a port from 1 to 65535, got '70000'", {{0}}},
    {"bind_address 127.0.0.1\n", 0, NULL, {{"listeners", 1}, {"l0.port", 1883}, {"warnings", 1}}},
    {"bind_address 127.0.0.1 ::1\n", -ERR_CONFIG, "bind_address: expected one address", {{0}}},
    {"bind_address #x\n", -ERR_CONFIG, "bind_address: '#x' is not an address", {{0}}},
    {"bind_address a\nbind_address b\n", -ERR_CONFIG, NAME ":2: bind_address: given more than once",
     {{0}}},
    /* max_connections */
    {"max_connections -1\n", 0, NULL, {{"max_connections", 0}, {"listeners", 0}, {"warnings", 0}}},
    {"max_connections 10\n", 0, NULL, {{"max_connections", 10}, {"listeners", 1}, {"l0.max_connections", 10}}},
    {"max_connections 0\n", 0, NULL, {{"max_connections", 0}, {"listeners", 1}, {"warnings", 1}}},
    {"max_connections 10\nmax_connections -1\n", 0, NULL, {{"max_connections", 0}, {"listeners", 0}}},
    {"listener 1883\nmax_connections 5\n", 0, NULL,
     {{"l0.max_connections", 5}, {"max_connections", LOOPBOT_DEFAULT_MAX_CONNECTIONS},
      {"warnings", 0}}},
    {"listener 1883\nmax_connections -1\n", 0, NULL, {{"l0.max_connections", 0}}},
    {"listener 1883\nmax_connections 2147483647\n", 0, NULL, {{"l0.max_connections", 2147483647}}},
    {"max_connections -2\n", -ERR_CONFIG,
     "max_connections: expected -1 (unlimited) or a number from 0 to 2147483647, got '-2'", {{0}}},
    {"max_connections 2147483648\n", -ERR_CONFIG, "got '2147483648'", {{0}}},
    {"max_connections many\n", -ERR_CONFIG, "got 'many'", {{0}}},
    /* max_inflight_messages */
    {"max_inflight_messages 0\n", 0, NULL, {{"max_inflight_messages", 0}}},
    {"max_inflight_messages 1\n", 0, NULL, {{"max_inflight_messages", 1}}},
    {"max_inflight_messages 65535\n", 0, NULL, {{"max_inflight_messages", 65535}}},
    {"max_inflight_messages 65536\n", -ERR_CONFIG,
     "max_inflight_messages: expected a number from 0 to 65535, got '65536'", {{0}}},
    {"max_inflight_messages -1\n", -ERR_CONFIG, "got '-1'", {{0}}},
    {"max_inflight_messages 20 # comment\n", -ERR_CONFIG,
     "got '20 # comment' ('#' starts a comment only at the start of a line)", {{0}}},
    {"max_inflight_messages +5\n", -ERR_CONFIG, "got '+5'", {{0}}},
    {"max_inflight_messages 0x10\n", -ERR_CONFIG, "got '0x10'", {{0}}},
    /* max_connection_rate (loopbot's own) */
    {"listener 1883\nmax_connection_rate 50\n", 0, NULL, {{"listeners", 1}}},
    {"max_connection_rate -1\n", -ERR_CONFIG, "from 0 (unlimited) to 1000000", {{0}}},
    {"max_connection_rate 1000001\n", -ERR_CONFIG, "got '1000001'", {{0}}},
    /* max_queued_messages */
    {"max_queued_messages 0\n", 0, NULL, {{"max_queued_messages", 0}}},
    {"max_queued_messages 5000\n", 0, NULL, {{"max_queued_messages", 5000}}},
    {"max_queued_messages 2147483647\n", 0, NULL, {{"max_queued_messages", 2147483647}}},
    {"max_queued_messages 2147483648\n", -ERR_CONFIG, "from 0 to 2147483647", {{0}}},
    {"max_queued_messages 1e3\n", -ERR_CONFIG, "got '1e3'", {{0}}},
    {"max_queued_messages -5\n", -ERR_CONFIG, "got '-5'", {{0}}},
    /* coalesce_us (loopbot's own) */
    {"max_queued_bytes 0\n", 0, NULL, {{"coalesce_us", 300}}},
    {"coalesce_us 0\n", 0, NULL, {{"coalesce_us", 0}}},
    {"coalesce_us 10000\n", 0, NULL, {{"coalesce_us", 10000}}},
    {"coalesce_us 10001\n", -ERR_CONFIG, "from 0 to 10000", {{0}}},
    /* max_queued_bytes */
    {"max_queued_bytes 0\n", 0, NULL, {{"max_queued_bytes", 0}}},
    {"max_queued_bytes 1048576\n", 0, NULL, {{"max_queued_bytes", 1048576}}},
    {"max_queued_bytes 9223372036854775807\n", 0, NULL, {{"max_queued_bytes", INT64_MAX}}},
    {"max_queued_bytes 9223372036854775808\n", -ERR_CONFIG, "got '9223372036854775808'", {{0}}},
    {"max_queued_bytes 99999999999999999999999\n", -ERR_CONFIG, "from 0 to 9223372036854775807",
     {{0}}},
    {"max_queued_bytes 10k\n", -ERR_CONFIG, "got '10k'", {{0}}},
    /* message_size_limit */
    {"message_size_limit 0\n", 0, NULL, {{"message_size_limit", 0}}},
    {"message_size_limit 268435455\n", 0, NULL, {{"message_size_limit", 268435455}}},
    {"message_size_limit 268435456\n", -ERR_CONFIG,
     "message_size_limit: expected a number from 0 to 268435455, got '268435456'", {{0}}},
    /* max_keepalive */
    {"max_keepalive 0\n", 0, NULL, {{"max_keepalive", 0}}},
    {"max_keepalive 60\n", 0, NULL, {{"max_keepalive", 60}}},
    {"max_keepalive 65535\n", 0, NULL, {{"max_keepalive", 65535}}},
    {"max_keepalive abc\n", -ERR_CONFIG,
     NAME ":1: max_keepalive: expected a number from 0 to 65535, got 'abc'", {{0}}},
    {"max_keepalive 65536\n", -ERR_CONFIG, "got '65536'", {{0}}},
    {"max_keepalive -1\n", -ERR_CONFIG, "got '-1'", {{0}}},
    {"max_keepalive 6 0\n", -ERR_CONFIG, "got '6 0'", {{0}}},
    /* persistent_client_expiration: h d w m y */
    {"persistent_client_expiration 1h\n", 0, NULL, {{"persistent_client_expiration", 3600}}},
    {"persistent_client_expiration 2d\n", 0, NULL, {{"persistent_client_expiration", 2 * DAY}}},
    {"persistent_client_expiration 14d\n", 0, NULL, {{"persistent_client_expiration", 14 * DAY}}},
    {"persistent_client_expiration 1w\n", 0, NULL, {{"persistent_client_expiration", 7 * DAY}}},
    {"persistent_client_expiration 2m\n", 0, NULL, {{"persistent_client_expiration", 60 * DAY}}},
    {"persistent_client_expiration 1y\n", 0, NULL, {{"persistent_client_expiration", 365 * DAY}}},
    {"persistent_client_expiration 1000y\n", 0, NULL,
     {{"persistent_client_expiration", 1000LL * 365 * DAY}}},
    {"persistent_client_expiration 5\n", -ERR_CONFIG,
     "persistent_client_expiration: expected a whole number of 1 or more followed by h, d, w, m or "
     "y (e.g. 14d), got '5'", {{0}}},
    {"persistent_client_expiration 0d\n", -ERR_CONFIG, "got '0d'", {{0}}},
    {"persistent_client_expiration -1d\n", -ERR_CONFIG, "got '-1d'", {{0}}},
    {"persistent_client_expiration 1.5d\n", -ERR_CONFIG, "got '1.5d'", {{0}}},
    {"persistent_client_expiration d\n", -ERR_CONFIG, "got 'd'", {{0}}},
    {"persistent_client_expiration 2x\n", -ERR_CONFIG, "got '2x'", {{0}}},
    {"persistent_client_expiration 1D\n", -ERR_CONFIG, "got '1D'", {{0}}},
    {"persistent_client_expiration 2 d\n", -ERR_CONFIG, "got '2 d'", {{0}}},
    {"persistent_client_expiration 99999999999999999y\n", -ERR_CONFIG, "is too long", {{0}}},
    /* log_dest: the first replaces the default, none clears */
    {"log_dest stdout\n", 0, NULL, {{"log_dest", LOG_D_STDOUT}}},
    {"log_dest stderr\nlog_dest stdout\n", 0, NULL, {{"log_dest", LOG_D_STDERR | LOG_D_STDOUT}}},
    {"log_dest syslog\nlog_dest topic\n", 0, NULL, {{"log_dest", LOG_D_SYSLOG | LOG_D_TOPIC}}},
    {"log_dest none\n", 0, NULL, {{"log_dest", 0}}},
    {"log_dest stdout\nlog_dest none\nlog_dest syslog\n", 0, NULL, {{"log_dest", LOG_D_SYSLOG}}},
    {"log_dest file /var/log/loopbot.log\n", 0, NULL, {{"log_dest", LOG_D_FILE}}},
    {"log_dest file\n", -ERR_CONFIG, "log_dest: 'file' needs a path", {{0}}},
    {"log_dest file /a\nlog_dest file /b\n", -ERR_CONFIG,
     NAME ":2: log_dest: only one file destination may be configured", {{0}}},
    {"log_dest dlt\n", -ERR_CONFIG, "log_dest: 'dlt' is a mosquitto destination", {{0}}},
    {"log_dest bogus\n", -ERR_CONFIG,
     "log_dest: expected stderr, stdout, syslog, topic, file PATH or none, got 'bogus'", {{0}}},
    {"log_dest stdout stderr\n", -ERR_CONFIG,
     "log_dest: expected one destination per line, got 'stdout stderr'", {{0}}},
    {"log_dest STDOUT\n", -ERR_CONFIG, "got 'STDOUT'", {{0}}},
    /* log_type: the first replaces the default, none clears */
    {"log_type error\n", 0, NULL, {{"log_type", LOG_T_ERROR}}},
    {"log_type error\nlog_type warning\n", 0, NULL, {{"log_type", LOG_T_ERROR | LOG_T_WARNING}}},
    {"log_type all\n", 0, NULL, {{"log_type", LOG_T_ALL}}},
    {"log_type none\n", 0, NULL, {{"log_type", 0}}},
    {"log_type all\nlog_type none\nlog_type debug\n", 0, NULL, {{"log_type", LOG_T_DEBUG}}},
    {"log_type notice\nlog_type information\nlog_type debug\n", 0, NULL,
     {{"log_type", LOG_T_NOTICE | LOG_T_INFO | LOG_T_DEBUG}}},
    {"log_type subscribe\nlog_type unsubscribe\nlog_type websockets\n", 0, NULL,
     {{"log_type", LOG_T_SUBSCRIBE | LOG_T_UNSUBSCRIBE | LOG_T_WEBSOCKETS}}},
    {"log_type bogus\n", -ERR_CONFIG, "log_type: expected error, warning", {{0}}},
    {"log_type info\n", -ERR_CONFIG, "got 'info'", {{0}}},
    {"log_type error warning\n", -ERR_CONFIG, "log_type: expected one type per line", {{0}}},
    /* log_timestamp */
    {"log_timestamp false\n", 0, NULL, {{"log_timestamp", 0}}},
    {"log_timestamp true\n", 0, NULL, {{"log_timestamp", 1}}},
    {"log_timestamp 0\n", -ERR_CONFIG, "log_timestamp: expected true or false, got '0'", {{0}}},
    /* retry_interval: accepted and ignored, as mosquitto 2.0 does */
    {"retry_interval 20\n", 0, NULL, {{"warnings", 1}}},
    /* keys we do not know */
    {"foo bar\n", -ERR_CONFIG, NAME ":1: unknown option 'foo'", {{0}}},
    {"Listener 1883\n", -ERR_CONFIG, "unknown option 'Listener'", {{0}}},
    {"auth_opt_\n", -ERR_CONFIG, "unknown option 'auth_opt_'", {{0}}},
    {"max_keepalive=60\n", -ERR_CONFIG, "unknown option 'max_keepalive=60'", {{0}}},
    /* mosquitto keys not supported yet */
    {"autosave_interval 1800\n", -ERR_CONFIG,
     NAME ":1: 'autosave_interval' is a mosquitto option loopbot does not support yet", {{0}}},
    {"dhparamfile /etc/ssl/dh.pem\n", -ERR_CONFIG, "'dhparamfile' is a mosquitto option", {{0}}},
    {"auth_plugin /usr/lib/x.so\n", -ERR_CONFIG, "'auth_plugin' is a mosquitto option", {{0}}},
    {"allow_zero_length_clientid false\n", -ERR_CONFIG,
     "'allow_zero_length_clientid' is a mosquitto option", {{0}}},
    {"auth_opt_db_host localhost\n", -ERR_CONFIG, "'auth_opt_db_host' is a mosquitto option", {{0}}},
    {"plugin_opt_x y\n", -ERR_CONFIG, "'plugin_opt_x' is a mosquitto option", {{0}}},
    {"connection bridge-01\n", -ERR_CONFIG, "'connection' is a mosquitto option", {{0}}},
    {"tls_engine pkcs11\n", -ERR_CONFIG, "'tls_engine' is a mosquitto option", {{0}}},
    /* per_listener_settings: before any other security option */
    {"per_listener_settings true\n", 0, NULL, {{"per_listener_settings", 1}}},
    {"per_listener_settings false\n", 0, NULL, {{"per_listener_settings", 0}}},
    {"listener 1883\nper_listener_settings true\n", 0, NULL, {{"per_listener_settings", 1}}},
    {"per_listener_settings maybe\n", -ERR_CONFIG,
     "per_listener_settings: expected true or false, got 'maybe'", {{0}}},
    {"allow_anonymous true\nper_listener_settings true\n", -ERR_CONFIG,
     NAME ":2: per_listener_settings: must be set before any other security setting", {{0}}},
    {"password_file /p\nper_listener_settings true\n", -ERR_CONFIG,
     "must be set before any other security setting", {{0}}},
    {"listener 1883\nacl_file /a\nper_listener_settings true\n", -ERR_CONFIG,
     NAME ":3: per_listener_settings: must be set", {{0}}},
    {"psk_file /k\nper_listener_settings false\n", 0, NULL, {{"per_listener_settings", 0}}},
    /* security options with per_listener_settings go to the listener above */
    {"per_listener_settings true\nlistener 1883\nallow_anonymous true\nlistener 1884\n", 0, NULL,
     {{"l0.allow_anonymous", 1}, {"l1.allow_anonymous", 0}, {"allow_anonymous", 0}}},
    {"per_listener_settings true\nallow_anonymous true\nlistener 1883\n", -ERR_CONFIG,
     NAME ":2: allow_anonymous: with per_listener_settings true it applies to a listener", {{0}}},
    {"per_listener_settings true\npassword_file /p\n", -ERR_CONFIG,
     "password_file: with per_listener_settings true it applies to a listener", {{0}}},
    {"listener 1883\nallow_anonymous true\n", 0, NULL,
     {{"allow_anonymous", 1}, {"l0.allow_anonymous", 0}}},
    /* password_file, acl_file, psk_file */
    {"password_file /etc/mosquitto/passwd\n", 0, NULL, {{"listeners", 0}, {"warnings", 0}}},
    {"password_file /a\npassword_file /b\n", -ERR_CONFIG,
     NAME ":2: password_file: given more than once", {{0}}},
    {"acl_file /a\nacl_file /a\n", -ERR_CONFIG, "acl_file: given more than once", {{0}}},
    {"psk_file\n", -ERR_CONFIG, "psk_file: missing value", {{0}}},
    {"per_listener_settings true\nlistener 1\npassword_file /a\nlistener 2\npassword_file /a\n",
     0, NULL, {{"listeners", 2}}},
    {"per_listener_settings true\nlistener 1\nacl_file /a\nacl_file /b\n", -ERR_CONFIG,
     NAME ":4: acl_file: given more than once for this listener", {{0}}},
    /* TLS listener options: after a listener line */
    {"cafile /etc/ssl/ca.crt\n", -ERR_CONFIG,
     NAME ":1: cafile: is a listener option: put it after a 'listener' line", {{0}}},
    {"require_certificate true\nlistener 8883\n", -ERR_CONFIG,
     "require_certificate: is a listener option", {{0}}},
    {"listener 8883\nrequire_certificate true\nuse_identity_as_username true\n", 0, NULL,
     {{"l0.require_certificate", 1}, {"l0.use_identity_as_username", 1},
      {"l0.use_subject_as_username", 0}}},
    {"listener 8883\nuse_subject_as_username true\nlistener 1883\n", 0, NULL,
     {{"l0.use_subject_as_username", 1}, {"l1.use_subject_as_username", 0}}},
    {"listener 8883\nrequire_certificate yes\n", -ERR_CONFIG,
     "require_certificate: expected true or false, got 'yes'", {{0}}},
    {"listener 8883\ncertfile /a\ncertfile /b\n", -ERR_CONFIG,
     NAME ":3: certfile: given more than once for this listener", {{0}}},
    {"listener 8883\ntls_version tlsv1.2\n", 0, NULL, {{"listeners", 1}}},
    {"listener 8883\ntls_version tlsv1.3\n", 0, NULL, {{"listeners", 1}}},
    {"listener 8883\ntls_version tlsv1.1\n", -ERR_CONFIG,
     "tls_version: expected tlsv1.2 or tlsv1.3, got 'tlsv1.1'", {{0}}},
    {"listener 8883\nciphers_tls1.3 TLS_AES_128_GCM_SHA256\n", 0, NULL, {{"listeners", 1}}},
    {"psk_hint hint\n", -ERR_CONFIG, "psk_hint: is a listener option", {{0}}},
    /* include_dir needs a file to be read from */
    {"include_dir /etc/mosquitto/conf.d\n", -ERR_CONFIG,
     NAME ":1: include_dir: only read from a configuration file", {{0}}},
    /* syntax */
    {"", 0, NULL, {{"listeners", 0}, {"max_keepalive", 65535}}},
    {"\n\n\n", 0, NULL, {{"listeners", 0}}},
    {"# a comment\n#max_keepalive abc\n", 0, NULL, {{"max_keepalive", 65535}}},
    {"   # indented comment\n\t# tab too\n", 0, NULL, {{"warnings", 0}}},
    {"  max_keepalive 30  \n", 0, NULL, {{"max_keepalive", 30}}},
    {"max_keepalive\t\t30\t\n", 0, NULL, {{"max_keepalive", 30}}},
    {"max_keepalive 30\r\nlistener 1883\r\n", 0, NULL, {{"max_keepalive", 30}, {"l0.port", 1883}}},
    {"max_keepalive 30", 0, NULL, {{"max_keepalive", 30}}},
    {"\xEF\xBB\xBFmax_keepalive 30\n", 0, NULL, {{"max_keepalive", 30}}},
    {"\r\n  \r\n\t\n", 0, NULL, {{"listeners", 0}}},
    {"max_keepalive 30\nmax_keepalive 40\n", 0, NULL, {{"max_keepalive", 40}}},
    {"\n\n\n\n\n\nmax_keepalive abc\n", -ERR_CONFIG, NAME ":7: max_keepalive", {{0}}},
    {"# 1\r\n\r\n# 3\r\nlistener 1883\r\n\r\n\r\nfoo\r\n", -ERR_CONFIG, NAME ":7: unknown option 'foo'",
     {{0}}},
};

static void test_table(void **state)
{
    (void)state;
    struct config fresh;
    config_init(&fresh);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        struct config c;
        config_init(&c);
        int rc = load(&c, r->text);
        if (rc != r->rc)
            fail_msg("row %zu '%s': rc %d, want %d (%s)", i, r->text, rc, r->rc, err);
        if (r->rc < 0) {
            if (!strstr(err, r->err))
                fail_msg("row %zu '%s': error '%s' lacks '%s'", i, r->text, err, r->err);
            if (strncmp(err, NAME ":", strlen(NAME ":")) != 0)
                fail_msg("row %zu: error '%s' does not start with the file name", i, err);
            /* A failed load leaves the config as it was. */
            if (memcmp(&c, &fresh, sizeof(c)) != 0)
                fail_msg("row %zu '%s': config changed by a failed load", i, r->text);
        } else {
            if (err[0])
                fail_msg("row %zu: err set on success: '%s'", i, err);
            for (size_t k = 0; k < 3 && r->checks[k].field; k++) {
                int64_t got = field(&c, r->checks[k].field);
                if (got != r->checks[k].value)
                    fail_msg("row %zu '%s': %s = %lld, want %lld", i, r->text, r->checks[k].field,
                             (long long)got, (long long)r->checks[k].value);
            }
        }
        config_free(&c);
    }
}

static void test_defaults(void **state)
{
    (void)state;
    struct config c;
    config_init(&c);
    assert_null(c.listeners);
    assert_false(c.sec.allow_anonymous);
    assert_false(c.sec.allow_anonymous_set);
    assert_null(c.sec.password_file);
    assert_null(c.sec.acl_file);
    assert_null(c.sec.psk_file);
    assert_false(c.per_listener_settings);
    assert_int_equal(c.max_connections, LOOPBOT_DEFAULT_MAX_CONNECTIONS);
    assert_int_equal(c.max_inflight_messages, 20);
    assert_int_equal(c.max_queued_messages, LOOPBOT_DEFAULT_MAX_QUEUED_MESSAGES);
    assert_int_equal(c.max_queued_bytes, LOOPBOT_DEFAULT_MAX_QUEUED_BYTES);
    assert_int_equal(c.message_size_limit, 0);
    assert_int_equal(c.max_keepalive, 65535);
    assert_int_equal(c.persistent_client_expiration, -1);
    assert_int_equal(c.log_dest, LOG_D_STDERR);
    assert_null(c.log_file);
    assert_int_equal(c.log_type, DEFAULT_TYPES);
    assert_true(c.log_timestamp);
    assert_null(c.warnings);
    config_free(&c);
    config_free(&c); /* leaves it initialised: freeing twice is fine */
    config_free(NULL);
}

static void test_listeners_in_order(void **state)
{
    (void)state;
    struct config c;
    config_init(&c);
    const char *text = "# three listeners\n"
                       "listener 1883 127.0.0.1\n"
                       "max_connections 100\n"
                       "listener 1884 ::1\n"
                       "listener 8883 broker.example.com\n"
                       "max_connections 7\n"
                       "listener 9001\n"
                       "listener 1883 127.0.0.1\n"; /* a duplicate: the broker's bind fails */
    assert_int_equal(load(&c, text), 0);
    assert_int_equal(count_listeners(&c), 5);
    const struct listener_config *l = c.listeners;
    assert_int_equal(l->port, 1883);
    assert_string_equal(l->bind_address, "127.0.0.1");
    assert_int_equal(l->max_connections, 100);
    assert_int_equal(l->line, 2);
    l = l->next;
    assert_int_equal(l->port, 1884);
    assert_string_equal(l->bind_address, "::1");
    assert_int_equal(l->max_connections, 0);
    assert_int_equal(l->line, 4);
    l = l->next;
    assert_int_equal(l->port, 8883);
    assert_string_equal(l->bind_address, "broker.example.com");
    assert_int_equal(l->max_connections, 7);
    l = l->next;
    assert_int_equal(l->port, 9001);
    assert_null(l->bind_address);
    l = l->next;
    assert_int_equal(l->port, 1883);
    assert_string_equal(l->bind_address, "127.0.0.1");
    assert_null(l->next);
    assert_int_equal(c.max_connections, LOOPBOT_DEFAULT_MAX_CONNECTIONS);
    assert_null(c.warnings);
    config_free(&c);
}

/* port / bind_address / max_connections before a listener make mosquitto's
 * default listener, appended after the explicit ones, with warnings. */
static void test_default_listener(void **state)
{
    (void)state;
    struct config c;
    config_init(&c);
    const char *text = "max_connections 50\n"
                       "bind_address 10.0.0.2\n"
                       "listener 8883\n"
                       "max_connections 3\n"
                       "port 1885\n";
    assert_int_equal(load(&c, text), 0);
    assert_int_equal(count_listeners(&c), 2);
    const struct listener_config *l = c.listeners;
    assert_int_equal(l->port, 8883);
    assert_int_equal(l->max_connections, 3);
    l = l->next;
    assert_int_equal(l->port, 1885);
    assert_string_equal(l->bind_address, "10.0.0.2");
    assert_int_equal(l->max_connections, 50);
    assert_int_equal(l->line, 1);
    assert_int_equal(c.max_connections, 50);

    assert_int_equal(count_warnings(&c), 3);
    const struct config_warning *w = c.warnings;
    assert_non_null(strstr(w->text, NAME ":1: max_connections before any 'listener' line"));
    w = w->next;
    assert_non_null(strstr(w->text, NAME ":2: 'bind_address' is deprecated"));
    assert_non_null(strstr(w->text, "use 'listener PORT 10.0.0.2'"));
    w = w->next;
    assert_string_equal(w->text,
                        NAME ":5: 'port' is deprecated (as in mosquitto 2.0): use 'listener 1885' instead");
    config_free(&c);
}

/* Loads add to what is there; a failed one changes nothing. */
static void test_reload_keeps_old_on_error(void **state)
{
    (void)state;
    struct config c;
    config_init(&c);
    assert_int_equal(config_add_listener(&c, 1999, NULL), 0);
    assert_int_equal(load(&c, "listener 1883\nlog_dest file /tmp/a.log\nmax_keepalive 10\nport 7\n"),
                     0);
    assert_int_equal(count_listeners(&c), 3);
    assert_int_equal(c.listeners->port, 1999);
    assert_int_equal(c.listeners->line, 0);
    assert_int_equal(count_warnings(&c), 1);
    size_t used = mem_used_total();

    assert_int_equal(load(&c, "listener 1884\nlog_dest file /tmp/b.log\nmax_keepalive 20\nbogus 1\n"),
                     -ERR_CONFIG);
    assert_string_equal(err, NAME ":4: unknown option 'bogus'");
    assert_int_equal(mem_used_total(), used);
    assert_int_equal(count_listeners(&c), 3);
    assert_string_equal(c.log_file, "/tmp/a.log");
    assert_int_equal(c.max_keepalive, 10);
    assert_int_equal(count_warnings(&c), 1);

    /* A second successful load: log_dest replaces, listeners append. */
    assert_int_equal(load(&c, "log_dest stdout\nlistener 1885\n"), 0);
    assert_int_equal(c.log_dest, LOG_D_STDOUT);
    assert_null(c.log_file);
    assert_int_equal(count_listeners(&c), 4);
    assert_int_equal(field(&c, "max_keepalive"), 10);
    config_free(&c);
}

static void test_log_file_path(void **state)
{
    (void)state;
    struct config c;
    config_init(&c);
    /* The path is the rest of the line, spaces and '#' included. */
    assert_int_equal(load(&c, "log_dest stderr\nlog_dest  file   /var/log/my logs/#1.log  \r\n"), 0);
    assert_int_equal(c.log_dest, LOG_D_STDERR | LOG_D_FILE);
    assert_string_equal(c.log_file, "/var/log/my logs/#1.log");
    config_free(&c);

    config_init(&c);
    assert_int_equal(load(&c, "log_dest file /a\nlog_dest none\nlog_dest file /b\n"), 0);
    assert_int_equal(c.log_dest, LOG_D_FILE);
    assert_string_equal(c.log_file, "/b");
    config_free(&c);

    config_init(&c);
    assert_int_equal(load(&c, "log_dest file /a\nlog_dest none\n"), 0);
    assert_int_equal(c.log_dest, 0);
    assert_null(c.log_file);
    config_free(&c);
}

/* Lines of any length: no fixed-size buffer to truncate or overflow. */
static void test_long_lines(void **state)
{
    (void)state;
    size_t pathlen = 100000;
    size_t cap = pathlen + 256;
    char *text = malloc(cap);
    assert_non_null(text);
    int n = snprintf(text, cap, "# comment\nlog_dest file /");
    memset(text + n, 'x', pathlen - 1);
    strcpy(text + n + pathlen - 1, "\nlistener 1883\n");
    struct config c;
    config_init(&c);
    assert_int_equal(load(&c, text), 0);
    assert_int_equal(strlen(c.log_file), pathlen);
    assert_int_equal(c.listeners->port, 1883);
    config_free(&c);

    /* A 100 KB unknown key: the message is cut, not the parser. */
    memset(text, 'k', pathlen);
    strcpy(text + pathlen, " 1\nlistener 1883\n");
    config_init(&c);
    assert_int_equal(load(&c, text), -ERR_CONFIG);
    assert_non_null(strstr(err, NAME ":1: unknown option 'kkkk"));
    assert_non_null(strstr(err, "...'"));
    config_free(&c);

    /* A 100 KB comment and a 100 KB run of blanks. */
    memset(text, ' ', pathlen);
    text[10] = '#';
    strcpy(text + pathlen, "\nmax_keepalive abc\n");
    config_init(&c);
    assert_int_equal(load(&c, text), -ERR_CONFIG);
    assert_non_null(strstr(err, NAME ":2: max_keepalive"));
    config_free(&c);
    free(text);
}

static void test_nul_byte(void **state)
{
    (void)state;
    static const char text[] = "listener 1883\nlog_dest file /a\0b\n";
    struct config c;
    config_init(&c);
    assert_int_equal(config_load_string(&c, NAME, text, sizeof(text) - 1, err, sizeof(err)),
                     -ERR_CONFIG);
    assert_non_null(strstr(err, NAME ":2: line contains a NUL byte"));
    config_free(&c);
}

/* The text need not end in NUL: only len bytes are read. */
static void test_not_terminated(void **state)
{
    (void)state;
    char *text = malloc(16);
    assert_non_null(text);
    memcpy(text, "listener 18830xx", 16);
    struct config c;
    config_init(&c);
    assert_int_equal(config_load_string(&c, NAME, text, 14, err, sizeof(err)), 0);
    assert_int_equal(c.listeners->port, 18830);
    config_free(&c);
    config_init(&c);
    assert_int_equal(config_load_string(&c, NAME, NULL, 0, NULL, 0), 0);
    assert_int_equal(config_load_string(&c, NULL, "foo", 3, err, sizeof(err)), -ERR_CONFIG);
    assert_non_null(strstr(err, ":1: unknown option 'foo'"));
    /* No error buffer, or a tiny one: no overflow. */
    assert_int_equal(config_load_string(&c, NAME, "foo", 3, NULL, 0), -ERR_CONFIG);
    char tiny[6];
    assert_int_equal(config_load_string(&c, NAME, "foo", 3, tiny, sizeof(tiny)), -ERR_CONFIG);
    assert_string_equal(tiny, "test.");
    config_free(&c);
    free(text);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static const char *const realistic =
    "# loopbot on the Pi in the shed\r\n"
    "listener 1883 0.0.0.0\r\n"
    "max_connections 200\r\n"
    "listener 1884 ::1\r\n"
    "allow_anonymous true\r\n"
    "\r\n"
    "max_inflight_messages 10\r\n"
    "max_queued_messages 500\r\n"
    "max_queued_bytes 1048576\r\n"
    "message_size_limit 65536\r\n"
    "max_keepalive 300\r\n"
    "persistent_client_expiration 14d\r\n"
    "log_dest syslog\r\n"
    "log_dest file /var/log/loopbot/loopbot.log\r\n"
    "log_type error\r\n"
    "log_type warning\r\n"
    "log_timestamp false\r\n"
    "port 1885\r\n";

static void check_realistic(const struct config *c)
{
    assert_int_equal(count_listeners(c), 3);
    assert_int_equal(c->listeners->port, 1883);
    assert_string_equal(c->listeners->bind_address, "0.0.0.0");
    assert_int_equal(c->listeners->max_connections, 200);
    assert_int_equal(c->listeners->next->port, 1884);
    assert_int_equal(c->listeners->next->next->port, 1885);
    assert_int_equal(c->listeners->next->next->line, 18);
    assert_true(c->sec.allow_anonymous);
    assert_true(c->sec.allow_anonymous_set);
    assert_int_equal(c->max_inflight_messages, 10);
    assert_int_equal(c->max_queued_messages, 500);
    assert_int_equal(c->max_queued_bytes, 1048576);
    assert_int_equal(c->message_size_limit, 65536);
    assert_int_equal(c->max_keepalive, 300);
    assert_int_equal(c->persistent_client_expiration, 14 * DAY);
    assert_int_equal(c->log_dest, LOG_D_SYSLOG | LOG_D_FILE);
    assert_string_equal(c->log_file, "/var/log/loopbot/loopbot.log");
    assert_int_equal(c->log_type, LOG_T_ERROR | LOG_T_WARNING);
    assert_false(c->log_timestamp);
    assert_int_equal(count_warnings(c), 1);
}

static void test_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/loopbot-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/loopbot.conf", dir);
    write_file(path, realistic);
    struct config c;
    config_init(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof(err)), 0);
    check_realistic(&c);
    char want[1024];
    snprintf(want, sizeof(want), "%s:18: 'port' is deprecated", path);
    assert_non_null(strstr(c.warnings->text, want));
    config_free(&c);

    /* An error names the file and line. */
    write_file(path, "listener 1883\n\n\n\n\n\nmax_keepalive abc\n");
    config_init(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -ERR_CONFIG);
    snprintf(want, sizeof(want), "%s:7: max_keepalive: expected a number from 0 to 65535, got 'abc'",
             path);
    assert_string_equal(err, want);
    assert_null(c.listeners);
    config_free(&c);

    /* An empty file is no listeners: local-only mode. */
    write_file(path, "");
    config_init(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof(err)), 0);
    assert_null(c.listeners);
    config_free(&c);

    /* A directory opens but does not read. */
    config_init(&c);
    assert_int_equal(config_load_file(&c, dir, err, sizeof(err)), -ERR_CONFIG);
    snprintf(want, sizeof(want), "%s: cannot read: ", dir);
    assert_non_null(strstr(err, want));
    config_free(&c);

    unlink(path);
    rmdir(dir);
    config_init(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof(err)), -ERR_CONFIG);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
    config_free(&c);
}

/* A file bigger than the 4 KiB first read, so the buffer grows. */
static void test_file_grows(void **state)
{
    (void)state;
    char path[] = "/tmp/loopbot-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; len + 64 < cap; i++)
        len += (size_t)snprintf(text + len, cap - len, "listener %d\n", 10000 + i);
    write_file(path, text);
    struct config c;
    config_init(&c);
    assert_int_equal(config_load_file(&c, path, err, sizeof(err)), 0);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(count_listeners(&c), lines);
    config_free(&c);
    unlink(path);
    free(text);
}

/* Fail each allocation in turn: the result is success or -ERR_NOMEM, and
 * nothing leaks. */
static void alloc_failure_loop(int (*run)(struct config *c, const void *arg), const void *arg)
{
    size_t base = mem_used_total();
    mem_fail_nth(0);
    struct config c;
    config_init(&c);
    assert_int_equal(run(&c, arg), 0);
    config_free(&c);
    unsigned long count = mem_fail_nth(0);
    assert_true(count >= 8);
    assert_int_equal(mem_used_total(), base);
    unsigned long nomem = 0;
    for (unsigned long n = 1; n <= count + 1; n++) {
        config_init(&c);
        mem_fail_nth(n);
        int rc = run(&c, arg);
        mem_fail_nth(0);
        if (rc == -ERR_NOMEM) {
            nomem++;
            assert_non_null(strstr(err, "out of memory"));
            assert_null(c.listeners); /* untouched */
        } else if (rc == 0) {
            check_realistic(&c);
        } else {
            fail_msg("allocation %lu failing gave %d (%s)", n, rc, err);
        }
        config_free(&c);
        if (mem_used_total() != base)
            fail_msg("allocation %lu failing leaked %zu bytes", n, mem_used_total() - base);
    }
    assert_int_equal(nomem, count);
}

static int run_string(struct config *c, const void *arg)
{
    (void)arg;
    return load(c, realistic);
}

static int run_file(struct config *c, const void *arg)
{
    return config_load_file(c, arg, err, sizeof(err));
}

static void test_alloc_failures(void **state)
{
    (void)state;
    alloc_failure_loop(run_string, NULL);

    char path[] = "/tmp/loopbot-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, realistic);
    alloc_failure_loop(run_file, path);
    unlink(path);
}

static void test_add_listener(void **state)
{
    (void)state;
    struct config c;
    config_init(&c);
    assert_int_equal(config_add_listener(&c, 1883, "127.0.0.1"), 0);
    assert_int_equal(config_add_listener(&c, 1883, "::1"), 0);
    assert_int_equal(count_listeners(&c), 2);
    assert_string_equal(c.listeners->next->bind_address, "::1");
    mem_fail_nth(1);
    assert_int_equal(config_add_listener(&c, 1884, NULL), -ERR_NOMEM);
    mem_fail_nth(2);
    assert_int_equal(config_add_listener(&c, 1884, "x"), -ERR_NOMEM);
    mem_fail_nth(0);
    assert_int_equal(count_listeners(&c), 2);
    config_free(&c);
}

/* The strings of the security and TLS keys land where they belong. */
static const char *const secure =
    "per_listener_settings true\n"
    "listener 1883 127.0.0.1\n"
    "allow_anonymous true\n"
    "listener 8883\n"
    "password_file /etc/loopbot/passwd\n"
    "acl_file /etc/loopbot/acl file\n"
    "psk_file /etc/loopbot/psk\n"
    "cafile /etc/loopbot/ca.crt\n"
    "capath /etc/ssl/certs\n"
    "certfile /etc/loopbot/server.crt\n"
    "keyfile /etc/loopbot/server.key\n"
    "crlfile /etc/loopbot/crl.pem\n"
    "ciphers ECDHE-ECDSA-AES128-GCM-SHA256\n"
    "ciphers_tls1.3 TLS_AES_128_GCM_SHA256\n"
    "tls_version tlsv1.2\n"
    "psk_hint loopbot\n"
    "require_certificate true\n"
    "use_identity_as_username true\n"
    "max_connections 50\n";

static void check_secure(const struct config *c)
{
    assert_true(c->per_listener_settings);
    assert_null(c->sec.password_file);
    assert_false(c->sec.allow_anonymous_set);
    const struct listener_config *a = c->listeners, *b = a->next;
    assert_true(a->sec.allow_anonymous);
    assert_true(a->sec.allow_anonymous_set);
    assert_null(a->sec.password_file);
    assert_null(a->tls.certfile);
    assert_false(b->sec.allow_anonymous);
    assert_false(b->sec.allow_anonymous_set);
    assert_string_equal(b->sec.password_file, "/etc/loopbot/passwd");
    assert_string_equal(b->sec.acl_file, "/etc/loopbot/acl file");
    assert_string_equal(b->sec.psk_file, "/etc/loopbot/psk");
    assert_string_equal(b->tls.cafile, "/etc/loopbot/ca.crt");
    assert_string_equal(b->tls.capath, "/etc/ssl/certs");
    assert_string_equal(b->tls.certfile, "/etc/loopbot/server.crt");
    assert_string_equal(b->tls.keyfile, "/etc/loopbot/server.key");
    assert_string_equal(b->tls.crlfile, "/etc/loopbot/crl.pem");
    assert_string_equal(b->tls.ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_string_equal(b->tls.ciphers_tls13, "TLS_AES_128_GCM_SHA256");
    assert_string_equal(b->tls.tls_version, "tlsv1.2");
    assert_string_equal(b->tls.psk_hint, "loopbot");
    assert_true(b->tls.require_certificate);
    assert_true(b->tls.use_identity_as_username);
    assert_false(b->tls.use_subject_as_username);
    assert_int_equal(b->max_connections, 50);
    assert_null(b->auth);
}

static void test_security_keys(void **state)
{
    (void)state;
    struct config c;
    config_init(&c);
    assert_int_equal(load(&c, secure), 0);
    check_secure(&c);
    config_free(&c);

    /* Global settings; a later load replaces a path it sets, keeps others;
     * a failed load changes nothing. */
    config_init(&c);
    assert_int_equal(load(&c, "password_file /a\nacl_file /b\nallow_anonymous true\n"), 0);
    assert_string_equal(c.sec.password_file, "/a");
    assert_int_equal(load(&c, "password_file /c\n"), 0);
    assert_string_equal(c.sec.password_file, "/c");
    assert_string_equal(c.sec.acl_file, "/b");
    size_t used = mem_used_total();
    assert_int_equal(load(&c, "acl_file /d\npsk_file /e\nbogus\n"), -ERR_CONFIG);
    assert_int_equal(mem_used_total(), used);
    assert_string_equal(c.sec.acl_file, "/b");
    assert_null(c.sec.psk_file);
    assert_true(c.sec.allow_anonymous);
    config_free(&c);
    assert_null(c.sec.password_file);
}

static int run_secure(struct config *c, const void *arg)
{
    (void)arg;
    return load(c, secure);
}

static void test_security_alloc_failures(void **state)
{
    (void)state;
    size_t base = mem_used_total();
    struct config c;
    mem_fail_nth(0);
    config_init(&c);
    assert_int_equal(run_secure(&c, NULL), 0);
    config_free(&c);
    unsigned long count = mem_fail_nth(0);
    assert_true(count >= 15);
    for (unsigned long n = 1; n <= count + 1; n++) {
        config_init(&c);
        mem_fail_nth(n);
        int rc = run_secure(&c, NULL);
        mem_fail_nth(0);
        if (rc == 0)
            check_secure(&c);
        else if (rc != -ERR_NOMEM)
            fail_msg("allocation %lu failing gave %d (%s)", n, rc, err);
        else
            assert_null(c.listeners);
        config_free(&c);
        if (mem_used_total() != base)
            fail_msg("allocation %lu failing leaked %zu bytes", n, mem_used_total() - base);
    }
}

static void test_include_dir(void **state)
{
    (void)state;
    char dir[] = "/tmp/loopbot-test-include-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char main_path[256], inc[256], path[320];
    snprintf(main_path, sizeof(main_path), "%s/main.conf", dir);
    snprintf(inc, sizeof(inc), "%s/conf.d", dir);
    assert_int_equal(mkdir(inc, 0700), 0);
    /* mosquitto's order: 00 01 A a B b; other names are skipped. */
    const char *names[] = {"b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf",
                           ".conf", "notes.txt", "x.conf.bak"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "listener %zu\n", 2000 + i);
        snprintf(path, sizeof(path), "%s/%s", inc, names[i]);
        write_file(path, text);
    }
    char text[512];
    snprintf(text, sizeof(text), "listener 1883\ninclude_dir %s\nlistener 1884\n", inc);
    write_file(main_path, text);
    struct config c;
    config_init(&c);
    assert_int_equal(config_load_file(&c, main_path, err, sizeof(err)), 0);
    static const uint16_t want[] = {1883, 2005, 2002, 2001, 2003, 2004, 2000, 1884};
    assert_int_equal(count_listeners(&c), 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(nth_listener(&c, i)->port, want[i]);
    config_free(&c);

    /* An error inside an included file names that file and line, then where
     * it was included; nothing is kept. */
    snprintf(path, sizeof(path), "%s/B.conf", inc);
    write_file(path, "# two\n\nmax_keepalive abc\n");
    config_init(&c);
    assert_int_equal(config_load_file(&c, main_path, err, sizeof(err)), -ERR_CONFIG);
    char expect[700];
    snprintf(expect, sizeof(expect),
             "%s/B.conf:3: max_keepalive: expected a number from 0 to 65535, got 'abc' (in "
             "include_dir at %s:2)", inc, main_path);
    assert_string_equal(err, expect);
    assert_null(c.listeners);
    config_free(&c);

    /* include_dir inside an included file: ignored with a warning, as
     * mosquitto ignores it. A trailing '/' on the directory is fine. */
    snprintf(text, sizeof(text), "include_dir %s\n", dir);
    write_file(path, text);
    snprintf(text, sizeof(text), "include_dir %s/\n", inc);
    write_file(main_path, text);
    config_init(&c);
    assert_int_equal(config_load_file(&c, main_path, err, sizeof(err)), 0);
    assert_int_equal(count_listeners(&c), 5);
    assert_int_equal(count_warnings(&c), 1);
    snprintf(expect, sizeof(expect), "%s/B.conf:1: include_dir is ignored in an included file",
             inc);
    assert_non_null(strstr(c.warnings->text, expect));
    config_free(&c);

    /* A directory that cannot be opened. */
    snprintf(text, sizeof(text), "\ninclude_dir %s/missing\n", dir);
    write_file(main_path, text);
    config_init(&c);
    assert_int_equal(config_load_file(&c, main_path, err, sizeof(err)), -ERR_CONFIG);
    snprintf(expect, sizeof(expect), "%s:2: include_dir: cannot open '%s/missing': No such file",
             main_path, dir);
    assert_non_null(strstr(err, expect));
    config_free(&c);

    /* Every allocation failing in turn, with an include. */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", inc, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/a.conf", inc);
    write_file(path, secure + strlen("per_listener_settings true\n"));
    snprintf(text, sizeof(text), "per_listener_settings true\ninclude_dir %s\n", inc);
    write_file(main_path, text);
    size_t base = mem_used_total();
    mem_fail_nth(0);
    config_init(&c);
    assert_int_equal(config_load_file(&c, main_path, err, sizeof(err)), 0);
    check_secure(&c);
    config_free(&c);
    unsigned long count = mem_fail_nth(0);
    for (unsigned long n = 1; n <= count; n++) {
        config_init(&c);
        mem_fail_nth(n);
        int rc = config_load_file(&c, main_path, err, sizeof(err));
        mem_fail_nth(0);
        assert_int_equal(rc, -ERR_NOMEM);
        assert_non_null(strstr(err, "out of memory"));
        config_free(&c);
        assert_int_equal(mem_used_total(), base);
    }
    unlink(path);
    unlink(main_path);
    rmdir(inc);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_listeners_in_order),
        cmocka_unit_test(test_default_listener),
        cmocka_unit_test(test_reload_keeps_old_on_error),
        cmocka_unit_test(test_log_file_path),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_not_terminated),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_file_grows),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_add_listener),
        cmocka_unit_test(test_security_keys),
        cmocka_unit_test(test_security_alloc_failures),
        cmocka_unit_test(test_include_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
