/*
 * vault.h — the node's encrypted vault: one file holding its certificates, keys,
 * config and secret data, encrypted under a password.
 *
 * File format, version 1 (integers big-endian):
 *
 *   offset  size  field
 *        0     8  magic "P2PVAULT"
 *        8     2  format version (1)
 *       10     2  KDF id (1 = PBKDF2-HMAC-SHA256)
 *       12     4  KDF iteration count (written: 600000; read: 100000 .. 10000000)
 *       16    16  KDF salt (random; new on create and on password change)
 *       32    12  AES-256-GCM nonce (random; new on every write)
 *       44     n  AES-256-GCM ciphertext of the plaintext document
 *     44+n    16  GCM tag
 *
 * The 44 header bytes are the GCM additional authenticated data, so changing any
 * header byte (iterations, salt, nonce, even the version) fails authentication.
 * key = PBKDF2-HMAC-SHA256(password, salt, iterations, 32 bytes).
 *
 * The plaintext is a JSON document:
 *   {"version":1,"entries":{"<namespace>":{"<name>":{"value":"...","updated_at":MS}}}}
 * where namespace is one of certificates, keys, config, data; `value` is the bytes
 * as a string when they are valid UTF-8 without NUL, otherwise base64 with
 * "encoding":"base64" beside it; `updated_at` is milliseconds since the epoch.
 *
 * Why: every write uses a fresh random 96-bit nonce (RAND_bytes) under a key that
 * only changes with the password, so a key sees one nonce per save: far below the
 * 2^32 random-nonce limit for GCM. The derived key is kept in memory (never the
 * password), so saves do not pay the derivation again. Saves are atomic: a temp
 * file (O_EXCL, 0600, ciphertext only) in the same directory, fsync, rename over
 * the vault, fsync of the directory; a crash leaves the old or the new vault.
 * A stale ".NAME.tmp.*" file from a killed process holds only ciphertext.
 *
 * GCM cannot tell a wrong password from a modified or truncated file: both are
 * -EBADMSG "wrong password or corrupted file". A file that is not a vault or has
 * another version is -EINVAL; a missing one -ENOENT. Opening never writes.
 *
 * Memory: keys, the decrypted document and the values held in memory are wiped
 * (OPENSSL_cleanse) before they are freed. jansson's own short-lived copies while
 * the document is parsed or built are freed by jansson without wiping: jansson
 * has no per-call allocator, and a process-wide one would slow every JSON user.
 *
 * Threads: a vault is used from one thread (the loop thread in a node). The key
 * derivation in open/create/passwd is deliberately slow (~0.3 s): in a node use
 * vault_open_async()/vault_create_async() and vault_save_async(), which run the
 * slow part on the libuv thread pool and call back on the loop. The synchronous
 * calls are for the CLI and tests. Error convention: 0 or a negative errno; `err`
 * (optional, may be NULL; point it at NULL) receives a heap message on failure,
 * which the caller frees.
 */
#ifndef P2P_VAULT_VAULT_H
#define P2P_VAULT_VAULT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define VAULT_MAGIC "P2PVAULT"
#define VAULT_FORMAT_VERSION 1
#define VAULT_KDF_PBKDF2_SHA256 1
#define VAULT_SALT_LEN 16
#define VAULT_NONCE_LEN 12
#define VAULT_TAG_LEN 16
#define VAULT_KEY_LEN 32

#define VAULT_DEFAULT_ITERATIONS 600000u /* what the CLI and the node write */
#define VAULT_MIN_ITERATIONS 100000u     /* default refusal threshold when opening */
#define VAULT_MAX_ITERATIONS 10000000u   /* files claiming more are refused (denial of service) */
#define VAULT_FLOOR_ITERATIONS 1000u     /* absolute floor: tests and fuzzing only */

#define VAULT_MAX_FILE (64u << 20)  /* larger files are refused */
#define VAULT_MAX_VALUE (16u << 20) /* largest single value */
#define VAULT_MAX_NAME 255          /* bytes in an entry name */

/* The on-disk header, byte for byte (only byte arrays: no padding, no alignment). */
typedef struct vault_wire_header {
    uint8_t magic[8];
    uint8_t version[2];
    uint8_t kdf[2];
    uint8_t iterations[4];
    uint8_t salt[VAULT_SALT_LEN];
    uint8_t nonce[VAULT_NONCE_LEN];
} vault_wire_header;

#define VAULT_HEADER_LEN 44
static_assert(sizeof(vault_wire_header) == VAULT_HEADER_LEN, "vault header is 44 bytes");
static_assert(offsetof(vault_wire_header, version) == 8, "version at 8");
static_assert(offsetof(vault_wire_header, kdf) == 10, "kdf id at 10");
static_assert(offsetof(vault_wire_header, iterations) == 12, "iterations at 12");
static_assert(offsetof(vault_wire_header, salt) == 16, "salt at 16");
static_assert(offsetof(vault_wire_header, nonce) == 32, "nonce at 32");
static_assert(sizeof(VAULT_MAGIC) - 1 == sizeof(((vault_wire_header *)0)->magic), "magic is 8 bytes");

/* The smallest well-formed file: a header, an empty ciphertext and the tag. */
#define VAULT_MIN_FILE (VAULT_HEADER_LEN + VAULT_TAG_LEN)

/* A parsed header. */
typedef struct vault_header {
    uint16_t version;
    uint16_t kdf;
    uint32_t iterations;
    uint8_t salt[VAULT_SALT_LEN];
    uint8_t nonce[VAULT_NONCE_LEN];
    size_t ciphertext_len; /* bytes between the header and the tag */
} vault_header;

/* Parses the header of a vault file of `len` bytes (no I/O, no decryption).
 * Returns 0; -EINVAL when it is not a vault (bad magic), has another version or
 * KDF, or claims iterations outside VAULT_FLOOR_ITERATIONS..VAULT_MAX_ITERATIONS;
 * -EBADMSG when it is too short to be a vault (truncated). */
int vault_parse_header(const uint8_t *buf, size_t len, vault_header *out);

/* The four namespaces; any other is -EINVAL. */
#define VAULT_NS_COUNT 4
extern const char *const vault_namespaces[VAULT_NS_COUNT]; /* "certificates", "keys", "config", "data" */

typedef struct vault vault;

/* Limits applied when opening. NULL or zero fields mean the defaults. */
typedef struct vault_opts {
    uint32_t min_iterations; /* refuse files claiming fewer (default VAULT_MIN_ITERATIONS; at least the floor) */
    uint32_t max_iterations; /* refuse files claiming more (default VAULT_MAX_ITERATIONS) */
} vault_opts;

/* Creates a new empty vault at `path` (which must not exist: -EEXIST) with a new
 * salt, `iterations` (0 = VAULT_DEFAULT_ITERATIONS; VAULT_FLOOR_ITERATIONS ..
 * VAULT_MAX_ITERATIONS, else -EINVAL) and writes it. Blocking (derives the key). */
int vault_create(const char *path, const char *password, uint32_t iterations, vault **out, char **err);

/* Opens `path` with `password`: reads, checks the header, derives the key,
 * decrypts and parses. Blocking. -ENOENT, -EINVAL, -EBADMSG as described above. */
int vault_open(const char *path, const char *password, vault **out, char **err);
int vault_open_ex(const char *path, const char *password, const vault_opts *opts, vault **out, char **err);

/* Opens a vault file image held in memory. The result has no path: vault_save()
 * on it is -EINVAL. For fuzzing and tests. */
int vault_open_buffer(const uint8_t *buf, size_t len, const char *password, const vault_opts *opts, vault **out,
                      char **err);

/* Called on the loop thread when an asynchronous open or create finishes: `v` is
 * the vault (owned by the callee) when status is 0, else NULL; `err` is a message
 * on failure (borrowed: valid during the call). */
typedef void (*vault_open_cb)(vault *v, int status, const char *err, void *arg);

/* vault_open_ex()/vault_create() on the libuv thread pool; `cb` runs on `loop`.
 * The password is copied (and wiped after use). Returns 0 when queued (then `cb`
 * runs exactly once), or a negative error (then `cb` never runs). */
int vault_open_async(uv_loop_t *loop, const char *path, const char *password, vault_open_cb cb, void *arg);
int vault_open_async_ex(uv_loop_t *loop, const char *path, const char *password, const vault_opts *opts,
                        vault_open_cb cb, void *arg);
int vault_create_async(uv_loop_t *loop, const char *path, const char *password, uint32_t iterations, vault_open_cb cb,
                       void *arg);

/* Frees the vault, wiping its key and values. Unsaved changes are lost. When
 * asynchronous saves are queued, they still run (with their callbacks) and the
 * vault is freed after the last one: keep the loop running until then. */
void vault_close(vault *v);

/* Copies the value of ns/name into a new heap buffer (NUL-terminated; the NUL is
 * not counted in *len). Free it with vault_secret_free(). -ENOENT when absent. */
int vault_get(const vault *v, const char *ns, const char *name, uint8_t **buf, size_t *len);

/* ns/name as a heap C string (for PEM and other text entries), or NULL when
 * absent. Free with free(), or wipe first when it is a secret (pki_secret_free). */
char *vault_get_text(const vault *v, const char *ns, const char *name);

/* Sets ns/name to `len` bytes (copied), replacing any previous value. In memory
 * only until a save. -EINVAL on a bad namespace or name (empty, longer than
 * VAULT_MAX_NAME, control characters, invalid UTF-8); -EFBIG above VAULT_MAX_VALUE. */
int vault_put(vault *v, const char *ns, const char *name, const void *data, size_t len);

/* Removes ns/name. -ENOENT when absent. */
int vault_remove(vault *v, const char *ns, const char *name);

/* The names in `ns`, sorted, as a NULL-terminated heap array: free it with
 * vault_names_free(). */
int vault_list(const vault *v, const char *ns, char ***names);
void vault_names_free(char **names);

/* Milliseconds since the epoch of the last put of ns/name. -ENOENT when absent. */
int vault_updated_at(const vault *v, const char *ns, const char *name, uint64_t *out_ms);

/* Writes the vault to its file atomically, with a new nonce. Blocking (fsync).
 * -EBUSY while an asynchronous save is queued or running. */
int vault_save(vault *v, char **err);

/* Called on the loop thread when an asynchronous save that includes the state at
 * the time of the request is on disk (status 0) or failed. */
typedef void (*vault_save_cb)(int status, const char *err, void *arg);

/* Encrypts the current state now (on the calling thread: fast), writes it on the
 * thread pool of `loop`. While a save runs, further requests are coalesced into
 * one more save of the state at the time it starts. `cb` may be NULL. Returns 0
 * when queued (then `cb` runs exactly once), or a negative error. */
int vault_save_async(vault *v, uv_loop_t *loop, vault_save_cb cb, void *arg);

/* Changes the password: a new salt, the key derived again with `iterations` (0 =
 * keep the vault's count), then the vault is saved. On failure the vault keeps its
 * old key and file. Blocking. -EINVAL on an empty password or a bad count,
 * -EBUSY during an asynchronous save. */
int vault_passwd(vault *v, const char *new_password, uint32_t iterations, char **err);

/* The decrypted document as JSON (indented when `pretty`), in a NUL-terminated heap
 * buffer to free with vault_secret_free(). This is plaintext: handle with care. */
int vault_export(const vault *v, int pretty, char **json, size_t *len);

/* Wipes and frees a buffer returned by vault_get() or vault_export(). */
void vault_secret_free(void *buf, size_t len);

/* The vault's file path (NULL for a buffer), iteration count, and the number of
 * files written since it was opened (for tests and metrics). */
const char *vault_path(const vault *v);
uint32_t vault_iterations(const vault *v);
unsigned vault_saves_written(const vault *v);

#endif
