/*
 * password.c — secrets typed or stored by the operator, for the `p2p` commands:
 * a password file that only its owner can read (first line), an environment
 * variable, or a prompt on the terminal with echo off. Buffers are wiped.
 */
#include "cli/password.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "core/util.h"
#include "p2p/p2p.h"
#include "vault/vault.h"

#define MAX_PASSWORD 1024

/* Reads all of fd into a heap buffer (plus a NUL), wiping every buffer it outgrows. */
int p2p__read_all_secret(int fd, size_t max, uint8_t **out, size_t *out_len)
{
    size_t cap = 4096, len = 0;
    uint8_t *buf = p2p__xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap > max)
                break;
            uint8_t *bigger = p2p__xmalloc(cap * 2 + 1);
            memcpy(bigger, buf, len);
            vault_secret_free(buf, cap + 1);
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int r = -errno;
            vault_secret_free(buf, cap + 1);
            return r;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > max) {
        vault_secret_free(buf, cap + 1);
        return -EFBIG;
    }
    buf[len] = '\0';
    /* shrink to the exact size so the caller can wipe with the length it knows */
    uint8_t *exact = p2p__xmalloc(len + 1);
    memcpy(exact, buf, len + 1);
    vault_secret_free(buf, cap + 1);
    *out = exact;
    *out_len = len;
    return 0;
}

/* First line of a password file that only its owner can read. Returns 0 or an exit status. */
static int password_from_file(const char *prog, const char *what, const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot open the %s file %s: %s\n", prog, what, path, strerror(errno));
        return 2;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fprintf(stderr, "%s: cannot stat the %s file %s: %s\n", prog, what, path, strerror(errno));
        close(fd);
        return 2;
    }
    if (st.st_mode & 077) {
        fprintf(stderr,
                "%s: %s file %s is accessible by group or others (mode %04o); "
                "refusing it: run chmod 600 %s\n",
                prog, what, path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return 2;
    }
    uint8_t *buf;
    size_t len;
    int r = p2p__read_all_secret(fd, 64 * 1024, &buf, &len);
    close(fd);
    if (r != 0) {
        fprintf(stderr, "%s: cannot read the %s file %s: %s\n", prog, what, path, p2p_strerror(r));
        return 2;
    }
    size_t line = strcspn((char *)buf, "\n");
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    if (line == 0) {
        fprintf(stderr, "%s: %s file %s: the first line is empty\n", prog, what, path);
        vault_secret_free(buf, len + 1);
        return 2;
    }
    *out = p2p__xasprintf("%.*s", (int)line, (char *)buf);
    vault_secret_free(buf, len + 1);
    return 0;
}

void p2p__password_free(char *pw)
{
    if (pw)
        vault_secret_free(pw, strlen(pw) + 1);
}

/* Reads a line from the terminal on stdin with echo off. NULL on end of input. */
static char *prompt_line(const char *prompt)
{
    struct termios saved, quiet;
    if (tcgetattr(STDIN_FILENO, &saved) != 0)
        return NULL;
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet); /* before the prompt: nothing typed after it is lost */
    fputs(prompt, stderr);
    fflush(stderr);
    char buf[MAX_PASSWORD + 1];
    size_t len = 0;
    int eof = 0;
    for (;;) {
        char c;
        ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            eof = len == 0;
            break;
        }
        if (c == '\n')
            break;
        if (len < MAX_PASSWORD)
            buf[len++] = c;
    }
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    fputc('\n', stderr);
    char *out = eof ? NULL : p2p__xasprintf("%.*s", (int)len, buf);
    OPENSSL_cleanse(buf, sizeof buf);
    return out;
}

/* A password from `file`, else the environment variable `env`, else the terminal
 * (twice when `confirm`). `what` names it in prompts and messages. Returns 0 or an
 * exit status. */
int p2p__password_get(const char *prog, const char *file, const char *file_flag, const char *env,
                      const char *what, int confirm, char **out)
{
    if (file)
        return password_from_file(prog, what, file, out);
    const char *e = getenv(env);
    if (e && *e) {
        *out = p2p__xstrdup(e);
        return 0;
    }
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr, "%s: no %s: use %s FILE, set %s, or run on a terminal to be asked\n", prog, what,
                file_flag, env);
        return 2;
    }
    char prompt[64];
    snprintf(prompt, sizeof prompt, "%c%s: ", toupper((unsigned char)what[0]), what + 1);
    char *first = prompt_line(prompt);
    if (!first || !*first) {
        fprintf(stderr, "%s: no %s given\n", prog, what);
        p2p__password_free(first);
        return 2;
    }
    if (confirm) {
        char *again = prompt_line("Repeat it: ");
        int same = again && strcmp(first, again) == 0;
        p2p__password_free(again);
        if (!same) {
            fprintf(stderr, "%s: the two entries differ\n", prog);
            p2p__password_free(first);
            return 2;
        }
    }
    *out = first;
    return 0;
}

