/*
 * assets.h — the dashboard's files, compiled into the binary at build time
 * (web/embed.mjs writes build/generated/web_assets.c from web/dashboard/ and
 * uPlot's dist files). Each asset is held raw and gzip-compressed; every path
 * but the page itself carries a content hash and never changes meaning.
 */
#ifndef P2P_WEB_ASSETS_H
#define P2P_WEB_ASSETS_H

#include <stddef.h>

typedef struct p2p_web_asset {
    const char *path;  /* "/dashboard" or "/dashboard/static/<name>.<hash>.<ext>" */
    const char *ctype; /* Content-Type */
    const char *etag;  /* quoted strong ETag of the raw bytes */
    const unsigned char *data;
    size_t len;
    const unsigned char *gz; /* the same bytes gzip-compressed */
    size_t gz_len;
    int immutable; /* 1: content-hashed name, cached a year; 0: the page, revalidated */
} p2p_web_asset;

extern const p2p_web_asset p2p__web_assets[];
extern const size_t p2p__web_assets_n;
extern const size_t p2p__web_assets_gzip_total; /* bytes of all gzipped assets */

#endif
