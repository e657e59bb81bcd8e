/* What every parser's fuzz target checks after its own assertions: parsing
 * leaks nothing, and the same input with one allocation failing (which one
 * follows from the input's size) gives -ERR_NOMEM and leaks nothing. The
 * input runs three times: checked, then unchecked to count allocations,
 * then unchecked with one failing. */
#ifndef LOOPBOT_TESTS_FUZZ_ALLOC_FAIL_H
#define LOOPBOT_TESTS_FUZZ_ALLOC_FAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "broker/mem.h"
#include "mqtt/error.h"

/* check: false on the failing run, where only the outcome counts. */
typedef int (*fuzz_run_fn)(const uint8_t *data, size_t size, bool check);

static inline void fuzz_with_one_alloc_failing(fuzz_run_fn run, const uint8_t *data, size_t size)
{
    size_t before = mem_used_total();
    run(data, size, true);
    if (mem_used_total() != before)
        abort();
    /* Count the allocations of the run that will fail one: the checks of a
     * checked run (e.g. ACL lookups) may allocate too, and failing one of
     * those in an unchecked run would fail nothing. */
    mem_fail_nth(0);
    run(data, size, false);
    unsigned long allocs = mem_fail_nth(0);
    if (allocs) {
        mem_fail_nth(1 + size % allocs);
        int rc = run(data, size, false);
        mem_fail_nth(0);
        if (rc != -ERR_NOMEM || mem_used_total() != before)
            abort();
    }
}

#endif
