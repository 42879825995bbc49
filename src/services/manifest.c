/*
 * manifest.c — parsing and checking a service's manifest.json (see manifest.h).
 *
 * Everything is validated into a scratch struct first and moved into *out only
 * when the whole document is good, so a caller never sees half a manifest. The
 * first error decides, and its message names the file and the key, because the
 * operator reading the node's log has to find the line to fix.
 */
#include "services/manifest.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static const char *const reserved_names[] = {"system", "log_collector", "metrics_dashboard", "deploy", NULL};

const char *p2p__service_type_name(p2p_service_type t)
{
    return t == P2P_SVC_NATIVE ? "native" : t == P2P_SVC_EXEC ? "exec" : "?";
}

int p2p__service_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > P2P_MANIFEST_MAX_NAME)
        return 0;
    if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int method_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || !((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* ---- semantic versions ---------------------------------------------------------- */

/* A numeric identifier: digits, no leading zero (but "0"), fits in 64 bits. */
static int parse_num(const char **p, uint64_t *out)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return -1;
    if (s[0] == '0' && isdigit((unsigned char)s[1]))
        return -1;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

/* Dot-separated identifiers of [0-9A-Za-z-], none empty; numeric ones without
 * leading zeros when `numeric_rule`. Returns the length consumed, or -1. */
static int parse_idents(const char *s, int numeric_rule)
{
    const char *p = s;
    for (;;) {
        const char *start = p;
        int all_digits = 1;
        while (isalnum((unsigned char)*p) || *p == '-') {
            if (!isdigit((unsigned char)*p))
                all_digits = 0;
            p++;
        }
        if (p == start)
            return -1;
        if (numeric_rule && all_digits && p - start > 1 && start[0] == '0')
            return -1;
        if (*p != '.')
            break;
        p++;
    }
    return (int)(p - s);
}

int p2p__semver_parse(const char *s, p2p_semver *out)
{
    p2p_semver v;
    memset(&v, 0, sizeof v);
    if (!s || strlen(s) > 128)
        return -EINVAL;
    const char *p = s;
    if (parse_num(&p, &v.major) || *p++ != '.' || parse_num(&p, &v.minor) || *p++ != '.' ||
        parse_num(&p, &v.patch))
        return -EINVAL;
    if (*p == '-') {
        p++;
        int n = parse_idents(p, 1);
        if (n < 0 || (size_t)n >= sizeof v.pre)
            return -EINVAL;
        memcpy(v.pre, p, (size_t)n);
        v.pre[n] = '\0';
        p += n;
    }
    if (*p == '+') {
        p++;
        int n = parse_idents(p, 0);
        if (n < 0)
            return -EINVAL;
        p += n;
    }
    if (*p)
        return -EINVAL;
    *out = v;
    return 0;
}

static int is_numeric(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return n > 0;
}

/* semver.org §11: identifiers compared left to right; numeric ones numerically
 * and below alphanumeric ones; a shorter list of equal prefix comes first. */
static int pre_cmp(const char *a, const char *b)
{
    if (!*a || !*b)
        return !*a && !*b ? 0 : !*a ? 1 : -1; /* no pre-release ranks higher */
    for (;;) {
        size_t la = strcspn(a, "."), lb = strcspn(b, ".");
        int na = is_numeric(a, la), nb = is_numeric(b, lb);
        int c;
        if (na && nb)
            c = la != lb ? (la < lb ? -1 : 1) : memcmp(a, b, la);
        else if (na != nb)
            c = na ? -1 : 1;
        else {
            c = memcmp(a, b, la < lb ? la : lb);
            if (c == 0 && la != lb)
                c = la < lb ? -1 : 1;
        }
        if (c)
            return c < 0 ? -1 : 1;
        a += la;
        b += lb;
        if (!*a || !*b)
            return !*a && !*b ? 0 : !*a ? -1 : 1;
        a++;
        b++;
    }
}

int p2p__semver_cmp(const p2p_semver *a, const p2p_semver *b)
{
    if (a->major != b->major)
        return a->major < b->major ? -1 : 1;
    if (a->minor != b->minor)
        return a->minor < b->minor ? -1 : 1;
    if (a->patch != b->patch)
        return a->patch < b->patch ? -1 : 1;
    return pre_cmp(a->pre, b->pre);
}

/* ---- the document ----------------------------------------------------------------- */

static int fail(char **err, const char *file, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char **err, const char *file, const char *key, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (key)
        return p2p__fail(err, -EINVAL, "%s: key '%s': %s", file, key, what);
    return p2p__fail(err, -EINVAL, "%s: %s", file, what);
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void p2p__manifest_free(p2p_manifest *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->version);
    free(m->description);
    free(m->entry);
    free_strv(m->command, m->n_command);
    for (size_t i = 0; i < m->n_methods; i++) {
        free(m->methods[i].name);
        free(m->methods[i].description);
        free(m->methods[i].params);
    }
    free(m->methods);
    free_strv(m->dependencies, m->n_dependencies);
    free_strv(m->roles, m->n_roles);
    json_decref(m->settings);
    memset(m, 0, sizeof(*m));
}

/* An optional string of at most `max` bytes; *out is a heap copy ("" when absent). */
static int opt_string(json_t *o, const char *key, const char *label, size_t max, const char *file, char **out,
                      char **err)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = p2p__xstrdup("");
        return 0;
    }
    if (!json_is_string(v))
        return fail(err, file, label, "must be a string");
    if (json_string_length(v) > max)
        return fail(err, file, label, "longer than %zu bytes", max);
    *out = p2p__xstrdup(json_string_value(v));
    return 0;
}

static int opt_bool(json_t *o, const char *key, const char *label, const char *file, int *out, char **err)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = 0;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(err, file, label, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

/* Refuses members not in `allowed`; `where` prefixes the key in messages. */
static int only_keys(json_t *o, const char *const *allowed, const char *where, const char *file, char **err)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(k, allowed[i]) == 0)
                ok = 1;
        if (!ok) {
            char key[160];
            snprintf(key, sizeof key, "%s%s", where, k);
            return fail(err, file, key, "unknown key (allowed: see docs/services.md, \"The manifest\")");
        }
    }
    return 0;
}

/* A list of distinct strings, each accepted by `valid` (or any non-empty string
 * when NULL), at most P2P_MANIFEST_MAX_LIST. */
static int string_list(json_t *o, const char *key, int (*valid)(const char *), const char *rule, int distinct,
                       const char *file, char ***out, size_t *n_out, char **err)
{
    json_t *a = json_object_get(o, key);
    *out = NULL;
    *n_out = 0;
    if (!a)
        return 0;
    if (!json_is_array(a))
        return fail(err, file, key, "must be an array of strings");
    size_t n = json_array_size(a);
    if (n > P2P_MANIFEST_MAX_LIST)
        return fail(err, file, key, "more than %d entries", P2P_MANIFEST_MAX_LIST);
    char **v = p2p__xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i);
        const char *s = json_string_value(e);
        if (!json_is_string(e) || !*s || json_string_length(e) > 4096 || (valid && !valid(s))) {
            free_strv(v, i);
            return fail(err, file, key, "entry %zu must be %s", i, rule);
        }
        for (size_t j = 0; distinct && j < i; j++) {
            if (strcmp(v[j], s) == 0) {
                free_strv(v, i);
                return fail(err, file, key, "'%s' is listed twice", s);
            }
        }
        v[i] = p2p__xstrdup(s);
    }
    *out = v;
    *n_out = n;
    return 0;
}

static int role_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)r[i]) || r[i] == '_' || r[i] == '-'))
            return 0;
    return 1;
}

static int parse_methods(json_t *root, const char *file, p2p_manifest *m, char **err)
{
    json_t *a = json_object_get(root, "methods");
    if (!a)
        return 0;
    if (!json_is_array(a))
        return fail(err, file, "methods", "must be an array of objects");
    size_t n = json_array_size(a);
    if (n > P2P_MANIFEST_MAX_METHODS)
        return fail(err, file, "methods", "more than %d methods", P2P_MANIFEST_MAX_METHODS);
    m->methods = p2p__xcalloc(n ? n : 1, sizeof(*m->methods));
    static const char *const keys[] = {"name", "description", "params", "read_only", "public", NULL};
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(a, i);
        char where[48];
        snprintf(where, sizeof where, "methods[%zu].", i);
        char key[64];
        if (!json_is_object(o)) {
            snprintf(key, sizeof key, "methods[%zu]", i);
            return fail(err, file, key, "must be an object");
        }
        if (only_keys(o, keys, where, file, err))
            return -EINVAL;
        p2p_manifest_method *mm = &m->methods[m->n_methods];
        json_t *name = json_object_get(o, "name");
        snprintf(key, sizeof key, "methods[%zu].name", i);
        if (!json_is_string(name))
            return fail(err, file, key, "missing, or not a string");
        if (!method_name_valid(json_string_value(name)))
            return fail(err, file, key, "'%s' is not a method name ([a-z_][a-z0-9_]*, at most 64)",
                        json_string_value(name));
        if (strcmp(json_string_value(name), "initialize") == 0 || strcmp(json_string_value(name), "shutdown") == 0)
            return fail(err, file, key, "'%s' is reserved (the node sends it to exec services)",
                        json_string_value(name));
        for (size_t j = 0; j < m->n_methods; j++)
            if (strcmp(m->methods[j].name, json_string_value(name)) == 0)
                return fail(err, file, key, "method '%s' is listed twice", json_string_value(name));
        mm->name = p2p__xstrdup(json_string_value(name));
        m->n_methods++; /* from here on freed with the struct */
        snprintf(key, sizeof key, "methods[%zu].description", i);
        if (opt_string(o, "description", key, 4096, file, &mm->description, err))
            return -EINVAL;
        snprintf(key, sizeof key, "methods[%zu].params", i);
        if (opt_string(o, "params", key, 4096, file, &mm->params, err))
            return -EINVAL;
        snprintf(key, sizeof key, "methods[%zu].read_only", i);
        if (opt_bool(o, "read_only", key, file, &mm->read_only, err))
            return -EINVAL;
        snprintf(key, sizeof key, "methods[%zu].public", i);
        if (opt_bool(o, "public", key, file, &mm->is_public, err))
            return -EINVAL;
    }
    return 0;
}

static int parse_timeouts(json_t *root, const char *file, p2p_manifest *m, char **err)
{
    m->start_timeout_ms = P2P_MANIFEST_DEFAULT_START_MS;
    m->stop_timeout_ms = P2P_MANIFEST_DEFAULT_STOP_MS;
    m->call_timeout_ms = P2P_MANIFEST_DEFAULT_CALL_MS;
    json_t *o = json_object_get(root, "timeouts");
    if (!o)
        return 0;
    if (!json_is_object(o))
        return fail(err, file, "timeouts", "must be an object {\"start\", \"stop\", \"call\"} in seconds");
    static const char *const keys[] = {"start", "stop", "call", NULL};
    if (only_keys(o, keys, "timeouts.", file, err))
        return -EINVAL;
    uint32_t *dst[] = {&m->start_timeout_ms, &m->stop_timeout_ms, &m->call_timeout_ms};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (!v)
            continue;
        char key[32];
        snprintf(key, sizeof key, "timeouts.%s", keys[i]);
        if (!json_is_number(v))
            return fail(err, file, key, "must be a number of seconds");
        double s = json_number_value(v);
        if (!(s >= 0.001 && s <= 3600))
            return fail(err, file, key, "%g is out of range (0.001..3600 seconds)", s);
        *dst[i] = (uint32_t)(s * 1000 + 0.5);
    }
    return 0;
}

int p2p__manifest_parse(const char *text, size_t len, const char *folder, const char *file, p2p_manifest *out,
                        char **err)
{
    if (!file)
        file = "manifest.json";
    if (!text || len == 0)
        return fail(err, file, NULL, "empty file");
    if (len > P2P_MANIFEST_MAX_BYTES)
        return fail(err, file, NULL, "larger than %d bytes", P2P_MANIFEST_MAX_BYTES);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(err, file, NULL, "not valid JSON (line %d, column %d: %s)", je.line, je.column, je.text);
    p2p_manifest m;
    memset(&m, 0, sizeof m);
    int rc = -EINVAL;
    if (!json_is_object(root)) {
        fail(err, file, NULL, "must be a JSON object");
        goto out;
    }
    static const char *const keys[] = {"name",         "version", "description", "type",     "entry",    "command",
                                       "methods",      "dependencies", "roles", "settings", "timeouts", NULL};
    if (only_keys(root, keys, "", file, err))
        goto out;

    json_t *v = json_object_get(root, "name");
    if (!json_is_string(v)) {
        fail(err, file, "name", v ? "must be a string" : "missing");
        goto out;
    }
    if (!p2p__service_name_valid(json_string_value(v))) {
        fail(err, file, "name", "'%s' is not a service name ([a-z0-9][a-z0-9_-]*, at most %d)", json_string_value(v),
             P2P_MANIFEST_MAX_NAME);
        goto out;
    }
    for (size_t i = 0; reserved_names[i]; i++) {
        if (strcmp(json_string_value(v), reserved_names[i]) == 0) {
            fail(err, file, "name", "'%s' is the name of a built-in service", reserved_names[i]);
            goto out;
        }
    }
    if (folder && strcmp(json_string_value(v), folder) != 0) {
        fail(err, file, "name", "'%s' differs from its folder '%s'", json_string_value(v), folder);
        goto out;
    }
    m.name = p2p__xstrdup(json_string_value(v));

    v = json_object_get(root, "version");
    if (!json_is_string(v)) {
        fail(err, file, "version", v ? "must be a string" : "missing");
        goto out;
    }
    if (p2p__semver_parse(json_string_value(v), &m.semver) != 0) {
        fail(err, file, "version", "'%s' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)",
             json_string_value(v));
        goto out;
    }
    m.version = p2p__xstrdup(json_string_value(v));

    if (opt_string(root, "description", "description", 1024, file, &m.description, err))
        goto out;

    v = json_object_get(root, "type");
    if (!json_is_string(v)) {
        fail(err, file, "type", v ? "must be \"native\" or \"exec\"" : "missing (\"native\" or \"exec\")");
        goto out;
    }
    if (strcmp(json_string_value(v), "native") == 0)
        m.type = P2P_SVC_NATIVE;
    else if (strcmp(json_string_value(v), "exec") == 0)
        m.type = P2P_SVC_EXEC;
    else {
        fail(err, file, "type", "'%s' is not \"native\" or \"exec\"", json_string_value(v));
        goto out;
    }

    json_t *entry = json_object_get(root, "entry"), *cmd = json_object_get(root, "command");
    if (m.type == P2P_SVC_NATIVE) {
        if (cmd) {
            fail(err, file, "command", "only for \"type\": \"exec\" (a native service names its module in \"entry\")");
            goto out;
        }
        if (entry && !json_is_string(entry)) {
            fail(err, file, "entry", "must be a string (the module's file name)");
            goto out;
        }
        const char *e = entry ? json_string_value(entry) : "service.so";
        if (!*e || strlen(e) > 255 || strchr(e, '/') || strcmp(e, ".") == 0 || strcmp(e, "..") == 0) {
            fail(err, file, "entry", "'%s' must be a file name inside the service folder", e);
            goto out;
        }
        m.entry = p2p__xstrdup(e);
    } else {
        if (entry) {
            fail(err, file, "entry", "only for \"type\": \"native\" (an exec service has a \"command\")");
            goto out;
        }
        if (!cmd) {
            fail(err, file, "command", "missing: an exec service needs its argv, e.g. [\"python3\", \"main.py\"]");
            goto out;
        }
        if (string_list(root, "command", NULL, "a non-empty string", 0, file, &m.command, &m.n_command, err))
            goto out;
        if (m.n_command == 0) {
            fail(err, file, "command", "must name a program");
            goto out;
        }
    }

    if (parse_methods(root, file, &m, err))
        goto out;
    if (string_list(root, "dependencies", p2p__service_name_valid, "a service name", 1, file, &m.dependencies,
                    &m.n_dependencies, err))
        goto out;
    for (size_t i = 0; i < m.n_dependencies; i++) {
        if (strcmp(m.dependencies[i], m.name) == 0) {
            fail(err, file, "dependencies", "a service cannot depend on itself");
            goto out;
        }
    }
    if (string_list(root, "roles", role_valid, "a role name ([A-Za-z0-9_-]+)", 1, file, &m.roles, &m.n_roles, err))
        goto out;

    v = json_object_get(root, "settings");
    if (v && !json_is_object(v)) {
        fail(err, file, "settings", "must be an object");
        goto out;
    }
    m.settings = v ? json_incref(v) : json_object();

    if (parse_timeouts(root, file, &m, err))
        goto out;

    *out = m;
    memset(&m, 0, sizeof m);
    rc = 0;
out:
    p2p__manifest_free(&m);
    json_decref(root);
    return rc;
}
