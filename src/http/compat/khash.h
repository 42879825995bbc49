/*
 * khash.h — the part of klib's khash.h that <h2o/http2_internal.h> needs to
 * compile. libh2o-dev 2.2.5 installs http2_internal.h, which includes
 * "khash.h", but not khash.h itself. We only read plain fields of
 * h2o_http2_conn_t (limits.c) and never touch its stream table, so the table's
 * type is declared with klib's layout (h2o 2.2.5, deps/klib/khash.h) and its
 * functions are declared but never defined or called.
 */
#ifndef P2P_COMPAT_KHASH_H
#define P2P_COMPAT_KHASH_H

#include <stdint.h>

typedef uint32_t khint32_t;
typedef uint64_t khint64_t;
typedef khint32_t khint_t;
typedef khint_t khiter_t;

#define KHASH_MAP_INIT_INT64(name, khval_t)                                                                        \
    typedef struct kh_##name##_s {                                                                                 \
        khint_t n_buckets, size, n_occupied, upper_bound;                                                          \
        khint32_t *flags;                                                                                          \
        khint64_t *keys;                                                                                           \
        khval_t *vals;                                                                                             \
    } kh_##name##_t;                                                                                               \
    khint_t kh_get_##name(const kh_##name##_t *h, khint64_t key);

#define khash_t(name) kh_##name##_t
#define kh_get(name, h, k) kh_get_##name(h, k)
#define kh_end(h) ((h)->n_buckets)
#define kh_val(h, x) ((h)->vals[x])

#endif
