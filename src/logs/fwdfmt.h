/*
 * fwdfmt.h — the pure half of log forwarding (no I/O): the destination URL
 * parser (used by config.c to check `log_forward_syslog`), the RFC 5424 syslog
 * formatter and the journald native-protocol formatter.
 *
 * RFC 5424 line of a record (docs/logs.md, "Forwarding"):
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME - - [p2p@32473 seq="17" level="INFO" ...] BOM MSG
 *
 * PRI = facility daemon (3) * 8 + severity (DEBUG 7, INFO 6, WARNING 4, ERROR 3,
 * CRITICAL 2); TIMESTAMP UTC with microseconds; HOSTNAME the node id; APP-NAME
 * the logger (printable ASCII, at most 48 characters: others become '_');
 * structured data escapes '"', '\' and ']' in values; MSG is UTF-8 after a BOM.
 * Bytes that are not valid UTF-8 become U+FFFD. The whole line is cut to the
 * caller's cap, never inside a character or an escape; when the header and
 * structured data alone do not fit, the structured data becomes "-".
 */
#ifndef P2P_LOGS_FWDFMT_H
#define P2P_LOGS_FWDFMT_H

#include <stddef.h>

#include "logs/record.h"

#define LOGFWD_SYSLOG_MAX 8192 /* bytes of one syslog message (rsyslog's default maxMessageSize) */
#define LOGFWD_FACILITY 3      /* daemon */
#define LOGFWD_SD_ID "p2p@32473"
#define LOGFWD_MAX_HOST 255

enum { LOGFWD_UDP = 1, LOGFWD_TCP = 2 };

typedef struct logfwd_target {
    int proto;                      /* LOGFWD_UDP / LOGFWD_TCP */
    char host[64];                  /* an IPv4 or IPv6 literal, without brackets */
    int port;
} logfwd_target;

/* "udp://IP:PORT" or "tcp://IP:PORT" (IPv6 as [::1]:514). Returns 0, or -1
 * with a reason in why. */
int logfwd_parse_target(const char *s, logfwd_target *t, char *why, size_t n);

/* The syslog severity of a record level. */
int logfwd_severity(int level);

/* Formats r as one RFC 5424 message into out (cap bytes at most, cap >= 64;
 * no NUL). Returns its length. */
size_t logfwd_rfc5424(const logrec *r, char *out, size_t cap);

/* Formats r as one journald native-protocol datagram (heap; *len set). */
char *logfwd_journal(const logrec *r, size_t *len);

#endif
