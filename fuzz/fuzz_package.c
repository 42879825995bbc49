/*
 * fuzz_package.c — libFuzzer target for the package reader (src/deploy).
 *
 * An input starting with a zstd or gzip magic is read as a package file as
 * is; any other input is taken as the tar bytes of one and compressed with
 * zstd first, so the fuzzer reaches the tar and listing checks instead of
 * spending itself on the compressed layer. The reader runs with small caps
 * and a fixed trusted key. Any input must either be refused with a message
 * and no info, or be accepted with an info whose invariants hold (every
 * listed file checked, sorted, within the caps; a known type; the byte counts
 * within the caps); nothing may crash, leak or allocate beyond the caps.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "deploy/package.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fixed_key[32] = {0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a, 0x92, 0xb7, 0x0a,
                                      0xa7, 0x4d, 0x1b, 0x7e, 0xbc, 0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4,
                                      0x96, 0x8c, 0xc0, 0xcd, 0x55, 0xf1, 0x2a, 0xf4, 0x66, 0x0c};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *z = NULL;
    const uint8_t *in = data;
    size_t n = size;
    int compressed = size >= 4 && ((data[0] == 0x28 && data[1] == 0xb5 && data[2] == 0x2f && data[3] == 0xfd) ||
                                   (data[0] == 0x1f && data[1] == 0x8b));
    if (!compressed) {
        size_t cap = ZSTD_compressBound(size);
        z = malloc(cap);
        n = ZSTD_compress(z, cap, data, size, 1);
        if (ZSTD_isError(n))
            abort();
        in = z;
    }
    p2p_pkg_limits lim = {.max_files = 64, .max_file_bytes = 256 * 1024, .max_total_bytes = 1024 * 1024,
                          .max_ratio = 1000};
    p2p_pkg_policy pol = {.limits = &lim, .keys = &fixed_key, .n_keys = 1};
    p2p_pkg_info info;
    memset(&info, 0, sizeof info);
    char *err = NULL;
    int rc = p2p__pkg_verify_buffer(in, n, &pol, &info, &err);
    if (rc != 0) {
        if (!err || info.name)
            abort();
        free(err);
    } else {
        if (err || !info.name || (strcmp(info.type, "service") && strcmp(info.type, "node")))
            abort();
        if (info.n_files > lim.max_files || info.total_bytes > lim.max_total_bytes)
            abort();
        for (size_t i = 0; i < info.n_files; i++)
            if (info.files[i].size > lim.max_file_bytes || (i && strcmp(info.files[i - 1].path, info.files[i].path) >= 0))
                abort();
        if (info.sig == P2P_PKG_SIG_UNCHECKED) /* a key was given: signed means checked or untrusted */
            abort();
        p2p__pkg_info_free(&info);
    }
    free(z);
    return 0;
}
