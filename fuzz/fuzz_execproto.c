/*
 * fuzz_execproto.c — libFuzzer target for what an exec service writes: the
 * input is fed to the line buffer in chunks whose sizes come from the first
 * byte, and every line is parsed as a message. Invariants: a line is never
 * longer than the limit and never contains "\n"; a parsed message's fields
 * agree with its kind; nothing crashes or leaks.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "services/execproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT 512

static int on_line(const char *line, size_t len, void *arg)
{
    (void)arg;
    if (len == 0 || len > LIMIT || memchr(line, '\n', len))
        abort();
    p2p_exec_msg m;
    memset(&m, 0, sizeof m);
    const char *why = NULL;
    if (p2p__exec_msg_parse(line, len, &m, &why) == 0) {
        switch (m.kind) {
        case P2P_EXEC_RESPONSE:
            if (!m.id || m.num_id < 0 || !!m.result == !!m.error || m.method) abort();
            break;
        case P2P_EXEC_REQUEST:
            if (!m.id || !m.method) abort();
            break;
        case P2P_EXEC_NOTIFICATION:
            if (m.id || !m.method) abort();
            break;
        default:
            abort();
        }
        size_t n;
        char *s = p2p__exec_encode(m.root, &n);
        if (!s || s[n - 1] != '\n' || memchr(s, '\n', n - 1)) abort();
        free(s);
        p2p__exec_msg_free(&m);
    } else if (!why || m.root) {
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    p2p_linebuf lb;
    p2p__linebuf_init(&lb, LIMIT);
    while (size > 0) {
        size_t n = size < chunk ? size : chunk;
        int rc = p2p__linebuf_feed(&lb, (const char *)data, n, on_line, NULL);
        if (rc == -EMSGSIZE && p2p__linebuf_pending(&lb) != 0) abort();
        data += n;
        size -= n;
    }
    if (p2p__linebuf_pending(&lb) > LIMIT) abort();
    p2p__linebuf_free(&lb);
    return 0;
}
