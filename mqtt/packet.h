/* MQTT 3.1, 3.1.1 and 5.0 packets as plain structs.
 *
 * Decoded packets hold *views* (pointer + length) into the input buffer: the
 * decoder never allocates and never copies, so a decoded packet is valid only
 * while its input bytes are. Encoders take the same structs.
 *
 * Protocol versions are the CONNECT protocol level byte: 3 (3.1), 4 (3.1.1),
 * 5 (5.0). Properties are only read or written for version 5. */
#ifndef LOOPBOT_MQTT_PACKET_H
#define LOOPBOT_MQTT_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt/error.h"

enum mqtt_version {
    MQTT_V31 = 3,
    MQTT_V311 = 4,
    MQTT_V5 = 5,
};

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15,
};

/* A view into someone else's bytes. Strings are not NUL-terminated. */
struct mqtt_bytes {
    const uint8_t *ptr;
    uint32_t len;
};

/* MQTT 5 property identifiers [MQTT 5.0 section 2.2.2.2]. */
enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEPALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAX = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAX = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAX_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER_PROPERTY = 0x26,
    MQTT_PROP_MAX_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* Bit for property id in mqtt_props.present. Every id is < 64. */
#define MQTT_PROP_BIT(id) (UINT64_C(1) << (id))

/* Decoded (or to-be-encoded) MQTT 5 properties.
 *
 * Decoding: `present` says which single-valued properties were seen, their
 * values are in the fields below, `raw` is the whole property block (without
 * its length prefix) so user properties can be iterated in order with
 * mqtt_props_next_user(), and `user_count` / `sub_id_count` count the
 * repeatable ones (sub_id holds the first subscription identifier).
 *
 * Encoding: each property whose bit is in `present` is written from its
 * field (sub_id as one Subscription Identifier if its bit is present and
 * sub_id_count <= 1; sub_ids[0..sub_id_count) otherwise), then every User
 * Property entry found in `raw` is copied in order, then `verbatim` is
 * appended unchanged (an already-encoded property block, e.g. the part of a
 * stored message that is forwarded as is).
 *
 * Codec notes (readings chosen where the above leaves a choice):
 *  - Decoding sets the MQTT_PROP_SUBSCRIPTION_ID bit when at least one was
 *    seen; it never sets the MQTT_PROP_USER_PROPERTY bit (use user_count),
 *    and encoding ignores that bit.
 *  - Encoding several sub ids with sub_ids == NULL (a decoded block being
 *    re-encoded) copies the Subscription Identifier entries of `raw`.
 *  - Subscription identifiers may repeat in any decoded PUBLISH: the decoder
 *    cannot tell the direction, so the broker must refuse sub_id_count > 0
 *    in a PUBLISH from a client [MQTT-3.3.4-6].
 *  - mqtt_encode refuses (-ERR_INVALID) a present bit the packet type does
 *    not allow [MQTT 5.0 2.2.2.2]; mqtt_props_encode has no packet type and
 *    does not check. Neither checks `verbatim`.
 *  - A count that does not fit its uint16_t field (over 65,535 user
 *    properties, sub ids, filters or reason codes) fails decoding with
 *    -ERR_PACKET_TOO_LARGE. */
struct mqtt_props {
    uint64_t present;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t max_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    uint16_t server_keepalive;
    uint16_t receive_max;
    uint16_t topic_alias_max;
    uint16_t topic_alias;
    uint32_t message_expiry;
    uint32_t session_expiry;
    uint32_t will_delay;
    uint32_t max_packet_size;
    uint32_t sub_id;
    uint16_t sub_id_count;
    uint16_t user_count;
    const uint32_t *sub_ids; /* encoding only, when sub_id_count > 1 */
    struct mqtt_bytes content_type;
    struct mqtt_bytes response_topic;
    struct mqtt_bytes correlation_data;
    struct mqtt_bytes assigned_client_id;
    struct mqtt_bytes auth_method;
    struct mqtt_bytes auth_data;
    struct mqtt_bytes response_info;
    struct mqtt_bytes server_reference;
    struct mqtt_bytes reason_string;
    struct mqtt_bytes raw;
    struct mqtt_bytes verbatim;
};

/* version: decoded from the protocol level with its top bit (mosquitto's
 * bridge marker, 0x83/0x84) removed. mqtt_encode writes the version it is
 * given and does not read this field. */
struct mqtt_connect {
    uint8_t version; /* enum mqtt_version */
    bool clean_start;
    bool will_flag;
    uint8_t will_qos;
    bool will_retain;
    bool username_flag;
    bool password_flag;
    uint16_t keepalive;
    struct mqtt_bytes client_id;
    struct mqtt_bytes will_topic;
    struct mqtt_bytes will_payload;
    struct mqtt_bytes username;
    struct mqtt_bytes password;
    struct mqtt_props props;
    struct mqtt_props will_props;
};

struct mqtt_connack {
    bool session_present;
    uint8_t reason; /* v3: the return code 0..5; v5: reason code */
    struct mqtt_props props;
};

struct mqtt_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    uint16_t packet_id; /* only for qos > 0 */
    struct mqtt_bytes topic;
    struct mqtt_props props;
    struct mqtt_bytes payload;
};

/* PUBACK, PUBREC, PUBREL, PUBCOMP. reason 0 and no properties encode in
 * the short 2-byte form. */
struct mqtt_ack {
    uint16_t packet_id;
    uint8_t reason;
    struct mqtt_props props;
};

/* Subscription options byte [MQTT 5.0 3.8.3.1]. */
#define MQTT_SUBOPT_QOS_MASK 0x03
#define MQTT_SUBOPT_NO_LOCAL 0x04
#define MQTT_SUBOPT_RETAIN_AS_PUBLISHED 0x08
#define MQTT_SUBOPT_RETAIN_HANDLING_SHIFT 4
#define MQTT_SUBOPT_RETAIN_HANDLING_MASK 0x30

/* SUBSCRIBE and UNSUBSCRIBE: `entries` is the payload; walk it with
 * mqtt_subscribe_next() / mqtt_unsubscribe_next(). The decoder has already
 * checked every entry (UTF-8, options reserved bits), so walking cannot fail.
 * For encoding, fill filters[] (and options[] for SUBSCRIBE; NULL means
 * all 0) instead; with filters == NULL the encoder copies the decoded
 * `entries`. Before 5.0 only the QoS bits of the options are written. */
struct mqtt_subscribe {
    uint16_t packet_id;
    uint16_t count;
    struct mqtt_props props;
    struct mqtt_bytes entries;
    const struct mqtt_bytes *filters; /* encoding */
    const uint8_t *options;           /* encoding, SUBSCRIBE only */
};

/* SUBACK and UNSUBACK (UNSUBACK has no reason codes before v5). */
struct mqtt_suback {
    uint16_t packet_id;
    uint16_t count;
    const uint8_t *reasons;
    struct mqtt_props props;
};

/* DISCONNECT and AUTH: reason 0 with no properties encodes as empty. */
struct mqtt_reason {
    uint8_t reason;
    struct mqtt_props props;
};

struct mqtt_packet {
    uint8_t type;  /* enum mqtt_type */
    uint8_t flags; /* low nibble of the fixed header, as received */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_ack ack;             /* PUBACK PUBREC PUBREL PUBCOMP */
        struct mqtt_subscribe subscribe; /* SUBSCRIBE UNSUBSCRIBE */
        struct mqtt_suback suback;       /* SUBACK UNSUBACK */
        struct mqtt_reason reason;       /* DISCONNECT AUTH */
    } u;
};

/* Find the end of the first packet in buf.
 * Returns the whole packet's length (> 0) once all of it is in buf, 0 if more
 * bytes are needed, or a negative error: -ERR_RESERVED_TYPE,
 * -ERR_VARINT_OVERLONG, or -ERR_PACKET_TOO_LARGE as soon as the fixed header
 * announces more than max_size bytes (0 = no limit beyond the protocol's
 * 268,435,455 + 5), so nothing is buffered for an oversized packet. */
int mqtt_scan(const uint8_t *buf, size_t len, uint32_t max_size);

/* Decode one whole packet (as delimited by mqtt_scan). `version` is the
 * connection's protocol version; it is ignored for CONNECT, whose version is
 * read from the packet, and any value other than 3, 4 or 5 (no CONNECT
 * yet) decodes by 3.1.1 rules. Returns 0 or a negative error naming the rule
 * broken. Views in *out point into pkt. */
int mqtt_decode(const uint8_t *pkt, size_t len, uint8_t version, struct mqtt_packet *out);

/* Encode p for a peer speaking `version` into buf (capacity cap).
 * Returns the number of bytes written, or with buf == NULL the number that
 * would be written; -ERR_NOSPACE if cap is too small, -ERR_INVALID for a
 * struct that cannot be encoded (e.g. a string over 65,535 bytes). */
int mqtt_encode(const struct mqtt_packet *p, uint8_t version, uint8_t *buf, size_t cap);

/* Iterators over decoded payloads. *pos starts at 0. Return 1 with the next
 * entry, 0 at the end. */
int mqtt_subscribe_next(const struct mqtt_subscribe *s, size_t *pos, struct mqtt_bytes *filter,
                        uint8_t *options);
int mqtt_unsubscribe_next(const struct mqtt_subscribe *s, size_t *pos, struct mqtt_bytes *filter);
int mqtt_props_next_user(const struct mqtt_props *p, size_t *pos, struct mqtt_bytes *key,
                         struct mqtt_bytes *value);
/* Every subscription identifier in a decoded block, in order. */
int mqtt_props_next_sub_id(const struct mqtt_props *p, size_t *pos, uint32_t *sub_id);

/* Encode props as a property block without its length prefix (as the
 * encoder would lay them out). Returns the size; buf == NULL only measures.
 * The broker uses it to build the stored `verbatim` block of a message. */
int mqtt_props_encode(const struct mqtt_props *props, uint8_t *buf, size_t cap);

/* Validation helpers shared with the broker. */
int mqtt_utf8_validate(const uint8_t *s, size_t len);       /* 0 or -ERR_UTF8_* */
int mqtt_topic_name_validate(const uint8_t *s, size_t len);  /* for PUBLISH */
int mqtt_topic_filter_validate(const uint8_t *s, size_t len); /* for SUBSCRIBE */
/* Whether a topic name matches a (plain, validated) topic filter, with the
 * '$' rule [MQTT-4.7]. */
bool mqtt_topic_matches(const uint8_t *filter, size_t flen, const uint8_t *topic, size_t tlen);
/* "$share/{group}/{filter}": returns 1 and the two parts, 0 if the filter is
 * not shared (group and filter left untouched), or -ERR_SHARE_INVALID. */
int mqtt_share_split(const uint8_t *s, size_t len, struct mqtt_bytes *group,
                     struct mqtt_bytes *filter);

/* Variable byte integer helpers (used by the broker to size packets). */
int mqtt_varint_size(uint32_t value); /* 1..4, or -ERR_INVALID above 268,435,455 */

#endif
