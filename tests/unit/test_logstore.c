/*
 * test_logstore.c — unit tests for src/logs/: the add_logs batch decoder
 * (malformed input: wrong types, huge messages, invalid UTF-8, NUL, future
 * timestamps, unordered seqs, 100k records -> refused whole), the segment
 * framing (CRC, truncation), the store (append, read back after reopen,
 * idempotent resend, truncated tail cut, rotation, retention by size and age,
 * clear keeps the high-water mark), queries (tail paging, cursor resume,
 * skipped count) and follow subscribers (bounded queue, skipped count).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "logs/follow.h"
#include "logs/query.h"
#include "logs/record.h"
#include "logs/segment.h"
#include "logs/store.h"

#define NOW_US (1796209961LL * 1000000)

static json_t *rec(long long seq, double ts, const char *level, const char *msg)
{
    return json_pack("{s:I, s:f, s:s, s:s, s:s}", "seq", (json_int_t)seq, "ts", ts, "level", level, "logger", "t",
                     "message", msg);
}

static json_t *batch(const char *node, long long from, size_t n)
{
    json_t *recs = json_array();
    for (size_t i = 0; i < n; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "line %lld", from + (long long)i);
        json_array_append_new(recs, rec(from + (long long)i, 1796209000.0 + (double)i, "INFO", msg));
    }
    return json_pack("{s:s, s:o}", "node_id", node, "records", recs);
}

static void expect_refused(json_t *params, const char *why)
{
    logbatch b;
    char err[300];
    assert_int_equal(logbatch_decode(params, NOW_US, &b, err, sizeof err), -EINVAL);
    if (!strstr(err, why))
        fail_msg("error '%s' does not say '%s'", err, why);
    assert_int_equal(b.n, 0);
    assert_null(b.recs);
    json_decref(params);
}

/* ---- the batch decoder ------------------------------------------------------------------ */

static void test_decode_good(void **state)
{
    json_t *p = batch("worker-1", 5, 3);
    json_t *r0 = json_array_get(json_object_get(p, "records"), 0);
    json_object_set_new(r0, "file", json_string("src/x.c"));
    json_object_set_new(r0, "line", json_integer(12));
    json_object_set_new(r0, "lost", json_integer(7));
    json_object_set_new(r0, "unknown_member", json_string("ignored"));
    logbatch b;
    char err[300];
    assert_int_equal(logbatch_decode(p, NOW_US, &b, err, sizeof err), 0);
    assert_int_equal(b.n, 3);
    assert_string_equal(b.node, "worker-1");
    assert_int_equal(b.recs[0]->seq, 5);
    assert_string_equal(b.recs[0]->file, "src/x.c");
    assert_int_equal(b.recs[0]->line, 12);
    assert_int_equal(b.recs[0]->lost, 7);
    assert_int_equal(b.recs[1]->lost, -1);
    assert_null(b.recs[1]->file);
    assert_int_equal(b.recs[2]->ts_us, 1796209002000000LL);
    /* encode -> decode round trip is exact */
    size_t len;
    char *enc = logrec_encode(b.recs[0], &len);
    json_t *o = json_loadb(enc, len, 0, NULL);
    logrec *back = logrec_from_json(o, "worker-1", 0, err, sizeof err);
    assert_non_null(back);
    assert_int_equal(back->ts_us, b.recs[0]->ts_us);
    assert_string_equal(back->message, b.recs[0]->message);
    assert_int_equal(back->line, 12);
    logrec_unref(back);
    json_decref(o);
    free(enc);
    logbatch_free(&b);
    json_decref(p);
}

static void test_decode_malformed(void **state)
{
    expect_refused(json_pack("[]"), "expected {node_id, records}");
    expect_refused(json_pack("{s:i, s:[]}", "node_id", 1, "records"), "node_id must be");
    expect_refused(json_pack("{s:s, s:[]}", "node_id", "bad/id", "records"), "node_id must be");
    expect_refused(json_pack("{s:s, s:s}", "node_id", "w", "records", "x"), "records must be an array");
    expect_refused(json_pack("{s:s, s:[]}", "node_id", "w", "records"), "1..5000");
    expect_refused(json_pack("{s:s, s:[], s:i}", "node_id", "w", "records", "x", 1), "unexpected parameter");
    json_t *p;
#define BAD1(field, value, why)                                                                                      \
    do {                                                                                                             \
        p = batch("w", 1, 3);                                                                                        \
        json_object_set_new(json_array_get(json_object_get(p, "records"), 1), field, value);                       \
        expect_refused(p, why);                                                                                      \
    } while (0)
    BAD1("seq", json_string("2"), "records[1].seq: must be an integer");
    BAD1("seq", json_integer(0), "records[1].seq");
    BAD1("seq", json_integer(1), "records[1].seq: must be greater");
    BAD1("ts", json_string("now"), "records[1].ts: must be a number");
    BAD1("ts", json_real(1796209961.0 + 601), "records[1].ts: more than 600 s in the future");
    BAD1("ts", json_real(12.0), "records[1].ts: out of range");
    BAD1("level", json_string("info"), "records[1].level");
    BAD1("level", json_integer(1), "records[1].level");
    BAD1("logger", json_string(""), "records[1].logger");
    BAD1("logger", json_null(), "records[1].logger: must be a string");
    BAD1("message", json_integer(3), "records[1].message: must be a string");
    BAD1("line", json_real(1.5), "records[1].line");
    BAD1("lost", json_integer(-1), "records[1].lost");
    BAD1("request_id", json_string(""), "records[1].request_id");
    /* huge message */
    char *huge = malloc(LOGREC_MAX_MESSAGE + 2);
    memset(huge, 'x', LOGREC_MAX_MESSAGE + 1);
    huge[LOGREC_MAX_MESSAGE + 1] = '\0';
    BAD1("message", json_string(huge), "records[1].message: must be 0..");
    free(huge);
    /* invalid UTF-8 and NUL (jansson refuses them when parsing; built values can hold them) */
    BAD1("message", json_stringn_nocheck("a\xff" "b", 3), "UTF-8");
    BAD1("message", json_stringn_nocheck("a\xed\xa0\x80" "b", 5), "UTF-8"); /* a surrogate */
    BAD1("message", json_stringn_nocheck("a\xc0\xaf", 3), "UTF-8");          /* overlong */
    BAD1("logger", json_stringn("a\0b", 3), "UTF-8");
    BAD1("message", json_stringn("a\0b", 3), "UTF-8");
    /* a non-object record */
    p = batch("w", 1, 2);
    json_array_append_new(json_object_get(p, "records"), json_integer(5));
    expect_refused(p, "records[2].must be an object");
    /* 100k records: refused whole */
    p = batch("w", 1, 100000);
    expect_refused(p, "1..5000 records (got 100000)");
}

static void test_utf8(void **state)
{
    assert_true(logrec_utf8_ok("h\xc3\xa9llo \xe4\xb8\xad \xf0\x9f\x98\x80", 15));
    assert_false(logrec_utf8_ok("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(logrec_utf8_ok("\xe4\xb8", 2));         /* cut */
    assert_false(logrec_utf8_ok("\x80", 1));
}

/* ---- segments ---------------------------------------------------------------------------- */

static void test_segment_frames(void **state)
{
    assert_int_equal(logseg_crc32("123456789", 9), 0xcbf43926u); /* the standard check value */
    uint8_t buf[256];
    memcpy(buf, LOGSEG_MAGIC, LOGSEG_MAGIC_LEN);
    size_t len = LOGSEG_MAGIC_LEN;
    const char *pl[2] = {"{\"a\":1}", "{\"b\":22}"};
    for (int i = 0; i < 2; i++) {
        logseg_frame_header(buf + len, pl[i], strlen(pl[i]));
        memcpy(buf + len + LOGSEG_FRAME_HDR, pl[i], strlen(pl[i]));
        len += LOGSEG_FRAME_HDR + strlen(pl[i]);
    }
    size_t off = LOGSEG_MAGIC_LEN, plen;
    const uint8_t *p;
    assert_int_equal(logseg_next(buf, len, &off, &p, &plen), 1);
    assert_int_equal(logseg_next(buf, len, &off, &p, &plen), 1);
    assert_memory_equal(p, pl[1], plen);
    assert_int_equal(logseg_next(buf, len, &off, &p, &plen), 0);
    /* every cut inside the second frame stops after the first */
    size_t first_end = LOGSEG_MAGIC_LEN + LOGSEG_FRAME_HDR + strlen(pl[0]);
    for (size_t cut = first_end + 1; cut < len; cut++) {
        off = LOGSEG_MAGIC_LEN;
        assert_int_equal(logseg_next(buf, cut, &off, &p, &plen), 1);
        assert_int_equal(logseg_next(buf, cut, &off, &p, &plen), -1);
        assert_int_equal(off, first_end);
    }
    /* a flipped bit fails the CRC */
    buf[len - 2] ^= 1;
    off = first_end;
    assert_int_equal(logseg_next(buf, len, &off, &p, &plen), -1);
}

/* ---- the store ------------------------------------------------------------------------------ */

static char tmpdir[256];

static int setup_dir(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/p2p-logstore-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_dir(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static logstore *open_store(uint64_t seg_bytes, uint64_t ret_bytes, int days, size_t max_entries)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/logs", tmpdir);
    logstore_cfg cfg = {dir, seg_bytes, ret_bytes, days, max_entries};
    logstore *s = NULL;
    char *err = NULL;
    int r = logstore_open(&s, &cfg, &err);
    if (r)
        fail_msg("open: %s", err);
    return s;
}

static size_t append(logstore *s, const char *node, long long from, size_t n)
{
    json_t *p = batch(node, from, n);
    logbatch b;
    char err[300];
    assert_int_equal(logbatch_decode(p, NOW_US, &b, err, sizeof err), 0);
    logrec **stored;
    size_t ns;
    assert_int_equal(logstore_append(s, &b, &stored, &ns, 1796209961), 0);
    logbatch_free(&b);
    json_decref(p);
    return ns;
}

static void test_store_append_reopen_resend(void **state)
{
    logstore *s = open_store(1 << 20, 1 << 30, 0, 100);
    assert_int_equal(append(s, "w1", 1, 10), 10);
    assert_int_equal(append(s, "w1", 5, 10), 4); /* 5..10 again, 11..14 new */
    assert_int_equal(append(s, "w2", 1, 3), 3);
    logstream *st = logstore_find(s, "w1");
    assert_int_equal(st->hwm, 14);
    assert_int_equal(st->count, 14);
    logstore_close(s);
    s = open_store(1 << 20, 1 << 30, 0, 100);
    st = logstore_find(s, "w1");
    assert_non_null(st);
    assert_int_equal(st->hwm, 14);
    assert_int_equal(st->count, 14);
    for (size_t i = 0; i < 14; i++)
        assert_int_equal(logstream_at(st, i)->seq, i + 1);
    assert_string_equal(logstream_at(st, 13)->message, "line 14");
    assert_int_equal(logstore_find(s, "w2")->count, 3);
    assert_int_equal(append(s, "w1", 1, 14), 0); /* all resent after a restart: nothing */
    logstore_close(s);
}

static void test_store_truncated_tail(void **state)
{
    logstore *s = open_store(1 << 20, 1 << 30, 0, 100);
    append(s, "w1", 1, 5);
    logstore_close(s);
    char path[400];
    snprintf(path, sizeof path, "%s/logs/w1/%020d.seg", tmpdir, 1);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    off_t whole = sb.st_size;
    /* a crash mid-write: cut into the last record */
    assert_int_equal(truncate(path, whole - 7), 0);
    s = open_store(1 << 20, 1 << 30, 0, 100);
    logstream *st = logstore_find(s, "w1");
    assert_int_equal(st->count, 4);
    assert_int_equal(st->hwm, 4);
    assert_true(st->damaged_bytes > 0);
    /* the partial frame is gone: the next append follows whole records */
    assert_int_equal(append(s, "w1", 5, 2), 2);
    logstore_close(s);
    s = open_store(1 << 20, 1 << 30, 0, 100);
    st = logstore_find(s, "w1");
    assert_int_equal(st->count, 6);
    assert_int_equal(st->damaged_bytes, 0);
    assert_string_equal(logstream_at(st, 5)->message, "line 6");
    logstore_close(s);
    /* garbage in place of the magic: the file is started over */
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(write(fd, "junk", 4) == 4);
    close(fd);
    s = open_store(1 << 20, 1 << 30, 0, 100);
    st = logstore_find(s, "w1");
    assert_int_equal(st->count, 0);
    assert_int_equal(append(s, "w1", 1, 1), 1);
    logstore_close(s);
}

static size_t count_segs(const char *node)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/logs/%s", tmpdir, node);
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".seg") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_store_rotation_retention_ring(void **state)
{
    /* 64 KiB segments, 256 KiB total, a ring of 50 */
    logstore *s = open_store(65536, 262144, 0, 50);
    for (int k = 0; k < 40; k++)
        append(s, "w1", 1 + k * 100, 100); /* ~100 bytes a record: ~400 KB in all */
    logstream *st = logstore_find(s, "w1");
    assert_int_equal(st->count, 50);
    assert_int_equal(logstream_at(st, 0)->seq, 3951);
    size_t before = count_segs("w1");
    assert_true(before >= 5);
    logstore_retention(s, 1796209961);
    assert_true(s->total_bytes <= 262144);
    assert_true(count_segs("w1") < before);
    assert_int_equal(st->n_segs, count_segs("w1"));
    assert_true(st->oldest_ts_us >= 1796209000000000LL);
    logstore_close(s);
    /* read back: only the ring's worth, newest first; hwm intact */
    s = open_store(65536, 262144, 0, 50);
    st = logstore_find(s, "w1");
    assert_int_equal(st->hwm, 4000);
    assert_int_equal(st->count, 50);
    assert_int_equal(logstream_at(st, 49)->seq, 4000);
    /* age: everything written "long ago" goes, except a fresh empty segment */
    s->cfg.retention_days = 1;
    logstore_retention(s, 1796209961 + 3 * 86400);
    assert_int_equal(count_segs("w1"), 1);
    logstore_close(s);
    s = open_store(65536, 262144, 0, 50);
    assert_int_equal(logstore_find(s, "w1")->hwm, 4000);
    logstore_close(s);
}

static void test_store_clear_keeps_hwm(void **state)
{
    logstore *s = open_store(1 << 20, 1 << 30, 0, 100);
    append(s, "w1", 1, 10);
    append(s, "w2", 1, 10);
    assert_int_equal(logstore_clear(s, "w1"), 0);
    assert_int_equal(logstore_clear(s, "nobody"), -ENOENT);
    assert_int_equal(logstore_find(s, "w1")->count, 0);
    assert_int_equal(logstore_find(s, "w2")->count, 10);
    logstore_close(s);
    s = open_store(1 << 20, 1 << 30, 0, 100);
    assert_int_equal(logstore_find(s, "w1")->count, 0);
    assert_int_equal(logstore_find(s, "w1")->hwm, 10);
    assert_int_equal(append(s, "w1", 5, 7), 1); /* 5..11: only 11 is new */
    logstore_close(s);
}

/* ---- queries and follow ---------------------------------------------------------------------------- */

static void test_query_tail_and_cursor(void **state)
{
    logstore *s = open_store(1 << 20, 1 << 30, 0, 30);
    append(s, "a", 1, 20);
    append(s, "b", 1, 20);
    logfilter f = {0};
    logquery_result r;
    logquery_run(s, &f, NULL, 5, 0, &r);
    assert_int_equal(r.total, 40);
    assert_int_equal(r.n, 5);
    assert_true(r.recs[0]->ts_us <= r.recs[4]->ts_us);
    assert_int_equal(r.recs[4]->seq, 20);
    assert_string_equal(r.cursor, "a=20,b=20");
    logquery_result_free(&r);
    /* resume from nothing, 7 at a time: 40 lines exactly once */
    logcursor cur;
    char err[200];
    assert_int_equal(logcursor_parse("", &cur, err, sizeof err), 0);
    size_t seen = 0;
    for (int i = 0; i < 10; i++) {
        logquery_run(s, &f, &cur, 7, 0, &r);
        seen += r.n;
        logcursor_free(&cur);
        assert_int_equal(logcursor_parse(r.cursor, &cur, err, sizeof err), 0);
        logquery_result_free(&r);
    }
    assert_int_equal(seen, 40);
    /* a cursor left behind the ring reports what it missed */
    logcursor_free(&cur);
    assert_int_equal(logcursor_parse("a=2,b=20", &cur, err, sizeof err), 0);
    append(s, "a", 21, 20); /* ring of 30: a's oldest is now 11 */
    logquery_run(s, &f, &cur, 100, 0, &r);
    assert_int_equal(r.skipped, 8);
    assert_int_equal(r.n, 30);
    logquery_result_free(&r);
    logcursor_free(&cur);
    logstore_close(s);
}

static void run_disk(logstore *s, const logfilter *f, const char *cursor, size_t limit, size_t offset,
                     uint64_t budget, logquery_result *r)
{
    logcursor cur;
    char err[200];
    if (cursor)
        assert_int_equal(logcursor_parse(cursor, &cur, err, sizeof err), 0);
    int disk = -1;
    logq *q = logq_prepare(s, f, cursor ? &cur : NULL, limit, offset, &disk);
    if (budget)
        logq_set_budget(q, budget);
    if (disk)
        logq_disk(q);
    logq_finish(q, r);
    logq_free(q);
    if (cursor)
        logcursor_free(&cur);
}

static void test_query_reads_segment_files(void **state)
{
    /* 300 lines of one node in 4 KiB segments, 10 in memory */
    logstore *s = open_store(4096, 1 << 30, 0, 10);
    for (long long i = 1; i <= 300; i++)
        append(s, "a", i, 1);
    append(s, "b", 1, 5);
    assert_true(logstore_find(s, "a")->n_segs > 5);
    logfilter f = {0};
    logquery_result r;
    /* tail, deep: 196..200 of a */
    f.node = "a";
    run_disk(s, &f, NULL, 5, 100, 0, &r);
    assert_int_equal(r.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(r.recs[i]->seq, 196 + i);
    assert_false(r.partial);
    assert_string_equal(r.cursor, "a=300,b=5");
    logquery_result_free(&r);
    /* resume from the start: everything once, in order, none skipped */
    run_disk(s, &f, "", 1000, 0, 0, &r);
    assert_int_equal(r.n, 300);
    assert_int_equal(r.skipped, 0);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(r.recs[i]->seq, i + 1);
    logquery_result_free(&r);
    /* memory only, the same cursor: what left the ring counts as skipped */
    logcursor cur;
    char err[200];
    assert_int_equal(logcursor_parse("", &cur, err, sizeof err), 0);
    logquery_run(s, &f, &cur, 1000, 0, &r);
    assert_int_equal(r.n, 10);
    assert_int_equal(r.skipped, 290);
    logquery_result_free(&r);
    logcursor_free(&cur);
    /* a budget of one byte: each page stops early (partial) and its cursor resumes exactly */
    char *c = p2p__xstrdup("");
    size_t seen = 0;
    int partials = 0;
    for (int k = 0; k < 400 && seen < 300; k++) {
        run_disk(s, &f, c, 50, 0, 1, &r);
        for (size_t i = 0; i < r.n; i++)
            assert_int_equal(r.recs[i]->seq, seen + 1 + i);
        seen += r.n;
        partials += r.partial;
        free(c);
        c = p2p__xstrdup(r.cursor);
        logquery_result_free(&r);
    }
    free(c);
    assert_int_equal(seen, 300);
    assert_true(partials > 0);
    /* filters apply to lines from disk; the two nodes merge */
    f.node = NULL;
    f.min_level = LOGREC_INFO;
    f.search = "line 15";
    run_disk(s, &f, "", 1000, 0, 0, &r);
    /* a: 15, 150..159; b: none (b has lines 1..5) */
    assert_int_equal(r.n, 11);
    assert_int_equal(r.recs[0]->seq, 15);
    logquery_result_free(&r);
    /* a file deleted under a query (retention) is skipped, never an error */
    f.search = NULL;
    f.node = "a";
    int disk = 0;
    assert_int_equal(logcursor_parse("", &cur, err, sizeof err), 0);
    logq *q = logq_prepare(s, &f, &cur, 1000, 0, &disk);
    assert_true(disk);
    logstore *s2 = s;
    logstore_retention(s2, 1796209961); /* nothing to delete by the limits */
    char path[400];
    snprintf(path, sizeof path, "%s/logs/a/%020llu.seg", tmpdir, (unsigned long long)logstore_find(s, "a")->segs[0].base);
    assert_int_equal(unlink(path), 0);
    logq_disk(q);
    logq_finish(q, &r);
    logq_free(q);
    logcursor_free(&cur);
    assert_true(r.n > 10 && r.n < 300);
    assert_true(r.skipped == 0 || r.skipped == r.recs[0]->seq - 1);
    logquery_result_free(&r);
    logstore_close(s);
}

static void test_cursor_malformed(void **state)
{
    const char *bad[] = {"a", "a=", "=1", "a=1,,b=2", "a=-1", "a=x", "a/b=1", "a=99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        logcursor c;
        char err[200];
        assert_int_equal(logcursor_parse(bad[i], &c, err, sizeof err), -EINVAL);
        assert_null(c.pos);
    }
}

static void test_regex_guards(void **state)
{
    regex_t re;
    char err[200];
    assert_int_equal(logfilter_regcomp(&re, "(a+)+\\1", err, sizeof err), -EINVAL);
    assert_int_equal(logfilter_regcomp(&re, "a{256}", err, sizeof err), -EINVAL);
    assert_int_equal(logfilter_regcomp(&re, "a{1,1000}", err, sizeof err), -EINVAL);
    assert_int_equal(logfilter_regcomp(&re, "[", err, sizeof err), -EINVAL);
    assert_int_equal(logfilter_regcomp(&re, "^disk (full|gone)$", err, sizeof err), 0);
    regfree(&re);
}

static int notified;
static void on_notify(logsub *s, void *arg)
{
    notified++;
}

static void test_follow_bounded_queue(void **state)
{
    logstore *s = open_store(1 << 20, 1 << 30, 0, 1000);
    logfollow fl = {0};
    logfilter f = {0}, only_b = {.node = "b"};
    char err[200];
    logsub *fast = logfollow_subscribe(&fl, &f, 0, 1000, on_notify, NULL, err, sizeof err);
    logsub *slow = logfollow_subscribe(&fl, &f, 0, 10, on_notify, NULL, err, sizeof err);
    logsub *b = logfollow_subscribe(&fl, &only_b, 0, 10, on_notify, NULL, err, sizeof err);
    json_t *p = batch("a", 1, 100);
    logbatch bt;
    assert_int_equal(logbatch_decode(p, NOW_US, &bt, err, sizeof err), 0);
    logrec **stored;
    size_t ns;
    assert_int_equal(logstore_append(s, &bt, &stored, &ns, 1796209961), 0);
    logfollow_publish(&fl, stored, ns);
    logbatch_free(&bt);
    json_decref(p);
    assert_int_equal(notified, 2); /* not the subscriber of b */
    logrec *out[1000];
    uint64_t skipped;
    assert_int_equal(logsub_take(fast, out, 1000, &skipped), 100);
    assert_int_equal(skipped, 0);
    for (size_t i = 0; i < 100; i++)
        logrec_unref(out[i]);
    assert_int_equal(logsub_take(slow, out, 1000, &skipped), 10);
    assert_int_equal(skipped, 90);
    assert_int_equal(out[9]->seq, 10);
    for (size_t i = 0; i < 10; i++)
        logrec_unref(out[i]);
    assert_int_equal(logsub_take(b, out, 1000, &skipped), 0);
    logsub_close(&fl, slow);
    assert_int_equal(fl.n, 2);
    logfollow_close_all(&fl);
    logstore_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_good),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_segment_frames),
        cmocka_unit_test_setup_teardown(test_store_append_reopen_resend, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_store_truncated_tail, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_store_rotation_retention_ring, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_store_clear_keeps_hwm, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_query_tail_and_cursor, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_query_reads_segment_files, setup_dir, teardown_dir),
        cmocka_unit_test(test_cursor_malformed),
        cmocka_unit_test(test_regex_guards),
        cmocka_unit_test_setup_teardown(test_follow_bounded_queue, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
