/*
 * codec.c — gossip wire format (see codec.h for the layout) and the
 * transmit-limited broadcast queue. The decoder is written as a cursor over
 * the input that fails closed: every read checks the bytes that remain, every
 * count and length is checked against its limit before it is used, and a
 * frame body must be consumed exactly. Nothing here allocates except the queue.
 */
#include "membership/codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* ================================================================== */
/* validation helpers                                                  */
/* ================================================================== */

static bool name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

static bool name_valid(const char *s, size_t len, size_t min, size_t max)
{
    if (len < min || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char((unsigned char)s[i]))
            return false;
    return true;
}

bool p2p_gossip_id_valid(const char *id)
{
    return id && name_valid(id, strnlen(id, P2P_GOSSIP_ID_MAX + 1), 1, P2P_GOSSIP_ID_MAX);
}

bool p2p_gossip_role_valid(const char *role)
{
    return role && name_valid(role, strnlen(role, P2P_GOSSIP_ROLE_MAX + 1), 0, P2P_GOSSIP_ROLE_MAX);
}

/* Parses an address literal into family (4/6) and raw bytes. */
static int addr_parse(const char *addr, uint8_t *family, uint8_t raw[16])
{
    if (!addr)
        return -EINVAL;
    if (inet_pton(AF_INET, addr, raw) == 1) {
        *family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, raw) == 1) {
        *family = 6;
        return 0;
    }
    return -EINVAL;
}

static void addr_format(uint8_t family, const uint8_t *raw, char *out)
{
    /* inet_ntop cannot fail for these families and this buffer size. */
    if (!inet_ntop(family == 4 ? AF_INET : AF_INET6, raw, out, P2P_GOSSIP_ADDRSTRLEN))
        out[0] = '\0';
}

int p2p_gossip_addr_canon(const char *addr, char *out)
{
    uint8_t fam, raw[16];
    if (addr_parse(addr, &fam, raw) < 0)
        return -EINVAL;
    addr_format(fam, raw, out);
    return 0;
}

int p2p_gossip_node_check(const p2p_gossip_node *n, const char **why)
{
    const char *w = NULL;
    if (!p2p_gossip_id_valid(n->id))
        w = "invalid node id";
    else if (n->port == 0)
        w = "port 0";
    else if (n->naddrs < 1 || n->naddrs > P2P_GOSSIP_MAX_ADDRS)
        w = "address count out of range";
    else if (!p2p_gossip_role_valid(n->role))
        w = "invalid role";
    else if (n->meta_len > P2P_GOSSIP_META_MAX || (n->meta_len && !n->meta))
        w = "meta too large";
    else if (n->meta_len && memchr(n->meta, '\0', n->meta_len))
        w = "NUL in meta";
    for (unsigned i = 0; !w && i < n->naddrs; i++) {
        uint8_t fam, raw[16];
        if (addr_parse(n->addrs[i], &fam, raw) < 0)
            w = "invalid address";
    }
    if (w) {
        if (why)
            *why = w;
        return -EINVAL;
    }
    return 0;
}

/* ================================================================== */
/* encoding                                                            */
/* ================================================================== */

typedef struct wbuf {
    uint8_t *p;
    size_t cap;
    size_t len;
    bool overflow;
} wbuf;

static void put(wbuf *b, const void *src, size_t n)
{
    if (b->overflow || b->cap - b->len < n) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u8(wbuf *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put_u16(wbuf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 2);
}

static void put_u32(wbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void put_str(wbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u8(b, (uint8_t)n);
    put(b, s, n);
}

static int put_addr(wbuf *b, const char *addr)
{
    uint8_t fam, raw[16];
    if (addr_parse(addr, &fam, raw) < 0)
        return -EINVAL;
    put_u8(b, fam);
    put(b, raw, fam == 4 ? 4 : 16);
    return 0;
}

static void put_sig(wbuf *b, const p2p_gossip_sig *g)
{
    put(b, g->cert_id, P2P_GOSSIP_CERT_ID_LEN);
    put_u8(b, g->len);
    put(b, g->sig, g->len);
}

/* The ALIVE body up to (not including) the signature. */
static int put_alive_fields(wbuf *b, const p2p_gossip_node *n)
{
    if (p2p_gossip_node_check(n, NULL) < 0 || n->sig.len > P2P_GOSSIP_SIG_MAX)
        return -EINVAL;
    put_u32(b, n->incarnation);
    put_str(b, n->id);
    put_u16(b, n->port);
    put_u8(b, n->naddrs);
    for (unsigned i = 0; i < n->naddrs; i++)
        put_addr(b, n->addrs[i]);
    put_str(b, n->role);
    put_u16(b, (uint16_t)n->meta_len);
    put(b, n->meta, n->meta_len);
    return 0;
}

#define ALIVE_TBS_LABEL "p2p-alive-v2" /* with its NUL: 13 bytes */
#define LEAVE_TBS_LABEL "p2p-leave-v2"

int p2p_gossip_alive_tbs(const p2p_gossip_node *n, uint8_t *buf, size_t cap)
{
    wbuf b = {buf, cap, 0, false};
    put(&b, ALIVE_TBS_LABEL, sizeof ALIVE_TBS_LABEL);
    if (put_alive_fields(&b, n) < 0)
        return -EINVAL;
    put(&b, n->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
    return b.overflow ? -ENOSPC : (int)b.len;
}

int p2p_gossip_leave_tbs(const char *id, uint32_t incarnation, const uint8_t cert_id[P2P_GOSSIP_CERT_ID_LEN],
                         uint8_t *buf, size_t cap)
{
    if (!p2p_gossip_id_valid(id))
        return -EINVAL;
    wbuf b = {buf, cap, 0, false};
    put(&b, LEAVE_TBS_LABEL, sizeof LEAVE_TBS_LABEL);
    put_u32(&b, incarnation);
    put_str(&b, id);
    put(&b, cert_id, P2P_GOSSIP_CERT_ID_LEN);
    return b.overflow ? -ENOSPC : (int)b.len;
}

static int encode_body(const p2p_gossip_msg *m, wbuf *b)
{
    switch (m->type) {
    case P2P_GOSSIP_PING:
        if ((m->id[0] && !p2p_gossip_id_valid(m->id)) || !p2p_gossip_id_valid(m->from))
            return -EINVAL;
        put_u32(b, m->seq);
        put_str(b, m->id);
        put_str(b, m->from);
        put_u32(b, m->live);
        put_u32(b, m->digest);
        return 0;
    case P2P_GOSSIP_ACK:
        put_u32(b, m->seq);
        put_u32(b, m->live);
        put_u32(b, m->digest);
        return 0;
    case P2P_GOSSIP_NACK:
    case P2P_GOSSIP_SYNC_REQ:
    case P2P_GOSSIP_SYNC:
        put_u32(b, m->seq);
        return 0;
    case P2P_GOSSIP_PING_REQ:
        if (!p2p_gossip_id_valid(m->id) || m->port == 0)
            return -EINVAL;
        put_u32(b, m->seq);
        put_str(b, m->id);
        if (put_addr(b, m->addr) < 0)
            return -EINVAL;
        put_u16(b, m->port);
        return 0;
    case P2P_GOSSIP_ALIVE:
        if (put_alive_fields(b, &m->node) < 0)
            return -EINVAL;
        put_sig(b, &m->node.sig);
        return 0;
    case P2P_GOSSIP_SUSPECT:
    case P2P_GOSSIP_DEAD:
        if (!p2p_gossip_id_valid(m->id) || !p2p_gossip_id_valid(m->from))
            return -EINVAL;
        if (m->type == P2P_GOSSIP_DEAD &&
            (m->sig.len > P2P_GOSSIP_SIG_MAX || (m->sig.len && strcmp(m->id, m->from))))
            return -EINVAL;
        put_u32(b, m->incarnation);
        put_str(b, m->id);
        put_str(b, m->from);
        if (m->type == P2P_GOSSIP_DEAD)
            put_sig(b, &m->sig);
        return 0;
    case P2P_GOSSIP_CERT_REQ:
        if (!p2p_gossip_id_valid(m->id))
            return -EINVAL;
        put(b, m->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
        put_str(b, m->id);
        return 0;
    case P2P_GOSSIP_CERT:
        if (!m->der || m->der_len < 1 || m->der_len > P2P_GOSSIP_CERT_MAX)
            return -EINVAL;
        put(b, m->sig.cert_id, P2P_GOSSIP_CERT_ID_LEN);
        put_u16(b, (uint16_t)m->der_len);
        put(b, m->der, m->der_len);
        return 0;
    }
    return -EINVAL;
}

int p2p_gossip_encode_frame(const p2p_gossip_msg *m, uint8_t *buf, size_t cap)
{
    if (cap < P2P_GOSSIP_FRAME_HDR)
        return -ENOSPC;
    wbuf b = {buf, cap, P2P_GOSSIP_FRAME_HDR, false};
    int rc = encode_body(m, &b);
    if (rc < 0)
        return rc;
    if (b.overflow)
        return -ENOSPC;
    size_t body = b.len - P2P_GOSSIP_FRAME_HDR;
    buf[0] = (uint8_t)m->type;
    buf[1] = (uint8_t)(body >> 8);
    buf[2] = (uint8_t)body;
    return (int)b.len;
}

void p2p_gossip_writer_init(p2p_gossip_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->buf[0] = P2P_GOSSIP_VERSION;
    w->buf[1] = 0;
    w->len = P2P_GOSSIP_HEADER_LEN;
    w->count = 0;
}

static size_t writer_limit(const p2p_gossip_writer *w, size_t budget)
{
    return budget < w->cap ? budget : w->cap;
}

int p2p_gossip_writer_add(p2p_gossip_writer *w, const p2p_gossip_msg *m, size_t budget)
{
    size_t lim = writer_limit(w, budget);
    if (w->count >= P2P_GOSSIP_MAX_FRAMES || lim <= w->len)
        return -ENOSPC;
    int n = p2p_gossip_encode_frame(m, w->buf + w->len, lim - w->len);
    if (n < 0)
        return n;
    w->len += (size_t)n;
    w->buf[1] = (uint8_t)++w->count;
    return 0;
}

int p2p_gossip_writer_add_frame(p2p_gossip_writer *w, const uint8_t *frame, size_t len, size_t budget)
{
    size_t lim = writer_limit(w, budget);
    if (w->count >= P2P_GOSSIP_MAX_FRAMES || lim < w->len || lim - w->len < len)
        return -ENOSPC;
    memcpy(w->buf + w->len, frame, len);
    w->len += len;
    w->buf[1] = (uint8_t)++w->count;
    return 0;
}

/* ================================================================== */
/* decoding                                                            */
/* ================================================================== */

typedef struct rbuf {
    const uint8_t *p;
    size_t len;
    size_t off;
    bool bad;
} rbuf;

static const uint8_t *take(rbuf *r, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint8_t get_u8(rbuf *r)
{
    const uint8_t *p = take(r, 1);
    return p ? p[0] : 0;
}

static uint16_t get_u16(rbuf *r)
{
    const uint8_t *p = take(r, 2);
    return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

static uint32_t get_u32(rbuf *r)
{
    const uint8_t *p = take(r, 4);
    return p ? ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3] : 0;
}

/* Reads a str of min..max name characters into out (max+1 bytes). */
static void get_name(rbuf *r, char *out, size_t min, size_t max)
{
    out[0] = '\0';
    size_t n = get_u8(r);
    const uint8_t *p = take(r, n);
    if (!p)
        return;
    if (!name_valid((const char *)p, n, min, max)) {
        r->bad = true;
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

static void get_addr(rbuf *r, char *out)
{
    out[0] = '\0';
    uint8_t fam = get_u8(r);
    if (r->bad)
        return;
    if (fam != 4 && fam != 6) {
        r->bad = true;
        return;
    }
    const uint8_t *p = take(r, fam == 4 ? 4 : 16);
    if (p)
        addr_format(fam, p, out);
}

static void get_port(rbuf *r, uint16_t *port)
{
    *port = get_u16(r);
    if (*port == 0)
        r->bad = true;
}

static void decode_alive(rbuf *r, p2p_gossip_node *n)
{
    n->incarnation = get_u32(r);
    get_name(r, n->id, 1, P2P_GOSSIP_ID_MAX);
    get_port(r, &n->port);
    n->naddrs = get_u8(r);
    if (n->naddrs < 1 || n->naddrs > P2P_GOSSIP_MAX_ADDRS) {
        r->bad = true;
        return;
    }
    for (unsigned i = 0; i < n->naddrs && !r->bad; i++)
        get_addr(r, n->addrs[i]);
    get_name(r, n->role, 0, P2P_GOSSIP_ROLE_MAX);
    n->meta_len = get_u16(r);
    if (n->meta_len > P2P_GOSSIP_META_MAX) {
        r->bad = true;
        return;
    }
    n->meta = (const char *)take(r, n->meta_len);
    if (n->meta && memchr(n->meta, '\0', n->meta_len))
        r->bad = true;
}

static void get_sig(rbuf *r, p2p_gossip_sig *g)
{
    const uint8_t *p = take(r, P2P_GOSSIP_CERT_ID_LEN);
    if (p)
        memcpy(g->cert_id, p, P2P_GOSSIP_CERT_ID_LEN);
    g->len = get_u8(r);
    if (g->len > P2P_GOSSIP_SIG_MAX) {
        r->bad = true;
        return;
    }
    p = take(r, g->len);
    if (p)
        memcpy(g->sig, p, g->len);
}

/* Decodes a known frame body. Returns 0 or -EBADMSG. */
static int decode_body(uint8_t type, const uint8_t *body, size_t len, p2p_gossip_msg *m)
{
    rbuf r = {body, len, 0, false};
    memset(m, 0, sizeof(*m));
    m->type = (p2p_gossip_type)type;
    switch (type) {
    case P2P_GOSSIP_PING:
        m->seq = get_u32(&r);
        get_name(&r, m->id, 0, P2P_GOSSIP_ID_MAX);
        get_name(&r, m->from, 1, P2P_GOSSIP_ID_MAX);
        m->live = get_u32(&r);
        m->digest = get_u32(&r);
        break;
    case P2P_GOSSIP_ACK:
        m->seq = get_u32(&r);
        m->live = get_u32(&r);
        m->digest = get_u32(&r);
        break;
    case P2P_GOSSIP_NACK:
    case P2P_GOSSIP_SYNC_REQ:
    case P2P_GOSSIP_SYNC:
        m->seq = get_u32(&r);
        break;
    case P2P_GOSSIP_PING_REQ:
        m->seq = get_u32(&r);
        get_name(&r, m->id, 1, P2P_GOSSIP_ID_MAX);
        get_addr(&r, m->addr);
        get_port(&r, &m->port);
        break;
    case P2P_GOSSIP_ALIVE:
        decode_alive(&r, &m->node);
        get_sig(&r, &m->node.sig);
        break;
    case P2P_GOSSIP_SUSPECT:
    case P2P_GOSSIP_DEAD:
        m->incarnation = get_u32(&r);
        get_name(&r, m->id, 1, P2P_GOSSIP_ID_MAX);
        get_name(&r, m->from, 1, P2P_GOSSIP_ID_MAX);
        if (type == P2P_GOSSIP_DEAD) {
            get_sig(&r, &m->sig);
            if (m->sig.len && strcmp(m->id, m->from))
                r.bad = true; /* only a leave is signed */
        }
        break;
    case P2P_GOSSIP_CERT_REQ: {
        const uint8_t *p = take(&r, P2P_GOSSIP_CERT_ID_LEN);
        if (p)
            memcpy(m->sig.cert_id, p, P2P_GOSSIP_CERT_ID_LEN);
        get_name(&r, m->id, 1, P2P_GOSSIP_ID_MAX);
        break;
    }
    case P2P_GOSSIP_CERT: {
        const uint8_t *p = take(&r, P2P_GOSSIP_CERT_ID_LEN);
        if (p)
            memcpy(m->sig.cert_id, p, P2P_GOSSIP_CERT_ID_LEN);
        m->der_len = get_u16(&r);
        if (m->der_len < 1 || m->der_len > P2P_GOSSIP_CERT_MAX) {
            r.bad = true;
            break;
        }
        m->der = take(&r, m->der_len);
        break;
    }
    default:
        return -EBADMSG;
    }
    if (r.bad || r.off != r.len)
        return -EBADMSG;
    return 0;
}

static int fail(const char **why, const char *w, int rc)
{
    if (why)
        *why = w;
    return rc;
}

int p2p_gossip_reader_init(p2p_gossip_reader *r, const uint8_t *buf, size_t len, const char **why)
{
    if (!buf || len < P2P_GOSSIP_HEADER_LEN + P2P_GOSSIP_FRAME_HDR)
        return fail(why, "packet too short", -EBADMSG);
    if (len > P2P_GOSSIP_MAX_PACKET)
        return fail(why, "packet too long", -EBADMSG);
    if (buf[0] != P2P_GOSSIP_VERSION)
        return fail(why, "unsupported version", -EPROTONOSUPPORT);
    if (buf[1] == 0)
        return fail(why, "no frames", -EBADMSG);
    r->buf = buf;
    r->len = len;
    r->off = P2P_GOSSIP_HEADER_LEN;
    r->count = buf[1];
    r->frames = 0;
    return 0;
}

int p2p_gossip_reader_next(p2p_gossip_reader *r, p2p_gossip_msg *out, const char **why)
{
    for (;;) {
        if (r->frames == r->count)
            return r->off == r->len ? 0 : fail(why, "trailing bytes", -EBADMSG);
        if (r->len - r->off < P2P_GOSSIP_FRAME_HDR)
            return fail(why, "truncated packet", -EBADMSG);
        r->frames++;
        const uint8_t *h = r->buf + r->off;
        uint8_t type = h[0];
        size_t blen = ((size_t)h[1] << 8) | h[2];
        if (type == 0)
            return fail(why, "frame type 0", -EBADMSG);
        if (r->len - r->off - P2P_GOSSIP_FRAME_HDR < blen)
            return fail(why, "truncated frame body", -EBADMSG);
        const uint8_t *body = h + P2P_GOSSIP_FRAME_HDR;
        r->off += P2P_GOSSIP_FRAME_HDR + blen;
        if (type > P2P_GOSSIP_CERT)
            continue; /* unknown type: skipped by length (forward compatibility) */
        if (decode_body(type, body, blen, out) < 0)
            return fail(why, "malformed frame body", -EBADMSG);
        return 1;
    }
}

int p2p_gossip_validate(const uint8_t *buf, size_t len, size_t *nmsgs, const char **why)
{
    p2p_gossip_reader r;
    int rc = p2p_gossip_reader_init(&r, buf, len, why);
    if (rc < 0)
        return rc;
    p2p_gossip_msg m;
    size_t n = 0;
    while ((rc = p2p_gossip_reader_next(&r, &m, why)) == 1)
        n++;
    if (rc < 0)
        return rc;
    if (nmsgs)
        *nmsgs = n;
    return 0;
}

/* ================================================================== */
/* transmit-limited broadcast queue                                    */
/* ================================================================== */

typedef struct qitem {
    char key[P2P_GOSSIP_ID_MAX + 1];
    uint8_t *frame;
    size_t len;
    unsigned transmits;
    uint64_t id; /* insertion order: larger is newer */
    bool taken;
} qitem;

struct p2p_gossip_queue {
    qitem *items;
    size_t n, cap;
    uint64_t next_id;
    qitem **order; /* scratch for fill, cap entries */
};

p2p_gossip_queue *p2p_gossip_queue_new(void)
{
    return p2p__xcalloc(1, sizeof(p2p_gossip_queue));
}

void p2p_gossip_queue_clear(p2p_gossip_queue *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->items[i].frame);
    q->n = 0;
}

void p2p_gossip_queue_free(p2p_gossip_queue *q)
{
    if (!q)
        return;
    p2p_gossip_queue_clear(q);
    free(q->items);
    free(q->order);
    free(q);
}

static qitem *queue_find(const p2p_gossip_queue *q, const char *key)
{
    for (size_t i = 0; i < q->n; i++)
        if (!strcmp(q->items[i].key, key))
            return &q->items[i];
    return NULL;
}

void p2p_gossip_queue_push(p2p_gossip_queue *q, const char *key, const uint8_t *frame, size_t len)
{
    qitem *it = queue_find(q, key);
    if (!it) {
        if (q->n == q->cap) {
            q->cap = q->cap ? q->cap * 2 : 16;
            q->items = p2p__xrealloc(q->items, q->cap * sizeof(*q->items));
            q->order = p2p__xrealloc(q->order, q->cap * sizeof(*q->order));
        }
        it = &q->items[q->n++];
        snprintf(it->key, sizeof(it->key), "%s", key);
    } else {
        free(it->frame);
    }
    it->frame = p2p__xmalloc(len ? len : 1);
    memcpy(it->frame, frame, len);
    it->len = len;
    it->transmits = 0;
    it->id = ++q->next_id;
    it->taken = false;
}

size_t p2p_gossip_queue_len(const p2p_gossip_queue *q)
{
    return q->n;
}

int p2p_gossip_queue_transmits(const p2p_gossip_queue *q, const char *key)
{
    const qitem *it = queue_find(q, key);
    return it ? (int)it->transmits : -1;
}

static void queue_drop(p2p_gossip_queue *q, size_t i)
{
    free(q->items[i].frame);
    q->items[i] = q->items[--q->n];
}

void p2p_gossip_queue_remove(p2p_gossip_queue *q, const char *key)
{
    qitem *it = queue_find(q, key);
    if (it)
        queue_drop(q, (size_t)(it - q->items));
}

static int order_cmp(const void *a, const void *b)
{
    const qitem *x = *(const qitem *const *)a, *y = *(const qitem *const *)b;
    if (x->transmits != y->transmits)
        return x->transmits < y->transmits ? -1 : 1;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id > y->id ? -1 : (x->id < y->id ? 1 : 0);
}

size_t p2p_gossip_queue_fill(p2p_gossip_queue *q, p2p_gossip_writer *w, size_t budget, unsigned limit,
                             bool allow_oversize)
{
    if (q->n == 0)
        return 0;
    for (size_t i = 0; i < q->n; i++)
        q->order[i] = &q->items[i];
    qsort(q->order, q->n, sizeof(*q->order), order_cmp);
    size_t added = 0;
    qitem *first = q->order[0];
    if (allow_oversize && w->count == 0 && P2P_GOSSIP_HEADER_LEN + first->len > budget) {
        if (p2p_gossip_writer_add_frame(w, first->frame, first->len, w->cap) == 0) {
            first->taken = true;
            added = 1;
        }
    } else {
        for (size_t i = 0; i < q->n; i++) {
            qitem *it = q->order[i];
            if (w->len + P2P_GOSSIP_FRAME_HDR > budget)
                break; /* not even the smallest frame fits */
            if (p2p_gossip_writer_add_frame(w, it->frame, it->len, budget) == 0) {
                it->taken = true;
                added++;
            }
        }
    }
    /* Count the transmits; drop what reached the limit (walk backwards, since
     * dropping moves the last item into the hole). */
    for (size_t i = q->n; i-- > 0;) {
        qitem *it = &q->items[i];
        if (!it->taken)
            continue;
        it->taken = false;
        if (++it->transmits >= limit)
            queue_drop(q, i);
    }
    return added;
}
