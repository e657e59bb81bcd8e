#include "broker/mem.h"

#include <stdlib.h>
#include <string.h>

static struct mem_account mem_broker;
static size_t used_total;
static unsigned long alloc_count;
static unsigned long fail_at;

static struct mem_account *account(struct mem_account *acct)
{
    return acct ? acct : &mem_broker;
}

/* Decides whether this allocation may happen: the test hook, then the limit. */
static int admit(struct mem_account *acct, size_t size)
{
    alloc_count++;
    if (fail_at && alloc_count == fail_at)
        return 0;
    if (acct->limit && acct->used + size > acct->limit)
        return 0;
    return 1;
}

void *mem_alloc(struct mem_account *acct, size_t size)
{
    acct = account(acct);
    if (size == 0 || !admit(acct, size))
        return NULL;
    void *p = malloc(size);
    if (!p)
        return NULL;
    acct->used += size;
    used_total += size;
    return p;
}

void *mem_calloc(struct mem_account *acct, size_t size)
{
    void *p = mem_alloc(acct, size);
    if (p)
        memset(p, 0, size);
    return p;
}

void *mem_realloc(struct mem_account *acct, void *ptr, size_t old_size, size_t new_size)
{
    if (!ptr)
        return mem_alloc(acct, new_size);
    if (new_size == 0) {
        mem_free(acct, ptr, old_size);
        return NULL;
    }
    acct = account(acct);
    size_t grow = new_size > old_size ? new_size - old_size : 0;
    if (!admit(acct, grow))
        return NULL;
    void *p = realloc(ptr, new_size);
    if (!p)
        return NULL;
    acct->used = acct->used - old_size + new_size;
    used_total = used_total - old_size + new_size;
    return p;
}

void mem_free(struct mem_account *acct, void *ptr, size_t size)
{
    if (!ptr)
        return;
    acct = account(acct);
    acct->used -= size;
    used_total -= size;
    free(ptr);
}

char *mem_strndup(struct mem_account *acct, const void *s, size_t len)
{
    char *p = mem_alloc(acct, len + 1);
    if (p) {
        if (len)
            memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

void mem_strfree(struct mem_account *acct, char *s)
{
    if (s)
        mem_free(acct, s, strlen(s) + 1);
}

size_t mem_used_total(void)
{
    return used_total;
}

unsigned long mem_fail_nth(unsigned long n)
{
    unsigned long made = alloc_count;
    alloc_count = 0;
    fail_at = n;
    return made;
}
