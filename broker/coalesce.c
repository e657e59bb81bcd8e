#include "broker/coalesce.h"

void coalesce_init(struct coalesce *c, uint32_t max_us, uint64_t now_ms)
{
    *c = (struct coalesce){.max_us = max_us, .state = CO_IDLE, .window_start_ms = now_ms};
}

bool coalesce_due(const struct coalesce *c, uint64_t now_ms)
{
    return now_ms - c->window_start_ms >= COALESCE_WINDOW_MS;
}

static void start_measuring(struct coalesce *c, enum coalesce_state state)
{
    c->state = state;
    c->on = state == CO_MEASURE_ON;
    c->windows = 0;
    c->cpu_us = c->packets = 0;
    c->skip = true;
}

/* One more window of the measurement under way; false until it is done. */
static bool measured(struct coalesce *c, uint64_t cpu_us, uint64_t packets)
{
    if (c->skip) {
        c->skip = false;
        return false;
    }
    c->cpu_us += cpu_us;
    c->packets += packets;
    return ++c->windows >= COALESCE_MEASURE_WINDOWS;
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
        start_measuring(c, CO_MEASURE_OFF);
        break;
    case CO_MEASURE_OFF:
        if (measured(c, cpu_us, packets)) {
            c->cost_off = c->cpu_us * 1000u / c->packets;
            start_measuring(c, CO_MEASURE_ON);
        }
        break;
    case CO_MEASURE_ON:
        if (measured(c, cpu_us, packets)) {
            c->cost_on = c->cpu_us * 1000u / c->packets;
            c->on = c->cost_on * 10u < c->cost_off * 9u;
            c->state = CO_SETTLED;
            c->settled_ms = now_ms;
        }
        break;
    case CO_SETTLED:
        if (now_ms - c->settled_ms >= COALESCE_REPROBE_MS)
            start_measuring(c, CO_MEASURE_OFF);
        break;
    }
    return c->on ? c->max_us : 0;
}
