/* test/fuzz/fuzz_paint_mask.c — libFuzzer harness: the paint-with-words mask path of ediff.c without a
 * model. Input: 4 header bytes, then a mask PNG (any size and type).
 *   header  grid h = 1 + b0 % 64, grid w = 1 + b1 % 64, context rows n_ctx = 1 + b2 % 40, and b3 the
 *           painted columns (column j is painted when bit j % 8 of b3 is set)
 *   path    png_decode -> mask_from_image (painted = visible and not black) -> paint_map for the grid and
 *           each halving of it down to 1x1 (the grids of a UNet), with the mask given once and twice
 * Properties: the PNG decodes or fails with one line; the mask is 1 exactly where alpha > 0 and
 * max(R, G, B) > 0; every map entry is 0 in unpainted columns and, in painted ones, the mask resized
 * (align_corners bilinear) to the grid: in [0, 1] for one flag, twice that for two, the same in every
 * painted column.
 * Build and run: make fuzz FUZZ=fuzz_paint_mask FUZZ_SECONDS=N (this file includes ediff.c).
 * Seeds: test/fuzz/corpus/fuzz_paint_mask/, written by test/fuzz/gen_seeds.py. */
#define EDIFF_NO_MAIN
#include "../../ediff.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PIXELS (1 << 22)          /* larger masks decode, but are not resized (fuzzer speed) */

static void check_map(const float *A1, const float *A2, int hw, int n_ctx, const uint8_t *column)
{
    int i, j, first;
    for (i = 0; i < hw; i++) {
        for (j = 0, first = -1; j < n_ctx; j++) {
            float a = A1[(size_t)i * n_ctx + j], b = A2[(size_t)i * n_ctx + j];
            if (!column[j]) {
                if (a != 0.0f || b != 0.0f) abort();
                continue;
            }
            if (!(a >= 0.0f && a <= 1.0f + 1e-6f) || b != a + a) abort();
            if (first < 0) first = j;
            else if (a != A1[(size_t)i * n_ctx + first]) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Image img;
    Paint paint[2];
    uint8_t column[40];
    char err[EDIFF_ERR];
    int h, w, n_ctx, j;
    size_t i, n;
    if (size < 4) return 0;
    h = 1 + data[0] % 64;
    w = 1 + data[1] % 64;
    n_ctx = 1 + data[2] % 40;
    for (j = 0; j < n_ctx; j++) column[j] = (uint8_t)(data[3] >> (j % 8) & 1);
    err[0] = 0;
    if (png_decode(data + 4, size - 4, "mask.png", &img, err)) {
        if (!err[0] || strchr(err, '\n') || strncmp(err, "mask.png: ", 10) != 0) abort();
        return 0;
    }
    memset(paint, 0, sizeof paint);
    mask_from_image(&paint[0], &img);
    n = (size_t)img.w * img.h;
    for (i = 0; i < n; i++) {
        const uint8_t *px = img.rgba + 4 * i;
        int painted = px[3] > 0 && (px[0] > 0 || px[1] > 0 || px[2] > 0);
        if (paint[0].mask[i] != (float)painted) abort();
    }
    paint[0].column = column;
    paint[1] = paint[0];
    while (n <= MAX_PIXELS) {                                       /* the grid, then each halving */
        float *A1 = paint_map(h, w, paint, 1, n_ctx), *A2 = paint_map(h, w, paint, 2, n_ctx);
        check_map(A1, A2, h * w, n_ctx, column);
        free(A1);
        free(A2);
        if (h == 1 && w == 1) break;
        h = (h + 1) / 2;
        w = (w + 1) / 2;
    }
    free(paint[0].mask);
    image_free(&img);
    return 0;
}
