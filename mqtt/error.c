/* Names, messages and MQTT 5 reason codes of every error, from the one
 * X-macro table in error.h. */
#include <limits.h>

#include "mqtt/error.h"

struct err_info {
    const char *name;
    const char *message;
    uint8_t reason;
};

static const struct err_info err_table[ERR__COUNT] = {
    [ERR_NONE] = {"ERR_NONE", "success", 0x00},
#define MQTT_ERR_INFO(name, reason, msg) [ERR_##name] = {"ERR_" #name, msg, reason},
    MQTT_ERROR_MAP(MQTT_ERR_INFO)
#undef MQTT_ERR_INFO
};

static const struct err_info err_unknown = {"unknown error", "unknown error", 0x80};

/* Accept the error as returned (-ERR_x) or as the enum (ERR_x). */
static const struct err_info *err_lookup(int err)
{
    if (err == INT_MIN)
        return &err_unknown;
    if (err < 0)
        err = -err;
    if (err >= ERR__COUNT)
        return &err_unknown;
    return &err_table[err];
}

const char *mqtt_err_name(int err)
{
    return err_lookup(err)->name;
}

const char *mqtt_err_message(int err)
{
    return err_lookup(err)->message;
}

uint8_t mqtt_err_reason(int err)
{
    return err_lookup(err)->reason;
}
