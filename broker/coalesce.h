/* When to coalesce wake-ups: the policy, a pure function of counters.
 *
 * Waking the loop costs more than most messages do: on a 2-core VM a
 * wake-up (context switch in and out, two epoll_waits) is several
 * microseconds, and at fixed rates each message arrives alone, so fan-in
 * QoS 1 at 20,000 msg/s cost ~24 us of broker CPU per message, ~85% of it
 * kernel time. Waiting a short while after a wake-up before polling again
 * lets the messages that arrive meanwhile share one wake-up and, where many
 * go to one subscriber, one write and one read of its acks: that fan-in
 * then cost ~13 us. Each message waits at most the interval longer.
 *
 * Whether it pays depends on the traffic and the machine: the wait is a
 * timer, and on a VM arming and firing one costs about what it saves at
 * QoS 0 fan-in (7.2 -> 8.7 us a message). So the policy measures rather
 * than guesses. Where it could pay at all -- the loop wakes often
 * (COALESCE_ON_TURNS_PER_S) and some of the packets queued for clients
 * already share a write with another (1 in COALESCE_MERGED_ONE_IN), so
 * messages meet on connections (fan-in QoS 1 at 20,000 msg/s: 8-20%;
 * 500 publisher/subscriber pairs: none, and the policy leaves them alone;
 * a tenth here left the fan-in out in runs with little natural batching)
 * -- it waits COALESCE_SETTLE_WINDOWS (traffic that has just started is
 * not yet what it will be: publishers starting in step batch themselves),
 * then measures the broker's CPU time per packet without and with
 * coalescing, alternating four times (off, on, off, on; each phase skips
 * its first window and counts the next COALESCE_MEASURE_WINDOWS, so slow
 * drift in the load favours neither), and coalesces if the "on" phases were
 * at least a tenth cheaper. It measures again every COALESCE_REPROBE_MS,
 * and stops at once when the traffic no longer qualifies. */
#ifndef LOOPBOT_BROKER_COALESCE_H
#define LOOPBOT_BROKER_COALESCE_H

#include <stdbool.h>
#include <stdint.h>

#define COALESCE_WINDOW_MS 100u
#define COALESCE_ON_TURNS_PER_S 2000u  /* to qualify (not coalescing) */
#define COALESCE_OFF_TURNS_PER_S 1000u /* to stay qualified (coalescing caps turns) */
#define COALESCE_MIN_PACKETS 200u      /* per window, for a measurement */
#define COALESCE_MERGED_ONE_IN 50u
#define COALESCE_SETTLE_WINDOWS 10u
#define COALESCE_MEASURE_WINDOWS 2u
#define COALESCE_PHASES 4u /* off, on, off, on */
#define COALESCE_REPROBE_MS 30000u

struct coalesce_counts {
    uint64_t turns;   /* loop wake-ups */
    uint64_t packets; /* packets queued for clients */
    uint64_t writes;  /* writes (writev) that sent them */
    uint64_t cpu_us;  /* the loop thread's CPU time */
};

enum coalesce_state { CO_IDLE, CO_SETTLING, CO_MEASURING, CO_SETTLED };

struct coalesce {
    uint32_t max_us; /* the interval when on; 0 = never */
    bool on;
    enum coalesce_state state;
    uint32_t windows;            /* settling, or counted in this phase */
    uint32_t phase;              /* measuring: 0..COALESCE_PHASES-1; odd = on */
    bool skip;                   /* the next window follows a switch */
    uint64_t cpu_us[2], packets[2]; /* the measurement's sums: [0] off, [1] on */
    uint64_t cost_off, cost_on;  /* ns of CPU per packet, as last measured */
    uint64_t settled_ms;
    uint64_t window_start_ms;
    struct coalesce_counts at_start;
};

void coalesce_init(struct coalesce *c, uint32_t max_us, uint64_t now_ms);
/* Whether a window has ended: then call coalesce_update. */
bool coalesce_due(const struct coalesce *c, uint64_t now_ms);
/* Ends the window with running totals and decides. Returns the interval
 * to use from now: max_us or 0. */
uint32_t coalesce_update(struct coalesce *c, uint64_t now_ms, const struct coalesce_counts *now);

#endif
