/*
 * https.c — one HTTPS request for the CLI (see https.h), made with the node's own
 * outbound client (src/rpc/client.c: HTTP/2 on nghttp2 over OpenSSL) on a libuv
 * loop of its own, run until the answer arrives.
 *
 * The server's certificate is verified against the given CA, and its name
 * against the host the user typed (an IP literal must be in the certificate's IP
 * SANs, a name in its DNS SANs); no client certificate (the CLI authenticates
 * with a bearer token). A host name is resolved first (getaddrinfo: blocking is
 * fine for one request).
 */
#include "cli/https.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "core/util.h"
#include "rpc/client.h"

#define MAX_RESPONSE (64u << 20)

static int split_addr(const char *addr, char *host, size_t hostsz, char *port, size_t portsz)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= hostsz)
            return -1;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= hostsz || colon == addr)
            return -1;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
    }
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= portsz)
        return -1;
    strcpy(port, colon + 1);
    return 0;
}

/* Resolves `host` (blocking: the CLI makes one request) to an IP literal. */
static int resolve(const char *host, const char *port, char *out, size_t outsz, char **err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        *err = p2p__xasprintf("cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    const void *a = res->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                                               : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, a, out, (socklen_t)outsz);
    freeaddrinfo(res);
    return 0;
}

static char *read_file(const char *path, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = p2p__xasprintf("%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = p2p__xmalloc(cap + 1);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            if (cap >= (1u << 20))
                break;
            cap *= 2;
            buf = p2p__xrealloc(buf, cap + 1);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

typedef struct call {
    int done;
    p2p__httpc_error error;
    int status;
    char *message;
    char *body;
    size_t body_len;
} call;

static void on_done(void *udata, const p2p__httpc_res *res)
{
    call *c = udata;
    c->done = 1;
    c->error = res->error;
    c->status = res->status;
    c->message = p2p__xstrdup(res->message);
    c->body = p2p__xmalloc(res->body_len + 1);
    memcpy(c->body, res->body, res->body_len);
    c->body[res->body_len] = '\0';
    c->body_len = res->body_len;
}

int https_do(const https_request *req, https_response *resp, char **err)
{
    char host[256], port[16], ip[INET6_ADDRSTRLEN];
    memset(resp, 0, sizeof(*resp));
    if (split_addr(req->addr, host, sizeof(host), port, sizeof(port)) != 0) {
        *err = p2p__xasprintf("address '%s' is not HOST:PORT", req->addr);
        return -1;
    }
    char *endp;
    long pn = strtol(port, &endp, 10);
    if (*endp || pn <= 0 || pn > 65535) {
        *err = p2p__xasprintf("address '%s' is not HOST:PORT", req->addr);
        return -1;
    }
    if (resolve(host, port, ip, sizeof ip, err) != 0)
        return -1;
    char *ca = NULL;
    if (!req->insecure && !req->ca_file) {
        *err = p2p__xstrdup("no CA certificate to verify the server with (--ca)");
        return -1;
    }
    if (!req->insecure && !(ca = read_file(req->ca_file, err)))
        return -1;
    /* headers: Content-Type goes in its own field; the rest as they are */
    const char *ctype = NULL;
    const char *hdrs[16];
    size_t nh = 0;
    for (const char *const *h = req->headers; h && *h && nh < 16; h++) {
        if (strncasecmp(*h, "content-type:", 13) == 0) {
            ctype = *h + 13;
            while (*ctype == ' ')
                ctype++;
        } else {
            hdrs[nh++] = *h;
        }
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    uint32_t tmo = (uint32_t)(req->timeout_s > 0 ? req->timeout_s : 30) * 1000u;
    p2p__httpc_opts o = {.ca_pem = ca,
                         .insecure = req->insecure,
                         .connect_timeout_ms = tmo,
                         .default_timeout_ms = tmo,
                         .max_response_bytes = MAX_RESPONSE};
    char *cerr = NULL;
    p2p__httpc *c = p2p__httpc_new(&loop, &o, &cerr);
    free(ca);
    int rc = -1;
    call cl = {0};
    if (!c) {
        *err = p2p__xasprintf("TLS setup: %s", cerr ? cerr : "failed");
        free(cerr);
        goto out;
    }
    p2p__httpc_req r = {.method = req->method,
                        .tls_name = host,
                        .address = ip,
                        .port = (uint16_t)pn,
                        .path = req->path,
                        .body = req->body,
                        .body_len = req->body_len,
                        .content_type = ctype,
                        .headers = hdrs,
                        .n_headers = nh};
    if (!p2p__httpc_request(c, &r, on_done, &cl, &cerr)) {
        *err = cerr;
        cerr = NULL;
        goto out;
    }
    while (!cl.done && uv_run(&loop, UV_RUN_ONCE))
        ;
    if (!cl.done) {
        *err = p2p__xstrdup("the request ended without an answer");
    } else if (cl.error == P2P_HTTPC_E_TLS) {
        *err = p2p__xasprintf("TLS with %s failed: %s%s", req->addr, cl.message, req->insecure ? "" : "; check --ca");
    } else if (cl.error == P2P_HTTPC_E_TIMEOUT) {
        *err = p2p__xasprintf("no answer from %s within %d s", req->addr, req->timeout_s);
    } else if (cl.error != P2P_HTTPC_OK) {
        *err = p2p__xasprintf("%s: %s", req->addr, cl.message);
    } else {
        resp->status = cl.status;
        resp->body = cl.body;
        resp->body_len = cl.body_len;
        cl.body = NULL;
        rc = 0;
    }
out:
    p2p__httpc_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(cl.message);
    free(cl.body);
    return rc;
}

void https_response_free(https_response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}
