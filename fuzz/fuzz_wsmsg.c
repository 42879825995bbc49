/*
 * fuzz_wsmsg.c — libFuzzer target for the dashboard WebSocket's client message
 * decoder (src/web/wsproto.c): any bytes either decode into one of the three
 * messages with bounded, NUL-free strings, or are refused with a message and
 * nothing allocated.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "web/wsproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2p_wsm m;
    char err[200] = "";
    int r = p2p__wsm_decode((const char *)data, size, &m, err, sizeof err);
    if (r != 0) {
        assert(err[0] && m.token == NULL && m.type == 0);
        return 0;
    }
    assert(m.type == P2P_WSM_AUTH || m.type == P2P_WSM_LOG_FILTER || m.type == P2P_WSM_PING);
    if (m.type == P2P_WSM_AUTH) {
        assert(m.token && m.token_len >= 1 && m.token_len <= P2P_WS_MAX_TOKEN && strlen(m.token) == m.token_len);
    } else {
        assert(m.token == NULL);
    }
    assert(strlen(m.filter.node) < sizeof m.filter.node && strlen(m.filter.logger) < sizeof m.filter.logger &&
           strlen(m.filter.search) < sizeof m.filter.search);
    assert(m.filter.min_level >= 0 && m.filter.min_level < LOGREC_NLEVELS);
    logfilter f;
    p2p__wsfilter_logfilter(&m.filter, &f);
    p2p__wsm_free(&m);
    return 0;
}
