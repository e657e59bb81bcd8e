/* Clocks. CLOCK_MONOTONIC does not jump when NTP sets the time (a Pi has no
 * RTC, so the wall clock typically jumps by years just after boot). */
#include "platform/platform.h"

#include <time.h>

static uint64_t read_clock(clockid_t id, uint64_t div)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * (1000000000u / div) + (uint64_t)ts.tv_nsec / div;
}

uint64_t platform_now_ms(void)
{
    return read_clock(CLOCK_MONOTONIC, 1000000u);
}

uint64_t platform_now_us(void)
{
    return read_clock(CLOCK_MONOTONIC, 1000u);
}

uint64_t platform_thread_cpu_us(void)
{
    return read_clock(CLOCK_THREAD_CPUTIME_ID, 1000u);
}

void platform_sleep_until_us(uint64_t mono_us)
{
    struct timespec ts = {(time_t)(mono_us / 1000000u), (long)(mono_us % 1000000u) * 1000};
    /* A signal cuts it short: the loop then serves it at once. */
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

uint64_t platform_wall_ms(void)
{
    return read_clock(CLOCK_REALTIME, 1000000u);
}
