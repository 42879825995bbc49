/*
 * package_cmd.c — `p2p package`: build a service (or node) package from a
 * folder, inspect one, have the coordinator sign one, print the release key.
 *
 * build and inspect work offline. sign sends only package.json (the listing
 * with every file's sha256) to the coordinator's deploy/sign, which needs an
 * admin token; the signature that comes back is checked against the public
 * key that came with it (and against --key when given) before it is written
 * into the file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/util.h"
#include "deploy/package.h"
#include "p2p/p2p.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p2p package build DIR [-o FILE] [--gzip] [--type node --name NAME --version VERSION]\n"
            "       p2p package inspect FILE [--key PEMFILE | --fetch-key] [--min-version V] [--json]\n"
            "       p2p package sign FILE [-o OUT] [--key PEMFILE]\n"
            "       p2p package key [-o PEMFILE]\n"
            "\n"
            "A package is one file (.tar.zst, or .tar.gz with --gzip) holding a service folder\n"
            "(manifest.json, the module or program, assets) and package.json, which lists the\n"
            "size and sha256 of every file; a signature covers package.json, hence every file.\n"
            "\n"
            "  build DIR       packs the service folder DIR (name and version from its manifest.json;\n"
            "                  symbolic links and special files are refused). Default FILE:\n"
            "                  NAME-VERSION.tar.zst in the current folder. A node package (--type node)\n"
            "                  holds the p2p binary as DIR/p2p; it needs --name and --version.\n"
            "  inspect FILE    checks every rule a node applies (paths, links, sizes, compression\n"
            "                  ratio, every sha256) and shows the files and the signature. With --key\n"
            "                  (a PEM public key, e.g. from 'p2p package key') or --fetch-key (ask the\n"
            "                  node at --addr) the signature is verified, and the exit status is 1\n"
            "                  unless it is valid. --min-version refuses an older package, as a node\n"
            "                  with that version floor would.\n"
            "  sign FILE       has the coordinator sign FILE with the cluster release key (made on\n"
            "                  first use; it never leaves the coordinator's vault). Needs an admin\n"
            "                  token. Writes FILE again (or OUT) with the signature.\n"
            "  key             prints the cluster release public key (PEM), or writes it to PEMFILE:\n"
            "                  pin it on nodes with release_public_key_file.\n"
            "\n"
            "Connection (sign, key, inspect --fetch-key):\n"
            "  --addr HOST:PORT   the node to talk to (default $P2P_ADDR, else 127.0.0.1:8001)\n"
            "  --ca FILE          its CA certificate (default $P2P_CA)\n"
            "  --data-dir DIR     find the CA in DIR/certs/ca.crt (default $P2P_DATA_DIR)\n"
            "  --token JWT        bearer token (default $P2P_TOKEN); --token-file F reads it from F\n"
            "\n"
            "Exit status: 0 on success, 1 when a package is refused or a call fails, 2 on usage errors.\n");
}

typedef struct opts {
    p2p_cli_conn c;
    const char *action, *file, *out, *key, *type, *name, *version, *min_version;
    int gzip, fetch_key, json;
} opts;

static int parse_args(int argc, char **argv, opts *o)
{
    p2p__cli_conn_init(&o->c, "p2p package", 60);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--gzip")) {
            o->gzip = 1;
            continue;
        } else if (!strcmp(a, "--fetch-key")) {
            o->fetch_key = 1;
            continue;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
            continue;
        } else if (!strcmp(a, "--insecure")) {
            o->c.insecure = 1;
            continue;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            dst = &o->out;
        } else if (!strcmp(a, "--key")) {
            dst = &o->key;
        } else if (!strcmp(a, "--type")) {
            dst = &o->type;
        } else if (!strcmp(a, "--name")) {
            dst = &o->name;
        } else if (!strcmp(a, "--version")) {
            dst = &o->version;
        } else if (!strcmp(a, "--min-version")) {
            dst = &o->min_version;
        } else if ((dst = p2p__cli_conn_option(&o->c, a)) != NULL) {
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "p2p package: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (!o->action) {
            o->action = a;
            continue;
        } else if (!o->file) {
            o->file = a;
            continue;
        } else {
            fprintf(stderr, "p2p package: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "p2p package: %s needs a value\n", a);
            return 2;
        }
        *dst = argv[++i];
    }
    return -1;
}

static const char *comp_name(p2p_pkg_compression c) { return c == P2P_PKG_GZIP ? "gzip" : "zstd"; }

/* ---- build ---- */

static int cmd_build(opts *o)
{
    if (!o->file) {
        fprintf(stderr, "p2p package build: which folder? (p2p package build DIR)\n");
        return 2;
    }
    int node = o->type && !strcmp(o->type, "node");
    if (o->type && !node && strcmp(o->type, "service")) {
        fprintf(stderr, "p2p package build: --type is service or node\n");
        return 2;
    }
    if (node && (!o->name || !o->version)) {
        fprintf(stderr, "p2p package build: a node package needs --name and --version\n");
        return 2;
    }
    if (!node && (o->name || o->version)) {
        fprintf(stderr, "p2p package build: a service's name and version come from its manifest.json\n");
        return 2;
    }
    char *out = o->out ? p2p__xstrdup(o->out) : NULL, *err = NULL;
    if (!out) {
        char *mpath = p2p__xasprintf("%s/manifest.json", o->file), *text = NULL, *why = NULL;
        size_t len = 0;
        p2p_manifest m = {0};
        if (node)
            out = p2p__xasprintf("%s-%s.tar.%s", o->name, o->version, o->gzip ? "gz" : "zst");
        else if (p2p__read_file(mpath, P2P_MANIFEST_MAX_BYTES, &text, &len) == 0 &&
                 p2p__manifest_parse(text, len, NULL, mpath, &m, &why) == 0 && m.version)
            out = p2p__xasprintf("%s-%s.tar.%s", m.name, m.version, o->gzip ? "gz" : "zst");
        p2p__manifest_free(&m);
        free(why);
        free(text);
        free(mpath);
        if (!out)
            out = p2p__xstrdup("package.tar.zst"); /* the build below names the real problem */
    }
    p2p_pkg_build_opts bo = {.compression = o->gzip ? P2P_PKG_GZIP : P2P_PKG_ZSTD,
                             .type = node ? "node" : "service",
                             .name = o->name,
                             .version = o->version};
    p2p_pkg_info info = {0};
    int rc = p2p__pkg_build(o->file, out, &bo, &info, &err);
    if (rc != 0) {
        fprintf(stderr, "p2p package build: %s\n", err ? err : p2p_strerror(rc));
        free(err);
        free(out);
        return 1;
    }
    printf("%s: %s %s (%s), %zu files, %llu bytes, %s, unsigned\n", out, info.name, info.version, info.type,
           info.n_files, (unsigned long long)info.total_bytes, comp_name(info.compression));
    p2p__pkg_info_free(&info);
    free(out);
    return 0;
}

/* ---- keys ---- */

/* The release public key PEM from the node (heap), or NULL after printing why. */
static char *fetch_key(opts *o)
{
    json_t *res = NULL;
    if (p2p__cli_rpc(&o->c, NULL, "deploy/release_key", NULL, &res) != 0)
        return NULL;
    const char *pem = json_string_value(json_object_get(res, "public_key"));
    char *out = pem ? p2p__xstrdup(pem) : NULL;
    if (!out)
        fprintf(stderr, "%s: the cluster has no release key yet (it is made when the first package is signed)\n",
                o->c.prog);
    json_decref(res);
    return out;
}

static char *read_key_file(const char *prog, const char *path, uint8_t raw[32])
{
    char *pem = NULL;
    size_t len = 0;
    int r = p2p__read_file(path, 64 * 1024, &pem, &len);
    if (r != 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, p2p_strerror(r));
        return NULL;
    }
    if (p2p__pkg_pubkey_raw(pem, raw) != 0) {
        fprintf(stderr, "%s: %s: not an Ed25519 public key in PEM\n", prog, path);
        free(pem);
        return NULL;
    }
    return pem;
}

static int cmd_key(opts *o)
{
    o->c.prog = "p2p package key";
    char *pem = fetch_key(o);
    if (!pem)
        return 1;
    uint8_t raw[32];
    char kid[P2P_PKG_KEY_ID_LEN + 1];
    if (p2p__pkg_pubkey_raw(pem, raw) != 0) {
        fprintf(stderr, "p2p package key: the node sent a key that is not Ed25519\n");
        free(pem);
        return 1;
    }
    p2p__pkg_key_id(raw, kid);
    int rc = 0;
    if (o->out) {
        rc = p2p__write_file_atomic(o->out, pem, strlen(pem), 0644);
        if (rc != 0)
            fprintf(stderr, "p2p package key: %s: %s\n", o->out, p2p_strerror(rc));
        else
            printf("release key %s written to %s\n", kid, o->out);
    } else {
        fputs(pem, stdout);
    }
    free(pem);
    return rc ? 1 : 0;
}

/* ---- inspect ---- */

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int cmd_inspect(opts *o)
{
    o->c.prog = "p2p package inspect";
    if (!o->file) {
        fprintf(stderr, "p2p package inspect: which file? (p2p package inspect FILE)\n");
        return 2;
    }
    if (o->key && o->fetch_key) {
        fprintf(stderr, "p2p package inspect: --key or --fetch-key, not both\n");
        return 2;
    }
    uint8_t raw[32];
    char *pem = NULL;
    if (o->key && !(pem = read_key_file(o->c.prog, o->key, raw)))
        return 1;
    if (o->fetch_key && (!(pem = fetch_key(o)) || p2p__pkg_pubkey_raw(pem, raw) != 0)) {
        free(pem);
        return 1;
    }
    p2p_pkg_policy pol = {.min_version = o->min_version};
    if (pem) {
        pol.keys = (const uint8_t(*)[32])raw;
        pol.n_keys = 1;
        pol.require_signature = 1;
    }
    free(pem);
    p2p_pkg_info info = {0};
    char *err = NULL;
    int rc = p2p__pkg_verify_file(o->file, &pol, &info, &err);
    if (rc != 0) {
        if (o->json) {
            json_t *j = json_pack("{s:b, s:s}", "ok", 0, "error", err ? err : p2p_strerror(rc));
            char *s = json_dumps(j, JSON_INDENT(2));
            printf("%s\n", s);
            free(s);
            json_decref(j);
        }
        fprintf(stderr, "p2p package inspect: %s: refused: %s\n", o->file, err ? err : p2p_strerror(rc));
        free(err);
        return 1;
    }
    if (o->json) {
        json_t *files = json_array();
        for (size_t i = 0; i < info.n_files; i++) {
            char h[65];
            hex(info.files[i].sha256, 32, h);
            json_array_append_new(files, json_pack("{s:s, s:I, s:s, s:b}", "path", info.files[i].path, "size",
                                                   (json_int_t)info.files[i].size, "sha256", h, "executable",
                                                   info.files[i].executable));
        }
        json_t *j = json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:I, s:o}", "ok", 1, "name", info.name,
                              "version", info.version, "type", info.type, "compression", comp_name(info.compression),
                              "signature", info.sig == P2P_PKG_SIG_NONE        ? "none"
                                           : info.sig == P2P_PKG_SIG_VALID     ? "valid"
                                           : info.sig == P2P_PKG_SIG_UNCHECKED ? "unchecked"
                                                                               : "untrusted",
                              "key_id", info.key_id[0] ? info.key_id : NULL, "compressed_bytes",
                              (json_int_t)info.compressed_bytes, "total_bytes", (json_int_t)info.total_bytes,
                              "files", files);
        char *s = json_dumps(j, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        printf("package:     %s %s (%s)\n", info.name, info.version, info.type);
        printf("compression: %s, %llu bytes, %llu unpacked\n", comp_name(info.compression),
               (unsigned long long)info.compressed_bytes, (unsigned long long)info.decompressed_bytes);
        if (info.sig == P2P_PKG_SIG_NONE)
            printf("signature:   none (unsigned: nodes refuse it; p2p package sign %s)\n", o->file);
        else
            printf("signature:   %s, key %s\n", p2p__pkg_sig_status_name(info.sig), info.key_id);
        printf("files:       %zu, %llu bytes, every sha256 checked\n", info.n_files,
               (unsigned long long)info.total_bytes);
        for (size_t i = 0; i < info.n_files; i++) {
            char h[65];
            hex(info.files[i].sha256, 32, h);
            printf("  %s %10llu  %s  %s\n", info.files[i].executable ? "rwx" : "rw-",
                   (unsigned long long)info.files[i].size, h, info.files[i].path);
        }
    }
    p2p__pkg_info_free(&info);
    return 0;
}

/* ---- sign ---- */

int p2p__cli_package_sign(const p2p_cli_conn *c, const char *file, const char *out, const unsigned char *pinned)
{
    const char *prog = c->prog;
    p2p_pkg_info info = {0};
    char *err = NULL;
    int rc = p2p__pkg_verify_file(file, NULL, &info, &err);
    if (rc != 0) {
        fprintf(stderr, "%s: %s: refused: %s\n", prog, file, err ? err : p2p_strerror(rc));
        free(err);
        return 1;
    }
    json_t *params = json_pack("{s:s%}", "package", info.manifest, info.manifest_len), *res = NULL;
    rc = p2p__cli_rpc(c, NULL, "deploy/sign", params, &res);
    json_decref(params);
    if (rc != 0) {
        p2p__pkg_info_free(&info);
        return rc;
    }
    const char *sig = json_string_value(json_object_get(res, "signature"));
    const char *pub = json_string_value(json_object_get(res, "public_key"));
    uint8_t raw[32];
    if (!sig || !pub || p2p__pkg_pubkey_raw(pub, raw) != 0 || (pinned && memcmp(raw, pinned, 32) != 0)) {
        fprintf(stderr, "%s: the coordinator's answer is not a signature by %s\n", prog,
                pinned ? "the key in --key" : "an Ed25519 key");
        rc = 1;
        goto out;
    }
    if (!out)
        out = file;
    if ((rc = p2p__pkg_attach_signature(file, out, sig, &err)) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err ? err : p2p_strerror(rc));
        rc = 1;
        goto out;
    }
    /* What a node will check: the written file, under the key that signed it. */
    p2p_pkg_policy pol = {.keys = (const uint8_t(*)[32])raw, .n_keys = 1, .require_signature = 1};
    p2p_pkg_info check = {0};
    if ((rc = p2p__pkg_verify_file(out, &pol, &check, &err)) != 0) {
        fprintf(stderr, "%s: the signed file does not verify: %s\n", prog, err ? err : p2p_strerror(rc));
        rc = 1;
        goto out;
    }
    printf("%s: %s %s signed with release key %s\n", out, check.name, check.version, check.key_id);
    p2p__pkg_info_free(&check);
out:
    free(err);
    json_decref(res);
    p2p__pkg_info_free(&info);
    return rc;
}

static int cmd_sign(opts *o)
{
    o->c.prog = "p2p package sign";
    if (!o->file) {
        fprintf(stderr, "p2p package sign: which file? (p2p package sign FILE)\n");
        return 2;
    }
    uint8_t pinned[32];
    char *pinned_pem = NULL;
    if (o->key && !(pinned_pem = read_key_file(o->c.prog, o->key, pinned)))
        return 1;
    free(pinned_pem);
    return p2p__cli_package_sign(&o->c, o->file, o->out, o->key ? pinned : NULL);
}

int p2p__cmd_package(int argc, char **argv)
{
    opts o = {0};
    int r = parse_args(argc, argv, &o);
    if (r >= 0)
        return r;
    if (!o.action) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(o.action, "build"))
        return cmd_build(&o);
    if (!strcmp(o.action, "inspect"))
        return cmd_inspect(&o);
    if (!strcmp(o.action, "sign"))
        return cmd_sign(&o);
    if (!strcmp(o.action, "key")) {
        if (o.file) {
            fprintf(stderr, "p2p package key: takes no argument (see --help)\n");
            return 2;
        }
        return cmd_key(&o);
    }
    fprintf(stderr, "p2p package: unknown action '%s': build, inspect, sign or key\n", o.action);
    return 2;
}
