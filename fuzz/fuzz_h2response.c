/*
 * fuzz_h2response.c — libFuzzer target for the outbound client's response path
 * (src/rpc/client.c): the input is what a server sends after the TLS handshake
 * (HTTP/2 frames: SETTINGS, HEADERS, CONTINUATION, DATA, RST_STREAM, GOAWAY,
 * PING, WINDOW_UPDATE, ...), fed into the client's nghttp2 session and response
 * handling while three requests (a GET and two POSTs) are in flight on it.
 *
 * Invariants: each request gets exactly one callback (the hook aborts
 * otherwise), a successful body is NUL-terminated, nothing leaks, and the
 * connection's handle closes. The client and its TLS material are made once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#include "pki/pki.h"
#include "rpc/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static p2p__httpc *client;

static void init(void)
{
    char *ca, *ca_key, *key, *csr, *cert, *err = NULL;
    uv_loop_init(&loop);
    if (pki_ca_create("fuzz", 30, &ca, &ca_key, &err) != 0 || pki_key_create(&key, &err) != 0 ||
        pki_csr_create(key, "node-c", NULL, 0, &csr, &err) != 0 ||
        pki_sign_csr(ca, ca_key, csr, 3600, &cert, &err) != 0)
        abort();
    /* small cap, so oversized answers are reachable */
    p2p__httpc_opts o = {.ca_pem = ca, .cert_pem = cert, .key_pem = key, .max_response_bytes = 4096};
    client = p2p__httpc_new(&loop, &o, &err);
    if (!client)
        abort();
    free(ca);
    free(csr);
    free(cert);
    pki_secret_free(ca_key);
    pki_secret_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!client)
        init();
    if (p2p__httpc_fuzz_response(client, data, size) < 0)
        abort();
    uv_run(&loop, UV_RUN_NOWAIT); /* closes the connection's handle */
    p2p__httpc_stats st;
    p2p__httpc_stats_get(client, &st);
    if (st.active != 0 || st.sockets != 0)
        abort();
    return 0;
}
