/*
 * fuzz_manifest.c — libFuzzer target for the service manifest parser.
 *
 * Any input must either parse into a manifest whose invariants hold (a valid
 * name, a version that parses again and compares equal to itself, an entry for
 * native or a non-empty command for exec, settings an object) or be refused
 * with a message; nothing may crash or leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "services/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2p_manifest m;
    memset(&m, 0, sizeof m);
    char *err = NULL;
    int rc = p2p__manifest_parse((const char *)data, size, NULL, "fuzz/manifest.json", &m, &err);
    if (rc != 0) {
        if (!err || m.name)
            abort();
        free(err);
        return 0;
    }
    if (err || !p2p__service_name_valid(m.name) || !json_is_object(m.settings))
        abort();
    p2p_semver v;
    if (p2p__semver_parse(m.version, &v) != 0 || p2p__semver_cmp(&v, &m.semver) != 0)
        abort();
    if (m.type == P2P_SVC_NATIVE ? (!m.entry || m.command) : (m.entry || !m.command || m.n_command == 0))
        abort();
    p2p__manifest_free(&m);
    return 0;
}
