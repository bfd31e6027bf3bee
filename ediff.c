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
            "       ediff tokenize [--model FILE] clip|t5 TEXT\n"
            "                                  print the token ids of TEXT (clip: the 77 of clip.tokenize;\n"
            "                                  t5: EncodeAsIds + </s>) on one line\n"
            "       ediff tokenize [--model FILE] --cases FILE.tsv\n"
            "                                  check every case of a tokenizer case file\n"
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

/* ediff tokenize [--model FILE] (clip|t5 TEXT | --cases FILE): the tokenizer data comes from the
 * model blob, or from weights/vocab/ without --model. */
static int cmd_tokenize(int argc, char **argv)
{
    ClipTokenizer clip;
    T5Tokenizer t5;
    Blob blob;
    char err[EDIFF_ERR];
    int a = 2, rc = 0, passed = 0, failed = 0, i;
    const char *model = NULL;
    if (argc >= 4 && strcmp(argv[a], "--model") == 0) model = argv[a + 1], a += 2;
    if (argc - a != 2 || (strcmp(argv[a], "clip") && strcmp(argv[a], "t5") && strcmp(argv[a], "--cases"))) {
        fprintf(stderr, "ediff tokenize: expected [--model FILE] clip|t5 TEXT, or [--model FILE] --cases FILE.tsv\n");
        return 2;
    }
    if (model && blob_open(&blob, model, err)) {
        fprintf(stderr, "ediff: %s\n", err);
        return 1;
    }
    if (tokenizers_open(&clip, &t5, model ? &blob : NULL, err)) {
        fprintf(stderr, "ediff: %s\n", err);
        if (model) blob_close(&blob);
        return 1;
    }
    if (strcmp(argv[a], "--cases") == 0) {
        if (tokenizer_check_cases(&clip, &t5, argv[a + 1], stdout, &passed, &failed, err)) {
            fprintf(stderr, "ediff: %s\n", err);
            rc = 1;
        } else {
            printf("%d passed, %d failed\n", passed, failed);
            rc = failed ? 1 : 0;
        }
    } else {
        Tokens ids = {0};
        int32_t clip_ids[CLIP_CONTEXT];
        const char *text = argv[a + 1];
        if (argv[a][0] == 'c') {
            rc = clip_tokenize(&clip, text, strlen(text), clip_ids, err);
            for (i = 0; !rc && i < CLIP_CONTEXT; i++) printf("%s%d", i ? " " : "", (int)clip_ids[i]);
        } else {
            rc = t5_tokenize(&t5, text, strlen(text), 0, &ids, err);
            for (i = 0; !rc && i < ids.n; i++) printf("%s%d", i ? " " : "", (int)ids.id[i]);
        }
        if (rc) fprintf(stderr, "ediff: %s\n", err);
        else printf("\n");
        rc = rc ? 1 : 0;
        tokens_free(&ids);
    }
    clip_tokenizer_free(&clip);
    t5_tokenizer_free(&t5);
    if (model) blob_close(&blob);
    return rc;
}

#ifndef EDIFF_NO_MAIN
int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "info") == 0) return cmd_info(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "tokenize") == 0) return cmd_tokenize(argc, argv);
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
