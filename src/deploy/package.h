/*
 * package.h — service and node packages: one file, a ustar archive compressed
 * with zstd (.tar.zst) or gzip (.tar.gz), checked before anything is written.
 *
 * Layout of the archive, entry by entry, in this order:
 *
 *   package.json   the package manifest (at most P2P_PKG_MAX_MANIFEST bytes):
 *                    {"format": 1,
 *                     "name": "hello",            a service name (manifest.h rules)
 *                     "version": "1.2.0",         semantic version
 *                     "type": "service" | "node",
 *                     "files": [{"path": "manifest.json", "size": 211,
 *                                "sha256": "<64 lowercase hex>",
 *                                "executable": false}, ...]}
 *                  files sorted by path (byte order), unique; unknown keys refused.
 *                  A service package holds manifest.json whose name and version
 *                  are the package's; a node package holds an executable "p2p".
 *   package.sig    optional: {"alg": "ed25519", "key_id": "<16 hex>",
 *                  "signature": "<base64 of 64 bytes>"}, the Ed25519 signature of
 *                  P2P_PKG_SIG_CONTEXT followed by the exact bytes of package.json.
 *                  key_id = the first 8 bytes of sha256(raw public key), in hex.
 *   files/<path>   one regular file per listed path, in the listed order.
 *   two zero blocks, then only zero padding to the end of the stream.
 *
 * Because the signature covers package.json and package.json holds the size
 * and sha256 of every file, one signature covers the whole service folder.
 *
 * The reader is strict on purpose (a general tar library accepts far more
 * than we need, and everything it accepts must be audited): POSIX ustar
 * headers with a valid checksum, regular files only (no links, devices, fifos,
 * directories, pax or GNU extensions), octal sizes, path components made of
 * printable ASCII without backslash, never empty, "." or "..", never absolute.
 * Every size is known from a header before its bytes are read, so the caps
 * (file count, file size, total size) apply before the data is decompressed,
 * and the compression ratio is checked while decompressing: a bomb is refused
 * after at most P2P_PKG_RATIO_GRACE bytes plus one buffer of output.
 *
 * Extraction verifies the whole archive first (nothing written), then unpacks
 * it a second time into a fresh temporary folder beside the target, checking
 * every hash again, and renames that folder to the target: the target appears
 * complete or not at all. Errors: 0 or a negative errno; *err gets a heap
 * message (free it) naming what is wrong.
 */
#ifndef P2P_DEPLOY_PACKAGE_H
#define P2P_DEPLOY_PACKAGE_H

#include <stddef.h>
#include <stdint.h>

#include "services/manifest.h"

#define P2P_PKG_FORMAT 1
#define P2P_PKG_MAX_MANIFEST (1024 * 1024)
#define P2P_PKG_MAX_SIG 4096
#define P2P_PKG_MAX_PATH 240 /* bytes in a file's path inside the folder */
#define P2P_PKG_SIG_CONTEXT "p2pcore-package-v1\n"
#define P2P_PKG_KEY_ID_LEN 16 /* hex characters */
#define P2P_PKG_RATIO_GRACE (1024 * 1024) /* output before the ratio is judged */

/* Defaults of the caps (p2p_pkg_limits with zero fields). */
#define P2P_PKG_DEFAULT_MAX_FILES 1000
#define P2P_PKG_DEFAULT_MAX_FILE_BYTES (256ull << 20)
#define P2P_PKG_DEFAULT_MAX_TOTAL_BYTES (512ull << 20)
#define P2P_PKG_DEFAULT_MAX_RATIO 200

typedef enum { P2P_PKG_ZSTD = 1, P2P_PKG_GZIP = 2 } p2p_pkg_compression;

typedef struct p2p_pkg_limits {
    uint32_t max_files;       /* files in the folder */
    uint64_t max_file_bytes;  /* one file */
    uint64_t max_total_bytes; /* all files */
    uint32_t max_ratio;       /* decompressed bytes per compressed byte */
} p2p_pkg_limits;

typedef struct p2p_pkg_file {
    char *path; /* relative, '/'-separated */
    uint64_t size;
    uint8_t sha256[32];
    int executable;
} p2p_pkg_file;

typedef enum {
    P2P_PKG_SIG_NONE = 0,     /* no package.sig */
    P2P_PKG_SIG_UNCHECKED,    /* signed, but no key was given to check it */
    P2P_PKG_SIG_UNKNOWN_KEY,  /* signed by a key that is not trusted */
    P2P_PKG_SIG_VALID,        /* signed by a trusted key, signature checked */
} p2p_pkg_sig_status;

typedef struct p2p_pkg_info {
    char *name, *version, *type; /* type: "service" or "node" */
    p2p_semver semver;
    p2p_pkg_file *files;
    size_t n_files;
    uint64_t total_bytes;           /* sum of the file sizes */
    char *manifest;                 /* package.json as it is in the archive */
    size_t manifest_len;
    p2p_pkg_sig_status sig;
    char key_id[P2P_PKG_KEY_ID_LEN + 1]; /* "" when unsigned */
    uint8_t signature[64];
    p2p_pkg_compression compression;
    uint64_t compressed_bytes, decompressed_bytes; /* what the reader consumed and produced */
} p2p_pkg_info;

/* What a reader demands beyond the format. */
typedef struct p2p_pkg_policy {
    const p2p_pkg_limits *limits; /* NULL = defaults */
    /* Trusted Ed25519 public keys, raw 32 bytes each. With require_signature,
     * a package not signed by one of them is refused before any file is read. */
    const uint8_t (*keys)[32];
    size_t n_keys;
    int require_signature;
    const char *min_version; /* refuse versions below this semver (NULL = none) */
    const char *floors;      /* and below the package's floor in "name=1.2.0,*=1.0.0" (NULL = none) */
    const char *type;        /* "service" / "node" / NULL = either */
    const char *name;        /* refuse another name (NULL = any) */
} p2p_pkg_policy;

void p2p__pkg_info_free(p2p_pkg_info *info);

/* ---- reading ---- */

/* Reads and checks the whole package in `buf` (no I/O): the format, the caps,
 * the listing, every hash, and the policy. 0 with *info filled (free with
 * p2p__pkg_info_free; pass NULL to discard it), or -EINVAL (malformed),
 * -EFBIG (a cap), -EBADMSG (a hash or signature does not match), -EPERM
 * (unsigned or untrusted key when required; a version below the floor; wrong
 * type or name). */
int p2p__pkg_verify_buffer(const uint8_t *buf, size_t len, const p2p_pkg_policy *pol, p2p_pkg_info *info,
                           char **err);
/* The same from a file (read in streaming, never held whole in memory). */
int p2p__pkg_verify_file(const char *path, const p2p_pkg_policy *pol, p2p_pkg_info *info, char **err);

/* Verifies `path` under `pol`, then unpacks its folder to `target`, which must
 * not exist (-EEXIST); its parent must. See the header comment for how. */
int p2p__pkg_extract(const char *path, const p2p_pkg_policy *pol, const char *target, p2p_pkg_info *info,
                     char **err);

/* Removes a folder tree without following links (a failed or replaced unpack). */
void p2p__pkg_remove_tree(const char *path);

/* ---- writing ---- */

typedef struct p2p_pkg_build_opts {
    p2p_pkg_compression compression; /* 0 = zstd */
    const char *type;                /* "service" (default: read manifest.json) or "node" */
    const char *name, *version;      /* node packages: required; service packages: from manifest.json */
    const p2p_pkg_limits *limits;
} p2p_pkg_build_opts;

/* Packs the folder `dir` into `out` (written to a temporary file beside it,
 * then renamed). Refuses symlinks, special files, names the reader would
 * refuse, and a service folder whose manifest.json does not parse. The
 * package is unsigned. On success *info (optional) describes it. */
int p2p__pkg_build(const char *dir, const char *out, const p2p_pkg_build_opts *opts, p2p_pkg_info *info,
                   char **err);

/* Writes `out` as `in` with package.sig set to `sig_json` (replacing one that
 * is there). `in` is verified as a package first (hashes, caps; no key). */
int p2p__pkg_attach_signature(const char *in, const char *out, const char *sig_json, char **err);

/* ---- signatures ---- */

/* Parses package.json text (strict). 0 and *info's name, version, type, files,
 * manifest filled, or -EINVAL with *err. */
int p2p__pkg_manifest_parse(const char *text, size_t len, p2p_pkg_info *info, char **err);

/* The package.sig document for `manifest` signed with an Ed25519 private key
 * (PEM). 0 with *sig_json (heap, free it), or -EINVAL. */
int p2p__pkg_sign_manifest(const char *priv_pem, const char *manifest, size_t len, char **sig_json, char **err);

/* A new Ed25519 private key as PEM (heap; wipe and free with p2p__pkg_secret_free). */
int p2p__pkg_keygen(char **priv_pem);
void p2p__pkg_secret_free(char *s);

/* The public key of a private PEM key, as PEM (heap). */
int p2p__pkg_public_pem(const char *priv_pem, char **pub_pem);

/* The raw 32 bytes of an Ed25519 public key in PEM. 0 or -EINVAL. */
int p2p__pkg_pubkey_raw(const char *pub_pem, uint8_t raw[32]);

/* The key id of a raw public key ("" + 16 hex + NUL). */
void p2p__pkg_key_id(const uint8_t raw[32], char out[P2P_PKG_KEY_ID_LEN + 1]);

const char *p2p__pkg_sig_status_name(p2p_pkg_sig_status s);

/* ---- version floors ("name=1.2.0,other=2.0.0,*=1.0.0") ---- */

/* 0 when `floors` is well formed (possibly empty), else -EINVAL with *err. */
int p2p__pkg_floors_check(const char *floors, char **err);
/* The floor for package `name` (its own entry, else "*") into `out`; 0, or
 * -ENOENT when there is none, -EINVAL when `floors` is malformed. */
int p2p__pkg_floor_for(const char *floors, const char *name, char *out, size_t n);

#endif
