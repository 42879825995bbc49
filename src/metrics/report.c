/*
 * report.c — report_metrics params: strict decoder and the reporter's encoder
 * (see report.h for the shape and the bounds).
 */
#include "metrics/report.h"

#include <errno.h>
#include <lz4.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* ---- base64 ------------------------------------------------------------------------ */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t mreport_b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64chars[v >> 18];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = b64chars[(v >> 6) & 63];
        out[o++] = b64chars[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = b64chars[v >> 18];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long mreport_b64_decode(const char *in, size_t n, uint8_t *out)
{
    if (n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int pad = 0;
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            int d;
            if (c == '=' && i + 4 == n && k >= 2) {
                pad++;
                d = 0;
            } else {
                if (pad) /* data after padding */
                    return -1;
                d = b64val(c);
                if (d < 0)
                    return -1;
            }
            v = v << 6 | (uint32_t)d;
        }
        /* the bits padding hides must be zero (one encoding per payload) */
        if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff)))
            return -1;
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(v >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)v;
    }
    return (long)o;
}

/* ---- validation helpers ------------------------------------------------------------ */

typedef struct ctx {
    char *err;
    size_t errlen;
} vctx;

static int fail(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(vctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

typedef struct numdef {
    const char *name;
    double lo, hi;
    int integer; /* emitted as an integer */
} numdef;

/* Copies number `key` of `in` into `out` when present: null stays null. */
static int take_num(vctx *c, const char *where, json_t *in, const numdef *d, json_t *out)
{
    json_t *v = json_object_get(in, d->name);
    if (!v)
        return 0;
    if (json_is_null(v)) {
        json_object_set_new(out, d->name, json_null());
        return 0;
    }
    if (!json_is_number(v))
        return fail(c, "%s: %s must be a number or null", where, d->name);
    double x = json_number_value(v);
    if (!isfinite(x) || x < d->lo || x > d->hi)
        return fail(c, "%s: %s must be in %.0f..%.0f", where, d->name, d->lo, d->hi);
    json_object_set_new(out, d->name, d->integer ? json_integer((json_int_t)x) : json_real(x));
    return 0;
}

static int key_ok(const char *k, size_t max)
{
    size_t n = strlen(k);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
            return 0;
    return 1;
}

#define BIG 1e18
#define PCT 100.0

static const numdef sample_nums[] = {
    {"cpu", 0, PCT, 0},          {"mem_percent", 0, PCT, 0}, {"mem_used", 0, BIG, 1}, {"mem_total", 0, BIG, 1},
    {"load1", 0, 1e6, 0},        {"load5", 0, 1e6, 0},       {"load15", 0, 1e6, 0},   {"disk_percent", 0, PCT, 0},
    {"net_rx_bps", 0, BIG, 0},   {"net_tx_bps", 0, BIG, 0},  {"rss", 0, BIG, 1},      {"proc_cpu", 0, 1e5, 0},
    {"fds", 0, 1e9, 1},          {"threads", 0, 1e9, 1},     {"conns", 0, 1e9, 1},    {"rpc_calls", 0, 1e9, 0},
    {"rpc_errors", 0, 1e9, 0},
};
static const numdef disk_nums[] = {{"percent", 0, PCT, 0}, {"used", 0, BIG, 1}, {"total", 0, BIG, 1}};
static const numdef net_nums[] = {{"rx_bps", 0, BIG, 0}, {"tx_bps", 0, BIG, 0}};
static const numdef rpc_nums[] = {{"calls", 0, 1e12, 0}, {"errors", 0, 1e12, 0}, {"p50_ms", 0, 1e9, 0},
                                  {"p99_ms", 0, 1e9, 0}};
static const numdef gossip_nums[] = {{"sent", 0, 1e12, 0}, {"recv", 0, 1e12, 0}, {"dropped", 0, 1e12, 0}};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* {name: {fields}} with at most `max` names of at most `keymax` bytes. */
static int take_map(vctx *c, const char *where, json_t *in, const char *member, size_t max, size_t keymax,
                    const numdef *defs, size_t ndefs, json_t *out)
{
    json_t *m = json_object_get(in, member);
    if (!m || json_is_null(m))
        return 0;
    if (!json_is_object(m))
        return fail(c, "%s: %s must be an object", where, member);
    if (json_object_size(m) > max)
        return fail(c, "%s: %s has more than %zu entries", where, member, max);
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        char w[96];
        snprintf(w, sizeof w, "%s: %s", where, member);
        if (!key_ok(k, keymax)) {
            json_decref(o);
            return fail(c, "%s: a name is empty, longer than %zu bytes or has control characters", w, keymax);
        }
        if (!json_is_object(v)) {
            json_decref(o);
            return fail(c, "%s: each entry must be an object", w);
        }
        json_t *e = json_object();
        for (size_t i = 0; i < ndefs; i++)
            if (take_num(c, w, v, &defs[i], e) != 0) {
                json_decref(e);
                json_decref(o);
                return -1;
            }
        json_object_set_new(o, k, e);
    }
    json_object_set_new(out, member, o);
    return 0;
}

/* ---- samples, checked in place (no second tree per report) ---------------------------- */

static const numdef *find_def(const numdef *defs, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(defs[i].name, k) == 0)
            return &defs[i];
    return NULL;
}

/* Checks member `k` = `v` of `obj` against `d`; an integer kind given as a
 * real becomes an integer. */
static int num_inplace(vctx *c, const char *where, json_t *obj, const char *k, json_t *v, const numdef *d)
{
    if (json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(c, "%s: %s must be a number or null", where, d->name);
    double x = json_number_value(v);
    if (!isfinite(x) || x < d->lo || x > d->hi)
        return fail(c, "%s: %s must be in %.0f..%.0f", where, d->name, d->lo, d->hi);
    if (d->integer && !json_is_integer(v))
        json_object_set_new(obj, k, json_integer((json_int_t)x)); /* replaces the value: iteration stays valid */
    return 0;
}

/* Every member of `obj` is one of `defs` (checked) or goes. */
static int nums_inplace(vctx *c, const char *where, json_t *obj, const numdef *defs, size_t ndefs)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(obj, tmp, k, v)
    {
        const numdef *d = find_def(defs, ndefs, k);
        if (!d)
            json_object_del(obj, k);
        else if (num_inplace(c, where, obj, k, v, d) != 0)
            return -1;
    }
    return 0;
}

static int map_inplace(vctx *c, const char *where, const char *member, json_t *m, size_t max, size_t keymax,
                       const numdef *defs, size_t ndefs)
{
    if (json_is_null(m))
        return 0;
    if (!json_is_object(m))
        return fail(c, "%s: %s must be an object", where, member);
    if (json_object_size(m) > max)
        return fail(c, "%s: %s has more than %zu entries", where, member, max);
    char w[96];
    snprintf(w, sizeof w, "%s: %s", where, member);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        if (!key_ok(k, keymax))
            return fail(c, "%s: a name is empty, longer than %zu bytes or has control characters", w, keymax);
        if (!json_is_object(v))
            return fail(c, "%s: each entry must be an object", w);
        if (nums_inplace(c, w, v, defs, ndefs) != 0)
            return -1;
    }
    return 0;
}

/* Validates sample `in` (owned by the caller, changed in place: unknown members
 * dropped, integer kinds made integers). 0 or -1. */
static int check_sample(vctx *c, json_t *in, size_t idx, int64_t now_s)
{
    char where[32];
    snprintf(where, sizeof where, "samples[%zu]", idx);
    if (!json_is_object(in))
        return fail(c, "%s must be an object", where);
    json_t *t = json_object_get(in, "t");
    if (!json_is_integer(t))
        return fail(c, "%s: t (unix seconds, integer) is required", where);
    json_int_t ts = json_integer_value(t);
    if (ts < now_s - MREPORT_MAX_PAST_S || ts > now_s + MREPORT_MAX_FUTURE_S || ts <= 0 || ts > UINT32_MAX)
        return fail(c, "%s: t is more than 31 days old or more than %d s ahead of the coordinator's clock", where,
                    MREPORT_MAX_FUTURE_S);
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(in, tmp, k, v)
    {
        const numdef *d;
        int r = 0;
        if (!strcmp(k, "t"))
            continue;
        if ((d = find_def(sample_nums, N(sample_nums), k)) != NULL)
            r = num_inplace(c, where, in, k, v, d);
        else if (!strcmp(k, "disks"))
            r = map_inplace(c, where, k, v, MREPORT_MAX_DISKS, 255, disk_nums, N(disk_nums));
        else if (!strcmp(k, "nets"))
            r = map_inplace(c, where, k, v, MREPORT_MAX_NETS, 32, net_nums, N(net_nums));
        else if (!strcmp(k, "rpc"))
            r = map_inplace(c, where, k, v, MREPORT_MAX_RPC, 128, rpc_nums, N(rpc_nums));
        else if (!strcmp(k, "gossip")) {
            if (!json_is_null(v) && !json_is_object(v))
                r = fail(c, "%s: gossip must be an object", where);
            else if (json_is_object(v))
                r = nums_inplace(c, where, v, gossip_nums, N(gossip_nums));
        } else
            json_object_del(in, k); /* a newer node's member: not ours to keep */
        if (r != 0)
            return -1;
    }
    return 0;
}

static int str_member(vctx *c, const char *where, json_t *in, const char *name, size_t max, int required,
                      const char *const *allowed, json_t *out)
{
    json_t *v = json_object_get(in, name);
    if (!v || json_is_null(v)) {
        if (required)
            return fail(c, "%s: %s is required", where, name);
        return 0;
    }
    if (!json_is_string(v) || !key_ok(json_string_value(v), max))
        return fail(c, "%s: %s must be a string of 1..%zu bytes", where, name, max);
    if (allowed) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, json_string_value(v)) == 0;
        if (!ok)
            return fail(c, "%s: %s '%.20s' is not one of the known values", where, name, json_string_value(v));
    }
    json_object_set(out, name, v);
    return 0;
}

static json_t *check_service(vctx *c, json_t *in, size_t idx)
{
    static const char *const kinds[] = {"native", "exec", "builtin", NULL};
    static const char *const healths[] = {"healthy", "warning", "critical", "unknown", NULL};
    char where[32];
    snprintf(where, sizeof where, "services[%zu]", idx);
    if (!json_is_object(in)) {
        fail(c, "%s must be an object", where);
        return NULL;
    }
    json_t *out = json_object();
    if (str_member(c, where, in, "name", 64, 1, NULL, out) || str_member(c, where, in, "version", 32, 0, NULL, out) ||
        str_member(c, where, in, "kind", 16, 1, kinds, out) || str_member(c, where, in, "state", 16, 1, NULL, out) ||
        str_member(c, where, in, "health", 16, 1, healths, out))
        goto bad;
    static const numdef restarts = {"restarts", 0, 1e9, 1};
    if (take_num(c, where, in, &restarts, out) ||
        take_map(c, where, in, "methods", MREPORT_MAX_SVC_METHODS, 128, rpc_nums, N(rpc_nums), out))
        goto bad;
    if (!json_object_get(out, "methods"))
        json_object_set_new(out, "methods", json_object());
    json_t *m = json_object_get(in, "metrics");
    json_t *mo = json_object();
    json_object_set_new(out, "metrics", mo);
    if (m && !json_is_null(m)) {
        if (!json_is_object(m) || json_object_size(m) > MREPORT_MAX_SVC_METRICS) {
            fail(c, "%s: metrics must be an object of at most %d numbers", where, MREPORT_MAX_SVC_METRICS);
            goto bad;
        }
        const char *k;
        json_t *v;
        json_object_foreach(m, k, v)
        {
            if (!key_ok(k, 128) || !json_is_number(v) || !isfinite(json_number_value(v))) {
                fail(c, "%s: metrics must map names of 1..128 bytes to finite numbers", where);
                goto bad;
            }
            json_object_set(mo, k, v);
        }
    }
    return out;
bad:
    json_decref(out);
    return NULL;
}

static int node_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* ---- decode ------------------------------------------------------------------------ */

static json_t *inflate_samples(vctx *c, json_t *params)
{
    json_t *enc = json_object_get(params, "encoding"), *size = json_object_get(params, "size"),
           *data = json_object_get(params, "data");
    if (!json_is_string(enc) || strcmp(json_string_value(enc), "lz4") != 0) {
        fail(c, "encoding must be \"lz4\" (or send plain samples)");
        return NULL;
    }
    if (!json_is_integer(size) || json_integer_value(size) < 2 || json_integer_value(size) > MREPORT_MAX_SIZE) {
        fail(c, "size must be an integer in 2..%u", MREPORT_MAX_SIZE);
        return NULL;
    }
    if (!json_is_string(data) || json_string_length(data) > MREPORT_MAX_DATA) {
        fail(c, "data must be a base64 string of at most %u characters", MREPORT_MAX_DATA);
        return NULL;
    }
    size_t dlen = json_string_length(data);
    /* Typical reports (a few seconds of samples) fit on the stack: no large
     * malloc per report, which in glibc also consolidates every freed small
     * chunk the JSON parser left behind. */
    uint8_t raw_stack[24576], text_stack[65536];
    size_t raw_cap = dlen / 4 * 3 + 1;
    uint8_t *raw = raw_cap <= sizeof raw_stack ? raw_stack : p2p__xmalloc(raw_cap);
    long rn = mreport_b64_decode(json_string_value(data), dlen, raw);
    int want = (int)json_integer_value(size);
    char *text = rn > 0 ? ((size_t)want <= sizeof text_stack ? (char *)text_stack : p2p__xmalloc((size_t)want))
                        : NULL;
    int got = text ? LZ4_decompress_safe((const char *)raw, text, (int)rn, want) : -1;
    if (raw != raw_stack)
        free(raw);
    if (rn <= 0) {
        fail(c, "data is not valid base64");
        return NULL;
    }
    if (got != want) {
        if (text != (char *)text_stack)
            free(text);
        fail(c, "data does not inflate (LZ4 block) to exactly size bytes");
        return NULL;
    }
    json_error_t je;
    json_t *arr = json_loadb(text, (size_t)got, JSON_REJECT_DUPLICATES, &je);
    if (text != (char *)text_stack)
        free(text);
    if (!json_is_array(arr)) {
        json_decref(arr);
        fail(c, "data is not a JSON array of samples");
        return NULL;
    }
    return arr;
}

int mreport_decode(json_t *params, int64_t now_s, mreport *out, char *err, size_t errlen)
{
    vctx c = {err, errlen};
    json_t *in_samples = NULL, *samples = NULL, *services = NULL;
    if (!json_is_object(params))
        return fail(&c, "params must be an object"), -EINVAL;
    static const char *const allowed[] = {"node_id", "version", "samples", "encoding", "size", "data",
                                          "services", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(params, k, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            ok |= strcmp(*a, k) == 0;
        if (!ok)
            return fail(&c, "unexpected parameter '%.40s'", k), -EINVAL;
    }
    json_t *id = json_object_get(params, "node_id"), *ver = json_object_get(params, "version");
    if (!json_is_string(id) || !node_id_ok(json_string_value(id)))
        return fail(&c, "node_id must be a node id (1..63 of A-Z a-z 0-9 . _ -)"), -EINVAL;
    if (ver && !json_is_null(ver) && (!json_is_string(ver) || !key_ok(json_string_value(ver), 32)))
        return fail(&c, "version must be a string of 1..32 bytes"), -EINVAL;
    int plain = json_object_get(params, "samples") != NULL;
    int packed = json_object_get(params, "data") || json_object_get(params, "encoding") ||
                 json_object_get(params, "size");
    if (plain == packed)
        return fail(&c, "give either samples or encoding/size/data"), -EINVAL;
    if (plain) {
        json_t *given = json_object_get(params, "samples");
        if (!json_is_array(given))
            return fail(&c, "samples must be an array"), -EINVAL;
        if (json_array_size(given) > MREPORT_MAX_SAMPLES)
            return fail(&c, "at most %d samples per report", MREPORT_MAX_SAMPLES), -EINVAL;
        in_samples = json_deep_copy(given); /* checked in place: not the caller's */
    } else if (!(in_samples = inflate_samples(&c, params))) {
        return -EINVAL;
    }
    if (json_array_size(in_samples) > MREPORT_MAX_SAMPLES) {
        fail(&c, "at most %d samples per report", MREPORT_MAX_SAMPLES);
        goto bad;
    }
    size_t i;
    json_array_foreach(in_samples, i, v)
    {
        if (check_sample(&c, v, i, now_s) != 0)
            goto bad;
    }
    samples = in_samples;
    in_samples = NULL;
    json_t *sv = json_object_get(params, "services");
    if (sv && !json_is_null(sv)) {
        if (!json_is_array(sv) || json_array_size(sv) > MREPORT_MAX_SERVICES) {
            fail(&c, "services must be an array of at most %d services", MREPORT_MAX_SERVICES);
            goto bad;
        }
        services = json_array();
        json_array_foreach(sv, i, v)
        {
            json_t *s = check_service(&c, v, i);
            if (!s)
                goto bad;
            json_array_append_new(services, s);
        }
    }
    memset(out, 0, sizeof(*out));
    snprintf(out->node_id, sizeof out->node_id, "%s", json_string_value(id));
    snprintf(out->version, sizeof out->version, "%s", json_is_string(ver) ? json_string_value(ver) : "");
    out->samples = samples;
    out->services = services;
    return 0;
bad:
    json_decref(in_samples);
    json_decref(samples);
    json_decref(services);
    return -EINVAL;
}

void mreport_free(mreport *r)
{
    json_decref(r->samples);
    json_decref(r->services);
    r->samples = r->services = NULL;
}

int64_t mreport_sample_time(const json_t *sample)
{
    return (int64_t)json_integer_value(json_object_get(sample, "t"));
}

void mreport_sample_values(const json_t *sample, double v[MT_NMETRICS])
{
    for (int m = 0; m < MT_NMETRICS; m++) {
        json_t *x = json_object_get(sample, mt_metric_names[m]);
        v[m] = json_is_number(x) ? json_number_value(x) : NAN;
    }
}

/* ---- encode ------------------------------------------------------------------------ */

json_t *mreport_encode(const char *node_id, const char *version, json_t *samples)
{
    char *text = json_dumps(samples, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!text)
        return NULL;
    size_t n = strlen(text);
    if (n > MREPORT_MAX_SIZE) {
        free(text);
        return NULL;
    }
    int cap = LZ4_compressBound((int)n);
    char *z = p2p__xmalloc((size_t)cap);
    int zn = LZ4_compress_default(text, z, (int)n, cap);
    free(text);
    if (zn <= 0) {
        free(z);
        return NULL;
    }
    char *b = p2p__xmalloc(((size_t)zn + 2) / 3 * 4 + 1);
    mreport_b64_encode((const uint8_t *)z, (size_t)zn, b);
    free(z);
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:s}", "node_id", node_id, "version", version, "encoding", "lz4",
                          "size", (json_int_t)n, "data", b);
    free(b);
    return o;
}
