/*
 * pkg_internal.h — what package.c, pkgsign.c and pkgbuild.c share; not for
 * other modules (they use package.h).
 */
#ifndef P2P_DEPLOY_PKG_INTERNAL_H
#define P2P_DEPLOY_PKG_INTERNAL_H

#include <jansson.h>

#include "deploy/package.h"
#include "deploy/tarstream.h"

/* `l` with its zero fields replaced by the defaults. */
p2p_pkg_limits p2p__pkg_effective_limits(const p2p_pkg_limits *l);
/* qsort/bsearch order of p2p_pkg_file by path. */
int p2p__pkg_cmp_file(const void *a, const void *b);
/* 0 when every key of `o` is in the NULL-terminated `allowed`, else -1 with *bad. */
int p2p__pkg_only_keys(json_t *o, const char *const *allowed, const char **bad);

/* 0 when `sig` (64 bytes) is `pub`'s signature of P2P_PKG_SIG_CONTEXT + manifest. */
int p2p__pkg_ed25519_verify(const uint8_t pub[32], const uint8_t sig[64], const char *manifest, size_t len);
/* Parses package.sig into info->key_id and info->signature. 0 or -EINVAL. */
int p2p__pkg_sig_parse(const char *text, size_t len, p2p_pkg_info *info, char **err);

/* A text entry (package.json, package.sig) on a writer. */
int p2p__pkg_write_text_entry(p2p_ts_writer *w, const char *name, const char *text, size_t len);
/* A new temporary file beside `out` (*tmp: its heap path); the fd or -errno. */
int p2p__pkg_open_temp_beside(const char *out, char **tmp, char **err);
/* fsync, close, rename over `out` when rc is 0, else unlink; frees tmp. */
int p2p__pkg_finish_temp(int fd, char *tmp, const char *out, int rc, char **err);

#endif
