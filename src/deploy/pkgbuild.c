/*
 * pkgbuild.c — making a package from a folder (see package.h): the folder is
 * scanned (regular files only), hashed, listed in package.json, then written
 * while every file is hashed again, so a file changed during the build fails
 * it instead of producing a package whose listing lies.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "deploy/pkg_internal.h"
#include "deploy/tarstream.h"

/* ---- building ------------------------------------------------------------------------ */

typedef struct scan {
    p2p_pkg_file *files;
    size_t n, cap;
    uint64_t total;
    p2p_pkg_limits L;
} scan;

static int scan_dir(const char *root, const char *rel, scan *s, char **err)
{
    char *full = rel[0] ? p2p__xasprintf("%s/%s", root, rel) : p2p__xstrdup(root);
    DIR *d = opendir(full);
    int rc = 0;
    if (!d) {
        rc = p2p__fail(err, -errno, "%s: %s", full, strerror(errno));
        free(full);
        return rc;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *r = rel[0] ? p2p__xasprintf("%s/%s", rel, de->d_name) : p2p__xstrdup(de->d_name);
        char *p = p2p__xasprintf("%s/%s", root, r);
        struct stat st;
        if (lstat(p, &st) != 0)
            rc = p2p__fail(err, -errno, "%s: %s", p, strerror(errno));
        else if (strlen(r) > P2P_PKG_MAX_PATH || !p2p__ts_path_ok(r))
            rc = p2p__fail(err, -EINVAL, "%s: a name a package cannot hold (printable ASCII, no backslash)", p);
        else if (S_ISLNK(st.st_mode))
            rc = p2p__fail(err, -EINVAL, "%s is a symbolic link: packages hold regular files only", p);
        else if (S_ISDIR(st.st_mode))
            rc = scan_dir(root, r, s, err);
        else if (!S_ISREG(st.st_mode))
            rc = p2p__fail(err, -EINVAL, "%s is not a regular file: packages hold regular files only", p);
        else if (s->n >= s->L.max_files)
            rc = p2p__fail(err, -EFBIG, "more than %u files", s->L.max_files);
        else if ((uint64_t)st.st_size > s->L.max_file_bytes)
            rc = p2p__fail(err, -EFBIG, "%s is larger than %llu bytes", p, (unsigned long long)s->L.max_file_bytes);
        else if ((s->total += (uint64_t)st.st_size) > s->L.max_total_bytes)
            rc = p2p__fail(err, -EFBIG, "the files total more than %llu bytes",
                           (unsigned long long)s->L.max_total_bytes);
        else {
            if (s->n == s->cap) {
                s->cap = s->cap ? 2 * s->cap : 32;
                s->files = p2p__xrealloc(s->files, s->cap * sizeof(*s->files));
            }
            s->files[s->n++] = (p2p_pkg_file){.path = r, .size = (uint64_t)st.st_size,
                                               .executable = (st.st_mode & 0100) != 0};
            r = NULL;
        }
        free(r);
        free(p);
    }
    closedir(d);
    free(full);
    return rc;
}

/* sha256 of a file, streaming; also writes it to `w` when given. */
static int hash_file(const char *path, uint64_t size, uint8_t out[32], p2p_ts_writer *w, char **err)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return p2p__fail(err, -errno, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint8_t *buf = p2p__xmalloc(64 * 1024);
    uint64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, 64 * 1024);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = p2p__fail(err, -errno, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > size) {
            rc = p2p__fail(err, -EAGAIN, "%s changed while the package was built", path);
            break;
        }
        EVP_DigestUpdate(md, buf, (size_t)n);
        if (w && (rc = p2p__ts_write_data(w, buf, (size_t)n)) != 0) {
            rc = p2p__fail(err, rc, "cannot write the package: %s", strerror(-rc));
            break;
        }
    }
    if (rc == 0 && total != size)
        rc = p2p__fail(err, -EAGAIN, "%s changed while the package was built", path);
    unsigned hl = 0;
    EVP_DigestFinal_ex(md, out, &hl);
    EVP_MD_CTX_free(md);
    free(buf);
    close(fd);
    return rc;
}

static char *manifest_text(const char *name, const char *version, const char *type, const p2p_pkg_file *files,
                           size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char hex[65];
        for (int k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", files[i].sha256[k]);
        json_array_append_new(arr, json_pack("{s:s, s:I, s:s, s:b}", "path", files[i].path, "size",
                                             (json_int_t)files[i].size, "sha256", hex, "executable",
                                             files[i].executable));
    }
    json_t *doc = json_pack("{s:i, s:s, s:s, s:s, s:o}", "format", P2P_PKG_FORMAT, "name", name, "version", version,
                            "type", type, "files", arr);
    char *s = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(doc);
    return s;
}




int p2p__pkg_build(const char *dir, const char *out, const p2p_pkg_build_opts *opts, p2p_pkg_info *info, char **err)
{
    p2p_pkg_build_opts o = opts ? *opts : (p2p_pkg_build_opts){0};
    const char *type = o.type ? o.type : "service";
    scan s = {.L = p2p__pkg_effective_limits(o.limits)};
    char *name = NULL, *version = NULL, *text = NULL, *tmp = NULL;
    int rc;
    if (strcmp(type, "service") && strcmp(type, "node"))
        return p2p__fail(err, -EINVAL, "type must be service or node");
    if ((rc = scan_dir(dir, "", &s, err)) != 0)
        goto out;
    qsort(s.files, s.n, sizeof(*s.files), p2p__pkg_cmp_file);
    if (!strcmp(type, "service")) {
        char *mpath = p2p__xasprintf("%s/manifest.json", dir), *mtext = NULL, *why = NULL;
        size_t mlen = 0;
        p2p_manifest m = {0};
        rc = p2p__read_file(mpath, P2P_MANIFEST_MAX_BYTES, &mtext, &mlen);
        if (rc != 0)
            rc = p2p__fail(err, rc, "%s: %s", mpath, strerror(-rc));
        else if ((rc = p2p__manifest_parse(mtext, mlen, NULL, mpath, &m, &why)) != 0)
            rc = p2p__fail(err, rc, "%s", why ? why : "invalid manifest.json");
        else if (!m.version)
            rc = p2p__fail(err, -EINVAL, "%s: a packaged service needs a 'version'", mpath);
        else if ((o.name && strcmp(o.name, m.name)) || (o.version && strcmp(o.version, m.version)))
            rc = p2p__fail(err, -EINVAL, "%s: name and version come from manifest.json (%s %s)", mpath, m.name,
                           m.version);
        else {
            name = p2p__xstrdup(m.name);
            version = p2p__xstrdup(m.version);
        }
        p2p__manifest_free(&m);
        free(why);
        free(mtext);
        free(mpath);
        if (rc != 0)
            goto out;
    } else {
        p2p_semver sv;
        if (!o.name || !p2p__service_name_valid(o.name) || !o.version || p2p__semver_parse(o.version, &sv) != 0) {
            rc = p2p__fail(err, -EINVAL, "a node package needs a name and a semantic version");
            goto out;
        }
        name = p2p__xstrdup(o.name);
        version = p2p__xstrdup(o.version);
    }
    for (size_t i = 0; i < s.n; i++) {
        char *p = p2p__xasprintf("%s/%s", dir, s.files[i].path);
        rc = hash_file(p, s.files[i].size, s.files[i].sha256, NULL, err);
        free(p);
        if (rc != 0)
            goto out;
    }
    text = manifest_text(name, version, type, s.files, s.n);
    p2p_pkg_info check = {0};
    if ((rc = p2p__pkg_manifest_parse(text, strlen(text), &check, err)) != 0) /* what a reader would say */
        goto out;
    int fd = p2p__pkg_open_temp_beside(out, &tmp, err);
    if (fd < 0) {
        rc = fd;
        p2p__pkg_info_free(&check);
        goto out;
    }
    p2p_ts_writer *w = p2p__ts_writer_new(fd, o.compression == P2P_PKG_GZIP ? 2 : 1);
    rc = w ? p2p__pkg_write_text_entry(w, "package.json", text, strlen(text)) : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < s.n; i++) {
        char *p = p2p__xasprintf("%s/%s", dir, s.files[i].path), *ename = p2p__xasprintf("files/%s", s.files[i].path);
        uint8_t h[32];
        rc = p2p__ts_write_header(w, ename, s.files[i].size, s.files[i].executable ? 0755 : 0644);
        if (rc != 0)
            rc = p2p__fail(err, rc, "cannot write %s: %s", ename, strerror(-rc));
        else if ((rc = hash_file(p, s.files[i].size, h, w, err)) == 0 && memcmp(h, s.files[i].sha256, 32))
            rc = p2p__fail(err, -EAGAIN, "%s changed while the package was built", p);
        free(p);
        free(ename);
    }
    if (w) {
        int frc = p2p__ts_writer_finish(w);
        if (rc == 0 && frc != 0)
            rc = p2p__fail(err, frc, "cannot write the package: %s", strerror(-frc));
    } else if (rc != 0) {
        p2p__fail(err, rc, "cannot start the compressor");
    }
    rc = p2p__pkg_finish_temp(fd, tmp, out, rc, err);
    tmp = NULL;
    if (rc == 0 && info) {
        check.compression = o.compression == P2P_PKG_GZIP ? P2P_PKG_GZIP : P2P_PKG_ZSTD;
        *info = check;
    } else {
        p2p__pkg_info_free(&check);
    }
out:
    for (size_t i = 0; i < s.n; i++)
        free(s.files[i].path);
    free(s.files);
    free(name);
    free(version);
    free(text);
    return rc;
}

