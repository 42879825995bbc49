/*
 * test_package.c — service packages (src/deploy/package.c): a good package
 * built, signed, verified and unpacked; and each refusal an attacker or a
 * broken upload produces: one byte tampered (in a file and in package.json),
 * a wrong key, a downgrade, "../" and absolute paths, links, devices, fifos,
 * a 10 GB decompression bomb, a truncated archive, duplicate, unlisted,
 * missing and out-of-order entries. A refused unpack leaves nothing on disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "core/util.h"
#include "deploy/package.h"

static char root[256];
static char *priv, *priv2;
static uint8_t pub[32], pub2[32];

static const char *manifest_v1 = "{\"name\":\"hello\",\"version\":\"1.2.0\",\"type\":\"exec\","
                                 "\"command\":[\"python3\",\"main.py\"]}";

static char *path_in(const char *name) { return p2p__xasprintf("%s/%s", root, name); }

static void put_file(const char *rel, const char *text, unsigned mode)
{
    char *p = path_in(rel);
    char *dir = p2p__xstrdup(p);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(p2p__mkdir_p(dir, 0755), 0);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(p, mode);
    free(dir);
    free(p);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    assert_int_equal(p2p__read_file(path, 1u << 30, &buf, len), 0);
    return (uint8_t *)buf;
}

static void spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Builds root/src (hello 1.2.0) into root/NAME, signed with `key` (NULL: unsigned). */
static char *build_pkg(const char *name, const char *key, p2p_pkg_compression comp)
{
    char *dir = path_in("src"), *out = path_in(name), *err = NULL;
    p2p_pkg_build_opts o = {.compression = comp};
    p2p_pkg_info info = {0};
    int rc = p2p__pkg_build(dir, out, &o, &info, &err);
    if (rc)
        fprintf(stderr, "build: %s\n", err);
    assert_int_equal(rc, 0);
    if (key) {
        char *sig = NULL;
        assert_int_equal(p2p__pkg_sign_manifest(key, info.manifest, info.manifest_len, &sig, &err), 0);
        rc = p2p__pkg_attach_signature(out, out, sig, &err);
        if (rc)
            fprintf(stderr, "attach: %s\n", err);
        assert_int_equal(rc, 0);
        free(sig);
    }
    p2p__pkg_info_free(&info);
    free(dir);
    return out;
}

static int verify(const char *file, const p2p_pkg_policy *pol, p2p_pkg_info *info, char **err)
{
    *err = NULL;
    int rc = p2p__pkg_verify_file(file, pol, info, err);
    if (rc)
        fprintf(stderr, "  (refused as expected? %d: %s)\n", rc, *err ? *err : "");
    return rc;
}

static p2p_pkg_policy strict(void)
{
    p2p_pkg_policy p = {.keys = (const uint8_t(*)[32])pub, .n_keys = 1, .require_signature = 1};
    return p;
}

/* ---- raw archives (what an attacker can write) ---- */

typedef struct rbuf {
    uint8_t *b;
    size_t n, cap;
} rbuf;

static void rb_add(rbuf *r, const void *p, size_t n)
{
    if (r->n + n > r->cap) {
        r->cap = (r->n + n) * 2;
        r->b = p2p__xrealloc(r->b, r->cap);
    }
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void tar_entry(rbuf *r, const char *name, const void *data, size_t size, char type, const char *link)
{
    uint8_t h[512] = {0};
    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%011llo", (unsigned long long)size);
    memcpy(h + 124, tmp, 12);
    memcpy(h + 136, "00000000000", 12);
    h[156] = (uint8_t)type;
    if (link)
        memcpy(h + 157, link, strlen(link));
    memcpy(h + 257, "ustar\0", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf(tmp, sizeof tmp, "%06o", sum);
    memcpy(h + 148, tmp, 7);
    rb_add(r, h, 512);
    if (data && size) {
        rb_add(r, data, size);
        static const uint8_t zeros[512];
        rb_add(r, zeros, (512 - size % 512) % 512);
    }
}

static void tar_end(rbuf *r)
{
    static const uint8_t zeros[1024];
    rb_add(r, zeros, sizeof zeros);
}

static void sha_hex(const void *p, size_t n, char out[65])
{
    uint8_t h[32];
    unsigned hl;
    EVP_Digest(p, n, h, &hl, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* package.json for hello 1.2.0 listing manifest.json (+ one extra path when given). */
static char *listing(const char *extra_path, const char *extra_data, uint64_t extra_size)
{
    char h1[65], h2[65];
    sha_hex(manifest_v1, strlen(manifest_v1), h1);
    sha_hex(extra_data ? extra_data : "", extra_data ? strlen(extra_data) : 0, h2);
    if (!extra_path)
        return p2p__xasprintf("{\"format\":1,\"name\":\"hello\",\"version\":\"1.2.0\",\"type\":\"service\",\"files\":["
                              "{\"path\":\"manifest.json\",\"size\":%zu,\"sha256\":\"%s\"}]}",
                              strlen(manifest_v1), h1);
    int before = strcmp(extra_path, "manifest.json") < 0;
    char *a = p2p__xasprintf("{\"path\":\"manifest.json\",\"size\":%zu,\"sha256\":\"%s\"}", strlen(manifest_v1), h1);
    char *b = p2p__xasprintf("{\"path\":\"%s\",\"size\":%llu,\"sha256\":\"%s\"}", extra_path,
                             (unsigned long long)extra_size, h2);
    char *s = p2p__xasprintf("{\"format\":1,\"name\":\"hello\",\"version\":\"1.2.0\",\"type\":\"service\",\"files\":["
                             "%s,%s]}",
                             before ? b : a, before ? a : b);
    free(a);
    free(b);
    return s;
}

/* package.json + its signature (by `key`) as the first two entries. */
static void head(rbuf *r, const char *pkgjson, const char *key)
{
    tar_entry(r, "package.json", pkgjson, strlen(pkgjson), '0', NULL);
    char *sig = NULL, *err = NULL;
    assert_int_equal(p2p__pkg_sign_manifest(key, pkgjson, strlen(pkgjson), &sig, &err), 0);
    tar_entry(r, "package.sig", sig, strlen(sig), '0', NULL);
    free(sig);
}

static uint8_t *zst(const rbuf *r, size_t *len)
{
    size_t cap = ZSTD_compressBound(r->n);
    uint8_t *out = p2p__xmalloc(cap);
    *len = ZSTD_compress(out, cap, r->b, r->n, 3);
    assert_false(ZSTD_isError(*len));
    return out;
}

static int verify_raw(const rbuf *r, char **err)
{
    size_t n;
    uint8_t *z = zst(r, &n);
    p2p_pkg_policy pol = strict();
    *err = NULL;
    int rc = p2p__pkg_verify_buffer(z, n, &pol, NULL, err);
    fprintf(stderr, "  raw archive: %d %s\n", rc, *err ? *err : "");
    free(z);
    return rc;
}

/* A signed archive whose listing holds manifest.json and `name` -> `data`,
 * with the entry written as `type` (link target `link`). */
static int raw_with_entry(const char *list_path, const char *entry_name, char type, const char *link, char **err)
{
    rbuf r = {0};
    char *pj = listing(list_path, "x", 1);
    head(&r, pj, priv);
    int before = strcmp(list_path, "manifest.json") < 0;
    if (!before)
        tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_entry(&r, entry_name, type == '0' ? "x" : NULL, type == '0' ? 1 : 0, type, link);
    if (before)
        tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_end(&r);
    int rc = verify_raw(&r, err);
    free(pj);
    free(r.b);
    return rc;
}

/* ---- tests ---- */

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/p2p-test-package-XXXXXX");
    assert_non_null(mkdtemp(root));
    put_file("src/manifest.json", manifest_v1, 0644);
    put_file("src/main.py", "print('hello')\n", 0755);
    put_file("src/assets/data/greeting.txt", "Hi there\n", 0644);
    assert_int_equal(p2p__pkg_keygen(&priv), 0);
    assert_int_equal(p2p__pkg_keygen(&priv2), 0);
    char *pem = NULL;
    assert_int_equal(p2p__pkg_public_pem(priv, &pem), 0);
    assert_int_equal(p2p__pkg_pubkey_raw(pem, pub), 0);
    free(pem);
    assert_int_equal(p2p__pkg_public_pem(priv2, &pem), 0);
    assert_int_equal(p2p__pkg_pubkey_raw(pem, pub2), 0);
    free(pem);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char *cmd = p2p__xasprintf("rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    p2p__pkg_secret_free(priv);
    p2p__pkg_secret_free(priv2);
    return 0;
}

static void test_good_package(void **state)
{
    (void)state;
    for (int comp = P2P_PKG_ZSTD; comp <= P2P_PKG_GZIP; comp++) {
        char *file = build_pkg(comp == P2P_PKG_ZSTD ? "good.tar.zst" : "good.tar.gz", priv, comp);
        p2p_pkg_policy pol = strict();
        pol.min_version = "1.2.0";
        pol.type = "service";
        p2p_pkg_info info;
        char *err;
        assert_int_equal(verify(file, &pol, &info, &err), 0);
        assert_string_equal(info.name, "hello");
        assert_string_equal(info.version, "1.2.0");
        assert_string_equal(info.type, "service");
        assert_int_equal(info.sig, P2P_PKG_SIG_VALID);
        assert_int_equal((int)info.compression, comp);
        assert_int_equal(info.n_files, 3);
        assert_string_equal(info.files[0].path, "assets/data/greeting.txt");
        assert_string_equal(info.files[1].path, "main.py");
        assert_true(info.files[1].executable);
        assert_false(info.files[0].executable);
        p2p__pkg_info_free(&info);

        /* without a key: signed, unchecked; as an unsigned package: refused when required */
        assert_int_equal(verify(file, NULL, &info, &err), 0);
        assert_int_equal(info.sig, P2P_PKG_SIG_UNCHECKED);
        assert_string_equal(info.key_id[0] ? "set" : "", "set");
        p2p__pkg_info_free(&info);

        char *target = path_in(comp == P2P_PKG_ZSTD ? "out/hello-zst" : "out/hello-gz");
        char *out = path_in("out");
        p2p__mkdir_p(out, 0755);
        assert_int_equal(p2p__pkg_extract(file, &pol, target, NULL, &err), 0);
        char *p = p2p__xasprintf("%s/assets/data/greeting.txt", target);
        size_t n;
        char *text = (char *)slurp(p, &n);
        assert_string_equal(text, "Hi there\n");
        free(text);
        free(p);
        struct stat st;
        p = p2p__xasprintf("%s/main.py", target);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0755);
        free(p);
        /* an existing target is never overwritten */
        assert_int_equal(p2p__pkg_extract(file, &pol, target, NULL, &err), -EEXIST);
        free(err);
        free(target);
        free(out);
        free(file);
    }
}

static void test_unsigned_refused_when_required(void **state)
{
    (void)state;
    char *file = build_pkg("unsigned.tar.zst", NULL, P2P_PKG_ZSTD);
    p2p_pkg_policy pol = strict();
    p2p_pkg_info info;
    char *err;
    assert_int_equal(verify(file, NULL, &info, &err), 0);
    assert_int_equal(info.sig, P2P_PKG_SIG_NONE);
    p2p__pkg_info_free(&info);
    assert_int_equal(verify(file, &pol, NULL, &err), -EPERM);
    assert_non_null(strstr(err, "unsigned"));
    free(err);
    free(file);
}

/* Decompresses a package, lets `edit` change the tar bytes, compresses again. */
static char *edited(const char *file, const char *name, void (*edit)(uint8_t *, size_t))
{
    size_t n;
    uint8_t *z = slurp(file, &n);
    unsigned long long raw = ZSTD_getFrameContentSize(z, n);
    size_t cap = raw != ZSTD_CONTENTSIZE_UNKNOWN && raw != ZSTD_CONTENTSIZE_ERROR ? (size_t)raw : 4 << 20;
    rbuf r = {p2p__xmalloc(cap), 0, cap};
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer ib = {z, n, 0};
    ZSTD_outBuffer ob = {r.b, cap, 0};
    assert_int_equal(ZSTD_decompressStream(d, &ob, &ib), 0);
    ZSTD_freeDCtx(d);
    r.n = ob.pos;
    edit(r.b, r.n);
    size_t zn;
    uint8_t *out = zst(&r, &zn);
    char *path = path_in(name);
    spit(path, out, zn);
    free(out);
    free(r.b);
    free(z);
    return path;
}

static uint8_t *find(uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(hay + i, needle, k))
            return hay + i;
    return NULL;
}

static void flip_file_byte(uint8_t *b, size_t n)
{
    uint8_t *p = find(b, n, "Hi there");
    assert_non_null(p);
    p[0] = 'h';
}

static void flip_listing_byte(uint8_t *b, size_t n)
{
    uint8_t *p = find(b, n, "\"1.2.0\"");
    assert_non_null(p);
    p[5] = '1'; /* 1.2.1: a version the key never signed */
}

static void test_tampered(void **state)
{
    (void)state;
    char *good = build_pkg("t.tar.zst", priv, P2P_PKG_ZSTD), *err;
    p2p_pkg_policy pol = strict();
    char *bad = edited(good, "t-file.tar.zst", flip_file_byte);
    assert_int_equal(verify(bad, &pol, NULL, &err), -EBADMSG);
    assert_non_null(strstr(err, "sha256"));
    free(err);
    /* nothing is written when unpacking it, not even the temporary folder */
    char *target = path_in("tampered/hello");
    char *parent = path_in("tampered");
    p2p__mkdir_p(parent, 0755);
    assert_int_equal(p2p__pkg_extract(bad, &pol, target, NULL, &err), -EBADMSG);
    free(err);
    DIR *d = opendir(parent);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)) != NULL)
        entries += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    assert_int_equal(entries, 0);
    free(bad);

    bad = edited(good, "t-list.tar.zst", flip_listing_byte);
    assert_int_equal(verify(bad, &pol, NULL, &err), -EBADMSG);
    assert_non_null(strstr(err, "signature"));
    free(err);
    free(bad);

    /* a compressed byte changed: the stream itself is refused */
    size_t n;
    uint8_t *z = slurp(good, &n);
    z[n / 2] ^= 0x55;
    bad = path_in("t-stream.tar.zst");
    spit(bad, z, n);
    assert_true(verify(bad, &pol, NULL, &err) < 0);
    free(err);
    free(z);
    free(bad);
    free(target);
    free(parent);
    free(good);
}

static void test_wrong_key(void **state)
{
    (void)state;
    char *file = build_pkg("k.tar.zst", priv2, P2P_PKG_ZSTD), *err;
    p2p_pkg_policy pol = strict(); /* trusts `pub` only */
    p2p_pkg_info info;
    assert_int_equal(verify(file, &pol, NULL, &err), -EPERM);
    assert_non_null(strstr(err, "untrusted"));
    free(err);
    pol.require_signature = 0;
    assert_int_equal(verify(file, &pol, &info, &err), 0);
    assert_int_equal(info.sig, P2P_PKG_SIG_UNKNOWN_KEY);
    p2p__pkg_info_free(&info);
    free(file);

    /* signed by key 2 but claiming key 1's id: the signature check fails */
    rbuf r = {0};
    char *pj = listing(NULL, NULL, 0), *sig = NULL;
    tar_entry(&r, "package.json", pj, strlen(pj), '0', NULL);
    assert_int_equal(p2p__pkg_sign_manifest(priv2, pj, strlen(pj), &sig, &err), 0);
    char kid1[P2P_PKG_KEY_ID_LEN + 1], kid2[P2P_PKG_KEY_ID_LEN + 1];
    p2p__pkg_key_id(pub, kid1);
    p2p__pkg_key_id(pub2, kid2);
    memcpy(strstr(sig, kid2), kid1, P2P_PKG_KEY_ID_LEN);
    tar_entry(&r, "package.sig", sig, strlen(sig), '0', NULL);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EBADMSG);
    free(err);
    free(sig);
    free(pj);
    free(r.b);
}

static void test_downgrade(void **state)
{
    (void)state;
    char *file = build_pkg("d.tar.zst", priv, P2P_PKG_ZSTD), *err;
    p2p_pkg_policy pol = strict();
    pol.min_version = "1.10.0";
    assert_int_equal(verify(file, &pol, NULL, &err), -EPERM);
    assert_non_null(strstr(err, "downgrade"));
    free(err);
    pol.min_version = "1.2.0-rc.1"; /* a pre-release orders before its release */
    assert_int_equal(verify(file, &pol, NULL, &err), 0);
    /* a node's package_version_floors: the package's own entry, else '*' */
    pol.floors = "other=9.0.0,*=1.0.0,hello=1.3.0";
    assert_int_equal(verify(file, &pol, NULL, &err), -EPERM);
    assert_non_null(strstr(err, "package_version_floors"));
    free(err);
    pol.floors = "*=2.0.0";
    assert_int_equal(verify(file, &pol, NULL, &err), -EPERM);
    free(err);
    pol.floors = "*=2.0.0,hello=1.2.0";
    assert_int_equal(verify(file, &pol, NULL, &err), 0);
    pol.floors = "other=9.0.0";
    assert_int_equal(verify(file, &pol, NULL, &err), 0);
    pol.floors = NULL;
    pol.name = "other";
    assert_int_equal(verify(file, &pol, NULL, &err), -EPERM);
    free(err);
    pol.name = NULL;
    pol.type = "node";
    assert_int_equal(verify(file, &pol, NULL, &err), -EPERM);
    free(err);
    free(file);
}

static void test_paths_links_devices(void **state)
{
    (void)state;
    char *err;
    /* entries the listing may not even name */
    assert_int_equal(raw_with_entry("assets/x", "files/../etc/x", '0', NULL, &err), -EINVAL);
    assert_non_null(strstr(err, "refused entry"));
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "/etc/passwd", '0', NULL, &err), -EINVAL);
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "files/assets\\x", '0', NULL, &err), -EINVAL);
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "files/./assets/x", '0', NULL, &err), -EINVAL);
    free(err);
    /* listed names, wrong kinds */
    assert_int_equal(raw_with_entry("assets/x", "files/assets/x", '2', "/etc/passwd", &err), -EINVAL);
    assert_non_null(strstr(err, "symbolic link"));
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "files/assets/x", '1', "files/manifest.json", &err), -EINVAL);
    assert_non_null(strstr(err, "hard link"));
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "files/assets/x", '3', NULL, &err), -EINVAL);
    assert_non_null(strstr(err, "device"));
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "files/assets/x", '4', NULL, &err), -EINVAL);
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "files/assets/x", '6', NULL, &err), -EINVAL);
    assert_non_null(strstr(err, "fifo"));
    free(err);
    assert_int_equal(raw_with_entry("assets/x", "files/assets/x", 'x', NULL, &err), -EINVAL);
    free(err);
    /* and the listing itself refuses escaping paths */
    const char *bad_paths[] = {"../x", "/etc/x", "a/../../x", "a\\b", "a//b", "a/", ""};
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++) {
        char *pj = p2p__xasprintf("{\"format\":1,\"name\":\"hello\",\"version\":\"1.0.0\",\"type\":\"node\","
                                  "\"files\":[{\"path\":\"%s\",\"size\":0,\"sha256\":\"%064d\"}]}",
                                  bad_paths[i], 0);
        p2p_pkg_info info;
        err = NULL;
        assert_int_equal(p2p__pkg_manifest_parse(pj, strlen(pj), &info, &err), -EINVAL);
        free(err);
        free(pj);
    }
    /* the control: the same archive with a plain file passes */
    assert_int_equal(raw_with_entry("assets/x", "files/assets/x", '0', NULL, &err), 0);
}

static void test_duplicates_and_listing(void **state)
{
    (void)state;
    char *err, *pj = listing("zz", "x", 1);
    rbuf r = {0};
    /* duplicate entry */
    head(&r, pj, priv);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EINVAL);
    assert_non_null(strstr(err, "duplicate"));
    free(err);
    /* duplicate after the last listed file */
    r.n = 0;
    head(&r, pj, priv);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_entry(&r, "files/zz", "x", 1, '0', NULL);
    tar_entry(&r, "files/zz", "x", 1, '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EINVAL);
    assert_non_null(strstr(err, "duplicate"));
    free(err);
    /* an unlisted file */
    r.n = 0;
    head(&r, pj, priv);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_entry(&r, "files/zz", "x", 1, '0', NULL);
    tar_entry(&r, "files/extra", "y", 1, '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EBADMSG);
    assert_non_null(strstr(err, "not listed"));
    free(err);
    /* a listed file missing */
    r.n = 0;
    head(&r, pj, priv);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EBADMSG);
    assert_non_null(strstr(err, "missing"));
    free(err);
    /* a size that differs from the listing */
    r.n = 0;
    head(&r, pj, priv);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_entry(&r, "files/zz", "xy", 2, '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EBADMSG);
    free(err);
    /* package.json not first */
    r.n = 0;
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EINVAL);
    free(err);
    /* a manifest.json naming another version than the package */
    free(pj);
    const char *m2 = "{\"name\":\"hello\",\"version\":\"9.0.0\",\"type\":\"exec\",\"command\":[\"x\"]}";
    char h[65];
    sha_hex(m2, strlen(m2), h);
    pj = p2p__xasprintf("{\"format\":1,\"name\":\"hello\",\"version\":\"1.2.0\",\"type\":\"service\",\"files\":["
                        "{\"path\":\"manifest.json\",\"size\":%zu,\"sha256\":\"%s\"}]}",
                        strlen(m2), h);
    r.n = 0;
    head(&r, pj, priv);
    tar_entry(&r, "files/manifest.json", m2, strlen(m2), '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), -EINVAL);
    assert_non_null(strstr(err, "version"));
    free(err);
    /* the good one */
    free(pj);
    pj = listing("zz", "x", 1);
    r.n = 0;
    head(&r, pj, priv);
    tar_entry(&r, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_entry(&r, "files/zz", "x", 1, '0', NULL);
    tar_end(&r);
    assert_int_equal(verify_raw(&r, &err), 0);
    free(pj);
    free(r.b);
}

static void test_truncated(void **state)
{
    (void)state;
    char *good = build_pkg("tr.tar.zst", priv, P2P_PKG_ZSTD), *err;
    size_t n;
    uint8_t *z = slurp(good, &n);
    p2p_pkg_policy pol = strict();
    for (size_t cut = 0; cut < n; cut += (n / 37) + 1) {
        err = NULL;
        int rc = p2p__pkg_verify_buffer(z, cut, &pol, NULL, &err);
        assert_true(rc < 0);
        free(err);
    }
    assert_int_equal(p2p__pkg_verify_buffer(z, n, &pol, NULL, &err), 0);
    /* and trailing bytes after the stream */
    uint8_t *more = p2p__xmalloc(n + 1);
    memcpy(more, z, n);
    more[n] = 0;
    assert_int_equal(p2p__pkg_verify_buffer(more, n + 1, &pol, NULL, &err), -EINVAL);
    free(err);
    free(more);
    free(z);
    free(good);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A zstd frame written by hand: the signed head as a raw block, then 10 GiB of
 * zeros as RLE blocks (4 bytes for each 128 KiB): ~320 KiB on disk. */
static void test_zstd_bomb(void **state)
{
    (void)state;
    char big_hash[65];
    sha_hex("", 0, big_hash);
    char h1[65];
    sha_hex(manifest_v1, strlen(manifest_v1), h1);
    /* a listed size under every cap, so only the ratio can stop it */
    char *pj = p2p__xasprintf("{\"format\":1,\"name\":\"hello\",\"version\":\"1.2.0\",\"type\":\"service\",\"files\":["
                              "{\"path\":\"big.bin\",\"size\":%llu,\"sha256\":\"%s\"},"
                              "{\"path\":\"manifest.json\",\"size\":%zu,\"sha256\":\"%s\"}]}",
                              200ull << 20, big_hash, strlen(manifest_v1), h1);
    rbuf t = {0};
    head(&t, pj, priv);
    tar_entry(&t, "files/big.bin", NULL, (size_t)(200ull << 20), '0', NULL);
    assert_true(t.n <= 128 * 1024);
    rbuf z = {0};
    static const uint8_t magic[] = {0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38}; /* no checksum, window 128 KiB */
    rb_add(&z, magic, sizeof magic);
    uint32_t bh = (uint32_t)t.n << 3; /* raw block */
    uint8_t hb[4] = {(uint8_t)bh, (uint8_t)(bh >> 8), (uint8_t)(bh >> 16), 0};
    rb_add(&z, hb, 3);
    rb_add(&z, t.b, t.n);
    const uint64_t blocks = (10ull << 30) / (128 * 1024);
    for (uint64_t i = 0; i < blocks; i++) {
        uint32_t rh = (128u * 1024u) << 3 | 1u << 1 | (i + 1 == blocks ? 1u : 0u);
        uint8_t rle[4] = {(uint8_t)rh, (uint8_t)(rh >> 8), (uint8_t)(rh >> 16), 0};
        rb_add(&z, rle, 4);
    }
    fprintf(stderr, "  bomb: %zu bytes expanding to 10 GiB\n", z.n);
    p2p_pkg_policy pol = strict();
    char *err = NULL;
    p2p_pkg_info info;
    double t0 = now_s();
    int rc = p2p__pkg_verify_buffer(z.b, z.n, &pol, &info, &err);
    double dt = now_s() - t0;
    fprintf(stderr, "  bomb refused in %.3f s: %s\n", dt, err ? err : "");
    assert_int_equal(rc, -EFBIG);
    assert_non_null(strstr(err, "bomb"));
    assert_true(dt < 5.0);
    free(err);

    /* the same bomb unpacked: nothing on disk */
    char *file = path_in("bomb.tar.zst"), *parent = path_in("bombout"), *target = path_in("bombout/hello");
    spit(file, z.b, z.n);
    p2p__mkdir_p(parent, 0755);
    assert_int_equal(p2p__pkg_extract(file, &pol, target, NULL, &err), -EFBIG);
    free(err);
    assert_int_equal(rmdir(parent), 0); /* empty */
    free(file);
    free(parent);
    free(target);
    free(pj);
    free(t.b);
    free(z.b);
}

/* A gzip bomb: 64 MiB of zeros in ~64 KiB (deflate's ratio is about 1000:1). */
static void test_gzip_bomb_and_caps(void **state)
{
    (void)state;
    char h1[65], hz[65];
    sha_hex(manifest_v1, strlen(manifest_v1), h1);
    size_t zeros = 64u << 20;
    uint8_t *zbuf = p2p__xcalloc(1, zeros);
    sha_hex(zbuf, zeros, hz);
    free(zbuf);
    char *pj = p2p__xasprintf("{\"format\":1,\"name\":\"hello\",\"version\":\"1.2.0\",\"type\":\"service\",\"files\":["
                              "{\"path\":\"big.bin\",\"size\":%zu,\"sha256\":\"%s\"},"
                              "{\"path\":\"manifest.json\",\"size\":%zu,\"sha256\":\"%s\"}]}",
                              zeros, hz, strlen(manifest_v1), h1);
    rbuf t = {0};
    head(&t, pj, priv);
    tar_entry(&t, "files/big.bin", NULL, zeros, '0', NULL);
    size_t hdr = t.n;
    t.b = p2p__xrealloc(t.b, hdr + zeros);
    memset(t.b + hdr, 0, zeros);
    t.n = hdr + zeros;
    tar_entry(&t, "files/manifest.json", manifest_v1, strlen(manifest_v1), '0', NULL);
    tar_end(&t);
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uLong cap = deflateBound(&zs, t.n);
    uint8_t *gz = p2p__xmalloc(cap);
    zs.next_in = t.b;
    zs.avail_in = (uInt)t.n;
    zs.next_out = gz;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t gzn = zs.total_out;
    deflateEnd(&zs);
    fprintf(stderr, "  gzip bomb: %zu bytes\n", gzn);
    p2p_pkg_policy pol = strict();
    char *err = NULL;
    assert_int_equal(p2p__pkg_verify_buffer(gz, gzn, &pol, NULL, &err), -EFBIG);
    assert_non_null(strstr(err, "ratio"));
    free(err);
    /* the caps from the listing, judged before any data: file size, total, count */
    p2p_pkg_limits lim = {.max_file_bytes = 1 << 20};
    pol.limits = &lim;
    assert_int_equal(p2p__pkg_verify_buffer(gz, gzn, &pol, NULL, &err), -EFBIG);
    assert_non_null(strstr(err, "file 'big.bin'"));
    free(err);
    lim = (p2p_pkg_limits){.max_total_bytes = 1 << 20};
    assert_int_equal(p2p__pkg_verify_buffer(gz, gzn, &pol, NULL, &err), -EFBIG);
    assert_non_null(strstr(err, "total"));
    free(err);
    lim = (p2p_pkg_limits){.max_files = 1};
    assert_int_equal(p2p__pkg_verify_buffer(gz, gzn, &pol, NULL, &err), -EFBIG);
    assert_non_null(strstr(err, "files"));
    free(err);
    /* with a ratio cap above deflate's, the bomb is just a big (valid) file */
    lim = (p2p_pkg_limits){.max_ratio = 100000};
    err = NULL;
    int rc = p2p__pkg_verify_buffer(gz, gzn, &pol, NULL, &err);
    if (rc)
        fprintf(stderr, "  unexpected: %s\n", err);
    assert_int_equal(rc, 0);
    free(gz);
    free(pj);
    free(t.b);
}

static void test_build_refuses_links(void **state)
{
    (void)state;
    put_file("linky/manifest.json", manifest_v1, 0644);
    char *l = path_in("linky/evil"), *dir = path_in("linky"), *out = path_in("linky.tar.zst"), *err = NULL;
    assert_int_equal(symlink("/etc/passwd", l), 0);
    assert_int_equal(p2p__pkg_build(dir, out, NULL, NULL, &err), -EINVAL);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(access(out, F_OK), -1);
    free(err);
    free(l);
    free(dir);
    free(out);
}

static void test_node_package(void **state)
{
    (void)state;
    put_file("node/p2p", "#!/bin/sh\necho fake\n", 0755);
    char *dir = path_in("node"), *out = path_in("node.tar.gz"), *err = NULL;
    p2p_pkg_build_opts o = {.compression = P2P_PKG_GZIP, .type = "node", .name = "p2p", .version = "0.2.0"};
    assert_int_equal(p2p__pkg_build(dir, out, &o, NULL, &err), 0);
    p2p_pkg_info info;
    p2p_pkg_policy pol = {.type = "node"};
    assert_int_equal(verify(out, &pol, &info, &err), 0);
    assert_string_equal(info.type, "node");
    assert_int_equal(info.compression, P2P_PKG_GZIP);
    p2p__pkg_info_free(&info);
    /* a node package without an executable p2p is refused when built */
    chmod(dir, 0755);
    char *p = path_in("node/p2p");
    chmod(p, 0644);
    assert_int_equal(p2p__pkg_build(dir, out, &o, NULL, &err), -EINVAL);
    free(err);
    free(p);
    free(dir);
    free(out);
}

static void test_version_floors(void **state)
{
    (void)state;
    char v[64], *err = NULL;
    const char *floors = "*=1.0.0,hello=1.2.0,pyhello=2.0.0-rc.1";
    assert_int_equal(p2p__pkg_floors_check(floors, &err), 0);
    assert_int_equal(p2p__pkg_floor_for(floors, "hello", v, sizeof v), 0);
    assert_string_equal(v, "1.2.0");
    assert_int_equal(p2p__pkg_floor_for(floors, "pyhello", v, sizeof v), 0);
    assert_string_equal(v, "2.0.0-rc.1");
    assert_int_equal(p2p__pkg_floor_for(floors, "other", v, sizeof v), 0);
    assert_string_equal(v, "1.0.0");
    assert_int_equal(p2p__pkg_floor_for("hello=1.2.0", "other", v, sizeof v), -ENOENT);
    assert_int_equal(p2p__pkg_floor_for("", "other", v, sizeof v), -ENOENT);
    assert_int_equal(p2p__pkg_floors_check("", &err), 0);
    const char *bad[] = {"hello", "hello=1.2", "Hello=1.2.0", "hello=1.2.0,", ",hello=1.2.0", "a=1.0.0,,b=1.0.0",
                         "=1.0.0", "../x=1.0.0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err = NULL;
        assert_int_equal(p2p__pkg_floors_check(bad[i], &err), -EINVAL);
        assert_non_null(err);
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_package),        cmocka_unit_test(test_unsigned_refused_when_required),
        cmocka_unit_test(test_tampered),            cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_downgrade),           cmocka_unit_test(test_paths_links_devices),
        cmocka_unit_test(test_duplicates_and_listing), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_zstd_bomb),           cmocka_unit_test(test_gzip_bomb_and_caps),
        cmocka_unit_test(test_build_refuses_links), cmocka_unit_test(test_node_package),
        cmocka_unit_test(test_version_floors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
