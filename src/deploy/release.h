/*
 * release.h — the cluster release key and the "deploy" built-in service's
 * signing methods (see release.c).
 *
 *   deploy/sign         admin only, coordinator: {package: "<package.json text>"}
 *                       -> {signature: "<package.sig text>", key_id, public_key,
 *                       name, version}. The private key never leaves the vault:
 *                       the client sends the listing (which holds every file's
 *                       sha256) and gets back the signature to put in the file.
 *   deploy/release_key  read-only: {alg, key_id, public_key} of the key this node
 *                       trusts (the coordinator: its own; a worker: the pinned
 *                       release_public_key_file), public_key null when none yet.
 *
 * The key is Ed25519, made on the thread pool the first time a package is
 * signed and saved to the coordinator's vault (keys/release_signing_key, with
 * data/release_public_key) before it signs anything.
 */
#ifndef P2P_DEPLOY_RELEASE_H
#define P2P_DEPLOY_RELEASE_H

#include <stdint.h>

#include "core/ctx.h"

/* Adds the "deploy" component (needs "security" and the vault). */
int p2p__release_register(p2p_ctx *ctx);

/* The raw public key this node trusts for packages. 0, or -ENOENT. */
int p2p__release_trusted_key(p2p_ctx *ctx, uint8_t out[32]);

/* A worker learns the coordinator's release key (PEM) once and keeps it in
 * its vault. 0 when it is the key this node trusts or the first one it
 * learns; -EPERM (with *err) when this node already trusts another key: a
 * coordinator cannot swap the key nodes trust (pin it to change it). */
int p2p__release_learn_key(p2p_ctx *ctx, const char *pub_pem, char **err);

#endif
