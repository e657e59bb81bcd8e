#include "broker/coalesce.h"

void coalesce_init(struct coalesce *c, uint32_t max_us, uint64_t now_ms)
{
    *c = (struct coalesce){.max_us = max_us, .state = CO_IDLE, .window_start_ms = now_ms};
}

bool coalesce_due(const struct coalesce *c, uint64_t now_ms)
{
    return now_ms - c->window_start_ms >= COALESCE_WINDOW_MS;
}

static void start_measuring(struct coalesce *c)
{
    c->state = CO_MEASURING;
    c->phase = 0;
    c->on = false;
    c->windows = 0;
    c->skip = true;
    c->cpu_us[0] = c->cpu_us[1] = c->packets[0] = c->packets[1] = 0;
}

/* One more window of the measurement; true when the last phase is done. */
static bool measured(struct coalesce *c, uint64_t cpu_us, uint64_t packets)
{
    if (c->skip) {
        c->skip = false;
        return false;
    }
    c->cpu_us[c->phase & 1] += cpu_us;
    c->packets[c->phase & 1] += packets;
    if (++c->windows < COALESCE_MEASURE_WINDOWS)
        return false;
    c->windows = 0;
    c->skip = true;
    if (++c->phase == COALESCE_PHASES)
        return true;
    c->on = c->phase & 1;
    return false;
}

uint32_t coalesce_update(struct coalesce *c, uint64_t now_ms, const struct coalesce_counts *now)
{
    uint64_t ms = now_ms - c->window_start_ms;
    uint64_t turns = now->turns - c->at_start.turns;
    uint64_t packets = now->packets - c->at_start.packets;
    uint64_t writes = now->writes - c->at_start.writes;
    uint64_t cpu_us = now->cpu_us - c->at_start.cpu_us;
    c->window_start_ms = now_ms;
    c->at_start = *now;
    if (!ms)
        return c->on ? c->max_us : 0;
    uint64_t merged = packets > writes ? packets - writes : 0;
    uint64_t min_turns = c->on ? COALESCE_OFF_TURNS_PER_S : COALESCE_ON_TURNS_PER_S;
    bool qualifies = c->max_us && turns * 1000u / ms >= min_turns &&
                     packets >= COALESCE_MIN_PACKETS && merged * COALESCE_MERGED_ONE_IN >= packets;
    if (!qualifies) {
        c->state = CO_IDLE;
        c->on = false;
        return 0;
    }
    switch (c->state) {
    case CO_IDLE:
        c->state = CO_SETTLING;
        c->windows = 0;
        break;
    case CO_SETTLING:
        if (++c->windows >= COALESCE_SETTLE_WINDOWS)
            start_measuring(c);
        break;
    case CO_MEASURING:
        if (measured(c, cpu_us, packets)) {
            c->cost_off = c->cpu_us[0] * 1000u / c->packets[0];
            c->cost_on = c->cpu_us[1] * 1000u / c->packets[1];
            c->on = c->cost_on * 10u < c->cost_off * 9u;
            c->state = CO_SETTLED;
            c->settled_ms = now_ms;
        }
        break;
    case CO_SETTLED:
        if (now_ms - c->settled_ms >= COALESCE_REPROBE_MS)
            start_measuring(c);
        break;
    }
    return c->on ? c->max_us : 0;
}
