/*
 * jointoken.h — join tokens: the shared secret a worker presents with its first
 * certificate request. The operator creates one on the coordinator (shown once),
 * hands it to the new worker, and the coordinator accepts it for a limited time
 * and number of uses.
 *
 * A token is "p2pj_" followed by 32 random bytes in base64url without padding
 * (43 characters): JOINTOKEN_LEN characters in all. The table never holds a
 * token, only SHA-256(token) — leaking the table (or the vault entry it is saved
 * in) does not let anyone join. An entry's id, the first 8 hex digits of the
 * hash, names it for listing and revoking; ids are unique within a table.
 *
 * consume: the presented token is hashed and compared with every entry's hash in
 * constant time (CRYPTO_memcmp, and the whole table is always scanned), so
 * neither the bytes of a hash nor the position of a match leaks through timing.
 * Unknown, expired and used-up tokens get the same answer, -EACCES. A token is
 * valid while now < expires_at and uses_left > 0. Used-up tokens stay listed
 * (uses_left 0) until they expire, so an operator can see that they were used;
 * expired entries are purged by jointoken_purge(), which create and consume run
 * first.
 *
 * Replacement tokens (`p2p token create --join --replace ID`) are bound to one
 * node id: the coordinator lets such a token enroll that id only, and only such
 * a token enrolls an id that is already enrolled (registry.h). One use.
 *
 * Persisted form (kept in the vault), strictly validated on load:
 *   {"version":1,"tokens":[{"hash":"<64 lowercase hex>","created_at":S,
 *     "expires_at":S,"uses_left":N[,"replace":"<node id>"]},...]}
 * exactly these members ("replace" only on replacement tokens); 0 <= created_at < expires_at <= JOINTOKEN_MAX_TIME,
 * expires_at - created_at <= JOINTOKEN_MAX_TTL_S, 0 <= uses_left <=
 * JOINTOKEN_MAX_USES, at most JOINTOKEN_MAX_ENTRIES entries with distinct ids.
 *
 * Pure: time is passed in (Unix seconds), no I/O, nothing global; randomness
 * from OpenSSL's RAND_bytes. Errors: 0 or a negative errno.
 */
#ifndef P2P_PKI_JOINTOKEN_H
#define P2P_PKI_JOINTOKEN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define JOINTOKEN_PREFIX "p2pj_"
#define JOINTOKEN_LEN 48   /* "p2pj_" + 43 base64url characters */
#define JOINTOKEN_ID_LEN 8 /* hex digits */
#define JOINTOKEN_MAX_ENTRIES 1024
#define JOINTOKEN_MAX_USES 1000000
#define JOINTOKEN_MAX_TTL_S 31536000      /* 365 days */
#define JOINTOKEN_MAX_TIME 253402300799LL /* 9999-12-31T23:59:59Z */

typedef struct jointoken_table jointoken_table;

jointoken_table *jointoken_table_new(void);
void jointoken_table_free(jointoken_table *t);

/* Creates a token valid from `now` for `ttl_s` seconds (1..JOINTOKEN_MAX_TTL_S)
 * and `max_uses` uses (1..JOINTOKEN_MAX_USES). *token_out is a heap string
 * (JOINTOKEN_LEN characters; show it once, then free it with
 * jointoken_secret_free). Returns 0, -EINVAL (arguments), -ENOSPC (table full
 * after purging) or -EIO (no randomness). */
int jointoken_create(jointoken_table *t, int64_t now, int64_t ttl_s, unsigned max_uses, char **token_out);

/* Like create, for a replacement token bound to `node_id` (a valid node id),
 * with one use. Same returns. */
int jointoken_create_replacement(jointoken_table *t, int64_t now, int64_t ttl_s, const char *node_id,
                                 char **token_out);

/* The node id a valid replacement token is bound to (borrowed, valid until the
 * table changes), or NULL: an ordinary token, or one that is unknown, expired
 * or used up. */
const char *jointoken_replaces(const jointoken_table *t, const char *token, int64_t now);

/* The id of a token (the first 8 hex digits of its SHA-256) into id_out
 * (JOINTOKEN_ID_LEN + 1 bytes). Returns 0 or -EINVAL (NULL). */
int jointoken_token_id(const char *token, char id_out[JOINTOKEN_ID_LEN + 1]);

/* Accepts `token` at `now` and takes one use. Returns 0, or -EACCES when the
 * token is unknown, expired or used up (also for NULL or absurdly long input). */
int jointoken_consume(jointoken_table *t, const char *token, int64_t now);

/* Like consume, without taking a use: for checking a request before doing work
 * for it (the coordinator's challenge fetch), then consuming once it succeeded. */
int jointoken_check(const jointoken_table *t, const char *token, int64_t now);

/* Removes the entry with id `id`. Returns 0 or -ENOENT. */
int jointoken_revoke(jointoken_table *t, const char *id);

/* Forgets entries with now >= expires_at; returns how many. */
size_t jointoken_purge(jointoken_table *t, int64_t now);

size_t jointoken_count(const jointoken_table *t);

/* The entries not expired at `now`, oldest first, as a new reference to
 * [{"id":"<8 hex>","created_at":S,"expires_at":S,"uses_left":N[,"replaces":ID]},...]. */
json_t *jointoken_list(const jointoken_table *t, int64_t now);

/* The persisted form above, a new reference (all entries, expired or not). */
json_t *jointoken_table_to_json(const jointoken_table *t);

/* A new table from the persisted form. All-or-nothing. Returns 0 and *out, or
 * -EINVAL with a heap message in *err (optional) naming the member. */
int jointoken_table_from_json(const json_t *doc, jointoken_table **out, char **err);

/* Wipes and frees a token string; NULL is fine. */
void jointoken_secret_free(char *token);

#endif
