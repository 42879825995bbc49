/*
 * fuzz_webreq.c — libFuzzer target for what src/web/static.c reads from a
 * request: the Accept-Encoding value, the Host header that goes into the
 * Content-Security-Policy and the asset path. Any bytes: the gzip answer is 0
 * or 1, the policy keeps every fixed directive and gains at most one wss
 * source made only of host characters, and a path finds an asset only by its
 * exact name.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "web/static.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    int g = p2p__web_accepts_gzip(s, size);
    assert(g == 0 || g == 1);

    char csp[512];
    p2p__web_csp(s, size, csp, sizeof csp);
    assert(strstr(csp, "default-src 'self'; script-src 'self'; style-src 'self';") == csp);
    assert(strstr(csp, "frame-ancestors 'none'"));
    const char *w = strstr(csp, "wss://");
    if (w) {
        w += 6;
        size_t n = strcspn(w, ";");
        assert(n == size);
        for (size_t i = 0; i < n; i++)
            assert(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]", w[i]));
    }

    const p2p_web_asset *a = p2p__web_asset_find(s, size);
    if (a)
        assert(strlen(a->path) == size && memcmp(a->path, s, size) == 0);
    return 0;
}
