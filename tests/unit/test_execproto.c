/*
 * test_execproto.c — the exec service protocol: line framing (split reads,
 * CRLF, empty lines, the line limit and what happens after it, a callback that
 * stops) and message classification with each malformed shape refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "services/execproto.h"

typedef struct lines {
    char got[16][64];
    size_t n;
    int stop_after;
} lines;

static int on_line(const char *line, size_t len, void *arg)
{
    lines *l = arg;
    assert_true(len < 64);
    memcpy(l->got[l->n], line, len);
    l->got[l->n][len] = '\0';
    l->n++;
    return l->stop_after && (int)l->n == l->stop_after ? 7 : 0;
}

static void test_framing(void **state)
{
    (void)state;
    p2p_linebuf lb;
    p2p__linebuf_init(&lb, 16);
    lines l = {0};
    const char *in = "ab\ncd\r\n\n\nef";
    /* byte by byte and all at once give the same lines */
    for (size_t i = 0; i < strlen(in); i++)
        assert_int_equal(p2p__linebuf_feed(&lb, in + i, 1, on_line, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.got[0], "ab");
    assert_string_equal(l.got[1], "cd");
    assert_int_equal(p2p__linebuf_pending(&lb), 2);
    assert_int_equal(p2p__linebuf_feed(&lb, "gh\nij\n", 6, on_line, &l), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.got[2], "efgh");
    assert_string_equal(l.got[3], "ij");
    assert_int_equal(p2p__linebuf_pending(&lb), 0);
    /* exactly the limit passes, one more byte breaks the stream for good */
    assert_int_equal(p2p__linebuf_feed(&lb, "0123456789abcdef\n", 17, on_line, &l), 0);
    assert_string_equal(l.got[4], "0123456789abcdef");
    assert_int_equal(p2p__linebuf_feed(&lb, "0123456789", 10, on_line, &l), 0);
    assert_int_equal(p2p__linebuf_feed(&lb, "abcdefg", 7, on_line, &l), -EMSGSIZE);
    assert_int_equal(p2p__linebuf_feed(&lb, "\nok\n", 4, on_line, &l), -EMSGSIZE);
    assert_int_equal(l.n, 5);
    p2p__linebuf_free(&lb);
    /* a callback's non-zero value stops the feed and is returned */
    p2p__linebuf_init(&lb, 0);
    lines s = {.stop_after = 1};
    assert_int_equal(p2p__linebuf_feed(&lb, "a\nb\n", 4, on_line, &s), 7);
    assert_int_equal(s.n, 1);
    p2p__linebuf_free(&lb);
}

static int parse(const char *text, p2p_exec_msg *m, const char **why)
{
    return p2p__exec_msg_parse(text, strlen(text), m, why);
}

static void test_messages(void **state)
{
    (void)state;
    p2p_exec_msg m;
    const char *why;
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"a\":1}}", &m, &why), 0);
    assert_int_equal(m.kind, P2P_EXEC_RESPONSE);
    assert_int_equal(m.num_id, 3);
    assert_non_null(m.result);
    assert_null(m.error);
    p2p__exec_msg_free(&m);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":-32000,\"message\":\"no\",\"data\":[1]}}", &m,
                           &why),
                     0);
    assert_non_null(m.error);
    p2p__exec_msg_free(&m);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":\"x1\",\"method\":\"call\",\"params\":{\"method\":\"system/ping\"}}",
                           &m, &why),
                     0);
    assert_int_equal(m.kind, P2P_EXEC_REQUEST);
    assert_string_equal(m.method, "call");
    p2p__exec_msg_free(&m);
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"method\":\"log\",\"params\":{\"level\":\"info\",\"message\":\"hi\"}}", &m,
                           &why),
                     0);
    assert_int_equal(m.kind, P2P_EXEC_NOTIFICATION);
    assert_null(m.id);
    p2p__exec_msg_free(&m);

    const char *bad[] = {
        "hello",
        "[1,2]",
        "{\"id\":1,\"result\":1}",
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{\"code\":1,\"message\":\"m\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"result\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":-1,\"result\":1}",
        "{\"jsonrpc\":\"2.0\",\"result\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"x\",\"message\":\"m\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,\"message\":\"m\",\"extra\":1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"extra\":1}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":5}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"log\",\"params\":\"text\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"log\",\"id\":1.5}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"log\",\"result\":1}",
        "{\"jsonrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"method\":\"log\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (parse(bad[i], &m, &why) != -EINVAL || !why || strcmp(why, "ok") == 0) {
            print_error("case %zu accepted: %s\n", i, bad[i]);
            fail();
        }
        assert_null(m.root);
    }
}

static void test_encode(void **state)
{
    (void)state;
    json_t *j = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "msg", "two\nlines é");
    size_t len;
    char *s = p2p__exec_encode(j, &len);
    assert_int_equal(strlen(s), len);
    assert_int_equal(s[len - 1], '\n');
    assert_null(memchr(s, '\n', len - 1)); /* one message, one line */
    json_decref(j);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
