/* test/fuzz/fuzz_t5_model.c — libFuzzer harness: any bytes as a sentencepiece model (spiece.model).
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *         test/fuzz/fuzz_t5_model.c tokenizer.c unicode_data.c blob.c tensor.c -lm -o fuzz_t5_model
 *   ./fuzz_t5_model -max_total_time=600 WORKDIR test/fuzz/corpus/fuzz_t5_model
 * The seed is test/ref/tokenizer_tiny_spiece.model (45 pieces, a small charsmap). A model that loads
 * must encode prompts into ids in range with no two <unk> in a row; one that does not gives an error. */
#include "../../ediff.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const prompt[] = {"the quick brown fox", "  \xef\xbd\x81\xc2\xbd\tb \xef\xac\x81 ", "\xf0\x9f\x98\x80 x\x01y", ""};
    T5Tokenizer t5;
    char err[EDIFF_ERR];
    size_t p;
    int i;
    if (t5_tokenizer_init(&t5, data, size, err)) {
        if (!err[0] || strchr(err, '\n')) abort();
        return 0;
    }
    for (p = 0; p < sizeof prompt / sizeof prompt[0]; p++) {
        Tokens ids = {0};
        if (t5_tokenize(&t5, prompt[p], strlen(prompt[p]), 0, &ids, err)) abort();
        for (i = 0; i < ids.n; i++)
            if (ids.id[i] < 0 || ids.id[i] >= t5.n_pieces || (i > 0 && ids.id[i] == t5.unk_id && ids.id[i - 1] == t5.unk_id))
                abort();
        tokens_free(&ids);
    }
    t5_tokenizer_free(&t5);
    return 0;
}
