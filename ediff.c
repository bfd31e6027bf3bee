/* ediff.c — the command-line program: subcommands dispatch here, and the image pipeline reads as one
 * pass from weights to PNG (prompt -> tokenizers -> encoders -> cascade of expert ensembles -> PNG). */
#include "ediff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ediff info FILE            print a blob's metadata and tensor table\n"
            "       ediff --help | --version\n");
}

/* ediff info FILE: metadata, then one line per tensor (name, dtype, shape, bytes). */
static int cmd_info(int argc, char **argv)
{
    Blob b;
    char err[EDIFF_ERR];
    size_t total = 0;
    int i, d;
    if (argc != 3) {
        fprintf(stderr, "ediff info: expected one FILE\n");
        return 2;
    }
    if (blob_open(&b, argv[2], err)) {
        fprintf(stderr, "ediff: %s\n", err);
        return 1;
    }
    printf("%s: ediff blob, %zu bytes, %d tensors, %d metadata keys, %s\n", b.path, b.size, b.n_tensors,
           b.n_meta, b.storage == BLOB_MMAP ? "mmapped" : "read into memory");
    for (i = 0; i < b.n_meta; i++) printf("  %s=%s\n", b.meta_kv[2 * i], b.meta_kv[2 * i + 1]);
    for (i = 0; i < b.n_tensors; i++) {
        const Tensor *t = &b.tensors[i];
        char shape[128] = "";
        size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
        for (d = 0; d < t->rank; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        printf("  %-64s %-4s [%s] %zu\n", t->name, dtype_name(t->dtype), shape, bytes);
        total += bytes;
    }
    printf("total tensor bytes: %zu\n", total);
    blob_close(&b);
    return 0;
}

#ifndef EDIFF_NO_MAIN
int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "info") == 0) return cmd_info(argc, argv);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("ediff %s\n", EDIFF_VERSION);
        return 0;
    }
    usage(stderr);
    return 2;
}
#endif
