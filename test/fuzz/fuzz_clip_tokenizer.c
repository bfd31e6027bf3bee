/* test/fuzz/fuzz_clip_tokenizer.c — libFuzzer harness: any bytes as a CLIP prompt.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *         test/fuzz/fuzz_clip_tokenizer.c tokenizer.c unicode_data.c blob.c tensor.c -lm -o fuzz_clip
 *   ./fuzz_clip -max_total_time=600 WORKDIR test/fuzz/corpus/fuzz_clip_tokenizer   (from the repository root)
 * Besides the sanitizers it checks the 77-id form: sot first, eot kept, zero padding, ids in range,
 * and equal to the untruncated encoding cut to 75 ids. */
#include "../../ediff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ClipTokenizer clip;            /* loaded once: the harness's only state */
    static int loaded;
    char err[EDIFF_ERR];
    int32_t ids[CLIP_CONTEXT];
    Tokens all = {0};
    int i, n;
    if (!loaded) {
        if (tokenizers_open(&clip, NULL, NULL, err)) {
            fprintf(stderr, "fuzz_clip_tokenizer: %s (run from the repository root)\n", err);
            abort();
        }
        loaded = 1;
    }
    if (clip_tokenize(&clip, (const char *)data, size, ids, err) || clip_tokenizer_encode(&clip, (const char *)data, size, -1, &all, err))
        abort();
    n = all.n < CLIP_CONTEXT - 2 ? all.n : CLIP_CONTEXT - 2;
    if (ids[0] != clip.sot || ids[n + 1] != clip.eot) abort();
    for (i = 0; i < n; i++)
        if (ids[1 + i] != all.id[i]) abort();
    for (i = 0; i < all.n; i++)
        if (all.id[i] < 0 || all.id[i] > clip.eot) abort();
    for (i = n + 2; i < CLIP_CONTEXT; i++)
        if (ids[i] != 0) abort();
    tokens_free(&all);
    return 0;
}
