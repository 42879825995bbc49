/*
 * https.h — a small blocking HTTPS/1.1 client for the `p2p` command-line tools.
 *
 * The CLI makes one request per run, so blocking I/O is right here, and keeping
 * libcurl out of the binary keeps the node itself light (libcurl drags in a few
 * megabytes of transitive libraries that every node would map).
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
