/*
 * fuzz_certreq.c — libFuzzer target for src/pki/certreq.c, the CSR parser of
 * src/pki/pki.c and the join token table loader. Each input is used as:
 *   1. a POST /internal/cert-request body: certreq_parse; an accepted request
 *      must have valid fields and survive certreq_request_json -> dump -> parse
 *      unchanged; its CSR then goes through pki_csr_parse and pki_csr_check;
 *   2. a cert-request answer: certreq_response_parse;
 *   3. a PEM CSR: pki_csr_parse;
 *   4. DER bytes wrapped here in a PEM "CERTIFICATE REQUEST" block, so the ASN.1
 *      decoding and the checks behind it are reached without the fuzzer having
 *      to discover base64 (seed: a real CSR in DER);
 *   5. a persisted join token table: jointoken_table_from_json, and when
 *      accepted the to_json -> from_json round trip must reproduce it.
 * Invariants: a message on every failure and none on success, only the
 * documented error codes, OpenSSL's error queue left empty; a crash, leak, UB or
 * failed invariant is a finding.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/certreq.h"
#include "pki/jointoken.h"
#include "pki/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            abort();                                                                                                   \
    } while (0)

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static void csr_checks(const char *pem, size_t len, const char *node_id, const char *src)
{
    pki_csr_info info = {0};
    char *err = NULL;
    int rc = pki_csr_parse(pem, len, &info, &err);
    CHECK(ERR_peek_error() == 0);
    CHECK(rc == 0 || rc == -EINVAL || rc == -EBADMSG);
    CHECK((rc == 0) == (err == NULL));
    free(err);
    if (rc != 0) {
        CHECK(info.node_id == NULL);
        return;
    }
    CHECK(info.node_id && info.node_id[0]);
    for (size_t i = 0; i < info.n_ips; i++)
        CHECK(is_ip(info.ips[i]));
    for (size_t i = 0; i < info.n_dns; i++)
        CHECK(info.dns[i][0] && !strchr(info.dns[i], ' '));
    err = NULL;
    rc = pki_csr_check(&info, node_id ? node_id : info.node_id, src, &err);
    CHECK(rc == 0 || rc == -EACCES);
    CHECK((rc == 0) == (err == NULL));
    free(err);
    pki_csr_info_free(&info);
}

static void request(const uint8_t *data, size_t size)
{
    certreq r = {0};
    char *err = NULL;
    int rc = certreq_parse((const char *)data, size, &r, &err);
    CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG);
    CHECK((rc == 0) == (err == NULL));
    free(err);
    if (rc != 0) {
        CHECK(r.node_id == NULL);
        return;
    }
    CHECK(pki_node_id_valid(r.node_id));
    CHECK(strlen(r.csr) <= CERTREQ_MAX_CSR);
    CHECK(strlen(r.challenge) >= CERTREQ_MIN_CHALLENGE && strlen(r.challenge) <= CERTREQ_MAX_CHALLENGE);
    CHECK(r.challenge_port >= 1 && r.challenge_port <= 65535);
    CHECK(r.join_token[0] && strlen(r.join_token) <= CERTREQ_MAX_JOIN_TOKEN);
    CHECK(r.n_addresses <= CERTREQ_MAX_ADDRESSES);
    for (size_t i = 0; i < r.n_addresses; i++)
        CHECK(is_ip(r.addresses[i]));

    json_t *j = certreq_request_json(&r);
    CHECK(j);
    char *text = json_dumps(j, JSON_COMPACT);
    CHECK(text);
    certreq again = {0};
    CHECK(certreq_parse(text, strlen(text), &again, NULL) == 0);
    CHECK(!strcmp(again.node_id, r.node_id) && !strcmp(again.csr, r.csr) && !strcmp(again.challenge, r.challenge) &&
          again.challenge_port == r.challenge_port && !strcmp(again.join_token, r.join_token) &&
          again.n_addresses == r.n_addresses);
    for (size_t i = 0; i < r.n_addresses; i++)
        CHECK(!strcmp(again.addresses[i], r.addresses[i]));
    CHECK(!r.role || pki_role_valid(r.role));
    CHECK(!r.role == !again.role && (!r.role || !strcmp(again.role, r.role)));
    certreq_free(&again);
    free(text);
    json_decref(j);

    csr_checks(r.csr, strlen(r.csr), r.node_id, r.n_addresses ? r.addresses[0] : "127.0.0.1");
    certreq_free(&r);
    CHECK(r.node_id == NULL);
}

static void response(const uint8_t *data, size_t size)
{
    certreq_response resp = {0};
    char *err = NULL;
    int rc = certreq_response_parse((const char *)data, size, &resp, &err);
    CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG);
    CHECK((rc == 0) == (err == NULL));
    free(err);
    if (rc == 0)
        CHECK(resp.certificate && resp.ca_certificate);
    certreq_response_free(&resp);
}

/* DER -> PEM with 64-character lines. */
static void der_as_csr(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 11000)
        return;
    static const char head[] = "-----BEGIN CERTIFICATE REQUEST-----\n", tail[] = "-----END CERTIFICATE REQUEST-----\n";
    size_t b64 = 4 * ((size + 2) / 3);
    char *pem = malloc(sizeof(head) + b64 + b64 / 64 + 2 + sizeof(tail));
    char *line = malloc(b64 + 1);
    CHECK(pem && line);
    EVP_EncodeBlock((unsigned char *)line, data, (int)size);
    size_t o = 0;
    memcpy(pem, head, sizeof(head) - 1);
    o += sizeof(head) - 1;
    for (size_t i = 0; i < b64; i += 64) {
        size_t n = b64 - i < 64 ? b64 - i : 64;
        memcpy(pem + o, line + i, n);
        o += n;
        pem[o++] = '\n';
    }
    memcpy(pem + o, tail, sizeof(tail) - 1);
    o += sizeof(tail) - 1;
    csr_checks(pem, o, NULL, "10.0.0.1");
    free(line);
    free(pem);
}

static void token_table(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    if (!doc)
        return;
    jointoken_table *t = NULL;
    char *err = NULL;
    int rc = jointoken_table_from_json(doc, &t, &err);
    CHECK(rc == 0 || rc == -EINVAL);
    CHECK((rc == 0) == (err == NULL));
    free(err);
    if (rc == 0) {
        json_t *out = jointoken_table_to_json(t);
        CHECK(out && json_equal(out, doc));
        jointoken_table *again = NULL;
        CHECK(jointoken_table_from_json(out, &again, NULL) == 0);
        CHECK(jointoken_count(again) == jointoken_count(t));
        CHECK(jointoken_consume(again, "p2pj_not-a-real-token", 1700000000) == -EACCES);
        jointoken_purge(again, 1700000000);
        jointoken_table_free(again);
        json_decref(out);
    } else {
        CHECK(t == NULL);
    }
    jointoken_table_free(t);
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request(data, size);
    response(data, size);
    if (size <= PKI_MAX_CSR_PEM + 1)
        csr_checks((const char *)data, size, NULL, "127.0.0.1");
    der_as_csr(data, size);
    token_table(data, size);
    CHECK(ERR_peek_error() == 0);
    return 0;
}
