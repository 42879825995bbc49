/*
 * store.h — update_server: the coordinator's content-addressed package store
 * (POST /deploy/packages, GET /deploy/packages/<sha256>, deploy/packages).
 */
#ifndef P2P_DEPLOY_STORE_H
#define P2P_DEPLOY_STORE_H

#include "core/ctx.h"

/* Adds the "update_server" component (active on the coordinator only). */
int p2p__store_register(p2p_ctx *ctx);

/* The stored file of package `sha256` (heap path; it may not exist), or NULL
 * on a node without a store or a malformed id. */
char *p2p__store_path(p2p_ctx *ctx, const char *sha256);

/* The store's entry of package `sha256` ({sha256, name, version, type, ...},
 * a new reference), or NULL when it is not stored. */
json_t *p2p__store_package(p2p_ctx *ctx, const char *sha256);

/* 1 when `s` is 64 lowercase hex digits (a package id). */
int p2p__store_sha_ok(const char *s);

#endif
