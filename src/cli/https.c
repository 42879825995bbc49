/*
 * https.c — blocking HTTPS/1.1 client for the CLI (see https.h).
 *
 * One request per connection (Connection: close). The server's certificate is
 * verified against the given CA, and its name against the host the user typed
 * (an IP literal must be in the certificate's IP SANs, a name in its DNS SANs).
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

#include "core/util.h"

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

static int connect_tcp(const char *host, const char *port, int timeout_s, char **err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        *err = p2p__xasprintf("cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {timeout_s, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        last = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        *err = p2p__xasprintf("cannot connect to %s:%s: %s", host, port, strerror(last ? last : ECONNREFUSED));
    return fd;
}

static char *ssl_error(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    return p2p__xasprintf("%s%s%s", what, e ? ": " : "", buf);
}

static int parse_response(char *buf, size_t len, https_response *resp, char **err)
{
    char *head_end = NULL;
    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            head_end = buf + i;
            break;
        }
    int minor, status;
    if (!head_end || sscanf(buf, "HTTP/1.%d %d", &minor, &status) != 2) {
        *err = p2p__xstrdup("malformed HTTP response");
        return -1;
    }
    *head_end = '\0';
    char *body = head_end + 4;
    size_t body_len = len - (size_t)(body - buf);
    int chunked = 0;
    long clen = -1;
    for (char *line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (strncasecmp(l, "content-length:", 15) == 0)
            clen = strtol(l + 15, NULL, 10);
        else if (strncasecmp(l, "transfer-encoding:", 18) == 0 && strstr(l, "chunked"))
            chunked = 1;
    }
    if (chunked) { /* decode in place */
        char *in = body, *out = body, *end = body + body_len;
        for (;;) {
            char *nl = memchr(in, '\n', (size_t)(end - in));
            if (!nl)
                break;
            unsigned long n = strtoul(in, NULL, 16);
            in = nl + 1;
            if (n == 0 || (size_t)(end - in) < n)
                break;
            memmove(out, in, n);
            out += n;
            in += n + 2;
            if (in > end)
                break;
        }
        body_len = (size_t)(out - body);
    } else if (clen >= 0 && (size_t)clen < body_len) {
        body_len = (size_t)clen;
    }
    resp->status = status;
    resp->body = p2p__xmalloc(body_len + 1);
    memcpy(resp->body, body, body_len);
    resp->body[body_len] = '\0';
    resp->body_len = body_len;
    return 0;
}

int https_do(const https_request *req, https_response *resp, char **err)
{
    char host[256], port[16];
    memset(resp, 0, sizeof(*resp));
    if (split_addr(req->addr, host, sizeof(host), port, sizeof(port)) != 0) {
        *err = p2p__xasprintf("address '%s' is not HOST:PORT", req->addr);
        return -1;
    }
    int rc = -1, fd = -1;
    SSL_CTX *sctx = NULL;
    SSL *ssl = NULL;
    char *reqbuf = NULL, *buf = NULL;

    sctx = SSL_CTX_new(TLS_client_method());
    if (!sctx) {
        *err = ssl_error("TLS setup");
        goto out;
    }
    SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
    SSL_CTX_set_options(sctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* Connection: close ends the body */
    if (!req->insecure) {
        if (SSL_CTX_load_verify_locations(sctx, req->ca_file, NULL) != 1) {
            *err = ssl_error(req->ca_file);
            goto out;
        }
        SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER, NULL);
    }
    if ((fd = connect_tcp(host, port, req->timeout_s, err)) < 0)
        goto out;
    ssl = SSL_new(sctx);
    SSL_set_fd(ssl, fd);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(ssl, host);
    if (!req->insecure) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(vp, host);
        else
            X509_VERIFY_PARAM_set1_host(vp, host, 0);
    }
    if (SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK)
            *err = p2p__xasprintf("TLS handshake with %s failed: certificate not trusted (%s); check --ca",
                                  req->addr, X509_verify_cert_error_string(v));
        else
            *err = ssl_error("TLS handshake failed");
        goto out;
    }
    size_t hdr_len = 0;
    for (const char *const *h = req->headers; h && *h; h++)
        hdr_len += strlen(*h) + 2;
    size_t cap = 256 + strlen(req->path) + strlen(req->addr) + hdr_len + req->body_len;
    reqbuf = p2p__xmalloc(cap);
    int n = snprintf(reqbuf, cap, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: p2p/%s\r\n",
                     req->method, req->path, req->addr, P2P_VERSION);
    for (const char *const *h = req->headers; h && *h; h++)
        n += snprintf(reqbuf + n, cap - (size_t)n, "%s\r\n", *h);
    n += snprintf(reqbuf + n, cap - (size_t)n, "Content-Length: %zu\r\n\r\n", req->body_len);
    if (req->body_len)
        memcpy(reqbuf + n, req->body, req->body_len);
    size_t total = (size_t)n + req->body_len;
    if (SSL_write(ssl, reqbuf, (int)total) != (int)total) {
        *err = ssl_error("sending the request failed");
        goto out;
    }
    size_t len = 0, bcap = 16384;
    buf = p2p__xmalloc(bcap + 1);
    for (;;) {
        if (len == bcap) {
            if (bcap >= MAX_RESPONSE) {
                *err = p2p__xstrdup("response too large");
                goto out;
            }
            bcap *= 2;
            buf = p2p__xrealloc(buf, bcap + 1);
        }
        int got = SSL_read(ssl, buf + len, (int)(bcap - len));
        if (got <= 0) {
            int e = SSL_get_error(ssl, got);
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && len > 0))
                break;
            *err = e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)
                       ? p2p__xasprintf("no answer from %s within %d s", req->addr, req->timeout_s)
                       : ssl_error("reading the response failed");
            goto out;
        }
        len += (size_t)got;
    }
    buf[len] = '\0';
    rc = parse_response(buf, len, resp, err);
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(sctx);
    free(reqbuf);
    free(buf);
    return rc;
}

void https_response_free(https_response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}
