/* test/fuzz/fuzz_t5_tokenizer.c — libFuzzer harness: any bytes as a T5 prompt.
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *         test/fuzz/fuzz_t5_tokenizer.c tokenizer.c unicode_data.c blob.c tensor.c -lm -o fuzz_t5
 *   ./fuzz_t5 -max_total_time=600 WORKDIR test/fuzz/corpus/fuzz_t5_tokenizer   (from the repository root)
 * Besides the sanitizers it checks ids in range, one </s> at the end, no two <unk> in a row, and
 * that truncation (max_len 1..16) gives the untruncated ids cut to max_len - 1, then </s>. */
#include "../../ediff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static T5Tokenizer t5;                /* loaded once: the harness's only state */
    static int loaded;
    char err[EDIFF_ERR];
    Tokens all = {0}, cut = {0};
    int i, max_len = 1 + (size ? data[0] % 16 : 0), n;
    if (!loaded) {
        if (tokenizers_open(NULL, &t5, NULL, err)) {
            fprintf(stderr, "fuzz_t5_tokenizer: %s (run from the repository root)\n", err);
            abort();
        }
        loaded = 1;
    }
    if (t5_tokenize(&t5, (const char *)data, size, 0, &all, err) || t5_tokenize(&t5, (const char *)data, size, max_len, &cut, err))
        abort();
    if (all.n < 1 || all.id[all.n - 1] != t5.eos_id) abort();
    for (i = 0; i < all.n - 1; i++)
        if (all.id[i] < 0 || all.id[i] >= t5.n_pieces || all.id[i] == t5.eos_id ||
            (all.id[i] == t5.unk_id && i > 0 && all.id[i - 1] == t5.unk_id))
            abort();
    n = all.n - 1 < max_len - 1 ? all.n - 1 : max_len - 1;
    if (cut.n != n + 1 || cut.id[n] != t5.eos_id || memcmp(cut.id, all.id, (size_t)n * sizeof *cut.id)) abort();
    tokens_free(&all);
    tokens_free(&cut);
    return 0;
}
