/* loopbot_passwd: manage password files, as mosquitto_passwd(1) does and in
 * its format, so either tool can edit a file the other made.
 *
 *   loopbot_passwd [-c] FILE USER          prompt for the password (twice)
 *   loopbot_passwd [-c] -b FILE USER PASS  batch mode
 *   loopbot_passwd -D FILE USER            delete USER
 *   loopbot_passwd -U FILE                 hash a plain-text "user:password" file
 *
 * Lines are written as "$7$101$<salt>$<hash>" (PBKDF2-HMAC-SHA512, 101
 * iterations, 12-byte salt: mosquitto 2.0's defaults). The file is replaced
 * through a temporary file and rename(2), so a crash leaves the old or the
 * new file, never half of one; the mode of an existing file is kept, a new
 * file is 0600. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "broker/passwd.h"
#include "platform/platform.h"

#define PW_MAX 1024

struct lines {
    char **v;
    size_t n, cap;
};

static void usage(FILE *out)
{
    fprintf(out,
            "loopbot_passwd is a tool for managing password files for loopbot (and mosquitto).\n\n"
            "Usage: loopbot_passwd [-H sha512-pbkdf2] [-c | -D] passwordfile username\n"
            "       loopbot_passwd [-H sha512-pbkdf2] [-c] -b passwordfile username password\n"
            "       loopbot_passwd -U passwordfile\n"
            " -b : run in batch mode to allow passing passwords on the command line.\n"
            " -c : create a new password file. This will overwrite existing files.\n"
            " -D : delete the username rather than adding/updating its password.\n"
            " -H : the hash to use: only sha512-pbkdf2 (the default) is written.\n"
            " -U : update a plain text password file to use hashed passwords.\n\n"
            "See docs/security.md.\n");
}

static int lines_add(struct lines *l, char *s)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = s;
    return 0;
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* Reads path into lines without their '\n'. Returns 0, or -errno. */
static int read_lines(const char *path, struct lines *l)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        char *copy = strdup(line);
        if (!copy || lines_add(l, copy) < 0) {
            free(copy);
            free(line);
            fclose(f);
            return -ENOMEM;
        }
    }
    free(line);
    int e = ferror(f) ? -EIO : 0;
    fclose(f);
    return e;
}

/* Whether line is USER's entry ("user:..." with blanks around the name, as
 * the broker reads it). */
static bool is_user_line(const char *line, const char *user)
{
    const char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '#')
        return false;
    const char *colon = strchr(s, ':');
    if (!colon)
        return false;
    const char *e = colon;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return (size_t)(e - s) == strlen(user) && memcmp(s, user, strlen(user)) == 0;
}

static char *make_line(const char *user, const char *pw)
{
    uint8_t salt[PASSWD_SALT_LEN];
    if (platform_random(salt, sizeof(salt)) < 0) {
        fprintf(stderr, "Error: Unable to get random bytes for the salt.\n");
        return NULL;
    }
    char hash[PASSWD_HASH_FIELD_MAX];
    int n = passwd_hash_pbkdf2((const uint8_t *)pw, strlen(pw), salt, sizeof(salt),
                               PASSWD_ITERATIONS, hash, sizeof(hash));
    if (n < 0) {
        fprintf(stderr, "Error: Unable to hash the password.\n");
        return NULL;
    }
    size_t len = strlen(user) + 1 + (size_t)n + 1;
    char *line = malloc(len);
    if (line)
        snprintf(line, len, "%s:%s", user, hash);
    return line;
}

/* Writes lines to path via path.XXXXXX + fsync + rename. */
static int write_lines(const char *path, const struct lines *l, bool keep_mode)
{
    size_t plen = strlen(path) + 8;
    char *tmp = malloc(plen);
    if (!tmp)
        return -1;
    snprintf(tmp, plen, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "Error: Unable to create a temporary file next to %s: %s.\n", path,
                strerror(errno));
        free(tmp);
        return -1;
    }
    struct stat st;
    mode_t mode = 0600;
    if (keep_mode && stat(path, &st) == 0)
        mode = st.st_mode & 07777;
    FILE *f = fdopen(fd, "w");
    bool ok = f && fchmod(fd, mode) == 0;
    for (size_t i = 0; ok && i < l->n; i++)
        ok = fprintf(f, "%s\n", l->v[i]) >= 0;
    ok = ok && fflush(f) == 0 && fsync(fd) == 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    else
        close(fd);
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "Error: Unable to write %s: %s.\n", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : -1;
}

static int read_password(const char *prompt, char *buf, size_t cap)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        } else {
            tty = false;
        }
    }
    char *got = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!got)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int prompt_password(char *pw, size_t cap)
{
    char again[PW_MAX];
    if (read_password("Password: ", pw, cap) < 0 ||
        read_password("Reenter password: ", again, sizeof(again)) < 0) {
        fprintf(stderr, "Error: Empty password.\n");
        return -1;
    }
    int same = strcmp(pw, again) == 0;
    memset(again, 0, sizeof(again));
    if (!same) {
        fprintf(stderr, "Error: Passwords do not match.\n");
        return -1;
    }
    if (!pw[0]) {
        fprintf(stderr, "Error: Empty password.\n");
        return -1;
    }
    return 0;
}

/* -U: every "user:password" line becomes "user:$7$..."; comments and blank
 * lines stay. Like mosquitto_passwd -U, it cannot tell a hash from a
 * password: run it once. */
static int upgrade(const char *path)
{
    struct lines l = {0};
    int rc = read_lines(path, &l);
    if (rc < 0) {
        fprintf(stderr, "Error: Unable to open file %s for reading: %s.\n", path, strerror(-rc));
        return 1;
    }
    for (size_t i = 0; i < l.n; i++) {
        char *s = l.v[i];
        char *colon = strchr(s, ':');
        if (s[strspn(s, " \t")] == '#' || !colon)
            continue;
        *colon = '\0';
        char *line = make_line(s, colon + 1);
        if (!line) {
            lines_free(&l);
            return 1;
        }
        free(l.v[i]);
        l.v[i] = line;
    }
    rc = write_lines(path, &l, true);
    lines_free(&l);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    bool create = false, batch = false, del = false, up = false;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c"))
            create = true;
        else if (!strcmp(a, "-b"))
            batch = true;
        else if (!strcmp(a, "-D"))
            del = true;
        else if (!strcmp(a, "-U"))
            up = true;
        else if (!strcmp(a, "-H") && i + 1 < argc) {
            if (strcmp(argv[++i], "sha512-pbkdf2") != 0) {
                fprintf(stderr, "Error: loopbot_passwd writes only sha512-pbkdf2 hashes "
                                "(the broker reads sha512 ones too).\n");
                return 1;
            }
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 1;
        }
    }
    int left = argc - i;
    if ((create && del) || (up && (create || del || batch))) {
        fprintf(stderr, "Error: -c, -D and -U cannot be combined (-b only with -c).\n");
        return 1;
    }
    if (up) {
        if (left != 1) {
            usage(stderr);
            return 1;
        }
        return upgrade(argv[i]);
    }
    if (left != (batch ? 3 : 2) || (del && batch)) {
        usage(stderr);
        return 1;
    }
    const char *path = argv[i], *user = argv[i + 1];
    if (strchr(user, ':') || !user[0]) {
        fprintf(stderr, "Error: Username must not be empty or contain ':'.\n");
        return 1;
    }
    struct lines l = {0};
    if (!create) {
        int rc = read_lines(path, &l);
        if (rc < 0) {
            fprintf(stderr, "Error: Unable to open file %s for reading: %s.\n", path,
                    strerror(-rc));
            return 1;
        }
    }
    size_t at = l.n;
    for (size_t k = 0; k < l.n; k++) {
        if (is_user_line(l.v[k], user)) {
            at = k;
            break;
        }
    }
    int rc = 0;
    if (del) {
        if (at == l.n) {
            fprintf(stderr, "Warning: User %s not found in password file.\n", user);
            rc = 1;
        } else {
            free(l.v[at]);
            memmove(&l.v[at], &l.v[at + 1], (l.n - at - 1) * sizeof(*l.v));
            l.n--;
            rc = write_lines(path, &l, true) < 0;
        }
        lines_free(&l);
        return rc;
    }
    char pw[PW_MAX];
    if (batch) {
        snprintf(pw, sizeof(pw), "%s", argv[i + 2]);
    } else if (prompt_password(pw, sizeof(pw)) < 0) {
        lines_free(&l);
        return 1;
    }
    char *line = make_line(user, pw);
    memset(pw, 0, sizeof(pw));
    if (!line) {
        lines_free(&l);
        return 1;
    }
    if (at < l.n) {
        free(l.v[at]);
        l.v[at] = line;
    } else if (lines_add(&l, line) < 0) {
        free(line);
        lines_free(&l);
        return 1;
    }
    rc = write_lines(path, &l, !create) < 0;
    lines_free(&l);
    return rc;
}
