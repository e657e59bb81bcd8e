/* Files the persistence store needs outside SQLite itself. */
#include "platform/platform.h"

#include <errno.h>
#include <stdio.h>

int platform_rename(const char *from, const char *to)
{
    return rename(from, to) == 0 ? 0 : -errno;
}
