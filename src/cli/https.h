/*
 * https.h — one HTTPS request for the `p2p` command-line tools, over the node's
 * own outbound client (HTTP/2, src/rpc/client.h) on a private libuv loop: the
 * call returns when the answer has arrived (the CLI makes one request per run).
 */
#ifndef P2P_CLI_HTTPS_H
#define P2P_CLI_HTTPS_H

#include <stddef.h>

typedef struct https_request {
    const char *addr;        /* "host:port" or "[v6]:port" */
    const char *method;      /* "GET", "POST" */
    const char *path;        /* "/rpc" */
    const char *ca_file;     /* CA bundle to verify the server; NULL with insecure */
    int insecure;            /* skip verification (the caller warns) */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated, or NULL */
    const char *body;
    size_t body_len;
    int timeout_s;
} https_request;

typedef struct https_response {
    int status;
    char *body; /* NUL-terminated, heap */
    size_t body_len;
} https_response;

/* Performs the request. Returns 0, or -1 with a heap message in `*err`. */
int https_do(const https_request *req, https_response *resp, char **err);
void https_response_free(https_response *resp);

#endif
