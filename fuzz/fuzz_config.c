/*
 * fuzz_config.c — libFuzzer target for the YAML config loader.
 *
 * Loads the input over worker defaults from memory (p2p_config_load_buffer, the
 * same code path as --config FILE). When it loads and finalizes, it also checks
 * the --print-config round trip: the emitted YAML must load back without error
 * and print identically. Anything else (crash, leak, mismatch) is a finding.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2p_config cfg, back;
    char *err = NULL;
    p2p_config_defaults(&cfg, 0);
    int rc = p2p_config_load_buffer(&cfg, "fuzz.yaml", (const char *)data, size, &err);
    if (rc == 0 && err) abort();
    free(err);
    err = NULL;
    if (rc == 0 && p2p_config_finalize(&cfg, &err) == 0) {
        char *text = p2p_config_to_yaml(&cfg);
        if (!text) abort();
        p2p_config_defaults(&back, 1);
        if (p2p_config_load_buffer(&back, "printed.yaml", text, strlen(text), &err) ||
            p2p_config_finalize(&back, &err)) {
            fprintf(stderr, "round trip failed: %s\n--- printed:\n%s\n", err ? err : "?", text);
            abort();
        }
        char *again = p2p_config_to_yaml(&back);
        if (!again || strcmp(text, again)) {
            fprintf(stderr, "round trip differs:\n%s\n---\n%s\n", text, again ? again : "(null)");
            abort();
        }
        free(again);
        free(text);
        p2p_config_free(&back);
    }
    free(err);
    p2p_config_free(&cfg);
    return 0;
}
