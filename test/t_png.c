/* test/t_png.c — the PNG codec (png.c).
 *   read      files of every colour type, bit depth and interlacing, written by Pillow (or by
 *             test/gen_png.py where Pillow cannot) and decoded by Pillow: read pixel-exact
 *   write     our PNGs read back exactly, parameters text included; left in test/out/png/ for
 *             test/check_png_pil.py (Pillow must read them pixel-exact too)
 *   size      our compression against Pillow's on the same pixels
 *   broken    hundreds of broken files derived at run time (truncations, CRC flips, bad IHDR values,
 *             huge sizes, bad zlib streams, wrong amounts of data, bad filters, chunk order, random
 *             mutations with valid CRCs) plus test/png/bad/: each one clean error line, counted per
 *             category. Under `make sanitize` this is also the memory-safety check. */
#include "harness.h"
#include "png_crcs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#define HAVE_POSIX 1
#endif

#define MAXPNG 8192            /* crafted files are tiny */

/* The names of a comma-separated list in the reference metadata: a malloc'd copy split in place
 * (the caller frees it), and names[0..*n). */
static char *name_list(const Blob *ref, const char *key, char **names, int max, int *count)
{
    const char *v = blob_meta(ref, key);
    char *list, *p, *save;
    int n = 0;
    *count = 0;
    if (!v) return NULL;
    list = xmalloc(strlen(v) + 1);
    memcpy(list, v, strlen(v) + 1);
    for (p = list; p && *p && n < max; p = save) {
        save = strchr(p, ',');
        if (save) *save++ = 0;
        names[n++] = p;
    }
    *count = n;
    return list;
}

/* One error line: non-empty, no newline, starts with "label: ". */
static int clean_error(const char *err, const char *label)
{
    size_t n = strlen(label);
    return err[0] && !strchr(err, '\n') && strncmp(err, label, n) == 0 && err[n] == ':';
}

/* ------------------------------------------------------------------ reading Pillow's files -------- */

static int same_rgba(const Image *im, const Tensor *ref, int *max_diff)
{
    int64_t i, n = (int64_t)im->w * im->h * 4;
    const uint8_t *want = ref->data;
    *max_diff = 0;
    if (ref->rank != 3 || ref->shape[0] != im->h || ref->shape[1] != im->w || ref->shape[2] != 4) return 0;
    for (i = 0; i < n; i++) {
        int d = abs((int)im->rgba[i] - (int)want[i]);
        if (d > *max_diff) *max_diff = d;
    }
    return *max_diff == 0;
}

/* Every reference file, grouped by colour type / depth / tRNS variant (4 files each: two sizes, plain
 * and Adam7). */
static void read_pillow_files(TestRun *T, const Blob *ref)
{
    char *names[512], group[64] = "", key[256], path[512], err[EDIFF_ERR], sizes[256] = "";
    int n, i, files = 0, exact = 0, total = 0, total_exact = 0, pillow_written = 0, spec = 0;
    char *list = name_list(ref, "cases", names, 512, &n);
    if (!n) { report(T, 0, "png.read", "no cases in test/ref/png.bin"); free(list); return; }
    for (i = 0; i <= n; i++) {
        char g[64];
        const char *note = NULL, *writer;
        Image im;
        const Tensor *want;
        int diff = 0;
        snprintf(g, sizeof g, "%s", i < n ? names[i] : "");
        if (strchr(g, '.')) *strchr(g, '.') = 0;
        if (strcmp(g, group) && group[0]) {             /* a group ends: one line for it */
            char name[96];
            snprintf(name, sizeof name, "png.read.%s", group);
            if (selected(T, name))
                report(T, files == exact && files > 0, name, "%d/%d files pixel-exact (%s; plain + Adam7)", exact, files, sizes);
            files = exact = 0;
            sizes[0] = 0;
        }
        snprintf(group, sizeof group, "%s", g);
        if (i == n) break;
        snprintf(key, sizeof key, "png.read.%s", g);
        if (!selected(T, key)) continue;
        snprintf(path, sizeof path, "test/png/%s.png", names[i]);
        snprintf(key, sizeof key, "png.%s.rgba", names[i]);
        want = ref_tensor(T, ref, key);
        snprintf(key, sizeof key, "writer.%s", names[i]);
        writer = blob_meta(ref, key);
        snprintf(key, sizeof key, "note.%s", names[i]);
        note = blob_meta(ref, key);
        if (!strstr(names[i], "adam7")) {
            const char *dims = strchr(names[i], '.') + 1;
            snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), "%s%s", sizes[0] ? ", " : "", dims);
        }
        files++;
        total++;
        pillow_written += writer && !strcmp(writer, "pillow");
        spec += note && strcmp(note, "Pillow convert('RGBA')") != 0;
        if (!want) continue;
        if (png_read(path, &im, err)) {
            report(T, 0, names[i], "%s", err);
            continue;
        }
        if (same_rgba(&im, want, &diff)) {
            exact++;
            total_exact++;
        } else {
            report(T, 0, names[i], "%dx%d, max |diff| %d (written by %s; reference: %s)", im.w, im.h, diff,
                   writer ? writer : "?", note ? note : "?");
        }
        image_free(&im);
    }
    if (selected(T, "png.read.all"))
        report(T, total_exact == total && total == n, "png.read.all", "%d/%d files pixel-exact: %d written by Pillow, %d by gen_png.py "
               "(16-bit RGB/RGBA/LA, 2/4-bit grey with tRNS, all Adam7); %d with the spec's value where Pillow departs",
               total_exact, total, pillow_written, total - pillow_written, spec);
    free(list);
}

/* The "parameters" text as Pillow writes it with zTXt, compressed iTXt and Latin-1 tEXt. */
static void read_texts(TestRun *T, const Blob *ref)
{
    char *names[16], key[256], path[512], err[EDIFF_ERR];
    int n, i;
    char *list = name_list(ref, "texts", names, 16, &n);
    for (i = 0; i < n; i++) {
        const Tensor *value, *rgba;
        Image im;
        int ok, diff = 0;
        snprintf(key, sizeof key, "png.%s", names[i]);
        if (!selected(T, key)) continue;
        snprintf(path, sizeof path, "test/png/%s.png", names[i]);
        snprintf(key, sizeof key, "text.%s.value", names[i]);
        value = ref_tensor(T, ref, key);
        snprintf(key, sizeof key, "text.%s.rgba", names[i]);
        rgba = ref_tensor(T, ref, key);
        if (!value || !rgba) continue;
        if (png_read(path, &im, err)) { report(T, 0, names[i], "%s", err); continue; }
        ok = im.parameters && strlen(im.parameters) == (size_t)value->numel &&
             memcmp(im.parameters, value->data, (size_t)value->numel) == 0 && same_rgba(&im, rgba, &diff);
        snprintf(key, sizeof key, "png.%s", names[i]);
        report(T, ok, key, "parameters (%lld bytes UTF-8) %s, pixels %s", (long long)value->numel,
               ok ? "identical" : "DIFFER", diff ? "DIFFER" : "exact");
        image_free(&im);
    }
    free(list);
}

/* ------------------------------------------------------------------ writing ----------------------- */

/* Deterministic test content: 0 noise, 1 smooth gradient, 2 flat with a few edges. */
static void make_pixels(uint8_t *px, int w, int h, int c, int kind, unsigned seed)
{
    int x, y, k;
    for (y = 0; y < h; y++)
        for (x = 0; x < w; x++)
            for (k = 0; k < c; k++) {
                uint8_t *p = px + ((size_t)y * w + x) * c + k;
                seed = seed * 1664525u + 1013904223u;
                if (kind == 0) *p = (uint8_t)(seed >> 24);
                else if (kind == 1) *p = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1) + y * 3 + k * 40);
                else *p = (uint8_t)(((x / 7 + y / 5) & 1) * 200 + k * 20);
            }
}

static const char *PARAMETERS =
    "a watercolor fox in a snowy forest, soft light\nNegative prompt: blurry, text, watermark\n"
    "Steps: 32, Sampler: heun, CFG scale: 7.5, Seed: 1234567, Size: 64x48, Model: ediff-small, "
    "Model hash: 9f86d081884c7d65";
static const char *PARAMETERS_UTF8 = "caf\xc3\xa9 au lait, \xe6\x9d\xb1\xe4\xba\xac, \xf0\x9f\xa6\x8a\nSteps: 8, Seed: 7";

/* Write with png_write, read back with png_read: pixels and text identical. The file stays in
 * test/out/png/ with NAME.npy (the pixels) and NAME.txt (the parameters) for check_png_pil.py. */
static void roundtrip_case(TestRun *T, int w, int h, int c, int kind, const char *params, int *written)
{
    char name[128], path[256], err[EDIFF_ERR];
    const char *text[] = {"parameters", params, "Software", "ediff " EDIFF_VERSION, NULL};
    uint8_t *px = xmalloc((size_t)w * h * c);
    Image im;
    int ok = 0, i;
    size_t n = (size_t)w * h * c;
    FILE *f;
    snprintf(name, sizeof name, "png.write.c%d.%dx%d.%s", c, w, h, kind == 0 ? "noise" : kind == 1 ? "gradient" : "flat");
    if (!selected(T, name)) { free(px); return; }
    make_pixels(px, w, h, c, kind, (unsigned)(w * 131 + h * 7 + c));
    snprintf(path, sizeof path, "test/out/png/%s.png", name + 4);
    if (png_write(path, px, w, h, c, text, err) == 0 && png_read(path, &im, err) == 0) {
        ok = im.w == w && im.h == h && im.parameters && strcmp(im.parameters, params) == 0;
        for (i = 0; ok && (size_t)i < (size_t)w * h; i++) {
            const uint8_t *p = px + (size_t)i * c, *q = im.rgba + 4 * (size_t)i;
            uint8_t want[4];
            want[0] = p[0];
            want[1] = c >= 3 ? p[1] : p[0];
            want[2] = c >= 3 ? p[2] : p[0];
            want[3] = c == 2 ? p[1] : c == 4 ? p[3] : 255;
            ok = memcmp(want, q, 4) == 0;
        }
        image_free(&im);
    }
    if (ok) {
        float *fx = xmalloc(n * sizeof(float));
        int64_t shape[3] = {h, w, c};
        for (i = 0; (size_t)i < n; i++) fx[i] = px[i];
        snprintf(path, sizeof path, "test/out/png/%s.npy", name + 4);
        ok = npy_write(path, fx, 3, shape, err) == 0;
        snprintf(path, sizeof path, "test/out/png/%s.txt", name + 4);
        if ((f = fopen(path, "wb"))) {
            ok = ok && fputs(params, f) >= 0;
            fclose(f);
        }
        free(fx);
        (*written)++;
    }
    report(T, ok, name, "%s", ok ? "pixels and parameters read back exactly" : err);
    free(px);
}

static void roundtrips(TestRun *T)
{
    static const int dims[][2] = {{1, 1}, {3, 5}, {64, 48}, {257, 3}, {2, 130}};
    int c, d, written = 0;
#ifdef HAVE_POSIX
    mkdir("test/out/png", 0777);
#endif
    for (c = 1; c <= 4; c++)
        for (d = 0; d < 5; d++)
            roundtrip_case(T, dims[d][0], dims[d][1], c, (c + d) % 3, c == 3 && d == 2 ? PARAMETERS_UTF8 : PARAMETERS, &written);
    if (written) printf("      %d files in test/out/png/ for: .venv/bin/python test/check_png_pil.py\n", written);
}

/* A failed write leaves the old file untouched and no temporary file; bad paths give one error line. */
static void write_errors(TestRun *T)
{
    char err[EDIFF_ERR], err2[EDIFF_ERR], err3[EDIFF_ERR], tmp[512];
    uint8_t px[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const char *path = "test/out/png/atomic.png", *bad_text[] = {"bad  key", "x", NULL};
    Image im;
    int ok, r1, r2, r3, r4, unchanged = 0, no_tmp = 1;
    if (!selected(T, "png.write.errors")) return;
    ok = png_write(path, px, 2, 2, 3, NULL, err) == 0;
    r1 = png_write(path, px, 2, 2, 5, NULL, err);                          /* bad channel count */
    r2 = png_write(path, px, 2, 2, 3, bad_text, err2);                     /* bad keyword */
    r3 = png_write("test/out/no_such_dir/x.png", px, 2, 2, 3, NULL, err3); /* unwritable */
    if (png_read(path, &im, tmp) == 0) {
        unchanged = im.w == 2 && im.h == 2 && im.rgba[4] == 4 && im.rgba[7] == 255;
        image_free(&im);
    }
    r4 = png_write("test/out", px, 2, 2, 3, NULL, tmp);                    /* a directory */
#ifdef HAVE_POSIX
    {
        FILE *f;
        snprintf(tmp, sizeof tmp, "test/out.%ld.tmp", (long)getpid());
        if ((f = fopen(tmp, "rb"))) { no_tmp = 0; fclose(f); }
    }
#endif
    ok = ok && r1 && r2 && r3 && r4 && unchanged && no_tmp && clean_error(err, path) && clean_error(err2, path) &&
         clean_error(err3, "test/out/no_such_dir/x.png");
    report(T, ok, "png.write.errors", "old file kept, no temporary left: %s; e.g. \"%s\"", ok ? "yes" : "NO", err3);
}

/* ------------------------------------------------------------------ zlib and compression size ----- */

static void zlib_roundtrips(TestRun *T)
{
    static const char *what[] = {"empty", "one byte", "random 100000 (stored)", "run of 300000", "text-like 200000", "random 70000"};
    static const size_t sizes[] = {0, 1, 100000, 300000, 200000, 70000};
    int k;
    for (k = 0; k < 6; k++) {
        char name[96], err[EDIFF_ERR];
        size_t n = sizes[k], zn = 0, got = 0, i;
        uint8_t *in = xmalloc(n + 1), *z = NULL, *out = xmalloc(n + 1);
        unsigned seed = 99u + (unsigned)k;
        int ok;
        snprintf(name, sizeof name, "png.zlib.%s", what[k]);
        if (!selected(T, name)) { free(in); free(out); continue; }
        for (i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            in[i] = k == 3 ? 'a' : k == 4 ? (uint8_t)("the quick brown fox jumps over the lazy dog "[(seed >> 16) % 44])
                                         : (uint8_t)(seed >> 16);
        }
        ok = zlib_compress(in, n, &z, &zn, err) == 0 && zlib_decompress(z, zn, out, n, &got, "zlib", err) == 0 &&
             got == n && (n == 0 || memcmp(in, out, n) == 0);
        report(T, ok, name, "%zu -> %zu bytes, decompressed exactly: %s", n, zn, ok ? "yes" : err);
        free(in);
        free(out);
        free(z);
    }
}

/* Pillow's PNGs decoded exactly, re-encoded by us, decoded again exactly; our size against Pillow's. */
static void compression_vs_pillow(TestRun *T, const Blob *ref)
{
    char *names[8], key[128], path[256], err[EDIFF_ERR];
    int n, i;
    char *list = name_list(ref, "sizes", names, 8, &n);
    for (i = 0; i < n; i++) {
        const Tensor *want;
        const char *pil, *pil_opt, *chs;
        Image im, back;
        uint8_t *px, *png = NULL;
        size_t size = 0, j, np;
        int c, ok, exact = 1;
        clock_t t0;
        double ms;
        snprintf(key, sizeof key, "png.size.%s", names[i]);
        if (!selected(T, key)) continue;
        snprintf(key, sizeof key, "size.%s.pixels", names[i]);
        want = ref_tensor(T, ref, key);
        snprintf(key, sizeof key, "size.%s.pillow", names[i]);
        pil = blob_meta(ref, key);
        snprintf(key, sizeof key, "size.%s.pillow_optimize", names[i]);
        pil_opt = blob_meta(ref, key);
        snprintf(key, sizeof key, "size.%s.channels", names[i]);
        chs = blob_meta(ref, key);
        snprintf(path, sizeof path, "test/png/size_%s.png", names[i]);
        if (!want || !pil || !pil_opt || !chs || png_read(path, &im, err)) {
            report(T, 0, names[i], "missing reference or unreadable: %s", err);
            continue;
        }
        c = atoi(chs);
        np = (size_t)im.w * im.h;
        px = xmalloc(np * (size_t)c);
        for (j = 0; j < np * (size_t)c; j++) {
            px[j] = im.rgba[4 * (j / (size_t)c) + j % (size_t)c];
            exact &= px[j] == ((const uint8_t *)want->data)[j];
        }
        t0 = clock();
        ok = png_encode(px, im.w, im.h, c, NULL, &png, &size, names[i], err) == 0;
        ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (ok && png_decode(png, size, names[i], &back, err) == 0) {
            for (j = 0; j < np * 4; j++) exact &= back.rgba[j] == im.rgba[j];
            image_free(&back);
        } else {
            exact = 0;
        }
        if (exact) {                               /* multi-block streams, for check_png_pil.py too */
            float *fx = xmalloc(np * (size_t)c * sizeof(float));
            int64_t shape[3] = {im.h, im.w, c};
            FILE *f;
            for (j = 0; j < np * (size_t)c; j++) fx[j] = px[j];
            snprintf(path, sizeof path, "test/out/png/size_%s.npy", names[i]);
            npy_write(path, fx, 3, shape, err);
            snprintf(path, sizeof path, "test/out/png/size_%s.png", names[i]);
            if ((f = fopen(path, "wb"))) {
                fwrite(png, 1, size, f);
                fclose(f);
            }
            free(fx);
        }
        snprintf(key, sizeof key, "png.size.%s", names[i]);
        /* Real compression: within 10% of Pillow's default (zlib level 6) on each image. */
        report(T, ok && exact && (double)size <= 1.10 * atof(pil), key,
               "%dx%dx%d: ours %zu bytes (%.0f ms), Pillow %s (level 6) / %s (optimize); ratio %.3f; round trip %s",
               im.w, im.h, c, size, ms, pil, pil_opt, (double)size / atof(pil), exact ? "exact" : "DIFFERS");
        free(px);
        free(png);
        image_free(&im);
    }
    free(list);
}

/* ------------------------------------------------------------------ crafting broken files --------- */

typedef struct {
    uint8_t p[MAXPNG];
    size_t  n;
} Bytes;

static void put(Bytes *b, const void *d, size_t n)
{
    if (n > MAXPNG - b->n) n = MAXPNG - b->n;     /* never reached: crafted files are small */
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put32(Bytes *b, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, q, 4);
}

static void chunk(Bytes *b, const char *type, const void *d, size_t n)
{
    put32(b, (uint32_t)n);
    put(b, type, 4);
    put(b, d, n);
    put32(b, crc32_update(crc32_update(0, type, 4), d, n));
}

static void ihdr(Bytes *b, uint32_t w, uint32_t h, int depth, int color, int interlace)
{
    uint8_t q[13] = {0};
    q[0] = (uint8_t)(w >> 24); q[1] = (uint8_t)(w >> 16); q[2] = (uint8_t)(w >> 8); q[3] = (uint8_t)w;
    q[4] = (uint8_t)(h >> 24); q[5] = (uint8_t)(h >> 16); q[6] = (uint8_t)(h >> 8); q[7] = (uint8_t)h;
    q[8] = (uint8_t)depth; q[9] = (uint8_t)color; q[12] = (uint8_t)interlace;
    put(b, "\x89PNG\r\n\x1a\n", 8);
    chunk(b, "IHDR", q, 13);
}

/* A whole file: signature, IHDR, optional chunk bytes, one IDAT, IEND. */
static void make_png(Bytes *b, uint32_t w, uint32_t h, int depth, int color, const Bytes *mid, const uint8_t *z, size_t zn)
{
    b->n = 0;
    ihdr(b, w, h, depth, color, 0);
    if (mid) put(b, mid->p, mid->n);
    chunk(b, "IDAT", z, zn);
    chunk(b, "IEND", "", 0);
}

/* Deflate bits, LSB first; Huffman codes go MSB first. */
typedef struct {
    uint8_t  p[2048];
    size_t   n;
    uint32_t bits;
    int      nb;
} BitOut;

static void bits(BitOut *o, unsigned v, int n)
{
    o->bits |= (uint32_t)v << o->nb;
    o->nb += n;
    while (o->nb >= 8) {
        if (o->n < sizeof o->p) o->p[o->n++] = (uint8_t)o->bits;
        o->bits >>= 8;
        o->nb -= 8;
    }
}

static void code(BitOut *o, unsigned c, int len)
{
    while (len--) bits(o, (c >> len) & 1, 1);
}

static void align(BitOut *o) { if (o->nb) bits(o, 0, 8 - o->nb); }

static void zhead(BitOut *o, unsigned cmf)
{
    memset(o, 0, sizeof *o);
    bits(o, cmf, 8);
    bits(o, (31 - (cmf << 8) % 31) % 31, 8);
}

static void adler(BitOut *o, const uint8_t *raw, size_t n)
{
    uint32_t a = adler32_update(1, raw, n);
    align(o);
    bits(o, a >> 24, 8); bits(o, (a >> 16) & 255, 8); bits(o, (a >> 8) & 255, 8); bits(o, a & 255, 8);
}

/* The fixed code of RFC 1951 §3.2.6 for a literal/length symbol, and a distance symbol. */
static void fixed_sym(BitOut *o, unsigned s)
{
    if (s < 144) code(o, 0x30 + s, 8);
    else if (s < 256) code(o, 0x190 + s - 144, 9);
    else if (s < 280) code(o, s - 256, 7);
    else code(o, 0xc0 + s - 280, 8);
}

static void fixed_block_of(BitOut *o, const uint8_t *raw, size_t n, int final)
{
    size_t i;
    bits(o, (unsigned)final, 1);
    bits(o, 1, 2);
    for (i = 0; i < n; i++) fixed_sym(o, raw[i]);
    fixed_sym(o, 256);
}

/* Dynamic block header with all 19 code-length code lengths given. */
static void dyn_header(BitOut *o, int nlit, int ndist, const uint8_t cl[19])
{
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    int i;
    bits(o, 1, 1);
    bits(o, 2, 2);
    bits(o, (unsigned)(nlit - 257), 5);
    bits(o, (unsigned)(ndist - 1), 5);
    bits(o, 15, 4);
    for (i = 0; i < 19; i++) bits(o, cl[order[i]], 3);
}

/* A complete code-length code: symbols 0-4, 16, 17, 18 with 3 bits each (codes in symbol order). */
static const uint8_t CL8[19] = {3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3};
static void cl_sym(BitOut *o, unsigned s, unsigned extra)
{
    unsigned c = s <= 4 ? s : s - 11;              /* 0..4 -> 0..4, 16 -> 5, 17 -> 6, 18 -> 7 */
    code(o, c, 3);
    if (s == 16) bits(o, extra, 2);
    if (s == 17) bits(o, extra, 3);
    if (s == 18) bits(o, extra, 7);
}

/* Code lengths of 258 symbols (257 literal/length + 1 distance, or + more distances): `head` gives the
 * lengths of symbols 0 and 1, then zeros up to 255, then lengths for 256 and the distance codes. */
static void dyn_lengths(BitOut *o, int l0, int l1, int l256, const int *dist, int ndist)
{
    int i;
    cl_sym(o, (unsigned)l0, 0);
    cl_sym(o, (unsigned)l1, 0);
    cl_sym(o, 18, 138 - 11);                       /* symbols 2..139 */
    cl_sym(o, 18, 116 - 11);                       /* 140..255 */
    cl_sym(o, (unsigned)l256, 0);
    for (i = 0; i < ndist; i++) cl_sym(o, (unsigned)dist[i], 0);
}

typedef struct {
    int  total, clean;
    char example[EDIFF_ERR];
} Tally;

enum { C_TRUNC, C_CRC, C_IHDR, C_HUGE, C_ZLIB, C_SIZE, C_FILTER, C_STRUCT, C_MUTATE, C_FILES, N_CAT };

/* Decode bytes that must fail: one clean error line that (if expect) contains `expect`. */
static void expect_fail(Tally *t, const uint8_t *p, size_t n, const char *expect, const char *what)
{
    char err[EDIFF_ERR];
    Image im;
    int ok;
    err[0] = 0;
    ok = png_decode(p, n, "bad.png", &im, err) != 0 && clean_error(err, "bad.png") && !im.rgba && !im.parameters &&
         (!expect || strstr(err, expect));
    if (!ok) {
        printf("      unexpected result for %s (%s): %s\n", what, expect ? expect : "any error", err[0] ? err : "decoded");
        if (!err[0]) image_free(&im);
    }
    t->total++;
    t->clean += ok;
    if (ok) snprintf(t->example, sizeof t->example, "%s", err);
}

/* The same bytes must decode (the control that proves a crafted failure fails for its own reason). */
static int expect_ok(const uint8_t *p, size_t n, const char *what)
{
    char err[EDIFF_ERR];
    Image im;
    if (png_decode(p, n, "good.png", &im, err)) {
        printf("      control %s failed: %s\n", what, err);
        return 0;
    }
    image_free(&im);
    return 1;
}

static void zlib_case(Tally *t, Bytes *b, uint32_t w, uint32_t h, const BitOut *o, const char *expect, const char *what)
{
    BitOut whole = *o;
    align(&whole);                                 /* the last partial byte too */
    make_png(b, w, h, 8, 0, NULL, whole.p, whole.n);
    expect_fail(t, b->p, b->n, expect, what);
}

/* Hand-made zlib streams for a 4x4 grey image (20 bytes of filtered rows), each wrong in one way. */
static int crafted_zlib(Tally *t, Tally *sz)
{
    uint8_t raw[528], extra[21];
    BitOut o;
    Bytes b;
    int i, controls = 1;
    static const int d_over[3] = {1, 1, 1}, d_one[1] = {1};
    for (i = 0; i < 528; i++) raw[i] = i % 33 == 0 ? 0 : (uint8_t)(i * 7);
    for (i = 0; i < 20; i++) raw[i] = i % 5 == 0 ? 0 : (uint8_t)(i * 13);
    /* controls: a fixed block and a stored block of the right data decode */
    zhead(&o, 0x78); fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20);
    make_png(&b, 4, 4, 8, 0, NULL, o.p, o.n);
    controls &= expect_ok(b.p, b.n, "fixed block");
    zhead(&o, 0x78); bits(&o, 1, 3); align(&o); bits(&o, 20, 16); bits(&o, 20 ^ 0xffff, 16);
    for (i = 0; i < 20; i++) bits(&o, raw[i], 8);
    adler(&o, raw, 20);
    make_png(&b, 4, 4, 8, 0, NULL, o.p, o.n);
    controls &= expect_ok(b.p, b.n, "stored block");

    /* zlib header */
    zhead(&o, 0x77); fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20);
    zlib_case(t, &b, 4, 4, &o, "compression method 7", "CM 7");
    zhead(&o, 0x88); fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20);
    zlib_case(t, &b, 4, 4, &o, "window size code 8", "CINFO 8");
    zhead(&o, 0x78); o.p[1] ^= 1; fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20);
    zlib_case(t, &b, 4, 4, &o, "header check bits", "FCHECK");
    memset(&o, 0, sizeof o); bits(&o, 0x78, 8); bits(&o, 0x20 | (31 - ((0x78u << 8 | 0x20) % 31)) % 31, 8);
    fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20);
    zlib_case(t, &b, 4, 4, &o, "preset dictionary", "FDICT");
    /* blocks */
    zhead(&o, 0x78); bits(&o, 1, 1); bits(&o, 3, 2); bits(&o, 0, 16); adler(&o, raw, 20);
    zlib_case(t, &b, 4, 4, &o, "invalid block type 3", "BTYPE 3");
    zhead(&o, 0x78); bits(&o, 1, 3); align(&o); bits(&o, 20, 16); bits(&o, 21 ^ 0xffff, 16);
    for (i = 0; i < 20; i++) bits(&o, raw[i], 8);
    adler(&o, raw, 20);
    zlib_case(t, &b, 4, 4, &o, "does not match its complement", "stored NLEN");
    zhead(&o, 0x78); bits(&o, 1, 3); align(&o); bits(&o, 20, 16); bits(&o, 20 ^ 0xffff, 16);
    for (i = 0; i < 10; i++) bits(&o, raw[i], 8);
    zlib_case(t, &b, 4, 4, &o, "truncated", "stored block cut short");
    zhead(&o, 0x78); fixed_block_of(&o, raw, 10, 0);
    zlib_case(t, &b, 4, 4, &o, "truncated", "no final block");
    /* dynamic block headers */
    {
        uint8_t cl_over[19] = {1, 1, 1}, cl_inc[19] = {2};
        zhead(&o, 0x78); dyn_header(&o, 288, 1, CL8); zlib_case(t, &b, 4, 4, &o, "288 length and 1 distance codes", "HLIT 288");
        zhead(&o, 0x78); dyn_header(&o, 257, 31, CL8); zlib_case(t, &b, 4, 4, &o, "257 length and 31 distance", "HDIST 31");
        zhead(&o, 0x78); dyn_header(&o, 257, 1, cl_over); zlib_case(t, &b, 4, 4, &o, "code-length code lengths are over-subscribed", "CL over");
        zhead(&o, 0x78); dyn_header(&o, 257, 1, cl_inc); zlib_case(t, &b, 4, 4, &o, "code-length code lengths are incomplete", "CL incomplete");
    }
    zhead(&o, 0x78); dyn_header(&o, 257, 1, CL8); cl_sym(&o, 16, 0);
    zlib_case(t, &b, 4, 4, &o, "repeat with no previous length", "repeat first");
    zhead(&o, 0x78); dyn_header(&o, 257, 1, CL8); cl_sym(&o, 18, 127); cl_sym(&o, 18, 127);
    zlib_case(t, &b, 4, 4, &o, "runs past the end", "repeat overflow");
    zhead(&o, 0x78); dyn_header(&o, 257, 1, CL8); dyn_lengths(&o, 1, 1, 0, d_one, 1);
    zlib_case(t, &b, 4, 4, &o, "without an end-of-block code", "no EOB");
    zhead(&o, 0x78); dyn_header(&o, 257, 1, CL8); dyn_lengths(&o, 1, 1, 1, d_one, 1);
    zlib_case(t, &b, 4, 4, &o, "literal/length code lengths are over-subscribed", "lit over");
    zhead(&o, 0x78); dyn_header(&o, 257, 1, CL8); dyn_lengths(&o, 1, 0, 2, d_one, 1);
    zlib_case(t, &b, 4, 4, &o, "literal/length code lengths are incomplete", "lit incomplete");
    zhead(&o, 0x78); dyn_header(&o, 257, 3, CL8); dyn_lengths(&o, 1, 0, 1, d_over, 3);
    zlib_case(t, &b, 4, 4, &o, "distance code lengths are over-subscribed", "dist over");
    /* symbols */
    zhead(&o, 0x78); bits(&o, 1, 1); bits(&o, 1, 2); fixed_sym(&o, 0); fixed_sym(&o, 286);
    zlib_case(t, &b, 4, 4, &o, "invalid length symbol 286", "fixed 286");
    zhead(&o, 0x78); bits(&o, 1, 1); bits(&o, 1, 2); fixed_sym(&o, 0); fixed_sym(&o, 257); code(&o, 30, 5);
    zlib_case(t, &b, 4, 4, &o, "invalid distance code", "fixed dist 30");
    zhead(&o, 0x78); bits(&o, 1, 1); bits(&o, 1, 2); fixed_sym(&o, 0); fixed_sym(&o, 257); code(&o, 1, 5);
    zlib_case(t, &b, 4, 4, &o, "distance 2 reaches before the start (1 bytes decoded)", "distance too far back");
    /* the window the header declares: distance 300 is fine in a 32 KiB window, not in a 256-byte one */
    for (i = 0; i < 3; i++) raw[400 + i] = raw[100 + i];
    zhead(&o, 0x78); bits(&o, 1, 1); bits(&o, 1, 2);
    for (i = 0; i < 400; i++) fixed_sym(&o, raw[i]);
    fixed_sym(&o, 257); code(&o, 16, 5); bits(&o, 300 - 257, 7);
    for (i = 403; i < 528; i++) fixed_sym(&o, raw[i]);
    fixed_sym(&o, 256); adler(&o, raw, 528);
    make_png(&b, 32, 16, 8, 0, NULL, o.p, o.n);
    controls &= expect_ok(b.p, b.n, "distance 300, 32 KiB window");
    o.p[0] = 0x08; o.p[1] = (uint8_t)((31 - (0x08u << 8) % 31) % 31);
    zlib_case(t, &b, 32, 16, &o, "beyond the 256-byte window", "distance 300, 256-byte window");
    /* checksum */
    for (i = 0; i < 4; i++) {
        zhead(&o, 0x78); fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20);
        o.p[o.n - 1 - i] ^= 0x10;
        zlib_case(t, &b, 4, 4, &o, "Adler-32 mismatch", "Adler flip");
    }
    zhead(&o, 0x78); fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20); o.n -= 2;
    zlib_case(t, &b, 4, 4, &o, "before its Adler-32", "Adler cut");

    /* amounts of data: one byte short, one too many, bytes after the stream, an empty IDAT */
    zhead(&o, 0x78); fixed_block_of(&o, raw, 19, 1); adler(&o, raw, 19);
    zlib_case(sz, &b, 4, 4, &o, "image data ends early: 19 of 20 bytes", "one byte short");
    memcpy(extra, raw, 20); extra[20] = 0;
    zhead(&o, 0x78); fixed_block_of(&o, extra, 21, 1); adler(&o, extra, 21);
    zlib_case(sz, &b, 4, 4, &o, "more data than the 20 bytes expected", "one byte too many");
    zhead(&o, 0x78); bits(&o, 1, 3); align(&o); bits(&o, 21, 16); bits(&o, 21 ^ 0xffff, 16);
    for (i = 0; i < 21; i++) bits(&o, extra[i], 8);
    adler(&o, extra, 21);
    zlib_case(sz, &b, 4, 4, &o, "more data than the 20 bytes expected", "stored, one byte too many");
    zhead(&o, 0x78); fixed_block_of(&o, raw, 20, 1); adler(&o, raw, 20); bits(&o, 0, 16);
    zlib_case(sz, &b, 4, 4, &o, "2 bytes follow its end", "trailing bytes");
    make_png(&b, 4, 4, 8, 0, NULL, o.p, 0);
    expect_fail(sz, b.p, b.n, "image data too short", "empty IDAT");
    make_png(&b, 64, 64, 8, 0, NULL, o.p, 3);
    expect_fail(sz, b.p, b.n, "image data too short", "4 KiB image from 3 bytes");
    return controls;
}

/* IHDR fields, each wrong in one way (CRC valid), and sizes beyond the limits. */
static void crafted_ihdr(Tally *t, Tally *huge)
{
    static const struct { uint32_t w, h; int depth, color, interlace; const char *expect; } c[] = {
        {0, 4, 8, 0, 0, "invalid image size 0x4"}, {4, 0, 8, 0, 0, "invalid image size 4x0"},
        {0x80000000u, 4, 8, 0, 0, "invalid image size"}, {4, 0xffffffffu, 8, 0, 0, "invalid image size"},
        {4, 4, 3, 0, 0, "bit depth 3"}, {4, 4, 0, 0, 0, "bit depth 0"}, {4, 4, 32, 0, 0, "bit depth 32"},
        {4, 4, 8, 1, 0, "invalid colour type 1"}, {4, 4, 8, 5, 0, "invalid colour type 5"},
        {4, 4, 8, 7, 0, "invalid colour type 7"}, {4, 4, 4, 2, 0, "bit depth 4 is not allowed with colour type 2"},
        {4, 4, 16, 3, 0, "bit depth 16 is not allowed with colour type 3"}, {4, 4, 1, 4, 0, "bit depth 1"},
        {4, 4, 2, 6, 0, "bit depth 2"}, {4, 4, 8, 0, 2, "interlace method 2"}, {4, 4, 8, 0, 255, "interlace method 255"},
    };
    static const struct { uint32_t w, h; } big[] = {{100000, 100000}, {16385, 1}, {1, 16385}, {16384, 16384},
                                                      {0x7fffffffu, 0x7fffffffu}, {16384, 4097}};
    Bytes b;
    size_t i;
    uint8_t z[16] = {0x78, 0x9c, 3, 0, 0, 0, 0, 1};
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        b.n = 0;
        ihdr(&b, c[i].w, c[i].h, c[i].depth, c[i].color, c[i].interlace);
        chunk(&b, "IDAT", z, 8);
        chunk(&b, "IEND", "", 0);
        expect_fail(t, b.p, b.n, c[i].expect, "IHDR field");
    }
    for (i = 0; i < 3; i++) {                      /* compression and filter methods, IHDR length */
        b.n = 0;
        ihdr(&b, 4, 4, 8, 0, 0);
        if (i < 2) {
            b.p[8 + 8 + 10 + i] = 1;
            fix_crcs(b.p, b.n);
        } else {
            uint8_t q[14] = {0, 0, 0, 4, 0, 0, 0, 4, 8};
            b.n = 8;
            chunk(&b, "IHDR", q, 14);
        }
        chunk(&b, "IDAT", z, 8);
        chunk(&b, "IEND", "", 0);
        expect_fail(t, b.p, b.n, i == 0 ? "compression method 1" : i == 1 ? "filter method 1" : "IHDR is 14 bytes", "IHDR method");
    }
    for (i = 0; i < sizeof big / sizeof big[0]; i++) {
        b.n = 0;
        ihdr(&b, big[i].w, big[i].h, 8, 6, 0);
        chunk(&b, "IDAT", z, 8);
        chunk(&b, "IEND", "", 0);
        expect_fail(huge, b.p, b.n, "limit", "huge");
    }
}

/* Chunk structure and order, palettes, tRNS and filter bytes. */
static void crafted_structure(Tally *t, Tally *filt)
{
    uint8_t raw[20], zbuf[256], *z;
    size_t zn;
    char err[EDIFF_ERR];
    Bytes b, mid;
    int i;
    for (i = 0; i < 20; i++) raw[i] = i % 5 == 0 ? 0 : (uint8_t)i;
    zlib_compress(raw, 20, &z, &zn, err);
    memcpy(zbuf, z, zn);
    free(z);
#define CASE(setup, expect) do { b.n = 0; setup; expect_fail(t, b.p, b.n, expect, expect); } while (0)
    CASE((put(&b, "\x89PNG\r\n\x1a\n", 8), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "first chunk is 'IDAT', not IHDR");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "IHDR", b.p + 16, 13), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "second IHDR");
    CASE((ihdr(&b, 4, 4, 8, 3, 0), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "without a PLTE");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "PLTE", "abc", 3), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "PLTE chunk in a greyscale");
    CASE((ihdr(&b, 4, 4, 8, 3, 0), chunk(&b, "PLTE", "abcd", 4), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "PLTE chunk of 4 bytes");
    CASE((ihdr(&b, 4, 4, 1, 3, 0), chunk(&b, "PLTE", "abcdefghi", 9), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "3 palette entries for bit depth 1");
    CASE((ihdr(&b, 4, 4, 8, 3, 0), chunk(&b, "PLTE", "abcdef", 6), chunk(&b, "PLTE", "abcdef", 6), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "second PLTE");
    CASE((ihdr(&b, 4, 4, 8, 3, 0), chunk(&b, "tRNS", "a", 1), chunk(&b, "PLTE", "abcdef", 6), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "tRNS chunk before PLTE");
    CASE((ihdr(&b, 4, 4, 8, 3, 0), chunk(&b, "PLTE", "abcdef", 6), chunk(&b, "tRNS", "abc", 3), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "tRNS has 3 entries for a 2-colour palette");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "tRNS", "abc", 3), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "tRNS chunk of 3 bytes (2 expected)");
    CASE((ihdr(&b, 4, 4, 8, 2, 0), chunk(&b, "tRNS", "ab", 2), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "tRNS chunk of 2 bytes (6 expected)");
    CASE((ihdr(&b, 4, 4, 8, 6, 0), chunk(&b, "tRNS", "ab", 2), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "tRNS chunk in an image with an alpha");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "tRNS", "ab", 2), chunk(&b, "tRNS", "ab", 2), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "second tRNS");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "IDAT", zbuf, 4), chunk(&b, "tEXt", "a\0b", 3), chunk(&b, "IDAT", zbuf + 4, zn - 4), chunk(&b, "IEND", "", 0)), "not consecutive");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "tRNS", "ab", 2), chunk(&b, "IEND", "", 0)), "tRNS chunk after the image data");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "IEND", "", 0)), "no IDAT chunk");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "IDAT", zbuf, zn)), "file ends without IEND");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "x", 1)), "IEND chunk with 1 bytes");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "ABCD", "x", 1), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "unknown critical chunk 'ABCD'");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "a1cd", "x", 1), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "invalid type");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), put32(&b, 0x80000000u), put(&b, "IDAT", 4), put(&b, zbuf, zn)), "exceeds 2^31-1");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), put32(&b, 0xffffffffu), put(&b, "IDAT", 4), put(&b, zbuf, zn)), "exceeds 2^31-1");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), put32(&b, 0x7fffffffu), put(&b, "IDAT", 4), put(&b, zbuf, zn)), "truncated: chunk 'IDAT'");
    CASE((put(&b, "\x89PNG\n\x1a\n", 7)), "not a PNG file (7 bytes)");
    CASE((put(&b, "\x89PNG\n\x1a\n\0\0\0\0", 12)), "bad signature");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "zTXt", "parameters\0\0xx", 14), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "zTXt chunk 'parameters': zlib stream");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "iTXt", "parameters\0\0\0en", 15), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "not terminated");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "iTXt", "parameters\0\0\0\0\0\xff", 16), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "not valid UTF-8");
    CASE((ihdr(&b, 4, 4, 8, 0, 0), chunk(&b, "tEXt", "parameters\0a\0b", 14), chunk(&b, "IDAT", zbuf, zn), chunk(&b, "IEND", "", 0)), "holds a NUL");
    mid.n = 0;
    chunk(&mid, "PLTE", "abcdef", 6);
    {
        uint8_t pal_raw[20], *pz;
        size_t pn;
        for (i = 0; i < 20; i++) pal_raw[i] = i % 5 == 0 ? 0 : (uint8_t)(i == 13 ? 2 : i & 1);
        zlib_compress(pal_raw, 20, &pz, &pn, err);
        make_png(&b, 4, 4, 8, 3, &mid, pz, pn);
        expect_fail(t, b.p, b.n, "palette index 2 out of range (2 entries)", "palette index");
        free(pz);
    }
    /* filter bytes 5..255 in the first, a middle and the last row */
    for (i = 0; i < 9; i++) {
        uint8_t bad[20];
        memcpy(bad, raw, 20);
        bad[5 * (i % 3 == 2 ? 3 : i % 3)] = (uint8_t)(i < 3 ? 5 : i < 6 ? 128 : 255);
        zlib_compress(bad, 20, &z, &zn, err);
        make_png(&b, 4, 4, 8, 0, NULL, z, zn);
        free(z);
        expect_fail(filt, b.p, b.n, "filter type", "bad filter byte");
    }
    {
        /* a 3x3 Adam7 image: passes 1, 4, 5, 6 (2 rows), 7 hold 1, 1, 2, 1+1, 3 pixels; pass 4's filter is 9 */
        uint8_t ir[15] = {0, 1, 9, 2, 0, 3, 4, 0, 5, 0, 6, 0, 7, 8, 9};
        zlib_compress(ir, sizeof ir, &z, &zn, err);
        b.n = 0;
        ihdr(&b, 3, 3, 8, 0, 1);
        chunk(&b, "IDAT", z, zn);
        chunk(&b, "IEND", "", 0);
        free(z);
        expect_fail(filt, b.p, b.n, "filter type 9", "Adam7 filter byte");
    }
#undef CASE
}

/* Source files for truncations, flips and mutations: ours (with text) and Pillow's / gen_png.py's. */
static int corpus_sources(uint8_t **src, size_t *len, int max)
{
    static const char *files[] = {"test/png/pal2_trns.9x17.png", "test/png/rgb16.17x9.adam7.png",
                                  "test/png/grey4_key.3x5.adam7.png", "test/png/text_ztxt.png",
                                  "test/png/rgba8.5x3.adam7.png"};
    char err[EDIFF_ERR];
    const char *text[] = {"parameters", PARAMETERS, NULL};
    uint8_t px[7 * 5 * 3];
    int n = 0, i;
    make_pixels(px, 7, 5, 3, 1, 5);
    if (png_encode(px, 7, 5, 3, text, &src[n], &len[n], "ours", err) == 0) n++;
    for (i = 0; i < (int)(sizeof files / sizeof files[0]) && n < max; i++)
        if ((src[n] = read_file(files[i], &len[n]))) n++;
    return n;
}

/* Truncations at every length, bit flips in every chunk, random mutations with recomputed CRCs. */
static void derived_corpus(Tally *trunc, Tally *crc, Tally *mut, int *mut_ok)
{
    uint8_t *src[8], *buf;
    size_t len[8], n, i, pos;
    int ns = corpus_sources(src, len, 8), s, k;
    unsigned seed = 2024;
    for (s = 0; s < ns; s++) {
        n = len[s];
        buf = xmalloc(n + 1);
        for (i = 0; i < n; i += s == 0 || n < 600 ? 1 : 3) {           /* every length (every 3rd above 600 bytes) */
            memcpy(buf, src[s], i);
            expect_fail(trunc, buf, i, NULL, "truncation");
        }
        /* each chunk: flips in its length, type, data (spread) and CRC */
        for (pos = 8; pos + 12 <= n;) {
            uint32_t clen = (uint32_t)src[s][pos] << 24 | (uint32_t)src[s][pos + 1] << 16 | (uint32_t)src[s][pos + 2] << 8 | src[s][pos + 3];
            size_t offs[8];
            int no = 0;
            offs[no++] = pos + 3;
            offs[no++] = pos + 5;
            if (clen) { offs[no++] = pos + 8; offs[no++] = pos + 8 + clen / 2; offs[no++] = pos + 7 + clen; }
            offs[no++] = pos + 8 + clen;
            offs[no++] = pos + 11 + clen;
            for (k = 0; k < no; k++) {
                memcpy(buf, src[s], n);
                buf[offs[k]] ^= (uint8_t)(1u << (k % 8));
                expect_fail(crc, buf, n, k >= 2 ? "CRC mismatch" : NULL, "bit flip");
            }
            pos += (size_t)clen + 12;
        }
        /* random mutations, CRCs made valid again: the decoder's own checks must hold the line */
        for (k = 0; k < 400; k++) {
            char err[EDIFF_ERR];
            Image im;
            int m, nm = 1 + k % 4;
            memcpy(buf, src[s], n);
            for (m = 0; m < nm; m++) {
                seed = seed * 1103515245u + 12345u;
                pos = 8 + (seed >> 8) % (n - 8);
                seed = seed * 1103515245u + 12345u;
                buf[pos] = k % 3 == 0 ? (uint8_t)(buf[pos] ^ (1u << (seed >> 28) % 8)) : (uint8_t)(seed >> 20);
            }
            fix_crcs(buf, n);
            err[0] = 0;
            mut->total++;
            if (png_decode(buf, n, "bad.png", &im, err) == 0) {
                (*mut_ok)++;
                mut->clean += im.rgba != NULL && im.w > 0;
                image_free(&im);
            } else if (clean_error(err, "bad.png") && !im.rgba) {
                mut->clean++;
                if (!mut->example[0]) snprintf(mut->example, sizeof mut->example, "%s", err);
            } else {
                printf("      mutation %d of source %d: unclean error \"%s\"\n", k, s, err);
            }
        }
        free(buf);
        free(src[s]);
    }
}

static void committed_bad_files(const Blob *ref, Tally *t)
{
    char *names[32], key[128], path[256];
    int n, i;
    char *list = name_list(ref, "bad_files", names, 32, &n);
    for (i = 0; i < n; i++) {
        const char *expect;
        uint8_t *p;
        size_t len = 0;
        snprintf(key, sizeof key, "bad.%s", names[i]);
        expect = blob_meta(ref, key);
        snprintf(path, sizeof path, "test/png/bad/%s.png", names[i]);
        if (!(p = read_file(path, &len))) {
            t->total++;
            printf("      cannot read %s\n", path);
            continue;
        }
        expect_fail(t, p, len, expect, path);
        free(p);
    }
    free(list);
}

static void broken_corpus(TestRun *T, const Blob *ref)
{
    static const char *names[N_CAT] = {"truncated", "crc_flips", "ihdr_values", "huge_sizes", "zlib_streams",
                                       "data_amount", "filter_bytes", "chunk_structure", "mutated_valid_crc", "committed_files"};
    Tally t[N_CAT];
    int c, controls, mut_ok = 0, total = 0, clean = 0;
    if (!selected(T, "png.broken")) return;
    memset(t, 0, sizeof t);
    controls = crafted_zlib(&t[C_ZLIB], &t[C_SIZE]);
    crafted_ihdr(&t[C_IHDR], &t[C_HUGE]);
    crafted_structure(&t[C_STRUCT], &t[C_FILTER]);
    derived_corpus(&t[C_TRUNC], &t[C_CRC], &t[C_MUTATE], &mut_ok);
    committed_bad_files(ref, &t[C_FILES]);
    report(T, controls, "png.broken.controls", "the valid streams the crafted ones start from decode: %s", controls ? "yes" : "NO");
    for (c = 0; c < N_CAT; c++) {
        char name[96];
        snprintf(name, sizeof name, "png.broken.%s", names[c]);
        if (c == C_MUTATE)
            report(T, t[c].clean == t[c].total && t[c].total > 0, name, "%d mutated files: %d rejected with one error line, %d still valid PNGs",
                   t[c].total, t[c].total - mut_ok, mut_ok);
        else
            report(T, t[c].clean == t[c].total && t[c].total > 0, name, "%d/%d rejected with one clean error line, e.g. \"%s\"",
                   t[c].clean, t[c].total, t[c].example);
        total += t[c].total;
        clean += t[c].clean;
    }
    report(T, clean == total, "png.broken.all", "%d broken or mutated files, %d handled cleanly", total, clean);
}

/* ------------------------------------------------------------------ masks ------------------------- */

static void mask_rule(TestRun *T)
{
    Image im;
    uint8_t px[6 * 4] = {0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 0, 10, 0, 0, 1, 0, 0, 40, 255};
    uint8_t m[6], want[6] = {0, 1, 0, 0, 1, 1};
    if (!selected(T, "png.mask_rule")) return;
    im.w = 6;
    im.h = 1;
    im.rgba = px;
    im.parameters = NULL;
    image_mask(&im, m);
    report(T, memcmp(m, want, 6) == 0, "png.mask_rule", "painted = alpha > 0 and max(R,G,B) > 0: %d%d%d%d%d%d (want 010011)",
           m[0], m[1], m[2], m[3], m[4], m[5]);
}

void suite_png(TestRun *T)
{
    Blob ref;
    if (open_ref(T, &ref, "png.bin")) return;
    read_pillow_files(T, &ref);
    read_texts(T, &ref);
    roundtrips(T);
    write_errors(T);
    zlib_roundtrips(T);
    compression_vs_pillow(T, &ref);
    mask_rule(T);
    broken_corpus(T, &ref);
    blob_close(&ref);
}
