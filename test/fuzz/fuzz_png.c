/* test/fuzz/fuzz_png.c — libFuzzer target for png.c: the PNG reader and the inflater beneath it.
 * Properties checked on any input:
 *   - png_decode either succeeds or fails with one error line "fuzz: ..." (never a crash or UB);
 *   - the same bytes with every chunk CRC made valid again (so mutations reach what the CRCs guard:
 *     IHDR values, palettes, text chunks, the zlib stream) obey the same rule;
 *   - a decoded image survives our writer: encoded and decoded again it is identical, parameters too;
 *   - zlib_decompress on the raw bytes (a zlib stream) fails cleanly or stays within its buffer.
 * Build (the suite's `make fuzz` does the equivalent):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c99 test/fuzz/fuzz_png.c png.c blob.c tensor.c -lm
 * Seeds: test/fuzz/corpus/fuzz_png/. */
#include "../../ediff.h"

#include <stdlib.h>
#include <string.h>
#include "../png_crcs.h"

static void check_error(const char *err)
{
    if (!err[0] || strchr(err, '\n') || strncmp(err, "fuzz: ", 6) != 0) abort();
}

/* Decoded images (up to 64K pixels, to keep the fuzzer fast) must round-trip through our writer. */
static void check_roundtrip(const Image *im)
{
    const char *text[] = {"parameters", im->parameters, NULL};
    char err[EDIFF_ERR];
    uint8_t *png;
    size_t n;
    Image back;
    if ((long)im->w * im->h > 65536) return;
    if (png_encode(im->rgba, im->w, im->h, 4, im->parameters ? text : NULL, &png, &n, "fuzz", err) != 0) abort();
    if (png_decode(png, n, "fuzz", &back, err) != 0) abort();
    if (back.w != im->w || back.h != im->h || memcmp(back.rgba, im->rgba, (size_t)im->w * im->h * 4) != 0 ||
        (!im->parameters) != (!back.parameters) || (im->parameters && strcmp(im->parameters, back.parameters) != 0))
        abort();
    image_free(&back);
    free(png);
}

static void decode(const uint8_t *data, size_t size)
{
    char err[EDIFF_ERR];
    Image im;
    err[0] = 0;
    if (png_decode(data, size, "fuzz", &im, err) != 0) {
        check_error(err);
        if (im.rgba || im.parameters) abort();
        return;
    }
    check_roundtrip(&im);
    image_free(&im);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size + 1), out[4096];
    char err[EDIFF_ERR];
    size_t got = 0;
    decode(data, size);
    if (copy) {
        memcpy(copy, data, size);
        fix_crcs(copy, size);
        decode(copy, size);
        free(copy);
    }
    err[0] = 0;
    if (zlib_decompress(data, size, out, sizeof out, &got, "fuzz", err) != 0) check_error(err);
    if (got > sizeof out) abort();
    return 0;
}
