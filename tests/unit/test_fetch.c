/*
 * test_fetch.c — the answer parser of the blocking HTTP/1.1 fetch
 * (p2p__fetch_parse, src/pki/fetch.c) and p2p__fetch_run against a plain
 * socket server in a thread: complete and partial answers, Content-Length,
 * chunked, read-to-close, and malformed or oversized answers refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pki/enroll.h"

static int parse(const char *s, bool eof, size_t max, long *st, char **body, size_t *bl, const char **why)
{
    return p2p__fetch_parse(s, strlen(s), eof, max, st, body, bl, why);
}

static void test_complete(void **state)
{
    (void)state;
    long st = 0;
    char *b = NULL;
    size_t bl = 0;
    const char *why = NULL;
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, 100, &st, &b, &bl, &why), 1);
    assert_int_equal(st, 200);
    assert_int_equal(bl, 5);
    assert_string_equal(b, "hello");
    free(b);
    /* chunked, with an extension and a trailer */
    assert_int_equal(parse("HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n"
                           "X-T: 1\r\n\r\n",
                           false, 100, &st, &b, &bl, &why),
                     1);
    assert_int_equal(st, 403);
    assert_string_equal(b, "abcde");
    free(b);
    /* neither: the body runs to the close */
    assert_int_equal(parse("HTTP/1.0 200 OK\r\n\r\nuntil close", false, 100, &st, &b, &bl, &why), 0);
    assert_int_equal(parse("HTTP/1.0 200 OK\r\n\r\nuntil close", true, 100, &st, &b, &bl, &why), 1);
    assert_string_equal(b, "until close");
    free(b);
}

static void test_partial(void **state)
{
    (void)state;
    long st = 0;
    char *b = NULL;
    size_t bl = 0;
    const char *why = NULL;
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Len", false, 100, &st, &b, &bl, &why), 0);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false, 100, &st, &b, &bl, &why), 0);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", false, 100, &st, &b, &bl,
                           &why),
                     0);
    assert_null(b);
    /* the same, cut by the peer */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Len", true, 100, &st, &b, &bl, &why), -1);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true, 100, &st, &b, &bl, &why), -1);
    assert_non_null(strstr(why, "closed"));
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", true, 100, &st, &b, &bl,
                           &why),
                     -1);
    assert_null(b);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 999 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        /* over the cap of 8 */
        "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n4\r\n6789\r\n0\r\n\r\n",
        "HTTP/1.0 200 OK\r\n\r\n123456789",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long st = 0;
        char *b = NULL;
        size_t bl = 0;
        const char *why = NULL;
        int r = parse(bad[i], true, 8, &st, &b, &bl, &why);
        if (r != -1 || !why || b)
            fail_msg("case %zu accepted (%d): %s", i, r, bad[i]);
    }
    /* a head that never ends is refused once it passes 16 KiB */
    size_t n = 20000;
    char *big = malloc(n + 1);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(big + 20, 'a', n - 20);
    big[n] = '\0';
    long st;
    char *b = NULL;
    size_t bl;
    const char *why = NULL;
    assert_int_equal(p2p__fetch_parse(big, n, false, 100, &st, &b, &bl, &why), -1);
    assert_non_null(strstr(why, "head too large"));
    free(big);
}

/* ---- p2p__fetch_run against a one-shot plain HTTP server ---------------------------- */

typedef struct srv {
    int lfd, port;
    const char *answer;
    char got[4096];
    pthread_t th;
} srv;

static void *serve(void *arg)
{
    srv *s = arg;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    ssize_t n = recv(fd, s->got, sizeof s->got - 1, 0);
    if (n > 0)
        s->got[n] = '\0';
    if (s->answer)
        send(fd, s->answer, strlen(s->answer), MSG_NOSIGNAL);
    else
        sleep(1); /* silent */
    close(fd);
    return NULL;
}

static void srv_start(srv *s, const char *answer)
{
    s->answer = answer;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    socklen_t l = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, serve, s);
}

static void srv_stop(srv *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static void test_run_plain(void **state)
{
    (void)state;
    srv s = {0};
    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/internal/x", s.port);
    p2p_fetch f = {.url = url, .body = "{}", .body_len = 2, .timeout_ms = 3000, .max_body = 100};
    assert_int_equal(p2p__fetch_run(&f), 0);
    srv_stop(&s);
    assert_int_equal(f.status, 200);
    assert_string_equal(f.answer, "ok");
    assert_non_null(strstr(s.got, "POST /internal/x HTTP/1.1\r\n"));
    assert_non_null(strstr(s.got, "Content-Length: 2\r\n"));
    assert_non_null(strstr(s.got, "\r\n\r\n{}"));
    p2p__fetch_clear(&f);

    srv_start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\nxx");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    f = (p2p_fetch){.url = url, .timeout_ms = 3000, .max_body = 100};
    assert_int_equal(p2p__fetch_run(&f), -EIO);
    assert_non_null(strstr(f.error, "too large"));
    srv_stop(&s);

    srv_start(&s, NULL); /* answers nothing */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    f = (p2p_fetch){.url = url, .timeout_ms = 300, .max_body = 100};
    assert_int_equal(p2p__fetch_run(&f), -EIO);
    assert_non_null(strstr(f.error, "timed out"));
    srv_stop(&s);

    f = (p2p_fetch){.url = "ftp://x/", .timeout_ms = 300, .max_body = 100};
    assert_int_equal(p2p__fetch_run(&f), -EIO);
    assert_non_null(strstr(f.error, "URL"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_run_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
