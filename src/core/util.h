/*
 * util.h — small helpers shared by the core: allocation that aborts on
 * out-of-memory (the core cannot do anything useful without memory; recoverable
 * paths use plain malloc and check), time, and durable file writes.
 */
#ifndef P2P_CORE_UTIL_H
#define P2P_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *p2p__xmalloc(size_t n);
void *p2p__xcalloc(size_t n, size_t size);
void *p2p__xrealloc(void *p, size_t n);
char *p2p__xstrdup(const char *s);
char *p2p__xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sets *err (when err is not NULL) to a heap message and returns rc: the one way
 * modules report an error with human detail. */
int p2p__fail(char **err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Encodes n bytes as base64url without padding into out, which has room for
 * 4*ceil(n/3)+1 bytes; NUL-terminates. */
void p2p__b64url_encode(const uint8_t *in, size_t n, char *out);

/* Strict decode of unpadded base64url (a length of 1 mod 4 and non-zero unused
 * trailing bits are refused, so every byte string has one encoding). `out` needs
 * room for 3*n/4 bytes. Returns 0 or -1. p2p__b64url_value: 0..63 or -1. */
int p2p__b64url_decode(const char *in, size_t n, uint8_t *out, size_t *out_len);
int p2p__b64url_value(unsigned char c);

/* Wall clock in milliseconds since the epoch. */
uint64_t p2p__wall_ms(void);

/* Creates a directory and its parents with `mode` (existing ones are fine). */
int p2p__mkdir_p(const char *path, unsigned mode);

/* Writes `len` bytes to `path` atomically: a temp file beside it, fsync, rename,
 * fsync of the directory. A crash leaves either the old or the new content.
 * Returns 0 or a negative errno. */
int p2p__write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);

/* Reads a whole file (at most `max` bytes) into a NUL-terminated heap buffer. */
int p2p__read_file(const char *path, size_t max, char **out, size_t *out_len);

#endif
