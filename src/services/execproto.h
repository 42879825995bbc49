/*
 * execproto.h — the wire protocol between a node and an exec service: JSON-RPC
 * 2.0 messages, one per line, over the child's stdin (node -> service) and
 * stdout (service -> node). Pure: bytes in, messages or an error out; no I/O.
 *
 * Framing. Each message is one JSON text followed by "\n" (a "\r\n" ending is
 * accepted). A line holds no raw newline, so a message must be written compact
 * (json.dumps does that; JSON escapes newlines inside strings). Empty lines are
 * ignored. A line longer than the reader's limit is a protocol error: the node
 * then fails the process's pending calls and restarts it (a service that
 * writes garbage cannot make the node buffer without bound).
 *
 * Messages from a service, each an object with "jsonrpc": "2.0":
 *   response      {"id": N, "result": X}  or  {"id": N, "error": {"code": int,
 *                 "message": string, "data"?: any}} — answers the node's request
 *                 N (the node numbers its requests with integers);
 *   request       {"id": string|int, "method": "call"|"cache.get"|..., "params"?:
 *                 object|array} — the service asks the node for something, and
 *                 the node answers with a response carrying the same id;
 *   notification  {"method": "log", "params": {...}} — no id, no answer.
 * Any other member, a missing "jsonrpc", a non-object, a response with both or
 * neither of result/error, or an error object of the wrong shape is malformed.
 */
#ifndef P2P_SERVICES_EXECPROTO_H
#define P2P_SERVICES_EXECPROTO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define P2P_EXEC_DEFAULT_MAX_LINE (4u << 20) /* bytes */
#define P2P_EXEC_MAX_METHOD 256

/* ---- line framing ------------------------------------------------------------- */

/* Splits a byte stream into lines of at most `max_line` bytes (without the
 * newline). Memory held: at most max_line + the size of one read. */
typedef struct p2p_linebuf {
    char *buf;
    size_t len, cap, max_line;
    int overflow; /* a line went over max_line: the stream is broken */
} p2p_linebuf;

void p2p__linebuf_init(p2p_linebuf *lb, size_t max_line);
void p2p__linebuf_free(p2p_linebuf *lb);

/* Called with each complete line (not NUL-terminated, without "\n" or "\r\n").
 * Return 0 to go on, non-zero to stop: p2p__linebuf_feed returns that value. */
typedef int (*p2p_line_fn)(const char *line, size_t len, void *arg);

/* Feeds `n` bytes. Returns 0, the callback's non-zero value, or -EMSGSIZE when
 * a line exceeds max_line (then every later feed returns -EMSGSIZE too). */
int p2p__linebuf_feed(p2p_linebuf *lb, const char *data, size_t n, p2p_line_fn fn, void *arg);

/* Bytes of an unfinished line held now. */
size_t p2p__linebuf_pending(const p2p_linebuf *lb);

/* ---- messages ------------------------------------------------------------------- */

typedef enum { P2P_EXEC_RESPONSE = 1, P2P_EXEC_REQUEST, P2P_EXEC_NOTIFICATION } p2p_exec_kind;

typedef struct p2p_exec_msg {
    p2p_exec_kind kind;
    json_t *root;   /* the whole message; the pointers below borrow from it */
    json_t *id;     /* response, request */
    int64_t num_id; /* response: the node's request number */
    json_t *result; /* response: NULL on error */
    json_t *error;  /* response: {"code","message"[,"data"]} or NULL */
    const char *method; /* request, notification */
    json_t *params;     /* request, notification: object, array, or NULL when absent */
} p2p_exec_msg;

/* Parses one line. Returns 0 and fills *out (release with p2p__exec_msg_free),
 * or -EINVAL with *why a static reason ("not JSON", "not an object", ...). */
int p2p__exec_msg_parse(const char *line, size_t len, p2p_exec_msg *out, const char **why);
void p2p__exec_msg_free(p2p_exec_msg *m);

/* Encodes a message compactly with its trailing "\n"; heap string, *len bytes. */
char *p2p__exec_encode(const json_t *msg, size_t *len);

#endif
