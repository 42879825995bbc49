/*
 * fetch.c — p2p__fetch_run (enroll.h): one blocking HTTP(S)/1.1 request for the
 * thread pool (enrollment, renewal, the coordinator's challenge fetch), on
 * OpenSSL over a plain socket. It replaced libcurl's easy API, so the node
 * maps one TLS stack.
 *
 * One request per connection (Connection: close). Every wait is bounded: the
 * TCP connect by min(timeout, 5 s) (poll on a non-blocking connect), the rest
 * by the request's deadline (poll before each read/write). Answers are bounded
 * by `max_body` plus 16 KiB of head. HTTP/1.1 is offered by ALPN (h2o would
 * otherwise pick h2, which this small client does not speak).
 *
 * The answer is parsed by p2p__fetch_parse (strict: one Content-Length or
 * chunked, never both; malformed heads and chunk sizes are refused).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <strings.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "pki/enroll.h"

#define MAX_HEAD (16u << 10)

/* ---- response parser ---------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static const char *find_crlf(const char *p, const char *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

long p2p__fetch_retry_after(const char *buf, size_t len)
{
    static const char name[] = "\r\nretry-after:";
    size_t nl = sizeof name - 1;
    for (size_t i = 0; i + nl <= len; i++) {
        if (buf[i] == '\r' && i + 3 < len && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return 0; /* end of the head */
        if (strncasecmp(buf + i, name, nl) != 0)
            continue;
        size_t k = i + nl;
        while (k < len && (buf[k] == ' ' || buf[k] == '\t'))
            k++;
        long v = 0;
        size_t d = k;
        while (d < len && buf[d] >= '0' && buf[d] <= '9' && d - k < 9)
            v = v * 10 + (buf[d++] - '0');
        if (d == k)
            return 0;
        return v > 3600 ? 3600 : v;
    }
    return 0;
}

int p2p__fetch_parse(const char *buf, size_t len, bool eof, size_t max_body, long *status, char **body,
                     size_t *body_len, const char **why)
{
    *body = NULL;
    *body_len = 0;
    const char *end = buf + len;
    const char *head_end = NULL;
    for (size_t i = 0; i + 3 < len && i < MAX_HEAD; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            head_end = buf + i;
            break;
        }
    if (!head_end) {
        if (len >= MAX_HEAD) {
            *why = "response head too large";
            return -1;
        }
        if (eof) {
            *why = "connection closed before a complete response head";
            return -1;
        }
        return 0;
    }
    /* status line: HTTP/1.x DDD reason */
    if (head_end - buf < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
        buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9' ||
        (head_end - buf > 12 && buf[12] != ' ')) {
        *why = "malformed status line";
        return -1;
    }
    *status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    long long clen = -1;
    bool chunked = false;
    const char *line = find_crlf(buf, head_end + 2) + 2;
    while (line < head_end + 2) {
        const char *le = find_crlf(line, head_end + 2);
        if (!le)
            break;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (!colon || colon == line) {
            *why = "malformed header line";
            return -1;
        }
        for (const char *p = line; p < colon; p++)
            if (*p <= ' ' || *p >= 0x7f) {
                *why = "malformed header name";
                return -1;
            }
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = le;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nl = (size_t)(colon - line);
        if (nl == 14 && strncasecmp(line, "content-length", 14) == 0) {
            if (v == ve || clen >= 0) {
                *why = "missing or repeated Content-Length";
                return -1;
            }
            long long n = 0;
            for (const char *p = v; p < ve; p++) {
                if (*p < '0' || *p > '9' || n > (long long)1 << 40) {
                    *why = "malformed Content-Length";
                    return -1;
                }
                n = n * 10 + (*p - '0');
            }
            clen = n;
        } else if (nl == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
            if ((size_t)(ve - v) != 7 || strncasecmp(v, "chunked", 7) != 0 || chunked) {
                *why = "unsupported Transfer-Encoding";
                return -1;
            }
            chunked = true;
        }
        line = le + 2;
    }
    if (chunked && clen >= 0) {
        *why = "both Content-Length and chunked";
        return -1;
    }
    const char *b = head_end + 4;
    size_t avail = (size_t)(end - b);
    if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200)) {
        *body = p2p__xcalloc(1, 1);
        return 1;
    }
    if (clen >= 0) {
        if ((unsigned long long)clen > max_body) {
            *why = "answer too large";
            return -1;
        }
        if (avail < (size_t)clen) {
            if (eof) {
                *why = "connection closed before the end of the body";
                return -1;
            }
            return 0;
        }
        *body = p2p__xmalloc((size_t)clen + 1);
        memcpy(*body, b, (size_t)clen);
        (*body)[clen] = '\0';
        *body_len = (size_t)clen;
        return 1;
    }
    if (!chunked) { /* until the connection closes */
        if (avail > max_body) {
            *why = "answer too large";
            return -1;
        }
        if (!eof)
            return 0;
        *body = p2p__xmalloc(avail + 1);
        memcpy(*body, b, avail);
        (*body)[avail] = '\0';
        *body_len = avail;
        return 1;
    }
    /* chunked: size [;ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF */
    char *out = p2p__xmalloc(avail + 1);
    size_t olen = 0;
    const char *p = b;
    for (;;) {
        const char *le = find_crlf(p, end);
        if (!le)
            goto more;
        size_t n = 0;
        const char *q = p;
        int digits = 0;
        for (; q < le && hexval(*q) >= 0; q++, digits++) {
            if (digits >= 12) {
                *why = "malformed chunk size";
                goto bad;
            }
            n = n * 16 + (size_t)hexval(*q);
        }
        if (digits == 0 || (q < le && *q != ';' && *q != ' ' && *q != '\t')) {
            *why = "malformed chunk size";
            goto bad;
        }
        p = le + 2;
        if (n == 0) {
            /* trailers until an empty line */
            for (;;) {
                const char *te = find_crlf(p, end);
                if (!te)
                    goto more;
                if (te == p)
                    break;
                p = te + 2;
            }
            out[olen] = '\0';
            *body = out;
            *body_len = olen;
            return 1;
        }
        if (n > max_body - olen) {
            *why = "answer too large";
            goto bad;
        }
        if ((size_t)(end - p) < n + 2)
            goto more;
        if (p[n] != '\r' || p[n + 1] != '\n') {
            *why = "chunk not followed by CRLF";
            goto bad;
        }
        memcpy(out + olen, p, n);
        olen += n;
        p += n + 2;
    }
more:
    free(out);
    if (eof) {
        *why = "connection closed inside the chunked body";
        return -1;
    }
    return 0;
bad:
    free(out);
    return -1;
}

/* ---- the request ---------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* scheme://host[:port]/path, host may be [v6]. */
static int split_url(const char *url, bool *tls, char *host, size_t hostsz, char *port, size_t portsz,
                     const char **path)
{
    const char *p;
    if (strncmp(url, "https://", 8) == 0) {
        *tls = true;
        p = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        *tls = false;
        p = url + 7;
    } else {
        return -1;
    }
    const char *slash = strchr(p, '/');
    if (!slash)
        return -1;
    *path = slash;
    const char *hend, *colon = NULL;
    if (*p == '[') {
        hend = memchr(p, ']', (size_t)(slash - p));
        if (!hend)
            return -1;
        p++;
        if (hend + 1 < slash) {
            if (hend[1] != ':')
                return -1;
            colon = hend + 1;
        }
    } else {
        colon = memchr(p, ':', (size_t)(slash - p));
        hend = colon ? colon : slash;
    }
    size_t hl = (size_t)(hend - p);
    if (hl == 0 || hl >= hostsz)
        return -1;
    memcpy(host, p, hl);
    host[hl] = '\0';
    if (colon) {
        size_t pl = (size_t)(slash - colon - 1);
        if (pl == 0 || pl >= portsz)
            return -1;
        memcpy(port, colon + 1, pl);
        port[pl] = '\0';
    } else {
        snprintf(port, portsz, "%s", *tls ? "443" : "80");
    }
    return 0;
}

static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd pf = {.fd = fd, .events = ev};
        int r = poll(&pf, 1, (int)(deadline - now));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int connect_to(const char *host, const char *port, uint64_t deadline, char *err, size_t errsz)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        snprintf(err, errsz, "cannot resolve %s: %s", host, gai_strerror(r));
        return -1;
    }
    int fd = -1, last = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            int e = errno;
            if (e == EINPROGRESS) {
                int w = wait_fd(fd, POLLOUT, deadline);
                socklen_t sl = sizeof e;
                if (w == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e == 0)
                    break;
                if (w != 0)
                    e = -w;
            }
            last = e;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errsz, "cannot connect to %s port %s: %s", host, port,
                 last == ETIMEDOUT ? "connect timeout" : strerror(last));
    return fd;
}

/* One I/O step on a non-blocking socket, TLS or not: >0 bytes, 0 EOF, -1 error,
 * -2 again (after waiting). */
static int io_step(int fd, SSL *ssl, bool rd, void *buf, size_t n, uint64_t deadline, char *err, size_t errsz)
{
    for (;;) {
        int got;
        short ev = rd ? POLLIN : POLLOUT;
        if (ssl) {
            got = rd ? SSL_read(ssl, buf, (int)n) : SSL_write(ssl, buf, (int)n);
            if (got > 0)
                return got;
            int e = SSL_get_error(ssl, got);
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (e == SSL_ERROR_WANT_READ)
                ev = POLLIN;
            else if (e == SSL_ERROR_WANT_WRITE)
                ev = POLLOUT;
            else if (e == SSL_ERROR_SYSCALL && got == 0 && rd)
                return 0; /* EOF without close_notify: Connection: close ends the body */
            else {
                unsigned long le = ERR_get_error();
                snprintf(err, errsz, "TLS %s failed: %s", rd ? "read" : "write",
                         le ? ERR_reason_error_string(le) : strerror(errno));
                return -1;
            }
        } else {
            got = rd ? (int)recv(fd, buf, n, 0) : (int)send(fd, buf, n, MSG_NOSIGNAL);
            if (got >= 0)
                return got;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                snprintf(err, errsz, "%s failed: %s", rd ? "receive" : "send", strerror(errno));
                return -1;
            }
        }
        if (wait_fd(fd, ev, deadline) != 0) {
            snprintf(err, errsz, "timed out");
            return -1;
        }
    }
}

static SSL_CTX *make_ctx(const p2p_fetch *f, char *err, size_t errsz)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
    bool ok = true;
    if (f->ca_pem) {
        BIO *b = BIO_new_mem_buf(f->ca_pem, -1);
        X509 *x;
        int n = 0;
        while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x);
            X509_free(x);
            n++;
        }
        BIO_free(b);
        ok = n > 0;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (ok && f->cert_pem && f->key_pem) {
        BIO *b = BIO_new_mem_buf(f->cert_pem, -1);
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
        X509_free(x);
        while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
            ok = SSL_CTX_add0_chain_cert(ctx, x) == 1;
        BIO_free(b);
        b = BIO_new_mem_buf(f->key_pem, -1);
        EVP_PKEY *pk = b && ok ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        ok = ok && pk && SSL_CTX_use_PrivateKey(ctx, pk) == 1;
        EVP_PKEY_free(pk);
    }
    ERR_clear_error();
    if (!ok) {
        snprintf(err, errsz, "TLS material does not load");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int p2p__fetch_run(p2p_fetch *f)
{
    f->status = 0;
    f->answer = NULL;
    f->answer_len = 0;
    f->error[0] = '\0';
    long tmo = f->timeout_ms > 0 ? f->timeout_ms : 10000L;
    uint64_t start = now_ms(), deadline = start + (uint64_t)tmo;
    uint64_t cdeadline = start + (uint64_t)(tmo < 5000 ? tmo : 5000);
    bool tls;
    char host[256], port[16];
    const char *path;
    if (split_url(f->url, &tls, host, sizeof host, port, sizeof port, &path) != 0) {
        snprintf(f->error, sizeof f->error, "malformed URL '%s'", f->url);
        return -EIO;
    }
    int rc = -EIO, fd = -1;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    char *req = NULL, *buf = NULL;
    if (tls && !(ctx = make_ctx(f, f->error, sizeof f->error))) {
        if (!f->error[0])
            snprintf(f->error, sizeof f->error, "cannot set up TLS");
        goto out;
    }
    if ((fd = connect_to(host, port, cdeadline, f->error, sizeof f->error)) < 0)
        goto out;
    if (tls) {
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        unsigned char ip[16];
        bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
        if (!is_ip)
            SSL_set_tlsext_host_name(ssl, host);
        if (f->ca_pem && f->verify_host) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
            if (is_ip)
                X509_VERIFY_PARAM_set1_ip_asc(vp, host);
            else
                X509_VERIFY_PARAM_set1_host(vp, host, 0);
        }
        for (;;) {
            int r = SSL_connect(ssl);
            if (r == 1)
                break;
            int e = SSL_get_error(ssl, r);
            if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
                wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) == 0)
                continue;
            long v = SSL_get_verify_result(ssl);
            unsigned long le = ERR_get_error();
            if (v != X509_V_OK)
                snprintf(f->error, sizeof f->error, "TLS handshake with %.80s failed: %s", host,
                         X509_verify_cert_error_string(v));
            else
                snprintf(f->error, sizeof f->error, "TLS handshake with %.80s failed: %s", host,
                         le ? ERR_reason_error_string(le) : "timed out or connection closed");
            goto out;
        }
    }
    /* the request */
    size_t cap = 512 + strlen(path) + strlen(host) + f->body_len;
    req = p2p__xmalloc(cap);
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nConnection: close\r\nUser-Agent: p2p/" P2P_VERSION "\r\n",
                     f->body ? "POST" : "GET", path, v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (f->body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                      f->body_len);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (f->body_len)
        memcpy(req + n, f->body, f->body_len);
    size_t total = (size_t)n + f->body_len, off = 0;
    while (off < total) {
        int w = io_step(fd, ssl, false, req + off, total - off, deadline, f->error, sizeof f->error);
        if (w <= 0) {
            if (w == 0)
                snprintf(f->error, sizeof f->error, "connection closed while sending");
            goto out;
        }
        off += (size_t)w;
    }
    /* the answer */
    size_t bcap = 4096, len = 0, limit = f->max_body + MAX_HEAD;
    buf = p2p__xmalloc(bcap);
    for (;;) {
        if (len == bcap) {
            if (bcap >= limit) {
                snprintf(f->error, sizeof f->error, "answer too large");
                goto out;
            }
            bcap = bcap * 2 > limit ? limit : bcap * 2;
            buf = p2p__xrealloc(buf, bcap);
        }
        int got = io_step(fd, ssl, true, buf + len, bcap - len, deadline, f->error, sizeof f->error);
        if (got < 0)
            goto out;
        len += (size_t)got;
        const char *why = NULL;
        char *body;
        size_t blen;
        int p = p2p__fetch_parse(buf, len, got == 0, f->max_body, &f->status, &body, &blen, &why);
        if (p < 0) {
            snprintf(f->error, sizeof f->error, "%s", why ? why : "malformed answer");
            f->status = 0;
            goto out;
        }
        if (p == 1) {
            f->retry_after = p2p__fetch_retry_after(buf, len);
            f->answer = body;
            f->answer_len = blen;
            rc = 0;
            break;
        }
    }
out:
    if (ssl) {
        if (rc == 0)
            SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    free(req);
    if (buf) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    return rc;
}
