/*
 * package.c — reading, checking, unpacking and re-signing packages (format
 * and rules in package.h; building in pkgbuild.c, keys and signatures in
 * pkgsign.c).
 *
 * One routine, walk(), reads a package from front to back and applies every
 * rule; what differs between inspecting, unpacking and re-signing is only
 * what happens to the bytes it has checked (a `sink`). The order of the
 * archive is what makes streaming safe: package.json and its signature come
 * first, so the signature, the caps and the version floor are judged before
 * a single file byte is decompressed, and each file's size is known from the
 * listing before its data is read.
 */
#define _GNU_SOURCE /* nftw */
#include "deploy/package.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "deploy/pkg_internal.h"
#include "deploy/tarstream.h"

static const p2p_pkg_limits default_limits = {P2P_PKG_DEFAULT_MAX_FILES, P2P_PKG_DEFAULT_MAX_FILE_BYTES,
                                              P2P_PKG_DEFAULT_MAX_TOTAL_BYTES, P2P_PKG_DEFAULT_MAX_RATIO};

p2p_pkg_limits p2p__pkg_effective_limits(const p2p_pkg_limits *l)
{
    p2p_pkg_limits o = default_limits;
    if (l) {
        if (l->max_files)
            o.max_files = l->max_files;
        if (l->max_file_bytes)
            o.max_file_bytes = l->max_file_bytes;
        if (l->max_total_bytes)
            o.max_total_bytes = l->max_total_bytes;
        if (l->max_ratio)
            o.max_ratio = l->max_ratio;
    }
    return o;
}

void p2p__pkg_info_free(p2p_pkg_info *info)
{
    if (!info)
        return;
    free(info->name);
    free(info->version);
    free(info->type);
    for (size_t i = 0; i < info->n_files; i++)
        free(info->files[i].path);
    free(info->files);
    free(info->manifest);
    memset(info, 0, sizeof(*info));
}

const char *p2p__pkg_sig_status_name(p2p_pkg_sig_status s)
{
    switch (s) {
    case P2P_PKG_SIG_NONE: return "unsigned";
    case P2P_PKG_SIG_UNCHECKED: return "signed (not checked: no key given)";
    case P2P_PKG_SIG_UNKNOWN_KEY: return "signed by an untrusted key";
    case P2P_PKG_SIG_VALID: return "valid";
    }
    return "?";
}

/* ---- package.json ------------------------------------------------------------ */

static int hex_decode(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return 0;
}

int p2p__pkg_cmp_file(const void *a, const void *b)
{
    return strcmp(((const p2p_pkg_file *)a)->path, ((const p2p_pkg_file *)b)->path);
}

static const p2p_pkg_file *find_file(const p2p_pkg_info *info, const char *path)
{
    p2p_pkg_file key = {.path = (char *)path};
    return bsearch(&key, info->files, info->n_files, sizeof key, p2p__pkg_cmp_file);
}

int p2p__pkg_only_keys(json_t *o, const char *const *allowed, const char **bad)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            ok |= !strcmp(k, allowed[i]);
        if (!ok) {
            *bad = k;
            return -1;
        }
    }
    return 0;
}

int p2p__pkg_manifest_parse(const char *text, size_t len, p2p_pkg_info *out, char **err)
{
    static const char *const top_keys[] = {"format", "name", "version", "type", "files", NULL};
    static const char *const file_keys[] = {"path", "size", "sha256", "executable", NULL};
    if (len > P2P_PKG_MAX_MANIFEST)
        return p2p__fail(err, -EFBIG, "package.json: larger than %d bytes", P2P_PKG_MAX_MANIFEST);
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return p2p__fail(err, -EINVAL, "package.json: not JSON (%s, line %d)", je.text, je.line);
    p2p_pkg_info info = {0};
    int rc = -EINVAL;
    const char *bad = NULL;
    json_t *fmt = json_object_get(doc, "format"), *files = json_object_get(doc, "files");
    const char *name = json_string_value(json_object_get(doc, "name"));
    const char *version = json_string_value(json_object_get(doc, "version"));
    const char *type = json_string_value(json_object_get(doc, "type"));
    if (!json_is_object(doc)) {
        p2p__fail(err, rc, "package.json: not an object");
        goto out;
    }
    if (p2p__pkg_only_keys(doc, top_keys, &bad) != 0) {
        p2p__fail(err, rc, "package.json: unknown key '%.64s'", bad);
        goto out;
    }
    if (!json_is_integer(fmt) || json_integer_value(fmt) != P2P_PKG_FORMAT) {
        p2p__fail(err, rc, "package.json: 'format' must be %d", P2P_PKG_FORMAT);
        goto out;
    }
    if (!name || !p2p__service_name_valid(name)) {
        p2p__fail(err, rc, "package.json: 'name' must be a service name ([a-z0-9][a-z0-9_-]{0,62})");
        goto out;
    }
    if (!version || p2p__semver_parse(version, &info.semver) != 0) {
        p2p__fail(err, rc, "package.json: 'version' must be a semantic version (1.2.3)");
        goto out;
    }
    if (!type || (strcmp(type, "service") && strcmp(type, "node"))) {
        p2p__fail(err, rc, "package.json: 'type' must be \"service\" or \"node\"");
        goto out;
    }
    if (!json_is_array(files)) {
        p2p__fail(err, rc, "package.json: 'files' must be an array");
        goto out;
    }
    size_t n = json_array_size(files);
    if (n > 1000000) {
        p2p__fail(err, -EFBIG, "package.json: too many files");
        goto out;
    }
    info.files = p2p__xcalloc(n ? n : 1, sizeof(*info.files));
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_array_get(files, i);
        const char *path = json_string_value(json_object_get(f, "path"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_t *size = json_object_get(f, "size"), *ex = json_object_get(f, "executable");
        if (!json_is_object(f) || p2p__pkg_only_keys(f, file_keys, &bad) != 0) {
            p2p__fail(err, rc, "package.json: files[%zu]: not an object or an unknown key", i);
            goto out;
        }
        if (!path || strlen(path) > P2P_PKG_MAX_PATH || !p2p__ts_path_ok(path)) {
            p2p__fail(err, rc,
                      "package.json: files[%zu]: bad path (relative, at most %d printable ASCII bytes, no "
                      "backslash, no empty, '.' or '..' component)",
                      i, P2P_PKG_MAX_PATH);
            goto out;
        }
        if (!json_is_integer(size) || json_integer_value(size) < 0) {
            p2p__fail(err, rc, "package.json: files[%zu] '%s': 'size' must be a non-negative integer", i, path);
            goto out;
        }
        if (!sha || hex_decode(sha, info.files[i].sha256, 32) != 0) {
            p2p__fail(err, rc, "package.json: files[%zu] '%s': 'sha256' must be 64 lowercase hex digits", i, path);
            goto out;
        }
        if (ex && !json_is_boolean(ex)) {
            p2p__fail(err, rc, "package.json: files[%zu] '%s': 'executable' must be a boolean", i, path);
            goto out;
        }
        if (i > 0 && strcmp(info.files[i - 1].path, path) >= 0) {
            p2p__fail(err, rc, "package.json: files must be sorted by path and unique ('%s' after '%s')", path,
                      info.files[i - 1].path);
            goto out;
        }
        info.files[i].path = p2p__xstrdup(path);
        info.files[i].size = (uint64_t)json_integer_value(size);
        info.files[i].executable = json_is_true(ex);
        info.n_files = i + 1;
        info.total_bytes += info.files[i].size;
    }
    /* A file may not also be a folder of another ("a" and "a/b"). */
    for (size_t i = 0; i < info.n_files; i++) {
        char buf[P2P_PKG_MAX_PATH + 1];
        snprintf(buf, sizeof buf, "%s", info.files[i].path);
        for (char *s = strchr(buf, '/'); s; s = strchr(s + 1, '/')) {
            *s = '\0';
            if (find_file(&info, buf)) {
                p2p__fail(err, rc, "package.json: '%s' is a file and a folder of '%s'", buf, info.files[i].path);
                goto out;
            }
            *s = '/';
        }
    }
    if (!strcmp(type, "service") && !find_file(&info, "manifest.json")) {
        p2p__fail(err, rc, "package.json: a service package must hold manifest.json");
        goto out;
    }
    if (!strcmp(type, "node")) {
        const p2p_pkg_file *b = find_file(&info, "p2p");
        if (!b || !b->executable) {
            p2p__fail(err, rc, "package.json: a node package must hold an executable 'p2p'");
            goto out;
        }
    }
    info.name = p2p__xstrdup(name);
    info.version = p2p__xstrdup(version);
    info.type = p2p__xstrdup(type);
    info.manifest = p2p__xmalloc(len + 1);
    memcpy(info.manifest, text, len);
    info.manifest[len] = '\0';
    info.manifest_len = len;
    *out = info;
    memset(&info, 0, sizeof info);
    rc = 0;
out:
    p2p__pkg_info_free(&info);
    json_decref(doc);
    return rc;
}

/* ---- the walk ---------------------------------------------------------------------- */

/* What happens to checked bytes. Every callback may be NULL. */
typedef struct sink {
    /* package.json (and package.sig, NULL when absent) have been checked. */
    int (*head)(void *arg, const p2p_pkg_info *info, const char *sig, size_t sig_len, char **err);
    int (*file_begin)(void *arg, const p2p_pkg_file *f, char **err);
    int (*file_data)(void *arg, const uint8_t *p, size_t n, char **err);
    /* The file's hash matched. */
    int (*file_end)(void *arg, const p2p_pkg_file *f, char **err);
    void *arg;
} sink;

static int read_entry_all(p2p_ts_reader *r, uint64_t size, char **buf, char **err)
{
    char *b = p2p__xmalloc((size_t)size + 1);
    size_t got = 0;
    while (got < size) {
        long n = p2p__ts_read_data(r, (uint8_t *)b + got, (size_t)size - got, err);
        if (n <= 0) {
            free(b);
            return n < 0 ? (int)n : p2p__fail(err, -EBADMSG, "truncated package");
        }
        got += (size_t)n;
    }
    b[size] = '\0';
    *buf = b;
    return 0;
}

static int check_policy_head(const p2p_pkg_info *info, const p2p_pkg_policy *pol, const p2p_pkg_limits *L, char **err)
{
    if (info->n_files > L->max_files)
        return p2p__fail(err, -EFBIG, "the package holds %zu files; at most %u are allowed", info->n_files,
                         L->max_files);
    for (size_t i = 0; i < info->n_files; i++)
        if (info->files[i].size > L->max_file_bytes)
            return p2p__fail(err, -EFBIG, "file '%s' is %llu bytes; at most %llu are allowed", info->files[i].path,
                             (unsigned long long)info->files[i].size, (unsigned long long)L->max_file_bytes);
    if (info->total_bytes > L->max_total_bytes)
        return p2p__fail(err, -EFBIG, "the files total %llu bytes; at most %llu are allowed",
                         (unsigned long long)info->total_bytes, (unsigned long long)L->max_total_bytes);
    if (pol && pol->type && strcmp(pol->type, info->type))
        return p2p__fail(err, -EPERM, "a %s package, where a %s package is expected", info->type, pol->type);
    if (pol && pol->name && strcmp(pol->name, info->name))
        return p2p__fail(err, -EPERM, "package '%s', where '%s' is expected", info->name, pol->name);
    if (pol && pol->min_version && pol->min_version[0]) {
        p2p_semver floor;
        if (p2p__semver_parse(pol->min_version, &floor) != 0)
            return p2p__fail(err, -EINVAL, "the version floor '%s' is not a semantic version", pol->min_version);
        if (p2p__semver_cmp(&info->semver, &floor) < 0)
            return p2p__fail(err, -EPERM, "downgrade refused: %s %s is below the version floor %s", info->name,
                             info->version, pol->min_version);
    }
    char fl[80];
    if (pol && pol->floors && pol->floors[0] && p2p__pkg_floor_for(pol->floors, info->name, fl, sizeof fl) == 0) {
        p2p_semver floor;
        if (p2p__semver_parse(fl, &floor) == 0 && p2p__semver_cmp(&info->semver, &floor) < 0)
            return p2p__fail(err, -EPERM, "downgrade refused: %s %s is below the version floor %s "
                             "(package_version_floors)", info->name, info->version, fl);
    }
    return 0;
}

static int check_signature(p2p_pkg_info *info, int has_sig, const p2p_pkg_policy *pol, char **err)
{
    if (!has_sig) {
        info->sig = P2P_PKG_SIG_NONE;
    } else if (!pol || pol->n_keys == 0) {
        info->sig = P2P_PKG_SIG_UNCHECKED;
    } else {
        info->sig = P2P_PKG_SIG_UNKNOWN_KEY;
        for (size_t i = 0; i < pol->n_keys; i++) {
            char kid[P2P_PKG_KEY_ID_LEN + 1];
            p2p__pkg_key_id(pol->keys[i], kid);
            if (strcmp(kid, info->key_id))
                continue;
            if (p2p__pkg_ed25519_verify(pol->keys[i], info->signature, info->manifest, info->manifest_len) != 0)
                return p2p__fail(err, -EBADMSG, "bad signature: package.json was changed or not signed by key %s",
                                 kid);
            info->sig = P2P_PKG_SIG_VALID;
            break;
        }
    }
    if (pol && pol->require_signature && info->sig != P2P_PKG_SIG_VALID)
        return p2p__fail(err, -EPERM, "refused: the package is %s%s%s", p2p__pkg_sig_status_name(info->sig),
                         info->sig == P2P_PKG_SIG_UNKNOWN_KEY ? " " : "",
                         info->sig == P2P_PKG_SIG_UNKNOWN_KEY ? info->key_id : "");
    return 0;
}

/* The service's own manifest.json must name the package's service and version. */
static int check_service_manifest(const p2p_pkg_info *info, const char *text, size_t len, char **err)
{
    p2p_manifest m = {0};
    char *why = NULL;
    if (p2p__manifest_parse(text, len, info->name, "manifest.json", &m, &why) != 0) {
        int rc = p2p__fail(err, -EINVAL, "%s", why ? why : "manifest.json: invalid");
        free(why);
        return rc;
    }
    int rc = 0;
    if (!m.version || strcmp(m.version, info->version))
        rc = p2p__fail(err, -EINVAL, "manifest.json: version '%s' differs from the package's %s",
                       m.version ? m.version : "(none)", info->version);
    p2p__manifest_free(&m);
    return rc;
}

static int walk(p2p_ts_reader *r, const p2p_pkg_policy *pol, p2p_pkg_info *out, const sink *sk, char **err)
{
    p2p_pkg_limits L = p2p__pkg_effective_limits(pol ? pol->limits : NULL);
    p2p_pkg_info info = {0};
    p2p_ts_entry e;
    char *text = NULL, *sig = NULL;
    size_t sig_len = 0;
    uint8_t *buf = p2p__xmalloc(64 * 1024);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = p2p__ts_next(r, &e, err);
    if (rc == 0)
        rc = p2p__fail(err, -EINVAL, "an empty archive: package.json is missing");
    if (rc < 0)
        goto out;
    if (strcmp(e.name, "package.json")) {
        rc = p2p__fail(err, -EINVAL, "the first entry must be package.json, not '%.64s'", e.name);
        goto out;
    }
    if (e.size > P2P_PKG_MAX_MANIFEST) {
        rc = p2p__fail(err, -EFBIG, "package.json is larger than %d bytes", P2P_PKG_MAX_MANIFEST);
        goto out;
    }
    if ((rc = read_entry_all(r, e.size, &text, err)) != 0 ||
        (rc = p2p__pkg_manifest_parse(text, (size_t)e.size, &info, err)) != 0)
        goto out;
    if ((rc = p2p__ts_next(r, &e, err)) < 0)
        goto out;
    int more = rc;
    if (more && !strcmp(e.name, "package.sig")) {
        if (e.size > P2P_PKG_MAX_SIG) {
            rc = p2p__fail(err, -EFBIG, "package.sig is larger than %d bytes", P2P_PKG_MAX_SIG);
            goto out;
        }
        if ((rc = read_entry_all(r, e.size, &sig, err)) != 0 || (rc = p2p__pkg_sig_parse(sig, (size_t)e.size, &info, err)) != 0)
            goto out;
        sig_len = (size_t)e.size;
        if ((rc = p2p__ts_next(r, &e, err)) < 0)
            goto out;
        more = rc;
    }
    /* Everything about the package as a whole is judged before any file is read. */
    if ((rc = check_signature(&info, sig != NULL, pol, err)) != 0 || (rc = check_policy_head(&info, pol, &L, err)) != 0)
        goto out;
    if (sk && sk->head && (rc = sk->head(sk->arg, &info, sig, sig_len, err)) != 0)
        goto out;
    for (size_t i = 0; i < info.n_files; i++) {
        const p2p_pkg_file *f = &info.files[i];
        rc = 0;
        if (!more) {
            rc = p2p__fail(err, -EBADMSG, "file '%s' is listed but missing from the archive", f->path);
            goto out;
        }
        const char *path = strncmp(e.name, "files/", 6) ? NULL : e.name + 6;
        const p2p_pkg_file *listed = path ? find_file(&info, path) : NULL;
        if (listed && listed < f) {
            rc = p2p__fail(err, -EINVAL, "duplicate entry '%s'", e.name);
            goto out;
        }
        if (!listed) {
            rc = p2p__fail(err, -EBADMSG, "entry '%.100s' is not listed in package.json", e.name);
            goto out;
        }
        if (listed != f) {
            rc = p2p__fail(err, -EINVAL, "entry '%s' is out of order (expected files/%s)", e.name, f->path);
            goto out;
        }
        if (e.size != f->size) {
            rc = p2p__fail(err, -EBADMSG, "file '%s' is %llu bytes in the archive but %llu in package.json", f->path,
                           (unsigned long long)e.size, (unsigned long long)f->size);
            goto out;
        }
        int keep = !strcmp(info.type, "service") && !strcmp(f->path, "manifest.json");
        if (keep && f->size > P2P_MANIFEST_MAX_BYTES) {
            rc = p2p__fail(err, -EFBIG, "manifest.json is larger than %d bytes", P2P_MANIFEST_MAX_BYTES);
            goto out;
        }
        char *kept = keep ? p2p__xmalloc((size_t)f->size + 1) : NULL;
        size_t kept_len = 0;
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        if (sk && sk->file_begin && (rc = sk->file_begin(sk->arg, f, err)) != 0) {
            free(kept);
            goto out;
        }
        for (;;) {
            long n = p2p__ts_read_data(r, buf, 64 * 1024, err);
            if (n < 0) {
                rc = (int)n;
                break;
            }
            if (n == 0)
                break;
            EVP_DigestUpdate(md, buf, (size_t)n);
            if (kept) {
                memcpy(kept + kept_len, buf, (size_t)n);
                kept_len += (size_t)n;
            }
            if (sk && sk->file_data && (rc = sk->file_data(sk->arg, buf, (size_t)n, err)) != 0)
                break;
        }
        uint8_t h[32];
        unsigned hl = 0;
        EVP_DigestFinal_ex(md, h, &hl);
        if (rc == 0 && memcmp(h, f->sha256, 32) != 0)
            rc = p2p__fail(err, -EBADMSG, "file '%s': sha256 does not match package.json (tampered)", f->path);
        if (rc == 0 && kept)
            rc = check_service_manifest(&info, kept, kept_len, err);
        free(kept);
        if (rc == 0 && sk && sk->file_end)
            rc = sk->file_end(sk->arg, f, err);
        if (rc != 0)
            goto out;
        if ((rc = p2p__ts_next(r, &e, err)) < 0)
            goto out;
        more = rc;
    }
    if (more) {
        const char *path = strncmp(e.name, "files/", 6) ? NULL : e.name + 6;
        if (path && find_file(&info, path))
            rc = p2p__fail(err, -EINVAL, "duplicate entry '%s'", e.name);
        else
            rc = p2p__fail(err, -EBADMSG, "entry '%.100s' is not listed in package.json", e.name);
        goto out;
    }
    info.compression = (p2p_pkg_compression)p2p__ts_compression(r);
    info.compressed_bytes = p2p__ts_in_bytes(r);
    info.decompressed_bytes = p2p__ts_out_bytes(r);
    if (out)
        *out = info;
    else
        p2p__pkg_info_free(&info);
    memset(&info, 0, sizeof info);
    rc = 0;
out:
    p2p__pkg_info_free(&info);
    EVP_MD_CTX_free(md);
    free(buf);
    free(text);
    free(sig);
    return rc;
}

static uint64_t max_stream(const p2p_pkg_policy *pol)
{
    p2p_pkg_limits L = p2p__pkg_effective_limits(pol ? pol->limits : NULL);
    /* files + their headers and padding + package.json + package.sig + end blocks and record padding */
    return L.max_total_bytes + (uint64_t)(L.max_files + 4) * 1024 + P2P_PKG_MAX_MANIFEST + P2P_PKG_MAX_SIG + 32768;
}

static uint32_t max_ratio(const p2p_pkg_policy *pol) { return p2p__pkg_effective_limits(pol ? pol->limits : NULL).max_ratio; }

int p2p__pkg_verify_buffer(const uint8_t *buf, size_t len, const p2p_pkg_policy *pol, p2p_pkg_info *info,
                           char **err)
{
    p2p_ts_reader *r = p2p__ts_reader_mem(buf, len, max_stream(pol), max_ratio(pol), P2P_PKG_RATIO_GRACE);
    int rc = walk(r, pol, info, NULL, err);
    p2p__ts_reader_free(r);
    return rc;
}

static int walk_file(const char *path, const p2p_pkg_policy *pol, p2p_pkg_info *info, const sink *sk, char **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return p2p__fail(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return p2p__fail(err, -EINVAL, "%s: not a regular file", path);
    }
    p2p_ts_reader *r = p2p__ts_reader_fd(fd, max_stream(pol), max_ratio(pol), P2P_PKG_RATIO_GRACE);
    int rc = walk(r, pol, info, sk, err);
    p2p__ts_reader_free(r);
    close(fd);
    return rc;
}

int p2p__pkg_verify_file(const char *path, const p2p_pkg_policy *pol, p2p_pkg_info *info, char **err)
{
    return walk_file(path, pol, info, NULL, err);
}

/* ---- unpacking ----------------------------------------------------------------------- */

typedef struct unpack {
    int root; /* the temporary folder */
    int fd;   /* the file being written */
} unpack;

/* Opens (creating) each folder of `path` under `root`, never following a link. */
static int open_parent(int root, const char *path, const char **base, char **err)
{
    char buf[P2P_PKG_MAX_PATH + 1];
    snprintf(buf, sizeof buf, "%s", path);
    int dir = dup(root);
    char *comp = buf;
    for (char *s; (s = strchr(comp, '/')) != NULL; comp = s + 1) {
        *s = '\0';
        if (mkdirat(dir, comp, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            close(dir);
            return p2p__fail(err, -e, "cannot create folder '%s': %s", buf, strerror(e));
        }
        int next = openat(dir, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        close(dir);
        if (next < 0)
            return p2p__fail(err, -e, "cannot open folder '%s': %s", buf, strerror(e));
        dir = next;
        *s = '/';
    }
    *base = path + (comp - buf);
    return dir;
}

static int unpack_begin(void *arg, const p2p_pkg_file *f, char **err)
{
    unpack *u = arg;
    const char *base = NULL;
    int dir = open_parent(u->root, f->path, &base, err);
    if (dir < 0)
        return dir;
    u->fd = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, f->executable ? 0755 : 0644);
    int e = errno;
    close(dir);
    if (u->fd < 0)
        return p2p__fail(err, -e, "cannot create '%s': %s", f->path, strerror(e));
    return 0;
}

static int unpack_data(void *arg, const uint8_t *p, size_t n, char **err)
{
    unpack *u = arg;
    while (n > 0) {
        ssize_t k = write(u->fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return p2p__fail(err, -errno, "write failed: %s", strerror(errno));
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int unpack_end(void *arg, const p2p_pkg_file *f, char **err)
{
    unpack *u = arg;
    int rc = fsync(u->fd) == 0 ? 0 : -errno;
    if (fchmod(u->fd, f->executable ? 0755 : 0644) != 0 && rc == 0) /* whatever the umask */
        rc = -errno;
    close(u->fd);
    u->fd = -1;
    return rc ? p2p__fail(err, rc, "cannot write '%s': %s", f->path, strerror(-rc)) : 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

void p2p__pkg_remove_tree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int p2p__pkg_extract(const char *path, const p2p_pkg_policy *pol, const char *target, p2p_pkg_info *info,
                     char **err)
{
    struct stat st;
    if (lstat(target, &st) == 0)
        return p2p__fail(err, -EEXIST, "%s already exists", target);
    /* Pass 1: the whole package, nothing written. */
    p2p_pkg_info first = {0};
    int rc = walk_file(path, pol, &first, NULL, err);
    if (rc != 0)
        return rc;
    char *tdup = p2p__xstrdup(target), *slash = strrchr(tdup, '/');
    const char *parent = slash ? (slash == tdup ? "/" : tdup) : ".", *base = slash ? slash + 1 : tdup;
    if (slash)
        *slash = '\0';
    char *tmp = p2p__xasprintf("%s/.%s.unpack-XXXXXX", parent, base);
    unpack u = {.root = -1, .fd = -1};
    if (!base[0]) {
        rc = p2p__fail(err, -EINVAL, "bad target folder '%s'", target);
        goto out;
    }
    if (!mkdtemp(tmp)) {
        rc = p2p__fail(err, -errno, "cannot create a folder beside %s: %s", target, strerror(errno));
        goto out;
    }
    u.root = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (u.root < 0) {
        rc = p2p__fail(err, -errno, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    /* Pass 2: the same checks again (the file may have changed since), writing. */
    sink sk = {NULL, unpack_begin, unpack_data, unpack_end, &u};
    p2p_pkg_info second = {0};
    rc = walk_file(path, pol, &second, &sk, err);
    if (rc == 0 && strcmp(first.manifest, second.manifest) != 0)
        rc = p2p__fail(err, -EBADMSG, "the package changed while it was unpacked");
    p2p__pkg_info_free(&second);
    if (rc != 0)
        goto fail;
    fsync(u.root);
    if (fchmod(u.root, 0755) != 0 || rename(tmp, target) != 0) {
        rc = p2p__fail(err, -errno, "cannot move the unpacked folder to %s: %s", target, strerror(errno));
        goto fail;
    }
    fsync_dir(parent);
    if (info) {
        *info = first;
        memset(&first, 0, sizeof first);
    }
    goto out;
fail:
    if (u.fd >= 0)
        close(u.fd);
    u.fd = -1;
    p2p__pkg_remove_tree(tmp);
out:
    if (u.root >= 0)
        close(u.root);
    p2p__pkg_info_free(&first);
    free(tmp);
    free(tdup);
    return rc;
}

/* ---- writing helpers (building and re-signing) ---- */

/* Writes the head entries (package.json, package.sig) to a fresh writer. */
int p2p__pkg_write_text_entry(p2p_ts_writer *w, const char *name, const char *text, size_t len)
{
    int rc = p2p__ts_write_header(w, name, len, 0644);
    return rc ? rc : p2p__ts_write_data(w, text, len);
}

int p2p__pkg_open_temp_beside(const char *out, char **tmp, char **err)
{
    *tmp = p2p__xasprintf("%s.tmp-XXXXXX", out);
    int fd = mkstemp(*tmp);
    if (fd < 0) {
        int e = errno;
        free(*tmp);
        *tmp = NULL;
        return p2p__fail(err, -e, "cannot create a file beside %s: %s", out, strerror(e));
    }
    fchmod(fd, 0644);
    return fd;
}

int p2p__pkg_finish_temp(int fd, char *tmp, const char *out, int rc, char **err)
{
    if (rc == 0 && fsync(fd) != 0)
        rc = p2p__fail(err, -errno, "%s: %s", tmp, strerror(errno));
    close(fd);
    if (rc == 0 && rename(tmp, out) != 0)
        rc = p2p__fail(err, -errno, "cannot rename to %s: %s", out, strerror(errno));
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    return rc;
}


/* ---- re-signing ------------------------------------------------------------------------ */

typedef struct resign {
    p2p_ts_writer *w;
    const char *sig;
} resign;

static int resign_head(void *arg, const p2p_pkg_info *info, const char *old, size_t old_len, char **err)
{
    resign *x = arg;
    (void)old;
    (void)old_len;
    int rc = p2p__pkg_write_text_entry(x->w, "package.json", info->manifest, info->manifest_len);
    if (rc == 0)
        rc = p2p__pkg_write_text_entry(x->w, "package.sig", x->sig, strlen(x->sig));
    return rc ? p2p__fail(err, rc, "cannot write the package: %s", strerror(-rc)) : 0;
}

static int resign_begin(void *arg, const p2p_pkg_file *f, char **err)
{
    resign *x = arg;
    char *name = p2p__xasprintf("files/%s", f->path);
    int rc = p2p__ts_write_header(x->w, name, f->size, f->executable ? 0755 : 0644);
    free(name);
    return rc ? p2p__fail(err, rc, "cannot write the package: %s", strerror(-rc)) : 0;
}

static int resign_data(void *arg, const uint8_t *p, size_t n, char **err)
{
    resign *x = arg;
    int rc = p2p__ts_write_data(x->w, p, n);
    return rc ? p2p__fail(err, rc, "cannot write the package: %s", strerror(-rc)) : 0;
}

int p2p__pkg_attach_signature(const char *in, const char *out, const char *sig_json, char **err)
{
    p2p_pkg_info tmpi = {0};
    int rc = p2p__pkg_sig_parse(sig_json, strlen(sig_json), &tmpi, err);
    if (rc != 0)
        return rc;
    p2p_pkg_info first = {0};
    if ((rc = walk_file(in, NULL, &first, NULL, err)) != 0)
        return rc;
    char *tmp = NULL;
    int fd = p2p__pkg_open_temp_beside(out, &tmp, err);
    if (fd < 0) {
        p2p__pkg_info_free(&first);
        return fd;
    }
    resign x = {p2p__ts_writer_new(fd, first.compression == P2P_PKG_GZIP ? 2 : 1), sig_json};
    sink sk = {resign_head, resign_begin, resign_data, NULL, &x};
    p2p_pkg_info second = {0};
    rc = x.w ? walk_file(in, NULL, &second, &sk, err) : p2p__fail(err, -ENOMEM, "cannot start the compressor");
    if (rc == 0 && strcmp(first.manifest, second.manifest) != 0)
        rc = p2p__fail(err, -EBADMSG, "%s changed while it was signed", in);
    if (x.w) {
        int frc = p2p__ts_writer_finish(x.w);
        if (rc == 0 && frc != 0)
            rc = p2p__fail(err, frc, "cannot write the package: %s", strerror(-frc));
    }
    p2p__pkg_info_free(&first);
    p2p__pkg_info_free(&second);
    return p2p__pkg_finish_temp(fd, tmp, out, rc, err);
}
