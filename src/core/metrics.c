/*
 * metrics.c — metric sources and their two renderings (see metrics.h).
 *
 * A scrape runs every source into one collector (a growing array of samples),
 * then renders it. Sources are few (one per component) and scrapes are rare
 * next to requests, so the collector is built per scrape and freed after: no
 * state survives between scrapes and a source that stops emitting a sample
 * simply makes it disappear.
 */
#include "core/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct source {
    char *group;
    p2p_metrics_fn fn;
    void *arg;
} source;

struct p2p_metrics_sources {
    source *v;
    size_t n;
};

typedef struct sample {
    const char *name, *help, *label_key;
    char *label_value;
    p2p_metric_type type;
    double value;
} sample;

struct p2p_metrics_out {
    const char *group; /* the source being collected */
    struct {
        const char *group;
        sample s;
    } *v;
    size_t n, cap;
};

static int group_valid(const char *g)
{
    if (!g || !*g || strlen(g) > 64)
        return 0;
    for (const char *p = g; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return 1;
}

int p2p__metrics_source_add(p2p_ctx *ctx, const char *group, p2p_metrics_fn fn, void *arg)
{
    if (!group_valid(group) || !fn)
        return -EINVAL;
    if (!ctx->metrics)
        ctx->metrics = p2p__xcalloc(1, sizeof(*ctx->metrics));
    struct p2p_metrics_sources *ms = ctx->metrics;
    for (size_t i = 0; i < ms->n; i++)
        if (strcmp(ms->v[i].group, group) == 0)
            return -EEXIST;
    ms->v = p2p__xrealloc(ms->v, (ms->n + 1) * sizeof(*ms->v));
    ms->v[ms->n++] = (source){p2p__xstrdup(group), fn, arg};
    return 0;
}

void p2p__metrics_source_remove(p2p_ctx *ctx, const char *group)
{
    struct p2p_metrics_sources *ms = ctx->metrics;
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++) {
        if (strcmp(ms->v[i].group, group) == 0) {
            free(ms->v[i].group);
            memmove(&ms->v[i], &ms->v[i + 1], (ms->n - i - 1) * sizeof(*ms->v));
            ms->n--;
            return;
        }
    }
}

void p2p__metrics_sources_free(p2p_ctx *ctx)
{
    struct p2p_metrics_sources *ms = ctx->metrics;
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++)
        free(ms->v[i].group);
    free(ms->v);
    free(ms);
    ctx->metrics = NULL;
}

void p2p__metrics_emit(p2p_metrics_out *out, const char *name, const char *help, p2p_metric_type type,
                       const char *label_key, const char *label_value, double value)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 32;
        out->v = p2p__xrealloc(out->v, out->cap * sizeof(*out->v));
    }
    out->v[out->n].group = out->group;
    out->v[out->n].s = (sample){name, help ? help : "", label_key,
                                label_key ? p2p__xstrdup(label_value ? label_value : "") : NULL, type, value};
    out->n++;
}

static void collect(p2p_ctx *ctx, p2p_metrics_out *out)
{
    memset(out, 0, sizeof(*out));
    struct p2p_metrics_sources *ms = ctx->metrics;
    for (size_t i = 0; ms && i < ms->n; i++) {
        out->group = ms->v[i].group;
        ms->v[i].fn(ctx, out, ms->v[i].arg);
    }
}

static void out_free(p2p_metrics_out *out)
{
    for (size_t i = 0; i < out->n; i++)
        free(out->v[i].s.label_value);
    free(out->v);
}

/* "p2p_gossip_dropped_total" in group "gossip" -> "dropped". */
static void json_key(const char *group, const char *name, char *key, size_t n)
{
    char prefix[80];
    snprintf(prefix, sizeof prefix, "p2p_%s_", group);
    if (strncmp(name, prefix, strlen(prefix)) == 0)
        name += strlen(prefix);
    else if (strncmp(name, "p2p_", 4) == 0)
        name += 4;
    snprintf(key, n, "%s", name);
    size_t l = strlen(key);
    if (l > 6 && strcmp(key + l - 6, "_total") == 0)
        key[l - 6] = '\0';
}

static json_t *number(double v)
{
    if (isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0)
        return json_integer((json_int_t)v);
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *p2p__metrics_sources_json(p2p_ctx *ctx)
{
    p2p_metrics_out out;
    collect(ctx, &out);
    json_t *root = json_object();
    for (size_t i = 0; i < out.n; i++) {
        const sample *s = &out.v[i].s;
        json_t *g = json_object_get(root, out.v[i].group);
        if (!g) {
            g = json_object();
            json_object_set_new(root, out.v[i].group, g);
        }
        char key[128];
        json_key(out.v[i].group, s->name, key, sizeof key);
        if (!s->label_key) {
            json_object_set_new(g, key, number(s->value));
            continue;
        }
        json_t *o = json_object_get(g, key);
        if (!json_is_object(o)) {
            o = json_object();
            json_object_set_new(g, key, o);
        }
        json_object_set_new(o, s->label_value, number(s->value));
    }
    out_free(&out);
    return root;
}

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void tprintf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tprintf(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (n > 0 ? (size_t)n : 0);
        t->p = p2p__xrealloc(t->p, t->cap);
    }
}

/* Label values escape backslash, double quote and newline; HELP text escapes
 * backslash and newline (exposition format 0.0.4). */
static void tescaped(text *t, const char *v, int quote)
{
    for (; *v; v++) {
        if (*v == '\\' || (quote && *v == '"'))
            tprintf(t, "\\%c", *v);
        else if (*v == '\n')
            tprintf(t, "\\n");
        else
            tprintf(t, "%c", *v);
    }
}

char *p2p__metrics_sources_prometheus(p2p_ctx *ctx, size_t *len)
{
    p2p_metrics_out out;
    collect(ctx, &out);
    text t = {p2p__xmalloc(1024), 0, 1024};
    t.p[0] = '\0';
    const char *last = NULL;
    for (size_t i = 0; i < out.n; i++) {
        const sample *s = &out.v[i].s;
        if (!last || strcmp(last, s->name) != 0) {
            tprintf(&t, "# HELP %s ", s->name);
            tescaped(&t, s->help, 0);
            tprintf(&t, "\n# TYPE %s %s\n", s->name, s->type == P2P_METRIC_COUNTER ? "counter" : "gauge");
            last = s->name;
        }
        tprintf(&t, "%s", s->name);
        if (s->label_key) {
            tprintf(&t, "{%s=\"", s->label_key);
            tescaped(&t, s->label_value, 1);
            tprintf(&t, "\"}");
        }
        if (isnan(s->value))
            tprintf(&t, " NaN\n");
        else if (isinf(s->value))
            tprintf(&t, " %cInf\n", s->value > 0 ? '+' : '-');
        else if (s->value == floor(s->value) && fabs(s->value) < 1e15)
            tprintf(&t, " %.0f\n", s->value);
        else
            tprintf(&t, " %.17g\n", s->value);
    }
    out_free(&out);
    *len = t.len;
    return t.p;
}
