/* Every allocation goes through here, told its size and the account it is
 * charged to (a client, or NULL for the broker itself), so limits read exact
 * numbers and tests can make the n-th allocation fail. Frees are sized, so
 * accounting costs no per-block header. */
#ifndef LOOPBOT_BROKER_MEM_H
#define LOOPBOT_BROKER_MEM_H

#include <stddef.h>
#include <stdint.h>

struct mem_account {
    size_t used;
    size_t limit; /* 0 = no limit */
};

/* NULL account = the broker's own. Return NULL when the allocator fails or
 * when the account would go over its limit. mem_alloc(…, 0) returns NULL. */
void *mem_alloc(struct mem_account *acct, size_t size);
void *mem_calloc(struct mem_account *acct, size_t size);
void *mem_realloc(struct mem_account *acct, void *ptr, size_t old_size, size_t new_size);
void mem_free(struct mem_account *acct, void *ptr, size_t size);
/* A NUL-terminated copy of len bytes (charged len + 1). */
char *mem_strndup(struct mem_account *acct, const void *s, size_t len);
void mem_strfree(struct mem_account *acct, char *s); /* frees strlen + 1 */

/* Bytes currently allocated through this module, all accounts. */
size_t mem_used_total(void);

/* Tests: the n-th allocation from now fails (1 = the next one); 0 turns
 * failing off. Returns how many allocations were made since the last call,
 * so a test can first count, then fail each one in turn. */
unsigned long mem_fail_nth(unsigned long n);

#endif
