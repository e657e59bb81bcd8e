#include "broker/textfile.h"

#include <stdio.h>
#include <string.h>

bool text_is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

size_t text_next_word(const char **s, const char *end, const char **word)
{
    const char *p = *s;
    while (p < end && text_is_blank(*p))
        p++;
    *word = p;
    while (p < end && !text_is_blank(*p))
        p++;
    size_t n = (size_t)(p - *word);
    while (p < end && text_is_blank(*p))
        p++;
    *s = p;
    return n;
}

bool text_word_is(const char *w, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(w, lit, n) == 0;
}

void text_error(char *err, size_t errlen, const char *name, int line, const char *fmt, va_list ap)
{
    if (!err || !errlen)
        return;
    int n = snprintf(err, errlen, "%s:%d: ", name, line);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}
