/*
 * manifest.h — a pluggable service's manifest.json, parsed and checked.
 * Pure: bytes in, a struct or an error naming the file and the key out; no I/O.
 *
 * The document (every key but name, version and type is optional):
 *
 *   {
 *     "name": "greeter",                 folder name; [a-z0-9][a-z0-9_-]{0,62},
 *                                        not a built-in's name (system, log_collector, deploy)
 *     "version": "1.2.0",                semantic version MAJOR.MINOR.PATCH, optional
 *                                        -prerelease and +build (semver.org 2.0.0)
 *     "description": "...",              up to 1024 bytes
 *     "type": "native" | "exec",
 *     "entry": "service.so",             native: the module file in the folder
 *                                        (default "service.so"; a plain file name)
 *     "command": ["python3", "main.py"], exec: argv, 1..64 non-empty strings
 *     "methods": [ {"name": "hello",     [a-z_][a-z0-9_]{0,63}, unique; not "initialize"
 *                                        or "shutdown" (the node's messages to exec services)
 *                   "description": "...", "params": "...",
 *                   "read_only": true,    viewers may call it (default false)
 *                   "public": false} ],   listed without credentials (default false)
 *     "dependencies": ["cache_warmer"],  services started before this one
 *     "roles": ["worker"],               node roles it runs on (default: every role)
 *     "settings": { ... },               any JSON object, handed to the service
 *     "timeouts": {"start": 10, "stop": 10, "call": 30}   seconds, 0.001..3600
 *   }
 *
 * Anything else is refused: an unknown key (a typo must not be silently
 * ignored), a wrong JSON type, a name that differs from its folder, a bad
 * version, an entry with a slash, an exec service without a command or a
 * native one with a command, duplicate methods, dependencies or roles, a
 * service depending on itself. Size limits: the document at most
 * P2P_MANIFEST_MAX_BYTES, at most P2P_MANIFEST_MAX_METHODS methods.
 */
#ifndef P2P_SERVICES_MANIFEST_H
#define P2P_SERVICES_MANIFEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define P2P_MANIFEST_MAX_BYTES (256 * 1024)
#define P2P_MANIFEST_MAX_METHODS 256
#define P2P_MANIFEST_MAX_LIST 64 /* dependencies, roles, command arguments */
#define P2P_MANIFEST_MAX_NAME 63
#define P2P_MANIFEST_DEFAULT_START_MS 10000
#define P2P_MANIFEST_DEFAULT_STOP_MS 10000
#define P2P_MANIFEST_DEFAULT_CALL_MS 30000

typedef enum { P2P_SVC_NATIVE = 1, P2P_SVC_EXEC = 2 } p2p_service_type;

/* A semantic version; `pre` is the pre-release part ("" when none). Build
 * metadata is kept in the text only: it does not order versions. */
typedef struct p2p_semver {
    uint64_t major, minor, patch;
    char pre[64];
} p2p_semver;

typedef struct p2p_manifest_method {
    char *name;
    char *description; /* "" when absent */
    char *params;      /* "" when absent */
    int read_only;
    int is_public;
} p2p_manifest_method;

typedef struct p2p_manifest {
    char *name;
    char *version; /* as written */
    p2p_semver semver;
    char *description;
    p2p_service_type type;
    char *entry;     /* native: module file name; NULL for exec */
    char **command;  /* exec: NULL-terminated argv; NULL for native */
    size_t n_command;
    p2p_manifest_method *methods;
    size_t n_methods;
    char **dependencies;
    size_t n_dependencies;
    char **roles; /* empty: every role */
    size_t n_roles;
    json_t *settings; /* an object (empty when absent); owned */
    uint32_t start_timeout_ms, stop_timeout_ms, call_timeout_ms;
} p2p_manifest;

/* Parses `len` bytes of `text` as the manifest of the service in folder
 * `folder` (the name must equal it; NULL skips that check). `file` names the
 * document in messages ("<dir>/greeter/manifest.json"). Returns 0 and fills
 * *out, or -EINVAL with *err = a heap message "FILE: key 'K': what is wrong"
 * (and *out untouched). */
int p2p__manifest_parse(const char *text, size_t len, const char *folder, const char *file, p2p_manifest *out,
                        char **err);

/* Frees what p2p__manifest_parse filled; safe on a zeroed struct. */
void p2p__manifest_free(p2p_manifest *m);

/* 1 if `name` is a valid service name (folder, dependency). */
int p2p__service_name_valid(const char *name);

/* Parses a semantic version. Returns 0 or -EINVAL. */
int p2p__semver_parse(const char *s, p2p_semver *out);
/* <0, 0, >0 as a orders before, equal to or after b (semver precedence). */
int p2p__semver_cmp(const p2p_semver *a, const p2p_semver *b);

const char *p2p__service_type_name(p2p_service_type t);

#endif
