/* The one table of errors: every failure in loopbot has a name, a message
 * that a user can act on (citing the spec rule where one applies) and the
 * MQTT 5 reason code sent to the peer when it closes a connection.
 * Functions return -ERR_x; 0 or more means success (or a count). */
#ifndef LOOPBOT_MQTT_ERROR_H
#define LOOPBOT_MQTT_ERROR_H

#include <stdint.h>

/* X(name, MQTT 5 reason code, message) */
#define MQTT_ERROR_MAP(X)                                                                   \
    /* codec: framing */                                                                    \
    X(VARINT_OVERLONG, 0x81, "variable byte integer longer than 4 bytes [MQTT-1.5.5-1]")    \
    X(TRUNCATED, 0x81, "packet ends inside a field [MQTT-2.1.4]")                          \
    X(TRAILING_BYTES, 0x81, "bytes left after the last field of the packet [MQTT-2.1.4]")  \
    X(RESERVED_TYPE, 0x81, "packet type 0 is reserved [MQTT-2.1.2]")                       \
    X(RESERVED_FLAGS, 0x81, "fixed header flags must be as the packet type requires [MQTT-2.1.3-1]") \
    X(BAD_QOS, 0x81, "QoS 3 is not allowed [MQTT-3.3.1-4]")                                \
    X(PACKET_TOO_LARGE, 0x95, "packet exceeds the maximum packet size [MQTT-3.2.2-15]")   \
    X(TYPE_NOT_IN_VERSION, 0x81, "packet type does not exist in this protocol version (AUTH is MQTT 5 only)") \
    /* codec: strings */                                                                    \
    X(UTF8_INVALID, 0x81, "string is not well-formed UTF-8 [MQTT-1.5.4-1]")                \
    X(UTF8_SURROGATE, 0x81, "string contains a UTF-16 surrogate code point [MQTT-1.5.4-1]") \
    X(UTF8_NULL, 0x81, "string contains U+0000 [MQTT-1.5.4-2]")                            \
    /* codec: CONNECT */                                                                    \
    X(PROTOCOL_NAME, 0x84, "protocol name is not MQTT (or MQIsdp for 3.1) [MQTT-3.1.2-1]") \
    X(PROTOCOL_VERSION, 0x84, "unsupported protocol version [MQTT-3.1.2-2]")               \
    X(CONNECT_RESERVED, 0x81, "CONNECT reserved flag is not 0 [MQTT-3.1.2-3]")             \
    X(WILL_FLAGS, 0x81, "will QoS or will retain set without the will flag [MQTT-3.1.2-11]") \
    X(PASSWORD_WITHOUT_USERNAME, 0x81, "password flag set without the user name flag [MQTT-3.1.2-22]") \
    X(CLIENT_ID_INVALID, 0x85, "client identifier not allowed [MQTT-3.1.3-5]")             \
    /* codec: topics and subscriptions */                                                   \
    X(TOPIC_EMPTY, 0x90, "topic name is empty [MQTT-4.7.3-1]")                             \
    X(TOPIC_WILDCARD, 0x90, "topic name contains a wildcard character [MQTT-3.3.2-2]")     \
    X(FILTER_EMPTY, 0x8F, "topic filter is empty [MQTT-4.7.3-1]")                          \
    X(FILTER_INVALID, 0x8F, "wildcard not on a level of its own, or '#' not last [MQTT-4.7.1-1]") \
    X(SHARE_INVALID, 0x8F, "shared subscription must be $share/{name}/{filter} [MQTT-4.8.2-1]") \
    X(NO_TOPIC_FILTERS, 0x82, "SUBSCRIBE or UNSUBSCRIBE without a topic filter [MQTT-3.8.3-2]") \
    X(SUB_OPTIONS_RESERVED, 0x81, "subscription options reserved bits are not 0 [MQTT-3.8.3-5]") \
    X(RETAIN_HANDLING, 0x82, "retain handling 3 is not allowed [MQTT-3.8.3-4]")            \
    X(PACKET_ID_ZERO, 0x82, "packet identifier must not be 0 [MQTT-2.2.1-3]")              \
    /* codec: properties */                                                                 \
    X(PROPERTY_UNKNOWN, 0x81, "unknown property identifier [MQTT-2.2.2-1]")                \
    X(PROPERTY_NOT_ALLOWED, 0x82, "property not allowed in this packet [MQTT-2.2.2-1]")   \
    X(PROPERTY_DUPLICATE, 0x82, "property included more than once [MQTT-2.2.2-2]")         \
    X(PROPERTY_VALUE, 0x82, "property value out of range [MQTT-3.1.2]")                    \
    X(PAYLOAD_NOT_UTF8, 0x99, "payload format indicator says UTF-8 but payload is not [MQTT-3.3.2-4]") \
    /* codec: encoder */                                                                    \
    X(NOSPACE, 0x80, "output buffer too small")                                           \
    /* session and broker */                                                                \
    X(PROTOCOL, 0x82, "packet not allowed in this state [MQTT-3.1.0-2]")                   \
    X(FIRST_NOT_CONNECT, 0x82, "first packet must be CONNECT [MQTT-3.1.0-1]")              \
    X(SECOND_CONNECT, 0x82, "second CONNECT on one connection [MQTT-3.1.0-2]")             \
    X(PACKET_ID_IN_USE, 0x91, "packet identifier in use")                                  \
    X(RECEIVE_MAX_EXCEEDED, 0x93, "more unacknowledged QoS>0 PUBLISH than Receive Maximum [MQTT-3.3.4-7]") \
    X(TOPIC_ALIAS_INVALID, 0x94, "topic alias is 0, above the maximum, or unknown [MQTT-3.3.2-8]") \
    X(QOS_NOT_SUPPORTED, 0x9B, "QoS not supported")                                        \
    X(RETAIN_NOT_SUPPORTED, 0x9A, "retain not supported")                                  \
    X(NOT_AUTHORIZED, 0x87, "not authorized")                                              \
    X(BAD_CREDENTIALS, 0x86, "bad user name or password")                                  \
    X(SERVER_BUSY, 0x89, "server busy: connection limit reached")                          \
    X(SHUTTING_DOWN, 0x8B, "server shutting down")                                         \
    X(KEEPALIVE_TIMEOUT, 0x8D, "keep alive timeout: nothing received in 1.5 x keep alive [MQTT-3.1.2-24]") \
    X(CONNECT_TIMEOUT, 0x8D, "no CONNECT received in time")                                \
    X(TAKEN_OVER, 0x8E, "session taken over by another connection with the same client id [MQTT-3.1.4-3]") \
    X(QUOTA_EXCEEDED, 0x97, "quota exceeded: client output over its hard limit")          \
    X(AUTH_METHOD, 0x8C, "authentication method not supported")                           \
    X(NOMEM, 0x80, "out of memory (allocation failed or account limit reached)")           \
    X(IO, 0x80, "socket error")                                                            \
    X(PEER_CLOSED, 0x80, "connection closed by peer")                                      \
    X(NOT_FOUND, 0x80, "not found")                                                        \
    X(INVALID, 0x80, "invalid argument")                                                   \
    X(CONFIG, 0x80, "configuration error")

enum mqtt_err {
    ERR_NONE = 0,
#define MQTT_ERR_ENUM(name, reason, msg) ERR_##name,
    MQTT_ERROR_MAP(MQTT_ERR_ENUM)
#undef MQTT_ERR_ENUM
    ERR__COUNT
};

/* All three take the error as returned (negative) or as the enum (positive). */
const char *mqtt_err_name(int err);
const char *mqtt_err_message(int err);
uint8_t mqtt_err_reason(int err);

#endif
