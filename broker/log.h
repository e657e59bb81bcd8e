/* The broker's log: mosquitto's log types and destinations, one line per
 * write(2), never blocking the loop.
 *
 * log_printf checks the type mask before any formatting happens, so a
 * disabled debug line costs one AND. Each destination gets each line as one
 * non-blocking write; when it would block (a full pipe, a stopped terminal,
 * a stalled journal) the line is dropped and counted, and the next line that
 * gets through is preceded by "N log lines dropped". */
#ifndef LOOPBOT_BROKER_LOG_H
#define LOOPBOT_BROKER_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/config.h" /* LOG_T_*, LOG_D_* */

struct config;

/* Types enabled now (LOG_T_* bits). Read by log_printf; set by log_open. */
extern uint32_t log__mask;

#define log_printf(type, ...)                                                                      \
    do {                                                                                           \
        if (log__mask & (uint32_t)(type))                                                          \
            log__write((uint32_t)(type), __VA_ARGS__);                                            \
    } while (0)

static inline bool log_enabled(uint32_t type)
{
    return (log__mask & type) != 0;
}

/* Until log_open: stderr, error/warning/notice/information, timestamps. */

/* Applies cfg's log_dest, log_type, log_timestamp and log_file. Returns 0, or
 * -ERR_IO when the log file cannot be opened (other destinations still
 * work). Calling it again replaces the previous settings. */
int log_open(const struct config *cfg);
/* Reopens the log file (after logrotate moved it; on SIGHUP) and the syslog
 * socket. Returns 0 or -ERR_IO. */
int log_reopen(void);
/* Closes every destination and frees what log_open allocated; logging then
 * goes to stderr again. */
void log_close(void);
/* Lines dropped since start, all destinations. */
uint64_t log_dropped_total(void);

void log__write(uint32_t type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
