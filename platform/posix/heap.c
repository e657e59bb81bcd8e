/* glibc returns the top of the heap to the OS inside free() once it is over
 * M_TRIM_THRESHOLD, and all of it at once: after a burst that queued 200 MB
 * (500 subscribers x 1,000 messages), the free() of the last queued
 * message held the event loop 81 ms while the kernel unmapped the pages
 * (~0.4 ms per MB on a 2-core VM; brk calls of 1-4 ms were common). A
 * broker whose rule is never to hold the loop keeps its heap instead: RSS
 * stays at its high-water mark after a burst, which the limits already
 * bound (max_queued_messages, max_queued_bytes, max_connections).
 * Allocations of 128 KiB and more are mmap'd and go back when freed, as
 * before. */
#include "platform/platform.h"

#if defined(__GLIBC__)
#include <limits.h>
#include <malloc.h>
#endif

void platform_heap_keep(void)
{
#if defined(__GLIBC__)
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
    /* Setting the trim threshold freezes glibc's adaptive mmap threshold;
     * pin it where it starts, so big tables stay mmap'd. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}
