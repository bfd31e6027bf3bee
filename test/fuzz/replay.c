/* test/fuzz/replay.c — a plain main for a libFuzzer harness: feeds every file named on the command line
 * to LLVMFuzzerTestOneInput once, as libFuzzer would, so the committed corpora (seeds and every crash
 * fuzzing found) are regression tests with any compiler. `make test` builds one driver per harness
 * (build/.../replay-fuzz_NAME) and the fuzz suite runs it on test/fuzz/corpus/fuzz_NAME/ *.
 *   replay-fuzz_png FILE...      prints "replayed N inputs (B bytes)"; exit 0, or 1 if a file is unreadable
 * A harness that finds a broken property aborts, which fails the run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    size_t total = 0;
    int i;
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        uint8_t *buf = NULL, *exact;
        size_t n = 0, cap = 0, got;
        if (!f) {
            fprintf(stderr, "replay: %s: cannot open\n", argv[i]);
            return 1;
        }
        do {                                        /* read it whole, growing the buffer */
            if (n == cap) {
                uint8_t *grown = realloc(buf, cap = 2 * cap + 4096);
                if (!grown) {
                    fprintf(stderr, "replay: %s: out of memory\n", argv[i]);
                    return 1;
                }
                buf = grown;
            }
            got = fread(buf + n, 1, cap - n, f);
            n += got;
        } while (got > 0);
        fclose(f);
        exact = malloc(n ? n : 1);                  /* exactly n bytes, as libFuzzer passes them, so that */
        if (!exact) {                               /* ASan sees a read past the end */
            fprintf(stderr, "replay: %s: out of memory\n", argv[i]);
            return 1;
        }
        memcpy(exact, buf, n);
        free(buf);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
        total += n;
    }
    printf("replayed %d inputs (%zu bytes)\n", argc - 1, total);
    return 0;
}
