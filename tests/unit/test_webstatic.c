/*
 * test_webstatic.c — unit tests for src/web/static.c and the generated asset
 * table: the Accept-Encoding parser (gzip accepted by token, "*", q-values,
 * refused by q=0 in its spellings, malformed values), the Content-Security-
 * Policy (no inline code, same-origin connections, the request's Host added as
 * a wss origin only when it is a plain host, never letting a header value
 * inject a directive) and the embedded assets (the page at /dashboard, every
 * other asset content-hashed and immutable, gzip copies that inflate to the
 * raw bytes, the page naming only assets that exist).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "web/static.h"

static int gz(const char *v)
{
    return p2p__web_accepts_gzip(v, strlen(v));
}

static void test_accept_encoding(void **state)
{
    assert_true(gz("gzip"));
    assert_true(gz("GZIP"));
    assert_true(gz("gzip, deflate, br"));
    assert_true(gz("br, gzip"));
    assert_true(gz("deflate ,  gzip ;q=0.5"));
    assert_true(gz("gzip;q=1"));
    assert_true(gz("gzip;q=0.001"));
    assert_true(gz("*"));
    assert_true(gz("br;q=1, *;q=0.1"));
    assert_true(gz("gzip; foo=bar"));
    assert_false(gz(""));
    assert_false(gz("identity"));
    assert_false(gz("br, deflate"));
    assert_false(gz("gzip;q=0"));
    assert_false(gz("gzip;q=0."));
    assert_false(gz("gzip;q=0.000"));
    assert_false(gz("gzip; Q=0"));
    assert_false(gz("*;q=0"));
    assert_false(gz("x-gzip2"));
    assert_false(gz("gzipx"));
    assert_false(gz("agzip"));
    assert_false(gz(",,,;;;==="));
    assert_false(gz(";q=1"));
    assert_false(gz("gzi"));
    /* not NUL-terminated: the length bounds the read */
    assert_false(p2p__web_accepts_gzip("gzip", 3));
    assert_true(p2p__web_accepts_gzip("gzip;q=0", 4));
}

static void test_csp(void **state)
{
    char buf[512];
    const char *h = "127.0.0.1:8001";
    p2p__web_csp(h, strlen(h), buf, sizeof buf);
    assert_non_null(strstr(buf, "default-src 'self'"));
    assert_non_null(strstr(buf, "script-src 'self';"));
    assert_non_null(strstr(buf, "style-src 'self';"));
    assert_non_null(strstr(buf, "frame-ancestors 'none'"));
    assert_non_null(strstr(buf, "connect-src 'self' wss://127.0.0.1:8001;"));
    assert_null(strstr(buf, "unsafe"));
    h = "[::1]:8001";
    p2p__web_csp(h, strlen(h), buf, sizeof buf);
    assert_non_null(strstr(buf, "connect-src 'self' wss://[::1]:8001;"));
    /* a Host that could add a source or a directive is left out */
    const char *bad[] = {"evil.example; script-src *", "a b", "x'y", "a,b", "a\r\nX: y", "*", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p2p__web_csp(bad[i], strlen(bad[i]), buf, sizeof buf);
        assert_non_null(strstr(buf, "connect-src 'self';"));
        assert_null(strstr(buf, "wss://"));
    }
    char big[400];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    p2p__web_csp(big, strlen(big), buf, sizeof buf);
    assert_null(strstr(buf, "wss://"));
    p2p__web_csp(NULL, 0, buf, sizeof buf);
    assert_non_null(strstr(buf, "connect-src 'self';"));
}

static void test_assets(void **state)
{
    const p2p_web_asset *page = p2p__web_asset_find("/dashboard", 10);
    assert_non_null(page);
    assert_int_equal(page->immutable, 0);
    assert_string_equal(page->ctype, "text/html; charset=utf-8");
    assert_null(p2p__web_asset_find("/dashboard/", 11));
    assert_null(p2p__web_asset_find("/dashboard/static/app.js", 24)); /* only hashed names */
    assert_null(p2p__web_asset_find("", 0));
    size_t total = 0;
    for (size_t i = 0; i < p2p__web_assets_n; i++) {
        const p2p_web_asset *a = &p2p__web_assets[i];
        total += a->gz_len;
        assert_true(a->etag[0] == '"' && a->etag[strlen(a->etag) - 1] == '"');
        if (a != page) {
            assert_int_equal(a->immutable, 1);
            assert_memory_equal(a->path, "/dashboard/static/", 18);
            assert_ptr_equal(p2p__web_asset_find(a->path, strlen(a->path)), a);
            /* the page names it (nothing embedded is unreachable but uPlot's own) */
        }
        unsigned char *out = malloc(a->len + 1);
        uLongf n = a->len + 1;
        z_stream z = {0};
        assert_int_equal(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
        z.next_in = (unsigned char *)a->gz;
        z.avail_in = (uInt)a->gz_len;
        z.next_out = out;
        z.avail_out = (uInt)n;
        assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
        assert_int_equal(z.total_out, a->len);
        assert_memory_equal(out, a->data, a->len);
        inflateEnd(&z);
        free(out);
    }
    assert_int_equal(total, p2p__web_assets_gzip_total);
    /* every /dashboard/static/ name in the page exists */
    char *html = strndup((const char *)page->data, page->len);
    int refs = 0;
    for (char *p = strstr(html, "/dashboard/static/"); p; p = strstr(p + 1, "/dashboard/static/")) {
        size_t n = strcspn(p, "\"");
        assert_non_null(p2p__web_asset_find(p, n));
        refs++;
    }
    assert_true(refs >= 3); /* the script, the stylesheet, the icon */
    assert_null(strstr(html, "<script>"));  /* no inline script */
    assert_null(strstr(html, "<style"));     /* no inline style */
    assert_null(strstr(html, " style="));
    assert_null(strstr(html, " onclick="));
    free(html);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_csp),
        cmocka_unit_test(test_assets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
