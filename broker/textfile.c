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

bool text_next_line(const char **s, const char *end, const char **line, size_t *len)
{
    if (*s >= end)
        return false;
    const char *nl = memchr(*s, '\n', (size_t)(end - *s));
    const char *eol = nl ? nl : end;
    *line = *s;
    *len = (size_t)(eol - *s);
    *s = nl ? nl + 1 : end;
    return true;
}

int text_line_content(const char **s, const char **end)
{
    const char *a = *s, *b = *end;
    if (memchr(a, '\0', (size_t)(b - a)))
        return -1;
    while (a < b && text_is_blank(*a))
        a++;
    while (b > a && text_is_blank(b[-1]))
        b--;
    *s = a;
    *end = b;
    return a < b && *a != '#';
}

void text_error(char *err, size_t errlen, const char *name, int line, const char *fmt, va_list ap)
{
    if (!err || !errlen)
        return;
    int n = snprintf(err, errlen, "%s:%d: ", name, line);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}
