/*
 * fuzz_admin.c — libFuzzer target for the admin service's parsers: the
 * admin_commands_file allow-list (first byte even) and the path check of
 * admin/read_file and write_file (first byte odd).
 *
 * An allow-list either parses (count within bounds, no message) or is refused
 * with a message; a path is accepted only when it is relative with no empty,
 * "." or ".." component. Nothing may crash or leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "builtin/admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        size_t n = 0;
        char *err = NULL;
        int r = p2p__admin_check_commands((const char *)data + 1, size - 1, &n, &err);
        if ((r == 0) != (err == NULL) || (r != 0 && n != 0) || n > 256)
            abort();
        free(err);
        return 0;
    }
    char *path = malloc(size);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = 0;
    const char *why = NULL;
    int n = p2p__admin_path_check(path, &why);
    if (n < 0 && !why)
        abort();
    if (n > 0) {
        size_t len = strlen(path);
        if (path[0] == '/' || path[len - 1] == '/' || strstr(path, "//") || !strcmp(path, ".") ||
            !strcmp(path, "..") || !strncmp(path, "../", 3) || !strncmp(path, "./", 2) || strstr(path, "/../") ||
            strstr(path, "/./") || (len >= 3 && !strcmp(path + len - 3, "/..")) ||
            (len >= 2 && !strcmp(path + len - 2, "/.")))
            abort();
    }
    free(path);
    return 0;
}
