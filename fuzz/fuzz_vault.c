/*
 * fuzz_vault.c — libFuzzer target for the vault reader.
 *
 * Every input is tried two ways:
 *  1. As a vault file: vault_parse_header(), then a full vault_open_buffer() with
 *     the fixed password "fuzz" and min = max = 1000 iterations (so a header that
 *     claims ten million costs nothing). The seed vault opens; mutations of it must
 *     fail cleanly. GCM makes a forged tag hopeless, hence the second way:
 *  2. As the decrypted document: the harness seals the input itself in the file
 *     format (independently of vault.c: header as AAD, fixed salt and nonce, which
 *     is harmless here) and opens that, so the JSON decoder behind the tag is
 *     fuzzed too. When it opens, its export must seal, open and export again to
 *     the same bytes.
 * A crash, a leak, a sanitizer report or a round-trip mismatch is a finding.
 */
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vault/vault.h"

#define PASSWORD "fuzz"
#define ITERATIONS 1000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const vault_opts opts = {.min_iterations = ITERATIONS, .max_iterations = ITERATIONS};

/* The key for the fixed salt, derived once per process (harness-only cache). */
static const uint8_t *fixed_key(const uint8_t *salt)
{
    static uint8_t key[VAULT_KEY_LEN];
    static int ready;
    if (!ready) {
        if (PKCS5_PBKDF2_HMAC(PASSWORD, sizeof PASSWORD - 1, salt, VAULT_SALT_LEN, ITERATIONS, EVP_sha256(),
                              VAULT_KEY_LEN, key) != 1)
            abort();
        ready = 1;
    }
    return key;
}

/* A vault file image holding `plain` as its document. */
static uint8_t *seal(const uint8_t *plain, size_t len, size_t *out_len)
{
    uint8_t *out = malloc(VAULT_MIN_FILE + len);
    if (!out)
        abort();
    vault_wire_header h;
    memcpy(h.magic, VAULT_MAGIC, sizeof h.magic);
    h.version[0] = 0, h.version[1] = VAULT_FORMAT_VERSION;
    h.kdf[0] = 0, h.kdf[1] = VAULT_KDF_PBKDF2_SHA256;
    h.iterations[0] = (uint8_t)(ITERATIONS >> 24), h.iterations[1] = (uint8_t)(ITERATIONS >> 16);
    h.iterations[2] = (uint8_t)(ITERATIONS >> 8), h.iterations[3] = (uint8_t)ITERATIONS;
    memset(h.salt, 0x5a, sizeof h.salt);
    memset(h.nonce, 0xa5, sizeof h.nonce);
    memcpy(out, &h, VAULT_HEADER_LEN);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0;
    if (!c || EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, fixed_key(h.salt), h.nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, out, VAULT_HEADER_LEN) != 1 ||
        (len && EVP_EncryptUpdate(c, out + VAULT_HEADER_LEN, &n, plain, (int)len) != 1) ||
        EVP_EncryptFinal_ex(c, out + VAULT_HEADER_LEN + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, VAULT_TAG_LEN, out + VAULT_HEADER_LEN + len) != 1)
        abort();
    EVP_CIPHER_CTX_free(c);
    *out_len = VAULT_MIN_FILE + len;
    return out;
}

/* Opens a sealed document; returns its compact export or NULL. */
static char *open_and_export(const uint8_t *plain, size_t len, size_t *json_len)
{
    size_t image_len;
    uint8_t *image = seal(plain, len, &image_len);
    vault *v = NULL;
    char *err = NULL;
    int r = vault_open_buffer(image, image_len, PASSWORD, &opts, &v, &err);
    free(image);
    if ((r == 0) != (v != NULL) || (r == 0) == (err != NULL))
        abort(); /* exactly one of a vault or a message */
    free(err);
    if (r != 0)
        return NULL;
    char *json = NULL;
    if (vault_export(v, 0, &json, json_len) != 0)
        abort();
    vault_close(v);
    return json;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > VAULT_MAX_FILE)
        return 0;

    /* 1. the input is a vault file */
    vault_header h;
    int hr = vault_parse_header(data, size, &h);
    if (hr == 0 && h.ciphertext_len + VAULT_MIN_FILE != size)
        abort();
    vault *v = NULL;
    char *err = NULL;
    int r = vault_open_buffer(data, size, PASSWORD, &opts, &v, &err);
    if (hr != 0 && r != hr)
        abort(); /* open reports the header's own error */
    if (r == 0) {
        char **names;
        if (vault_list(v, "data", &names) != 0)
            abort();
        vault_names_free(names);
        vault_close(v);
    }
    free(err);

    /* 2. the input is the decrypted document */
    size_t len1, len2;
    char *json1 = open_and_export(data, size, &len1);
    if (json1) {
        char *json2 = open_and_export((const uint8_t *)json1, len1, &len2);
        if (!json2 || len1 != len2 || memcmp(json1, json2, len1) != 0) {
            fprintf(stderr, "export round trip differs:\n%s\n---\n%s\n", json1, json2 ? json2 : "(null)");
            abort();
        }
        vault_secret_free(json2, len2 + 1);
        vault_secret_free(json1, len1 + 1);
    }
    return 0;
}
