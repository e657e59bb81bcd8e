/* What the parsers of loopbot's text files (mosquitto.conf, password files,
 * ACL files) share: splitting text into lines and lines into words, and
 * "file:line: reason" messages. */
#ifndef LOOPBOT_BROKER_TEXTFILE_H
#define LOOPBOT_BROKER_TEXTFILE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

bool text_is_blank(char ch); /* space, tab, CR, VT, FF */
/* The next blank-separated word of [*s, end): returns its length (0 at the
 * end) and moves *s past it and the blanks after it. */
size_t text_next_word(const char **s, const char *end, const char **word);
bool text_word_is(const char *w, size_t n, const char *lit);
/* The next line of [*s, end) (without its '\n') in *line, *len; moves *s
 * past it. False at the end. */
bool text_next_line(const char **s, const char *end, const char **line, size_t *len);
/* What a line [*s, *end) says, with the blanks around it trimmed off:
 * 1 when it has content, 0 for a blank or '#' comment line, -1 when it
 * holds a NUL byte (not a text file: the caller reports it). */
int text_line_content(const char **s, const char **end);
/* Writes "name:line: <fmt...>" into err (errlen bytes; may be NULL). */
void text_error(char *err, size_t errlen, const char *name, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

#endif
