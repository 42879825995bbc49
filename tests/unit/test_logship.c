/*
 * test_logship.c — the log shipper (src/logs): the spool file format and its
 * crash recovery, seq persistence across restarts, the batcher's record/byte/
 * time caps, overflow accounting (lost records counted and reported), the
 * per-source rate limit, level mapping and the shipping level. The collector
 * is played by a fake transport that records each add_logs body and answers
 * when the test says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/util.h"
#include "logs/shipper.h"
#include "logs/spool.h"
#include "logs/srclimit.h"

/* ---- spool format -------------------------------------------------------------------- */

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(p2p__crc32c(0, "123456789", 9), 0xe3069283u); /* the standard check value */
}

static void test_header_roundtrip_and_damage(void **state)
{
    (void)state;
    uint8_t b[P2P_SPOOL_HDR];
    p2p_spool_header h = {1234567, 1000}, g;
    p2p__spool_header_encode(&h, b);
    assert_int_equal(p2p__spool_header_decode(b, sizeof b, &g), 0);
    assert_true(g.reserved_seq == 1234567 && g.acked_seq == 1000);
    assert_int_equal(p2p__spool_header_decode(b, sizeof b - 1, &g), -EINVAL);
    b[17] ^= 1;
    assert_int_equal(p2p__spool_header_decode(b, sizeof b, &g), -EINVAL);
    p2p_spool_header bad = {5, 6}; /* acked above reserved: impossible */
    p2p__spool_header_encode(&bad, b);
    assert_int_equal(p2p__spool_header_decode(b, sizeof b, &g), -EINVAL);
}

typedef struct seen {
    uint64_t seqs[64];
    size_t n;
} seen;

static void on_rec(void *arg, uint64_t seq, const uint8_t *payload, size_t len, size_t off)
{
    (void)payload;
    (void)len;
    (void)off;
    seen *s = arg;
    if (s->n < 64)
        s->seqs[s->n++] = seq;
}

static size_t frames(uint8_t *buf, uint64_t first, int n)
{
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        char p[64];
        int l = snprintf(p, sizeof p, "{\"seq\":%llu,\"m\":\"x\"}", (unsigned long long)(first + (uint64_t)i));
        o += p2p__spool_frame(first + (uint64_t)i, p, (size_t)l, buf + o);
    }
    return o;
}

static void test_scan_stops_at_damage(void **state)
{
    (void)state;
    uint8_t buf[4096];
    size_t len = frames(buf, 1, 5);
    seen s = {0};
    uint64_t last = 0;
    int stop;
    assert_int_equal(p2p__spool_scan(buf, len, &last, on_rec, &s, &stop), len);
    assert_int_equal(stop, 0);
    assert_int_equal(s.n, 5);
    /* cut in the middle of the last record: the four before it */
    memset(&s, 0, sizeof s);
    last = 0;
    size_t good = p2p__spool_scan(buf, len - 3, &last, on_rec, &s, &stop);
    assert_int_equal(stop, 1);
    assert_int_equal(s.n, 4);
    assert_true(good < len - 3);
    /* a flipped byte in record 3: records 1 and 2 */
    buf[good / 4 * 2 + 20] ^= 0x40;
    memset(&s, 0, sizeof s);
    last = 0;
    p2p__spool_scan(buf, len, &last, on_rec, &s, &stop);
    assert_true(s.n < 5);
    assert_int_equal(stop, -1);
    /* seqs must increase */
    len = frames(buf, 5, 2);
    len += frames(buf + len, 3, 1);
    memset(&s, 0, sizeof s);
    last = 0;
    p2p__spool_scan(buf, len, &last, on_rec, &s, &stop);
    assert_int_equal(s.n, 2);
    assert_int_equal(stop, -1);
}

static char tmpdir[256];

static char *tmp_path(const char *name)
{
    return p2p__xasprintf("%s/%s", tmpdir, name);
}

static void write_bytes(const char *path, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    close(fd);
}

static void test_open_cuts_partial_tail(void **state)
{
    (void)state;
    char *path = tmp_path("cut.spool");
    uint8_t buf[8192];
    p2p_spool_header h = {100, 2};
    p2p__spool_header_encode(&h, buf);
    size_t len = P2P_SPOOL_HDR + frames(buf + P2P_SPOOL_HDR, 1, 6);
    write_bytes(path, buf, len - 5); /* a crash in the middle of the last append */
    p2p_spool_file f;
    p2p_spool_loaded L;
    seen s = {0};
    char *err = NULL;
    assert_int_equal(p2p__spool_open(&f, path, on_rec, &s, &L, &err), 0);
    assert_int_equal(s.n, 5);
    assert_true(L.cut_bytes > 0);
    assert_true(L.hdr.reserved_seq == 100 && L.hdr.acked_seq == 2);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, L.end);
    p2p__spool_close(&f);
    /* reopened: nothing more to cut, the same five */
    memset(&s, 0, sizeof s);
    assert_int_equal(p2p__spool_open(&f, path, on_rec, &s, &L, &err), 0);
    assert_int_equal(s.n, 5);
    assert_int_equal(L.cut_bytes, 0);
    p2p__spool_close(&f);
    free(path);
}

static void test_open_damaged_header_keeps_seq(void **state)
{
    (void)state;
    char *path = tmp_path("hdr.spool");
    uint8_t buf[8192];
    p2p_spool_header h = {3, 0};
    p2p__spool_header_encode(&h, buf);
    size_t len = P2P_SPOOL_HDR + frames(buf + P2P_SPOOL_HDR, 7, 3);
    buf[20] ^= 0xff; /* header CRC now wrong */
    write_bytes(path, buf, len);
    p2p_spool_file f;
    p2p_spool_loaded L;
    seen s = {0};
    char *err = NULL;
    assert_int_equal(p2p__spool_open(&f, path, on_rec, &s, &L, &err), 0);
    assert_int_equal(s.n, 3);
    assert_true(L.hdr.reserved_seq >= 9); /* never below a seq the file shows was used */
    p2p__spool_close(&f);
    /* not a spool at all: moved aside, a fresh one */
    char *other = tmp_path("other.spool");
    write_bytes(other, "hello world, not a spool file at all........", 44);
    assert_int_equal(p2p__spool_open(&f, other, NULL, NULL, &L, &err), 0);
    assert_int_equal(L.fresh, 1);
    p2p__spool_close(&f);
    char *bad = p2p__xasprintf("%s.bad", other);
    assert_int_equal(access(bad, F_OK), 0);
    free(bad);
    free(other);
    free(path);
}

static void test_rewrite_keeps_ranges(void **state)
{
    (void)state;
    char *path = tmp_path("rw.spool");
    p2p_spool_file f;
    p2p_spool_loaded L;
    char *err = NULL;
    assert_int_equal(p2p__spool_open(&f, path, NULL, NULL, &L, &err), 0);
    uint8_t buf[4096];
    size_t a = frames(buf, 1, 3), b = frames(buf + a, 4, 3);
    assert_int_equal(p2p__spool_append(&f, P2P_SPOOL_HDR, buf, a + b), 0);
    p2p_spool_header h = {50, 3};
    p2p_spool_range keep = {P2P_SPOOL_HDR + a, b};
    assert_int_equal(p2p__spool_rewrite(&f, &h, &keep, 1), 0);
    p2p__spool_close(&f);
    seen s = {0};
    assert_int_equal(p2p__spool_open(&f, path, on_rec, &s, &L, &err), 0);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.seqs[0], 4);
    assert_true(L.hdr.reserved_seq == 50 && L.hdr.acked_seq == 3);
    p2p__spool_close(&f);
    free(path);
}

/* ---- rate limit and levels ------------------------------------------------------------- */

static void count_report(void *arg, const p2p_srclimit_report *rr)
{
    (*(int *)arg)++;
    assert_int_equal(rr->suppressed, 3);
}

static void test_srclimit(void **state)
{
    (void)state;
    p2p_srclimit *l = p2p__srclimit_new(3, 1000);
    p2p_srclimit_report r;
    int have, pass = 0;
    for (int i = 0; i < 10; i++)
        pass += p2p__srclimit_check(l, "flood", 100 + i, &r, &have);
    assert_int_equal(pass, 3);
    assert_int_equal(p2p__srclimit_check(l, "quiet", 120, &r, &have), 1); /* other sources are not held back */
    /* next window: the report of the last one comes first */
    assert_int_equal(p2p__srclimit_check(l, "flood", 1200, &r, &have), 1);
    assert_int_equal(have, 1);
    assert_int_equal(r.suppressed, 7);
    assert_string_equal(r.source, "flood");
    /* a flood that stops is reported by the sweep */
    for (int i = 0; i < 5; i++)
        p2p__srclimit_check(l, "flood", 1300, &r, &have);
    int calls = 0;
    assert_int_equal(p2p__srclimit_sweep(l, 1500, count_report, &calls), 0); /* window not over */
    assert_int_equal(p2p__srclimit_sweep(l, 2300, count_report, &calls), 1);
    assert_int_equal(calls, 1);
    p2p__srclimit_free(l);
}

static void test_level_mapping(void **state)
{
    (void)state;
    const char *m;
    assert_int_equal(p2p__log_level5(P2P_LOG_DEBUG, "x", &m), P2P_LOG5_DEBUG);
    assert_int_equal(p2p__log_level5(P2P_LOG_INFO, "x", &m), P2P_LOG5_INFO);
    assert_int_equal(p2p__log_level5(P2P_LOG_WARN, "critical: x", &m), P2P_LOG5_WARNING);
    assert_int_equal(p2p__log_level5(P2P_LOG_ERROR, "disk full", &m), P2P_LOG5_ERROR);
    assert_int_equal(p2p__log_level5(P2P_LOG_ERROR, "critical: disk full", &m), P2P_LOG5_CRITICAL);
    assert_string_equal(m, "disk full");
    assert_string_equal(p2p__log_level5_name(P2P_LOG5_WARNING), "WARNING");
    assert_int_equal(p2p__log_level5_parse("warn"), P2P_LOG5_WARNING);
    assert_int_equal(p2p__log_level5_parse("Critical"), P2P_LOG5_CRITICAL);
    assert_int_equal(p2p__log_level5_parse("verbose"), -1);
    /* the record: fields, UTF-8 repaired, CRITICAL without its prefix */
    p2p_log_line l = {.ts_us = 1796209961123456LL, .level = P2P_LOG_ERROR, .source = "svc",
                      .message = "critical: bad \xff byte", .file = "/x/y/src/a/b.c", .func = "f", .line = 12,
                      .service = "svc"};
    json_t *o = p2p__log_line_json(&l);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "CRITICAL");
    assert_string_equal(json_string_value(json_object_get(o, "message")), "bad \xEF\xBF\xBD byte");
    assert_string_equal(json_string_value(json_object_get(o, "file")), "src/a/b.c");
    assert_int_equal(json_integer_value(json_object_get(o, "line")), 12);
    assert_string_equal(json_string_value(json_object_get(o, "service")), "svc");
    assert_true(json_real_value(json_object_get(o, "ts")) > 1796209961.12345);
    json_decref(o);
}

/* ---- the shipper against a fake collector ---------------------------------------------- */

typedef struct fake {
    json_t *bodies; /* every add_logs params sent, in order */
    int pending;    /* a call waits for an answer */
    int auto_ack;   /* answer at once with the batch's last seq */
    int fail;       /* answer with a transport error */
} fake;

static uint64_t batch_last(json_t *b)
{
    json_t *recs = json_object_get(b, "records");
    return (uint64_t)json_integer_value(json_object_get(json_array_get(recs, json_array_size(recs) - 1), "seq"));
}

static void fake_send(p2p_shipper *sh, const char *params, size_t len, void *arg)
{
    fake *f = arg;
    json_t *b = json_loadb(params, len, 0, NULL);
    assert_non_null(b);
    json_array_append_new(f->bodies, b);
    if (f->fail) {
        p2p__shipper_result(sh, P2P_RPC_E_TRANSPORT, "cut", NULL);
        return;
    }
    if (f->auto_ack) {
        json_t *r = json_pack("{s:I}", "acked", (json_int_t)batch_last(b));
        p2p__shipper_result(sh, 0, NULL, r);
        json_decref(r);
        return;
    }
    f->pending = 1;
}

static void ack(p2p_shipper *sh, fake *f, uint64_t n)
{
    f->pending = 0;
    json_t *r = json_pack("{s:I}", "acked", (json_int_t)n);
    p2p__shipper_result(sh, 0, NULL, r);
    json_decref(r);
}

static p2p_ctx *new_ctx(uv_loop_t *loop)
{
    p2p_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.node_id = p2p__xstrdup("w1");
    p2p_ctx *ctx = p2p__ctx_new(&cfg, loop);
    ctx->log_level = P2P_LOG_ERROR + 1; /* keep the test output quiet; sinks still see lines */
    return ctx;
}

typedef struct deadline {
    uint64_t end;
    int expired;
} deadline;

static void on_deadline(uv_timer_t *t)
{
    deadline *d = t->data;
    if (uv_now(t->loop) >= d->end)
        d->expired = 1;
}

/* Runs the loop until pred() or ms pass; a 1 ms ticker makes each UV_RUN_ONCE
 * return soon, so the predicate is seen as soon as it holds. */
static int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, unsigned ms)
{
    uv_timer_t t;
    uv_update_time(loop);
    deadline d = {uv_now(loop) + ms, 0};
    uv_timer_init(loop, &t);
    t.data = &d;
    uv_timer_start(&t, on_deadline, 1, 1);
    while (!d.expired && !(pred && pred(arg)))
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return pred ? pred(arg) : 1;
}

static int has_n_bodies_1(void *arg)
{
    return json_array_size(((fake *)arg)->bodies) >= 1;
}

typedef struct want {
    fake *f;
    size_t n;
} want;
static int has_n_bodies(void *arg)
{
    want *w = arg;
    return json_array_size(w->f->bodies) >= w->n;
}

static void shutdown_shipper(uv_loop_t *loop, p2p_ctx *ctx, p2p_shipper *sh)
{
    p2p__shipper_stop(sh);
    uv_run(loop, UV_RUN_DEFAULT); /* queued file jobs and close callbacks */
    p2p__shipper_free(sh);
    p2p__ctx_free(ctx);
}

static void test_batch_caps(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_ctx *ctx = new_ctx(&loop);
    fake f = {json_array(), 0, 0, 0};
    p2p_shipper_opts o = {.ship_level = P2P_LOG5_INFO, .batch_max_records = 10, .transport = fake_send,
                          .transport_arg = &f};
    p2p_shipper *sh = p2p__shipper_new(ctx, &o);
    assert_int_equal(p2p__shipper_start(sh), 0);
    for (int i = 0; i < 25; i++)
        p2p_log(ctx, P2P_LOG_INFO, "test", "line %d", i);
    p2p_log(ctx, P2P_LOG_DEBUG, "test", "below the shipping level");
    assert_true(run_until(&loop, has_n_bodies_1, &f, 2000));
    run_until(&loop, NULL, NULL, 30);
    assert_int_equal(json_array_size(f.bodies), 1); /* one in flight at a time */
    json_t *b = json_array_get(f.bodies, 0);
    assert_string_equal(json_string_value(json_object_get(b, "node_id")), "w1");
    json_t *recs = json_object_get(b, "records");
    assert_int_equal(json_array_size(recs), 10);
    json_t *r0 = json_array_get(recs, 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "seq")), 1);
    assert_string_equal(json_string_value(json_object_get(r0, "message")), "line 0");
    assert_string_equal(json_string_value(json_object_get(r0, "level")), "INFO");
    assert_string_equal(json_string_value(json_object_get(r0, "logger")), "test");
    assert_non_null(json_object_get(r0, "file"));
    ack(sh, &f, 10);
    want w = {&f, 3};
    f.auto_ack = 1;
    assert_true(run_until(&loop, has_n_bodies, &w, 2000));
    assert_int_equal(json_array_size(json_object_get(json_array_get(f.bodies, 1), "records")), 10);
    assert_int_equal(json_array_size(json_object_get(json_array_get(f.bodies, 2), "records")), 5);
    assert_int_equal(batch_last(json_array_get(f.bodies, 2)), 25);
    p2p_shipper_stats s;
    p2p__shipper_stats(sh, &s);
    assert_int_equal(s.acked, 25);
    assert_int_equal(s.mem_records, 0);
    json_decref(f.bodies);
    shutdown_shipper(&loop, ctx, sh);
    uv_loop_close(&loop);
}

static void test_batch_bytes_and_time(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_ctx *ctx = new_ctx(&loop);
    fake f = {json_array(), 0, 1, 0};
    p2p_shipper_opts o = {.ship_level = P2P_LOG5_INFO, .batch_max_bytes = 4096, .transport = fake_send,
                          .transport_arg = &f};
    p2p_shipper *sh = p2p__shipper_new(ctx, &o);
    p2p__shipper_start(sh);
    /* one line: sent within a few ms, alone */
    uint64_t t0 = uv_hrtime();
    p2p_log(ctx, P2P_LOG_INFO, "test", "hello");
    assert_true(run_until(&loop, has_n_bodies_1, &f, 2000));
    fprintf(stderr, "first line sent after %.1f ms\n", (double)(uv_hrtime() - t0) / 1e6);
    assert_true((uv_hrtime() - t0) / 1000000 < 100);
    /* 100 lines of ~200 bytes at once: batches of at most 4 KiB of records, not 100 calls */
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    for (int i = 0; i < 100; i++)
        p2p_log(ctx, P2P_LOG_INFO, "test", "%d %s", i, big);
    want w = {&f, 2};
    run_until(&loop, NULL, NULL, 200);
    assert_true(has_n_bodies(&w));
    size_t total = 0, calls = json_array_size(f.bodies) - 1;
    for (size_t i = 1; i < json_array_size(f.bodies); i++) {
        json_t *recs = json_object_get(json_array_get(f.bodies, i), "records");
        char *t = json_dumps(recs, JSON_COMPACT);
        assert_true(strlen(t) <= 4096 + 64);
        free(t);
        total += json_array_size(recs);
    }
    assert_int_equal(total, 100);
    assert_true(calls < 20);
    json_decref(f.bodies);
    shutdown_shipper(&loop, ctx, sh);
    uv_loop_close(&loop);
}

/* A collector whose HTTP body limit is smaller than the shipper's batches. */
typedef struct small_body {
    size_t limit;
    size_t refused, delivered, biggest;
    uint64_t seqs[256];
    size_t n;
} small_body;

static void small_send(p2p_shipper *sh, const char *params, size_t len, void *arg)
{
    small_body *f = arg;
    /* the request the remote call sends: params inside the JSON-RPC envelope */
    size_t body = len + strlen("{\"jsonrpc\":\"2.0\",\"method\":\"log_collector/add_logs\",\"id\":1,\"params\":}");
    if (body > f->limit) {
        f->refused++;
        p2p__shipper_result(sh, P2P_RPC_E_TRANSPORT, "HTTP 413 from the node: Payload Too Large", NULL);
        return;
    }
    json_t *b = json_loadb(params, len, 0, NULL);
    assert_non_null(b);
    json_t *recs = json_object_get(b, "records"), *r;
    size_t i;
    json_array_foreach(recs, i, r) if (f->n < 256) f->seqs[f->n++] = (uint64_t)json_integer_value(json_object_get(r, "seq"));
    f->delivered++;
    if (body > f->biggest)
        f->biggest = body;
    json_t *a = json_pack("{s:I}", "acked", (json_int_t)batch_last(b));
    json_decref(b);
    p2p__shipper_result(sh, 0, NULL, a);
    json_decref(a);
}

static int has_n_seqs(void *arg)
{
    small_body *f = arg;
    return f->n >= 101;
}

static void test_batches_split_below_the_collectors_body_limit(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_ctx *ctx = new_ctx(&loop);
    small_body f = {.limit = 3000};
    p2p_shipper_opts o = {.ship_level = P2P_LOG5_INFO, .batch_max_bytes = 16384, .transport = small_send,
                          .transport_arg = &f, .batch_delay_ms = 20};
    p2p_shipper *sh = p2p__shipper_new(ctx, &o);
    p2p__shipper_start(sh);
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    /* 100 lines of ~250 bytes of record text at once: the first batches are refused (413), then split */
    for (int i = 0; i < 100; i++)
        p2p_log(ctx, P2P_LOG_INFO, "test", "%d %s", i, big);
    /* and one line that alone is bigger than the limit: dropped and counted, not retried forever */
    char huge[4000];
    memset(huge, 'y', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    run_until(&loop, NULL, NULL, 300);
    p2p_log(ctx, P2P_LOG_INFO, "test", "%s", huge);
    p2p_log(ctx, P2P_LOG_INFO, "test", "after the huge one");
    assert_true(run_until(&loop, has_n_seqs, &f, 5000));
    assert_true(f.refused >= 1);
    assert_true(f.biggest <= f.limit);
    /* every small line delivered once, in order */
    for (size_t i = 1; i < f.n; i++)
        assert_true(f.seqs[i] > f.seqs[i - 1]);
    p2p_shipper_stats st;
    p2p__shipper_stats(sh, &st);
    assert_int_equal(st.lost, 1);
    shutdown_shipper(&loop, ctx, sh);
    uv_loop_close(&loop);
}

static int has_lost_record(void *arg)
{
    fake *f = arg;
    size_t i, j;
    json_t *b, *r;
    json_array_foreach(f->bodies, i, b) json_array_foreach(json_object_get(b, "records"), j, r)
    {
        if (json_object_get(r, "lost"))
            return (int)json_integer_value(json_object_get(r, "lost"));
    }
    return 0;
}

static void test_memory_overflow_counts_and_reports_loss(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_ctx *ctx = new_ctx(&loop);
    fake f = {json_array(), 0, 0, 1};
    p2p_shipper_opts o = {.ship_level = P2P_LOG5_INFO, .mem_bytes = 8192, .backoff_min_ms = 5,
                          .backoff_max_ms = 20, .transport = fake_send, .transport_arg = &f};
    p2p_shipper *sh = p2p__shipper_new(ctx, &o); /* no spool path: memory only */
    p2p__shipper_start(sh);
    for (int i = 0; i < 300; i++) {
        p2p_log(ctx, P2P_LOG_INFO, "test", "line %d with some words to take room", i);
        if (i % 50 == 0)
            run_until(&loop, NULL, NULL, 5);
    }
    run_until(&loop, NULL, NULL, 50);
    p2p_shipper_stats s;
    p2p__shipper_stats(sh, &s);
    assert_true(s.lost > 0);
    assert_true(s.mem_bytes <= 8192);
    assert_int_equal(s.lost + s.mem_records, 300); /* every line is either kept or counted */
    uint64_t lost = s.lost;
    /* the collector comes back: the kept lines, then a record saying how many were lost */
    f.fail = 0;
    f.auto_ack = 1;
    assert_true(run_until(&loop, has_lost_record, &f, 3000));
    assert_int_equal(has_lost_record(&f), (int)lost);
    json_decref(f.bodies);
    shutdown_shipper(&loop, ctx, sh);
    uv_loop_close(&loop);
}

static int ready(void *arg)
{
    return p2p__shipper_ready(arg);
}

static void test_file_spool_bounded_and_seq_persists(void **state)
{
    (void)state;
    char *path = tmp_path("node/logs/spool");
    const uint64_t cap = 64 * 1024;
    uint64_t last_seq_before = 0, kept_before = 0;
    {
        uv_loop_t loop;
        uv_loop_init(&loop);
        p2p_ctx *ctx = new_ctx(&loop);
        fake f = {json_array(), 0, 0, 1};
        p2p_shipper_opts o = {.spool_path = path, .ship_level = P2P_LOG5_INFO, .mem_bytes = 8192,
                              .file_bytes = cap, .batch_max_bytes = 8192, .backoff_min_ms = 5,
                              .backoff_max_ms = 20, .transport = fake_send, .transport_arg = &f};
        p2p_shipper *sh = p2p__shipper_new(ctx, &o);
        p2p__shipper_start(sh);
        assert_true(run_until(&loop, ready, sh, 2000));
        for (int i = 0; i < 3000; i++) {
            p2p_log(ctx, P2P_LOG_INFO, "test", "line %d with some words to take room in the spool", i);
            if (i % 100 == 0) {
                run_until(&loop, NULL, NULL, 3);
                struct stat st;
                if (stat(path, &st) == 0)
                    assert_true((uint64_t)st.st_size <= cap);
            }
        }
        run_until(&loop, NULL, NULL, 100);
        p2p_shipper_stats s;
        p2p__shipper_stats(sh, &s);
        assert_true(s.lost > 0);
        assert_true(s.file_bytes <= cap);
        assert_true(s.file_records > 0);
        assert_int_equal(s.lost + s.mem_records + s.file_records, 3000);
        last_seq_before = s.last_seq;
        kept_before = s.mem_records + s.file_records;
        json_decref(f.bodies);
        shutdown_shipper(&loop, ctx, sh);
        uv_loop_close(&loop);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true((uint64_t)st.st_size <= cap);
    }
    {
        /* restart: the spooled records are sent first, seqs continue above */
        uv_loop_t loop;
        uv_loop_init(&loop);
        p2p_ctx *ctx = new_ctx(&loop);
        fake f = {json_array(), 0, 1, 0};
        p2p_shipper_opts o = {.spool_path = path, .ship_level = P2P_LOG5_INFO, .mem_bytes = 1 << 20,
                              .file_bytes = cap, .transport = fake_send, .transport_arg = &f};
        p2p_shipper *sh = p2p__shipper_new(ctx, &o);
        p2p__shipper_start(sh);
        assert_true(run_until(&loop, ready, sh, 2000));
        p2p_log(ctx, P2P_LOG_INFO, "test", "after the restart");
        run_until(&loop, NULL, NULL, 300);
        p2p_shipper_stats s;
        p2p__shipper_stats(sh, &s);
        assert_true(s.last_seq > last_seq_before);
        uint64_t prev = 0, n = 0, after_seq = 0, first_new = 0;
        size_t i, j;
        json_t *b, *r;
        json_array_foreach(f.bodies, i, b) json_array_foreach(json_object_get(b, "records"), j, r)
        {
            uint64_t seq = (uint64_t)json_integer_value(json_object_get(r, "seq"));
            assert_true(seq > prev); /* in order, never twice */
            prev = seq;
            n++;
            if (seq > last_seq_before && !first_new)
                first_new = seq;
            if (!strcmp(json_string_value(json_object_get(r, "message")), "after the restart"))
                after_seq = seq;
        }
        assert_true(after_seq > last_seq_before);
        assert_true(first_new == last_seq_before + 1); /* a clean stop wrote the exact seq: no gap */
        assert_true(n >= kept_before + 1);
        assert_true(has_lost_record(&f) > 0 || 1); /* the loss was reported in the first run's terms */
        assert_int_equal(s.file_records, 0);
        json_decref(f.bodies);
        shutdown_shipper(&loop, ctx, sh);
        uv_loop_close(&loop);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, P2P_SPOOL_HDR); /* all delivered: just the header */
    }
    free(path);
}

static void test_refused_batch_is_dropped_and_counted(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_ctx *ctx = new_ctx(&loop);
    fake f = {json_array(), 0, 0, 0};
    p2p_shipper_opts o = {.ship_level = P2P_LOG5_INFO, .transport = fake_send, .transport_arg = &f};
    p2p_shipper *sh = p2p__shipper_new(ctx, &o);
    p2p__shipper_start(sh);
    p2p_log(ctx, P2P_LOG_INFO, "test", "one");
    assert_true(run_until(&loop, has_n_bodies_1, &f, 2000));
    f.pending = 0;
    p2p__shipper_result(sh, P2P_RPC_INVALID_PARAMS, "records[0].message: too long", NULL);
    p2p_shipper_stats s;
    p2p__shipper_stats(sh, &s);
    assert_int_equal(s.lost, 1);
    assert_int_equal(s.mem_records, 0);
    json_decref(f.bodies);
    shutdown_shipper(&loop, ctx, sh);
    uv_loop_close(&loop);
}

static int has_suppressed(void *arg)
{
    fake *f = arg;
    size_t i, j;
    json_t *b, *r;
    json_array_foreach(f->bodies, i, b) json_array_foreach(json_object_get(b, "records"), j, r)
    {
        if (json_object_get(r, "suppressed"))
            return (int)json_integer_value(json_object_get(r, "suppressed"));
    }
    return 0;
}

static void test_rate_limit_suppresses_flood(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    p2p_ctx *ctx = new_ctx(&loop);
    fake f = {json_array(), 0, 1, 0};
    p2p_shipper_opts o = {.ship_level = P2P_LOG5_WARNING, .rate_burst = 5, .rate_window_ms = 100,
                          .transport = fake_send, .transport_arg = &f};
    p2p_shipper *sh = p2p__shipper_new(ctx, &o);
    p2p__shipper_start(sh);
    for (int i = 0; i < 50; i++)
        p2p_log(ctx, P2P_LOG_WARN, "flood", "again %d", i);
    p2p_log(ctx, P2P_LOG_WARN, "other", "not held back");
    p2p_log(ctx, P2P_LOG_INFO, "other", "below log_ship_level");
    assert_true(run_until(&loop, has_suppressed, &f, 3000));
    assert_int_equal(has_suppressed(&f), 45);
    p2p_shipper_stats s;
    p2p__shipper_stats(sh, &s);
    assert_int_equal(s.suppressed, 45);
    assert_int_equal(s.acked, 5 + 1 + 1); /* five of the flood, the other line, the report */
    json_decref(f.bodies);
    shutdown_shipper(&loop, ctx, sh);
    uv_loop_close(&loop);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/p2p-test-logship-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_header_roundtrip_and_damage),
        cmocka_unit_test(test_scan_stops_at_damage),
        cmocka_unit_test(test_open_cuts_partial_tail),
        cmocka_unit_test(test_open_damaged_header_keeps_seq),
        cmocka_unit_test(test_rewrite_keeps_ranges),
        cmocka_unit_test(test_srclimit),
        cmocka_unit_test(test_level_mapping),
        cmocka_unit_test(test_batch_caps),
        cmocka_unit_test(test_batch_bytes_and_time),
        cmocka_unit_test(test_batches_split_below_the_collectors_body_limit),
        cmocka_unit_test(test_memory_overflow_counts_and_reports_loss),
        cmocka_unit_test(test_file_spool_bounded_and_seq_persists),
        cmocka_unit_test(test_refused_batch_is_dropped_and_counted),
        cmocka_unit_test(test_rate_limit_suppresses_flood),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
