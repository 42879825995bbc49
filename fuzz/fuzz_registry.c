/*
 * fuzz_registry.c — libFuzzer target for the node registry loader
 * (src/pki/registry.c, registry_from_json): the coordinator reads it from its
 * vault at every start. Each input is parsed as JSON and loaded; an accepted
 * registry must survive to_json -> from_json unchanged, answer lookups, and
 * take a renewal, a replacement and a prune without breaking its invariants.
 * A rejected one must come with a message and leave nothing behind.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c))                                                                                                      \
            abort();                                                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!doc)
        return 0;
    registry *r = NULL;
    char *err = NULL;
    int rc = registry_from_json(doc, &r, &err);
    json_decref(doc);
    if (rc != 0) {
        CHECK(rc == -EINVAL && err && !r);
        free(err);
        return 0;
    }
    CHECK(r && !err);
    json_t *out = registry_to_json(r);
    CHECK(out);
    registry *again = NULL;
    CHECK(registry_from_json(out, &again, NULL) == 0);
    json_t *out2 = registry_to_json(again);
    CHECK(json_equal(out, out2));
    json_decref(out2);
    json_decref(out);
    CHECK(registry_count(again) == registry_count(r));
    registry_cert c = {.not_after = 1800000000};
    memset(c.fingerprint, 'a', PKI_FINGERPRINT_LEN);
    memcpy(c.serial, "01", 3);
    size_t n = 0;
    int e = registry_replace(again, "w", "worker", &c, 1700000000, &n);
    CHECK(e == 0 || e == -ENOSPC);
    if (e == 0) /* (the input may list the same fingerprint as revoked: not checked here) */
        CHECK(registry_find(again, "w") && registry_find(again, "w")->n_previous == 0 &&
              !strcmp(registry_find(again, "w")->cert.fingerprint, c.fingerprint));
    e = registry_renew(again, "w", "worker", &c, 1700000001);
    CHECK(e == 0 || e == -ENOSPC);
    registry_prune(again, 1700000002);
    json_decref(registry_revoked_json(again));
    registry_free(again);
    registry_free(r);
    return 0;
}
