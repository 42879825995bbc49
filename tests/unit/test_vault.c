/*
 * test_vault.c — unit tests for src/vault/vault.c: the header parser, a round
 * trip through every namespace, wrong passwords, a flipped bit anywhere in the
 * file and truncation at every length (always a clean failure, the file never
 * touched), fresh nonces on every save, atomic saves leaving nothing behind,
 * password change, and the asynchronous open/save on a real libuv loop.
 *
 * Vaults here use 1000 PBKDF2 iterations (the floor allowed for tests) so that
 * the thousands of open attempts stay fast; each test works in its own mkdtemp
 * directory, removed at the end.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/util.h"
#include "vault/vault.h"

#define IT 1000u
static const vault_opts test_opts = {.min_iterations = IT, .max_iterations = 2 * IT};

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/p2p_test_vault_XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/vault.p2p", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

static uint8_t *read_bytes(const char *path, size_t *len)
{
    char *buf;
    assert_int_equal(p2p__read_file(path, 1 << 20, &buf, len), 0);
    return (uint8_t *)buf;
}

static void write_bytes(const char *path, const uint8_t *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

/* Names in the fixture directory other than the vault itself. */
static int stray_files(const fixture *f)
{
    int n = 0;
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "vault.p2p")) {
            print_error("stray file: %s\n", e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

/* A vault at f->path with one entry per namespace, saved and closed. */
static void make_small_vault(const fixture *f, const char *password)
{
    vault *v = NULL;
    char *err = NULL;
    assert_int_equal(vault_create(f->path, password, IT, &v, &err), 0);
    assert_null(err);
    assert_int_equal(vault_put(v, "certificates", "ca.crt", "-----BEGIN CERTIFICATE-----", 27), 0);
    assert_int_equal(vault_put(v, "keys", "node.key", "\x01\x02\x00\xff", 4), 0);
    assert_int_equal(vault_put(v, "config", "node.yaml", "port: 8001\n", 11), 0);
    assert_int_equal(vault_put(v, "data", "token", "SECRET-MARKER", 13), 0);
    assert_int_equal(vault_save(v, NULL), 0);
    vault_close(v);
}

static void check_value(vault *v, const char *ns, const char *name, const void *data, size_t len)
{
    uint8_t *buf = NULL;
    size_t got = 0;
    assert_int_equal(vault_get(v, ns, name, &buf, &got), 0);
    assert_int_equal(got, len);
    assert_memory_equal(buf, data, len);
    assert_int_equal(buf[len], 0);
    vault_secret_free(buf, got + 1);
}

/* ---- header parser ------------------------------------------------------------------------- */

static void build_header(uint8_t *h, uint16_t version, uint16_t kdf, uint32_t it)
{
    memset(h, 0, VAULT_MIN_FILE);
    memcpy(h, VAULT_MAGIC, 8);
    h[8] = (uint8_t)(version >> 8), h[9] = (uint8_t)version;
    h[10] = (uint8_t)(kdf >> 8), h[11] = (uint8_t)kdf;
    h[12] = (uint8_t)(it >> 24), h[13] = (uint8_t)(it >> 16), h[14] = (uint8_t)(it >> 8), h[15] = (uint8_t)it;
    for (int i = 16; i < 44; i++)
        h[i] = (uint8_t)i;
}

static void test_parse_header(void **state)
{
    (void)state;
    uint8_t buf[VAULT_MIN_FILE + 10];
    vault_header h;
    build_header(buf, 1, 1, 600000);
    assert_int_equal(vault_parse_header(buf, sizeof buf, &h), 0);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.kdf, VAULT_KDF_PBKDF2_SHA256);
    assert_int_equal(h.iterations, 600000);
    assert_int_equal(h.salt[0], 16);
    assert_int_equal(h.nonce[0], 32);
    assert_int_equal(h.nonce[11], 43);
    assert_int_equal(h.ciphertext_len, 10);
    assert_int_equal(vault_parse_header(buf, VAULT_MIN_FILE, &h), 0);
    assert_int_equal(h.ciphertext_len, 0);

    /* prefixes of a vault are truncated; other bytes are not a vault */
    for (size_t len = 0; len < VAULT_MIN_FILE; len++)
        assert_int_equal(vault_parse_header(buf, len, &h), -EBADMSG);
    assert_int_equal(vault_parse_header(NULL, 0, &h), -EBADMSG);
    assert_int_equal(vault_parse_header((const uint8_t *)"P2PVAULX", 8, &h), -EINVAL);
    assert_int_equal(vault_parse_header((const uint8_t *)"{\"version\":1}", 13, &h), -EINVAL);
    assert_int_equal(vault_parse_header((const uint8_t *)"Q", 1, &h), -EINVAL);

    build_header(buf, 2, 1, 600000);
    assert_int_equal(vault_parse_header(buf, sizeof buf, &h), -EINVAL);
    build_header(buf, 0, 1, 600000);
    assert_int_equal(vault_parse_header(buf, sizeof buf, &h), -EINVAL);
    build_header(buf, 1, 2, 600000);
    assert_int_equal(vault_parse_header(buf, sizeof buf, &h), -EINVAL);
    build_header(buf, 1, 1, VAULT_FLOOR_ITERATIONS - 1);
    assert_int_equal(vault_parse_header(buf, sizeof buf, &h), -EINVAL);
    build_header(buf, 1, 1, VAULT_MAX_ITERATIONS + 1);
    assert_int_equal(vault_parse_header(buf, sizeof buf, &h), -EINVAL);
    build_header(buf, 1, 1, VAULT_MAX_ITERATIONS);
    assert_int_equal(vault_parse_header(buf, sizeof buf, &h), 0);
}

/* ---- round trip ---------------------------------------------------------------------------- */

static void test_round_trip_every_namespace(void **state)
{
    fixture *f = *state;
    vault *v = NULL;
    char *err = NULL;
    assert_int_equal(vault_create(f->path, "pw", IT, &v, &err), 0);
    assert_int_equal(vault_iterations(v), IT);
    assert_string_equal(vault_path(v), f->path);
    uint8_t binary[256];
    for (int i = 0; i < 256; i++)
        binary[i] = (uint8_t)(255 - i);
    for (int i = 0; i < VAULT_NS_COUNT; i++) {
        const char *ns = vault_namespaces[i];
        assert_int_equal(vault_put(v, ns, "text", "héllo \"wörld\"\n", strlen("héllo \"wörld\"\n")), 0);
        assert_int_equal(vault_put(v, ns, "binary", binary, sizeof binary), 0);
        assert_int_equal(vault_put(v, ns, "empty", "", 0), 0);
        assert_int_equal(vault_put(v, ns, "nul", "a\0b", 3), 0);
        assert_int_equal(vault_put(v, ns, "bad-utf8", "\xc3\x28", 2), 0);
        assert_int_equal(vault_put(v, ns, "replaced", "old", 3), 0);
        assert_int_equal(vault_put(v, ns, "replaced", ns, strlen(ns)), 0);
        assert_int_equal(vault_put(v, ns, "with/slash", "s", 1), 0);
        assert_int_equal(vault_put(v, ns, "gone", "x", 1), 0);
        assert_int_equal(vault_remove(v, ns, "gone"), 0);
        assert_int_equal(vault_remove(v, ns, "gone"), -ENOENT);
    }
    assert_int_equal(vault_save(v, &err), 0);
    vault_close(v);

    /* no plaintext on disk */
    size_t len;
    uint8_t *file = read_bytes(f->path, &len);
    assert_null(memmem(file, len, "wörld", strlen("wörld")));
    assert_null(memmem(file, len, "entries", 7));
    free(file);

    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, &err), 0);
    for (int i = 0; i < VAULT_NS_COUNT; i++) {
        const char *ns = vault_namespaces[i];
        check_value(v, ns, "text", "héllo \"wörld\"\n", strlen("héllo \"wörld\"\n"));
        check_value(v, ns, "binary", binary, sizeof binary);
        check_value(v, ns, "empty", "", 0);
        check_value(v, ns, "nul", "a\0b", 3);
        check_value(v, ns, "bad-utf8", "\xc3\x28", 2);
        check_value(v, ns, "replaced", ns, strlen(ns));
        char **names;
        assert_int_equal(vault_list(v, ns, &names), 0);
        const char *want[] = {"bad-utf8", "binary", "empty", "nul", "replaced", "text", "with/slash", NULL};
        for (int k = 0; want[k]; k++)
            assert_string_equal(names[k], want[k]);
        assert_null(names[7]);
        vault_names_free(names);
        uint64_t ts;
        assert_int_equal(vault_updated_at(v, ns, "text", &ts), 0);
        assert_true(ts > 1600000000000ull);
        uint8_t *buf = (uint8_t *)"untouched";
        size_t blen = 42;
        assert_int_equal(vault_get(v, ns, "gone", &buf, &blen), -ENOENT);
        assert_string_equal((char *)buf, "untouched"); /* out-parameters only on success */
        assert_int_equal(blen, 42);
    }

    /* the export is the document of the header comment */
    char *json;
    assert_int_equal(vault_export(v, 0, &json, &len), 0);
    assert_contains(json, "{\"version\":1,\"entries\":{\"certificates\":{");
    assert_contains(json, "\"text\":{\"value\":\"h\xc3\xa9llo \\\"w\xc3\xb6rld\\\"\\n\",\"updated_at\":");
    assert_contains(json, "\"nul\":{\"encoding\":\"base64\",\"value\":\"YQBi\"");
    vault_secret_free(json, len + 1);
    vault_close(v);
    assert_int_equal(stray_files(f), 0);
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    vault *v = NULL;
    char *err = NULL;
    assert_int_equal(vault_create(f->path, "", IT, &v, &err), -EINVAL);
    assert_contains(err, "empty");
    free(err);
    err = NULL;
    assert_int_equal(vault_create(f->path, "pw", VAULT_FLOOR_ITERATIONS - 1, &v, NULL), -EINVAL);
    assert_int_equal(vault_create(f->path, "pw", VAULT_MAX_ITERATIONS + 1, &v, NULL), -EINVAL);
    assert_int_equal(vault_create(f->path, "pw", IT, &v, NULL), 0);
    vault *again = NULL;
    assert_int_equal(vault_create(f->path, "pw", IT, &again, &err), -EEXIST);
    assert_null(again);
    assert_contains(err, "already exists");
    free(err);

    static const char *const bad_ns[] = {"", "cert", "Keys", "data/", "other", NULL};
    for (int i = 0; bad_ns[i]; i++) {
        char **names;
        uint8_t *buf;
        size_t len;
        assert_int_equal(vault_put(v, bad_ns[i], "n", "x", 1), -EINVAL);
        assert_int_equal(vault_get(v, bad_ns[i], "n", &buf, &len), -EINVAL);
        assert_int_equal(vault_remove(v, bad_ns[i], "n"), -EINVAL);
        assert_int_equal(vault_list(v, bad_ns[i], &names), -EINVAL);
    }
    assert_int_equal(vault_put(v, NULL, "n", "x", 1), -EINVAL);
    char long_name[VAULT_MAX_NAME + 2];
    memset(long_name, 'a', sizeof long_name);
    long_name[VAULT_MAX_NAME + 1] = '\0';
    static const char *const bad_names[] = {"", "tab\there", "nl\n", "\x7f", "\xc3\x28", "\xed\xa0\x80", NULL};
    for (int i = 0; bad_names[i]; i++)
        assert_int_equal(vault_put(v, "data", bad_names[i], "x", 1), -EINVAL);
    assert_int_equal(vault_put(v, "data", long_name, "x", 1), -EINVAL);
    long_name[VAULT_MAX_NAME] = '\0';
    assert_int_equal(vault_put(v, "data", long_name, "x", 1), 0);
    assert_int_equal(vault_put(v, "data", "ünïcode ✓", "x", 1), 0);
    assert_int_equal(vault_put(v, "data", "null", NULL, 1), -EINVAL);
    assert_int_equal(vault_put(v, "data", "null", NULL, 0), 0);
    assert_int_equal(vault_passwd(v, "", 0, NULL), -EINVAL);
    assert_int_equal(vault_save(v, NULL), 0);
    vault_close(v);

    /* the default policy refuses a 1000-iteration vault before deriving anything */
    err = NULL;
    assert_int_equal(vault_open(f->path, "pw", &v, &err), -EINVAL);
    assert_contains(err, "fewer than the minimum 100000");
    free(err);
    err = NULL;
    vault_opts strict = {.min_iterations = IT, .max_iterations = IT - 1};
    assert_int_equal(vault_open_ex(f->path, "pw", &strict, &v, &err), -EINVAL);
    assert_contains(err, "more than the maximum");
    free(err);
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, NULL), 0);
    check_value(v, "data", long_name, "x", 1);
    check_value(v, "data", "ünïcode ✓", "x", 1);
    check_value(v, "data", "null", "", 0);
    vault_close(v);
}

static void test_missing_and_foreign_files(void **state)
{
    fixture *f = *state;
    vault *v = NULL;
    char *err = NULL;
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, &err), -ENOENT);
    assert_contains(err, "no vault at");
    free(err);
    err = NULL;

    write_bytes(f->path, (const uint8_t *)"port: 8001\nnode_id: x\n", 22);
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, &err), -EINVAL);
    assert_contains(err, "not a p2p vault");
    free(err);
    err = NULL;

    unlink(f->path);
    make_small_vault(f, "pw");
    size_t len;
    uint8_t *file = read_bytes(f->path, &len);
    file[9] = 7; /* version 7 */
    write_bytes(f->path, file, len);
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, &err), -EINVAL);
    assert_contains(err, "unsupported vault version 7");
    free(err);
    free(file);

    err = NULL;
    write_bytes(f->path, (const uint8_t *)"P2PVA", 5);
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, &err), -EBADMSG);
    assert_contains(err, "truncated");
    free(err);
}

/* ---- wrong password, tampering, truncation ------------------------------------------------- */

static void test_wrong_password(void **state)
{
    fixture *f = *state;
    make_small_vault(f, "right");
    size_t len, len2;
    uint8_t *before = read_bytes(f->path, &len);
    struct stat st1, st2;
    assert_int_equal(stat(f->path, &st1), 0);
    static const char *const wrong[] = {"wrong", "", "righ", "right ", "RIGHT", NULL};
    for (int i = 0; wrong[i]; i++) {
        vault *v = (vault *)(uintptr_t)1;
        char *err = NULL;
        assert_int_equal(vault_open_ex(f->path, wrong[i], &test_opts, &v, &err), -EBADMSG);
        assert_ptr_equal(v, (vault *)(uintptr_t)1);
        assert_contains(err, "wrong password or corrupted file");
        assert_contains(err, "cannot tell");
        free(err);
    }
    uint8_t *after = read_bytes(f->path, &len2);
    assert_int_equal(stat(f->path, &st2), 0);
    assert_int_equal(len, len2);
    assert_memory_equal(before, after, len);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_int_equal(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
    assert_int_equal(stray_files(f), 0);
    vault *v;
    assert_int_equal(vault_open_ex(f->path, "right", &test_opts, &v, NULL), 0);
    check_value(v, "data", "token", "SECRET-MARKER", 13);
    vault_close(v);
    free(before);
    free(after);
}

/* Which error a flipped bit at `off` must give. Iteration flips either change the
 * derived key (-EBADMSG) or leave the allowed range (-EINVAL): both are fine. */
static int expected_for_offset(size_t off)
{
    if (off < offsetof(vault_wire_header, iterations))
        return -EINVAL; /* magic, version, kdf id */
    if (off < offsetof(vault_wire_header, salt))
        return 0;
    return -EBADMSG; /* salt, nonce, ciphertext, tag: authentication */
}

static void test_flip_every_bit(void **state)
{
    fixture *f = *state;
    make_small_vault(f, "pw");
    size_t len;
    uint8_t *orig = read_bytes(f->path, &len);
    uint8_t *buf = malloc(len);
    assert_true(len > VAULT_MIN_FILE + 50);
    for (size_t off = 0; off < len; off++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(buf, orig, len);
            buf[off] ^= (uint8_t)(1u << bit);
            vault *v = NULL;
            char *err = NULL;
            int r = vault_open_buffer(buf, len, "pw", &test_opts, &v, &err);
            int want = expected_for_offset(off);
            if (want ? r != want : (r != -EINVAL && r != -EBADMSG))
                fail_msg("flip of bit %d at byte %zu: got %d (%s)", bit, off, r, err ? err : "");
            assert_null(v);
            assert_non_null(err);
            free(err);
        }
    }
    /* the same through a real file, once per region */
    const size_t regions[] = {0, 9, 11, 15, 16, 31, 32, 43, 44, 44 + (len - 60) / 2, len - 17, len - 16, len - 1};
    for (size_t i = 0; i < sizeof regions / sizeof *regions; i++) {
        memcpy(buf, orig, len);
        buf[regions[i]] ^= 0x10;
        write_bytes(f->path, buf, len);
        vault *v = NULL;
        char *err = NULL;
        int r = vault_open_ex(f->path, "pw", &test_opts, &v, &err);
        assert_true(r == -EINVAL || r == -EBADMSG);
        assert_null(v);
        free(err);
        size_t len2;
        uint8_t *after = read_bytes(f->path, &len2);
        assert_memory_equal(after, buf, len); /* a failed open never writes */
        free(after);
    }
    /* and the untouched image still opens */
    vault *v = NULL;
    assert_int_equal(vault_open_buffer(orig, len, "pw", &test_opts, &v, NULL), 0);
    check_value(v, "keys", "node.key", "\x01\x02\x00\xff", 4);
    assert_null(vault_path(v));
    assert_int_equal(vault_save(v, NULL), -EINVAL); /* no file behind a buffer */
    vault_close(v);
    free(buf);
    free(orig);
}

static void test_truncate_every_length(void **state)
{
    fixture *f = *state;
    make_small_vault(f, "pw");
    size_t len;
    uint8_t *orig = read_bytes(f->path, &len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(copy, orig, n);
        vault *v = NULL;
        char *err = NULL;
        int r = vault_open_buffer(copy, n, "pw", &test_opts, &v, &err);
        if (r != -EBADMSG)
            fail_msg("truncated to %zu of %zu bytes: got %d (%s)", n, len, r, err ? err : "");
        assert_null(v);
        free(err);
        free(copy);
    }
    for (size_t n = 0; n < len; n += 7) {
        write_bytes(f->path, orig, n);
        vault *v = NULL;
        assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, NULL), -EBADMSG);
    }
    /* extra bytes are not a longer ciphertext either */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, orig, len);
    longer[len] = 0;
    vault *v = NULL;
    assert_int_equal(vault_open_buffer(longer, len + 1, "pw", &test_opts, &v, NULL), -EBADMSG);
    free(longer);
    free(orig);
}

/* ---- saves --------------------------------------------------------------------------------- */

static int cmp_nonce(const void *a, const void *b)
{
    return memcmp(a, b, VAULT_NONCE_LEN);
}

static void test_fresh_nonce_every_save(void **state)
{
    fixture *f = *state;
    enum { SAVES = 200 };
    uint8_t(*nonces)[VAULT_NONCE_LEN] = calloc(SAVES + 1, VAULT_NONCE_LEN);
    uint8_t salt[VAULT_SALT_LEN];
    vault *v = NULL;
    assert_int_equal(vault_create(f->path, "pw", IT, &v, NULL), 0);
    for (int i = 0; i <= SAVES; i++) {
        if (i > 0) {
            assert_int_equal(vault_put(v, "data", "counter", &i, sizeof i), 0);
            assert_int_equal(vault_save(v, NULL), 0);
        }
        size_t len;
        uint8_t *file = read_bytes(f->path, &len);
        vault_header h;
        assert_int_equal(vault_parse_header(file, len, &h), 0);
        memcpy(nonces[i], h.nonce, VAULT_NONCE_LEN);
        if (i == 0)
            memcpy(salt, h.salt, sizeof salt);
        assert_memory_equal(salt, h.salt, sizeof salt); /* saves keep the salt (and key) */
        assert_int_equal(h.iterations, IT);
        free(file);
    }
    assert_int_equal(vault_saves_written(v), SAVES + 1);
    vault_close(v);
    qsort(nonces, SAVES + 1, VAULT_NONCE_LEN, cmp_nonce);
    for (int i = 0; i < SAVES; i++)
        if (memcmp(nonces[i], nonces[i + 1], VAULT_NONCE_LEN) == 0)
            fail_msg("a nonce repeated across saves");
    free(nonces);
    assert_int_equal(stray_files(f), 0);
}

static void test_save_is_atomic_and_private(void **state)
{
    fixture *f = *state;
    make_small_vault(f, "pw");
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    ino_t first = st.st_ino;
    vault *v = NULL;
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, NULL), 0);
    assert_int_equal(vault_put(v, "data", "token", "NEW", 3), 0);
    assert_int_equal(chmod(f->path, 0644), 0);
    assert_int_equal(vault_save(v, NULL), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(st.st_ino != first);           /* replaced by rename, not rewritten in place */
    assert_int_equal(st.st_mode & 0777, 0600); /* and private again */
    assert_int_equal(stray_files(f), 0);

    /* a save that cannot write leaves the old file and no temp file */
    char moved[160];
    snprintf(moved, sizeof moved, "%s.d", f->dir);
    assert_int_equal(rename(f->dir, moved), 0);
    char *err = NULL;
    assert_true(vault_save(v, &err) < 0);
    assert_contains(err, "temporary file");
    free(err);
    assert_int_equal(rename(moved, f->dir), 0);
    assert_int_equal(stray_files(f), 0);
    vault_close(v);
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, NULL), 0);
    check_value(v, "data", "token", "NEW", 3);
    vault_close(v);
}

static void test_passwd(void **state)
{
    fixture *f = *state;
    make_small_vault(f, "old password");
    vault *v = NULL;
    assert_int_equal(vault_open_ex(f->path, "old password", &test_opts, &v, NULL), 0);
    size_t len;
    uint8_t *file = read_bytes(f->path, &len);
    vault_header before, after;
    assert_int_equal(vault_parse_header(file, len, &before), 0);
    free(file);
    assert_int_equal(vault_passwd(v, "new password", 0, NULL), 0);
    assert_int_equal(vault_put(v, "data", "after", "1", 1), 0);
    assert_int_equal(vault_save(v, NULL), 0); /* later saves use the new key */
    vault_close(v);
    file = read_bytes(f->path, &len);
    assert_int_equal(vault_parse_header(file, len, &after), 0);
    free(file);
    assert_memory_not_equal(before.salt, after.salt, VAULT_SALT_LEN);
    assert_int_equal(after.iterations, IT);

    char *err = NULL;
    assert_int_equal(vault_open_ex(f->path, "old password", &test_opts, &v, &err), -EBADMSG);
    assert_contains(err, "wrong password");
    free(err);
    assert_int_equal(vault_open_ex(f->path, "new password", &test_opts, &v, NULL), 0);
    check_value(v, "data", "token", "SECRET-MARKER", 13);
    check_value(v, "data", "after", "1", 1);

    /* a password change that cannot be saved keeps the old key */
    assert_int_equal(vault_passwd(v, "newer", VAULT_MAX_ITERATIONS + 1, NULL), -EINVAL);
    char moved[160];
    snprintf(moved, sizeof moved, "%s.d", f->dir);
    assert_int_equal(rename(f->dir, moved), 0);
    assert_true(vault_passwd(v, "newer", 0, NULL) < 0);
    assert_int_equal(rename(moved, f->dir), 0);
    assert_int_equal(vault_save(v, NULL), 0);
    vault_close(v);
    assert_int_equal(vault_open_ex(f->path, "newer", &test_opts, &v, NULL), -EBADMSG);
    assert_int_equal(vault_open_ex(f->path, "new password", &test_opts, &v, NULL), 0);
    /* and a raised iteration count is written to the header */
    assert_int_equal(vault_passwd(v, "newest", IT * 2, NULL), 0);
    assert_int_equal(vault_iterations(v), IT * 2);
    vault_close(v);
    assert_int_equal(vault_open_ex(f->path, "newest", &test_opts, &v, NULL), 0);
    assert_int_equal(vault_iterations(v), IT * 2);
    vault_close(v);
    assert_int_equal(stray_files(f), 0);
}

/* ---- asynchronous open and save on a real loop --------------------------------------------- */

typedef struct async_result {
    int calls;
    int status;
    char err[256];
    vault *v;
    int order[8];
    int n_order;
} async_result;

static void on_open(vault *v, int status, const char *err, void *arg)
{
    async_result *r = arg;
    r->calls++;
    r->status = status;
    r->v = v;
    snprintf(r->err, sizeof r->err, "%s", err ? err : "");
}

typedef struct save_tag {
    async_result *res;
    int id;
} save_tag;

static void on_save(int status, const char *err, void *arg)
{
    save_tag *t = arg;
    t->res->calls++;
    if (status != 0)
        t->res->status = status;
    if (err)
        snprintf(t->res->err, sizeof t->res->err, "%s", err);
    t->res->order[t->res->n_order++] = t->id;
}

static void test_async_open_and_save(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);

    /* create, then open, on the thread pool */
    async_result cr = {0};
    assert_int_equal(vault_create_async(&loop, f->path, "pw", IT, on_open, &cr), 0);
    assert_int_equal(cr.calls, 0); /* never synchronously */
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(cr.calls, 1);
    assert_int_equal(cr.status, 0);
    vault_close(cr.v);

    async_result bad = {0}, missing = {0}, ok = {0};
    char nowhere[160];
    snprintf(nowhere, sizeof nowhere, "%s/nope.p2p", f->dir);
    assert_int_equal(vault_open_async_ex(&loop, f->path, "wrong", &test_opts, on_open, &bad), 0);
    assert_int_equal(vault_open_async_ex(&loop, nowhere, "pw", &test_opts, on_open, &missing), 0);
    assert_int_equal(vault_open_async_ex(&loop, f->path, "pw", &test_opts, on_open, &ok), 0);
    assert_int_equal(vault_open_async(&loop, f->path, "pw", NULL, NULL), -EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(bad.calls, 1);
    assert_int_equal(bad.status, -EBADMSG);
    assert_null(bad.v);
    assert_contains(bad.err, "wrong password or corrupted file");
    assert_int_equal(missing.status, -ENOENT);
    assert_int_equal(ok.status, 0);
    vault *v = ok.v;
    assert_non_null(v);

    /* three requests while the first runs: two writes, callbacks in request order */
    async_result sr = {0};
    save_tag tags[3] = {{&sr, 1}, {&sr, 2}, {&sr, 3}};
    unsigned written = vault_saves_written(v);
    assert_int_equal(vault_put(v, "data", "k", "A", 1), 0);
    assert_int_equal(vault_save_async(v, &loop, on_save, &tags[0]), 0);
    assert_int_equal(vault_save(v, NULL), -EBUSY);
    assert_int_equal(vault_put(v, "data", "k", "B", 1), 0);
    assert_int_equal(vault_save_async(v, &loop, on_save, &tags[1]), 0);
    assert_int_equal(vault_put(v, "data", "k", "C", 1), 0);
    assert_int_equal(vault_save_async(v, &loop, on_save, &tags[2]), 0);
    assert_int_equal(vault_save_async(v, &loop, NULL, NULL), 0);
    assert_int_equal(sr.calls, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(sr.calls, 3);
    assert_int_equal(sr.status, 0);
    assert_int_equal(sr.order[0], 1);
    assert_int_equal(sr.order[1], 2);
    assert_int_equal(sr.order[2], 3);
    assert_int_equal(vault_saves_written(v) - written, 2);
    assert_int_equal(stray_files(f), 0);

    vault *check = NULL;
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &check, NULL), 0);
    check_value(check, "data", "k", "C", 1);
    vault_close(check);

    /* close while saves are queued: they still complete, then the vault is freed */
    async_result late = {0};
    save_tag t1 = {&late, 1}, t2 = {&late, 2};
    assert_int_equal(vault_put(v, "data", "k", "D", 1), 0);
    assert_int_equal(vault_save_async(v, &loop, on_save, &t1), 0);
    assert_int_equal(vault_put(v, "data", "k", "E", 1), 0);
    assert_int_equal(vault_save_async(v, &loop, on_save, &t2), 0);
    vault_close(v);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(late.calls, 2);
    assert_int_equal(late.status, 0);
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &check, NULL), 0);
    check_value(check, "data", "k", "E", 1);

    /* a failing write reaches every callback */
    async_result failed = {0};
    save_tag t3 = {&failed, 1};
    char moved[160];
    snprintf(moved, sizeof moved, "%s.d", f->dir);
    assert_int_equal(rename(f->dir, moved), 0);
    assert_int_equal(vault_save_async(check, &loop, on_save, &t3), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(rename(moved, f->dir), 0);
    assert_int_equal(failed.calls, 1);
    assert_true(failed.status < 0);
    assert_contains(failed.err, "temporary file");
    vault_close(check);

    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A save callback that closes the vault: the free waits until the callbacks return. */
static void close_in_callback(int status, const char *err, void *arg)
{
    (void)status;
    (void)err;
    vault_close(arg);
}

static void test_close_from_save_callback(void **state)
{
    fixture *f = *state;
    make_small_vault(f, "pw");
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    vault *v = NULL;
    assert_int_equal(vault_open_ex(f->path, "pw", &test_opts, &v, NULL), 0);
    assert_int_equal(vault_save_async(v, &loop, close_in_callback, v), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_header),
        cmocka_unit_test_setup_teardown(test_round_trip_every_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_foreign_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_every_bit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_every_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_nonce_every_save, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_is_atomic_and_private, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_open_and_save, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_save_callback, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
