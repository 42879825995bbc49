/*
 * vault_cmd.c — `p2p vault`: create, read and change a node's encrypted vault
 * from the command line (the vault itself is src/vault/vault.c).
 *
 * The password comes from --password-file (first line; the file must not be
 * readable by group or others), else $P2P_VAULT_PASSWORD, else a prompt with echo
 * off when stdin is a terminal; with none of these the command stops (exit 2)
 * rather than guess. Commands that change the vault hold an exclusive flock on
 * its directory from before the read until after the rename, so two concurrent
 * `p2p vault put` never lose each other's entry. Blocking is right here: this is
 * a short-lived command, not the node's loop.
 */
#include "cli/vault_cmd.h"
#include "cli/password.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "core/util.h"
#include "p2p/p2p.h"
#include "vault/vault.h"

#define DEFAULT_DATA_DIR "data/coordinator"
#define VAULT_FILE_NAME "vault.p2p"

typedef struct vault_args {
    const char *cmd;
    const char *arg; /* NS/NAME or NS */
    const char *data_dir, *file, *password_file, *new_password_file, *from_file;
    char *value; /* --value, inside argv (wiped once copied) */
    int has_value;
} vault_args;

/* ---- usage ----------------------------------------------------------------------------------- */

static const char common_opts[] =
    "  --data-dir DIR           the node's state directory; the vault is DIR/" VAULT_FILE_NAME "\n"
    "                           (default: ./" DEFAULT_DATA_DIR " when it exists)\n"
    "  --file PATH              the vault file itself\n"
    "  --password-file FILE     read the password from the first line of FILE (mode 0600 or stricter)\n"
    "  -h, --help               show this help\n"
    "\n"
    "Password: --password-file, else $P2P_VAULT_PASSWORD, else a prompt when stdin is a terminal.\n"
    "Exit status: 0 ok, 1 runtime failure (e.g. no such entry), 2 usage error, wrong password\n"
    "or a corrupted vault file.\n";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p2p vault COMMAND [options]\n"
            "\n"
            "The node's encrypted vault (AES-256-GCM, key from the password by PBKDF2-HMAC-SHA256).\n"
            "Entries are NS/NAME, with NS one of: certificates, keys, config, data.\n"
            "\n"
            "commands:\n"
            "  init                 create an empty vault (asks for the password twice)\n"
            "  list [NS]            list entries as NS/NAME\n"
            "  get NS/NAME          write the value to stdout, as stored\n"
            "  put NS/NAME          store a value: --value TEXT, --from-file FILE, or stdin\n"
            "  rm NS/NAME           remove an entry\n"
            "  passwd               change the password\n"
            "  export               print the decrypted vault as JSON (plaintext!)\n"
            "\n"
            "Run 'p2p vault COMMAND --help' for a command's options. Common options:\n"
            "%s",
            common_opts);
}

static void cmd_usage(FILE *out, const char *cmd)
{
    if (strcmp(cmd, "init") == 0)
        fprintf(out, "usage: p2p vault init [options]\n\n"
                     "Creates an empty vault (600000 PBKDF2 iterations, a random salt). Refuses to overwrite\n"
                     "an existing one. With --data-dir, creates DIR (mode 0700) when missing.\n\n");
    else if (strcmp(cmd, "list") == 0)
        fprintf(out, "usage: p2p vault list [NS] [options]\n\nPrints one NS/NAME per line, sorted.\n\n");
    else if (strcmp(cmd, "get") == 0)
        fprintf(out, "usage: p2p vault get NS/NAME [options]\n\n"
                     "Writes the value to stdout exactly as stored (no newline added).\n\n");
    else if (strcmp(cmd, "put") == 0)
        fprintf(out, "usage: p2p vault put NS/NAME [--value TEXT | --from-file FILE] [options]\n\n"
                     "Stores a value, replacing any previous one; without --value or --from-file the\n"
                     "value is read from stdin until end of file. Prefer stdin or --from-file for\n"
                     "secrets: a --value is briefly visible to other users in the process list.\n\n"
                     "  --value TEXT             the value\n"
                     "  --from-file FILE         the value is the content of FILE (binary is fine)\n");
    else if (strcmp(cmd, "rm") == 0)
        fprintf(out, "usage: p2p vault rm NS/NAME [options]\n\nRemoves an entry (exit 1 if there is none).\n\n");
    else if (strcmp(cmd, "passwd") == 0)
        fprintf(out, "usage: p2p vault passwd [--new-password-file FILE] [options]\n\n"
                     "Re-encrypts the vault under a new password (a new salt, at least 600000 iterations).\n"
                     "The new password comes from --new-password-file, else $P2P_VAULT_NEW_PASSWORD, else a\n"
                     "prompt (asked twice).\n\n"
                     "  --new-password-file FILE the new password, first line (mode 0600 or stricter)\n");
    else if (strcmp(cmd, "export") == 0)
        fprintf(out, "usage: p2p vault export [options]\n\n"
                     "Prints the decrypted vault as JSON on stdout. This is the plaintext of every\n"
                     "secret in it: do not leave it in a file.\n\n");
    fputs(common_opts, out);
}

static const char *const commands[] = {"init", "list", "get", "put", "rm", "passwd", "export"};

static int known_command(const char *c)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(c, commands[i]) == 0)
            return 1;
    return 0;
}

/* ---- arguments ------------------------------------------------------------------------------- */

/* Returns 0, or the exit status to stop with (0 after --help). */
static int parse_args(int argc, char **argv, vault_args *a, int *stop)
{
    int help = 0;
    *stop = 0;
    for (int i = 1; i < argc; i++) {
        char *s = argv[i];
        const char **target = NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            help = 1;
            continue;
        } else if (strcmp(s, "--data-dir") == 0) {
            target = &a->data_dir;
        } else if (strcmp(s, "--file") == 0) {
            target = &a->file;
        } else if (strcmp(s, "--password-file") == 0) {
            target = &a->password_file;
        } else if (strcmp(s, "--new-password-file") == 0) {
            target = &a->new_password_file;
        } else if (strcmp(s, "--from-file") == 0) {
            target = &a->from_file;
        } else if (strcmp(s, "--value") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "p2p vault: --value needs a value\n");
                *stop = 1;
                return 2;
            }
            a->value = argv[++i];
            a->has_value = 1;
            continue;
        } else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "p2p vault: unknown option '%s' (see p2p vault --help)\n", s);
            *stop = 1;
            return 2;
        } else if (!a->cmd) {
            a->cmd = s;
            continue;
        } else if (!a->arg) {
            a->arg = s;
            continue;
        } else {
            fprintf(stderr, "p2p vault: unexpected argument '%s'\n", s);
            *stop = 1;
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "p2p vault: %s needs a value\n", s);
            *stop = 1;
            return 2;
        }
        *target = argv[++i];
    }
    *stop = 1;
    if (a->cmd && !known_command(a->cmd)) {
        fprintf(stderr, "p2p vault: unknown command '%s'\n\n", a->cmd);
        usage(stderr);
        return 2;
    }
    if (help) {
        if (a->cmd)
            cmd_usage(stdout, a->cmd);
        else
            usage(stdout);
        return 0;
    }
    if (!a->cmd) {
        usage(stderr);
        return 2;
    }
    int needs_arg = strcmp(a->cmd, "get") == 0 || strcmp(a->cmd, "put") == 0 || strcmp(a->cmd, "rm") == 0;
    int takes_arg = needs_arg || strcmp(a->cmd, "list") == 0;
    if ((needs_arg && !a->arg) || (!takes_arg && a->arg)) {
        fprintf(stderr, "p2p vault %s: %s\n\n", a->cmd, needs_arg ? "NS/NAME is missing" : "too many arguments");
        cmd_usage(stderr, a->cmd);
        return 2;
    }
    if ((a->has_value || a->from_file) && strcmp(a->cmd, "put") != 0) {
        fprintf(stderr, "p2p vault %s: --value and --from-file are options of put\n", a->cmd);
        return 2;
    }
    if (a->has_value && a->from_file) {
        fprintf(stderr, "p2p vault put: give --value or --from-file, not both\n");
        return 2;
    }
    if (a->new_password_file && strcmp(a->cmd, "passwd") != 0) {
        fprintf(stderr, "p2p vault %s: --new-password-file is an option of passwd\n", a->cmd);
        return 2;
    }
    if (a->data_dir && a->file) {
        fprintf(stderr, "p2p vault: give --data-dir or --file, not both\n");
        return 2;
    }
    *stop = 0;
    return 0;
}

static int ns_valid(const char *ns, size_t len)
{
    for (int i = 0; i < VAULT_NS_COUNT; i++)
        if (strlen(vault_namespaces[i]) == len && strncmp(ns, vault_namespaces[i], len) == 0)
            return 1;
    return 0;
}

/* Splits NS/NAME (at the first '/'; a name may contain more) into heap copies. */
static int split_entry(const char *cmd, const char *arg, char **ns, char **name)
{
    const char *slash = strchr(arg, '/');
    if (!slash || slash == arg || !slash[1] || !ns_valid(arg, (size_t)(slash - arg))) {
        fprintf(stderr, "p2p vault %s: '%s' is not NS/NAME with NS one of certificates, keys, config, data\n", cmd,
                arg);
        return 2;
    }
    *ns = p2p__xasprintf("%.*s", (int)(slash - arg), arg);
    *name = p2p__xstrdup(slash + 1);
    return 0;
}

/* The vault file: --file, --data-dir/vault.p2p, or ./data/coordinator/vault.p2p. */
static char *vault_location(const vault_args *a)
{
    if (a->file)
        return p2p__xstrdup(a->file);
    if (a->data_dir)
        return p2p__xasprintf("%s/" VAULT_FILE_NAME, a->data_dir);
    struct stat st;
    if (stat(DEFAULT_DATA_DIR, &st) == 0 && S_ISDIR(st.st_mode))
        return p2p__xstrdup(DEFAULT_DATA_DIR "/" VAULT_FILE_NAME);
    fprintf(stderr, "p2p vault: no vault location: pass --data-dir DIR (the node's state directory) "
                    "or --file PATH (./" DEFAULT_DATA_DIR " does not exist here)\n");
    return NULL;
}

/* ---- secrets from files, the environment and the terminal ------------------------------------ */

/* ---- helpers --------------------------------------------------------------------------------- */

/* Holds an exclusive lock on the vault's directory while a command changes the
 * vault (the vault file itself is replaced by rename, so it cannot carry a lock).
 * Returns the fd to close, or -1 when locking is not possible (then unlocked). */
static int lock_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? p2p__xasprintf("%.*s", (int)(slash == path ? 1 : slash - path), path) : p2p__xstrdup(".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int open_error(const char *path, int r, const char *err)
{
    fprintf(stderr, "p2p vault: %s: %s\n", path, err ? err : p2p_strerror(r));
    if (r == -EBADMSG)
        fprintf(stderr, "p2p vault: check the password; if it is right, the file is damaged: restore it "
                        "from a backup (the file was not changed)\n");
    if (r == -ENOENT)
        fprintf(stderr, "p2p vault: create one with: p2p vault init\n");
    return r == -EBADMSG || r == -EINVAL ? 2 : 1;
}

/* Opens the vault at `path` with the password from the arguments. Returns 0 or an exit status. */
static int open_with_password(const vault_args *a, const char *path, vault **out)
{
    char *pw = NULL, *err = NULL;
    int st = p2p__password_get("p2p vault", a->password_file, "--password-file", "P2P_VAULT_PASSWORD", "vault password", 0, &pw);
    if (st != 0)
        return st;
    int r = vault_open(path, pw, out, &err);
    p2p__password_free(pw);
    if (r != 0)
        st = open_error(path, r, err);
    free(err);
    return st;
}

static int save(vault *v)
{
    char *err = NULL;
    int r = vault_save(v, &err);
    if (r != 0)
        fprintf(stderr, "p2p vault: saving %s failed: %s (the previous vault is intact)\n", vault_path(v),
                err ? err : p2p_strerror(r));
    free(err);
    return r == 0 ? 0 : 1;
}

/* ---- commands -------------------------------------------------------------------------------- */

static int cmd_init(const vault_args *a, const char *path)
{
    if (a->data_dir) {
        int r = p2p__mkdir_p(a->data_dir, 0700);
        if (r != 0) {
            fprintf(stderr, "p2p vault: cannot create %s: %s\n", a->data_dir, p2p_strerror(r));
            return 1;
        }
    }
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "p2p vault: %s already exists; not overwriting it\n", path);
        return 1;
    }
    char *pw = NULL, *err = NULL;
    int st = p2p__password_get("p2p vault", a->password_file, "--password-file", "P2P_VAULT_PASSWORD", "new vault password", 1, &pw);
    if (st != 0)
        return st;
    vault *v = NULL;
    int r = vault_create(path, pw, VAULT_DEFAULT_ITERATIONS, &v, &err);
    p2p__password_free(pw);
    if (r != 0) {
        fprintf(stderr, "p2p vault: %s\n", err ? err : p2p_strerror(r));
        free(err);
        return 1;
    }
    vault_close(v);
    fprintf(stderr, "p2p vault: created %s\n", path);
    return 0;
}

static int cmd_list(const vault_args *a, const char *path)
{
    if (a->arg && !ns_valid(a->arg, strlen(a->arg))) {
        fprintf(stderr, "p2p vault list: unknown namespace '%s' (certificates, keys, config, data)\n", a->arg);
        return 2;
    }
    vault *v;
    int st = open_with_password(a, path, &v);
    if (st != 0)
        return st;
    for (int i = 0; i < VAULT_NS_COUNT; i++) {
        if (a->arg && strcmp(a->arg, vault_namespaces[i]) != 0)
            continue;
        char **names;
        if (vault_list(v, vault_namespaces[i], &names) != 0)
            continue;
        for (char **n = names; *n; n++)
            printf("%s/%s\n", vault_namespaces[i], *n);
        vault_names_free(names);
    }
    vault_close(v);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_get(const vault_args *a, const char *path)
{
    char *ns, *name;
    int st = split_entry(a->cmd, a->arg, &ns, &name);
    if (st != 0)
        return st;
    vault *v = NULL;
    if ((st = open_with_password(a, path, &v)) == 0) {
        uint8_t *buf;
        size_t len;
        int r = vault_get(v, ns, name, &buf, &len);
        if (r == 0) {
            if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0) {
                fprintf(stderr, "p2p vault: writing to stdout failed: %s\n", strerror(errno));
                st = 1;
            }
            vault_secret_free(buf, len + 1);
        } else if (r == -ENOENT) {
            fprintf(stderr, "p2p vault: no entry %s/%s in %s\n", ns, name, path);
            st = 1;
        } else {
            fprintf(stderr, "p2p vault get: %s/%s: %s\n", ns, name,
                    r == -EINVAL ? "invalid entry name" : p2p_strerror(r));
            st = r == -EINVAL ? 2 : 1;
        }
        vault_close(v);
    }
    free(ns);
    free(name);
    return st;
}

/* The value to put: --value, --from-file or stdin. Returns 0 or an exit status. */
static int put_value(vault_args *a, uint8_t **data, size_t *len)
{
    if (a->has_value) {
        *len = strlen(a->value);
        *data = (uint8_t *)p2p__xasprintf("%s", a->value);
        OPENSSL_cleanse(a->value, *len); /* out of /proc/PID/cmdline from now on */
        return 0;
    }
    int fd = STDIN_FILENO;
    const char *from = "stdin";
    if (a->from_file) {
        from = a->from_file;
        if ((fd = open(a->from_file, O_RDONLY | O_CLOEXEC)) < 0) {
            fprintf(stderr, "p2p vault put: cannot open %s: %s\n", a->from_file, strerror(errno));
            return 1;
        }
    }
    int r = p2p__read_all_secret(fd, VAULT_MAX_VALUE, data, len);
    if (a->from_file)
        close(fd);
    if (r != 0) {
        fprintf(stderr, "p2p vault put: cannot read the value from %s: %s\n", from,
                r == -EFBIG ? "larger than 16 MiB" : p2p_strerror(r));
        return 1;
    }
    return 0;
}

static int cmd_put_or_rm(vault_args *a, const char *path, int put)
{
    char *ns, *name;
    int st = split_entry(a->cmd, a->arg, &ns, &name);
    if (st != 0)
        return st;
    uint8_t *data = NULL;
    size_t len = 0;
    if (put && (st = put_value(a, &data, &len)) != 0)
        goto out;
    int lock = lock_dir_of(path);
    vault *v = NULL;
    if ((st = open_with_password(a, path, &v)) == 0) {
        int r = put ? vault_put(v, ns, name, data, len) : vault_remove(v, ns, name);
        if (r != 0) {
            if (r == -ENOENT)
                fprintf(stderr, "p2p vault: no entry %s/%s in %s\n", ns, name, path);
            else
                fprintf(stderr, "p2p vault %s: %s/%s: %s\n", a->cmd, ns, name,
                        r == -EINVAL ? "invalid entry name" : p2p_strerror(r));
            st = r == -EINVAL ? 2 : 1;
        } else {
            st = save(v);
        }
        vault_close(v);
    }
    if (lock >= 0)
        close(lock);
out:
    vault_secret_free(data, len + 1);
    free(ns);
    free(name);
    return st;
}

static int cmd_passwd(const vault_args *a, const char *path)
{
    int lock = lock_dir_of(path);
    vault *v = NULL;
    int st = open_with_password(a, path, &v);
    if (st == 0) {
        char *pw = NULL, *err = NULL;
        st = p2p__password_get("p2p vault", a->new_password_file, "--new-password-file", "P2P_VAULT_NEW_PASSWORD", "new vault password", 1, &pw);
        if (st == 0) {
            /* at least the default count; a vault made with more keeps its count */
            uint32_t it = vault_iterations(v) < VAULT_DEFAULT_ITERATIONS ? VAULT_DEFAULT_ITERATIONS : 0;
            int r = vault_passwd(v, pw, it, &err);
            if (r != 0) {
                fprintf(stderr, "p2p vault passwd: %s (the vault still opens with the old password)\n",
                        err ? err : p2p_strerror(r));
                st = r == -EINVAL ? 2 : 1;
            } else {
                fprintf(stderr, "p2p vault: password changed for %s\n", path);
            }
        }
        p2p__password_free(pw);
        free(err);
        vault_close(v);
    }
    if (lock >= 0)
        close(lock);
    return st;
}

static int cmd_export(const vault_args *a, const char *path)
{
    vault *v;
    int st = open_with_password(a, path, &v);
    if (st != 0)
        return st;
    char *json;
    size_t len;
    int r = vault_export(v, 1, &json, &len);
    vault_close(v);
    if (r != 0) {
        fprintf(stderr, "p2p vault export: %s\n", p2p_strerror(r));
        return 1;
    }
    fprintf(stderr, "p2p vault: WARNING: this is the vault's plaintext; do not store it unencrypted\n");
    if (fwrite(json, 1, len, stdout) != len || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
        fprintf(stderr, "p2p vault: writing to stdout failed: %s\n", strerror(errno));
        st = 1;
    }
    vault_secret_free(json, len + 1);
    return st;
}

int p2p__cmd_vault(int argc, char **argv)
{
    vault_args a = {0};
    int stop, st = parse_args(argc, argv, &a, &stop);
    if (stop)
        return st;
    char *path = vault_location(&a);
    if (!path)
        return 2;
    if (strcmp(a.cmd, "init") == 0)
        st = cmd_init(&a, path);
    else if (strcmp(a.cmd, "list") == 0)
        st = cmd_list(&a, path);
    else if (strcmp(a.cmd, "get") == 0)
        st = cmd_get(&a, path);
    else if (strcmp(a.cmd, "put") == 0)
        st = cmd_put_or_rm(&a, path, 1);
    else if (strcmp(a.cmd, "rm") == 0)
        st = cmd_put_or_rm(&a, path, 0);
    else if (strcmp(a.cmd, "passwd") == 0)
        st = cmd_passwd(&a, path);
    else
        st = cmd_export(&a, path);
    free(path);
    return st;
}
