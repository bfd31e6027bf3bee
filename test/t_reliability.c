/* test/t_reliability.c — ediff never crashes, hangs or reads out of bounds on bad input, fails cleanly
 * when memory runs out, and is deterministic (docs/reliability.md):
 *   bad          the bad-input battery, one table: every bad command line, flag value, prompt, blob,
 *                PNG, .npy and output path we know of, run through the program as a user runs it; each
 *                case its exit status (2 usage, 1 input), one error line that starts as expected, and
 *                nothing written (the output folder stays empty: no PNG, no temporary file). A few
 *                cases are good inputs at the edges (empty prompt, the longest prompt a command line
 *                holds, 1-pixel masks): exit 0, silent, the PNG written. The corrupt blobs are made
 *                here from the toy pipeline blob test/ref/pipeline.bin, the broken PNGs and .npy files
 *                from our own writers.
 *   limits       a full run under ulimit -v of 6 to 40 MB completes or stops with one "out of memory"
 *                line, whichever allocation meets the limit; under 600 MB (under ASan, which reserves
 *                terabytes of address space, ASan's max_allocation_size_mb instead) a model whose
 *                activations cannot fit and a 64-megapixel mask give "out of memory" errors; an output
 *                that fails mid-write (ulimit -f, SIGXFSZ ignored): exit 1, no PNG, no temporary file
 *   determinism  one image (style, paint, negative prompt, super-resolution) byte-identical with 1, 2
 *                and 3 threads and from the build without OpenMP; and a 64x64 variant of the toy model
 *                whose larger GEMMs and attention calls are split between threads
 *   fuzz         every fuzz harness's committed corpus (seeds and the inputs of every crash found)
 *                replayed through its replay driver (test/fuzz/replay.c)
 * Every run sets OMP_WAIT_POLICY=passive (run_ediff). */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR   "test/out/rel"
#define OUTD  DIR "/o"                    /* the output folder of the battery: must stay empty */
#define TOY   "test/ref/pipeline.bin"
#define MODEL "--model " TOY " "
#define OUT   4096

/* ================================================================ fixtures ===================== */

static void wr16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, v); wr16(p + 2, v >> 16); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }
static void wr32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    return ok;
}

/* The blob header's CRC-32: of the whole file with its 4 bytes read as zero (docs/blob.md). */
static void blob_fix_crc(uint8_t *b, size_t n)
{
    memset(b + 56, 0, 4);
    wr32(b + 56, crc32_update(0, b, n));
}

/* One tensor of a blob being written. */
typedef struct {
    const char *name;
    int         dtype, rank;
    int64_t     shape[MAX_RANK];
    const void *data;
    size_t      bytes;
} Rec;

static size_t align(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* A blob of docs/blob.md's layout: header, metadata, table, data (64-byte aligned), CRC made right. */
static int write_blob(const char *path, const char *meta, const Rec *r, int n)
{
    size_t meta_n = strlen(meta), table = 0, table_off, pos, size, rec;
    uint8_t *b;
    int i, d, ok;
    for (i = 0; i < n; i++) table += align(4 + 8 * (size_t)r[i].rank + 16 + strlen(r[i].name) + 1, 8);
    table_off = align(64 + meta_n, 8);
    size = align(table_off + table, 64);
    for (i = 0; i < n; i++) size = align(size, 64) + r[i].bytes;
    b = xcalloc(size, 1);
    memcpy(b, "EDIFFBLB", 8);
    wr32(b + 8, 1);
    wr32(b + 12, (uint32_t)n);
    wr64(b + 16, 64);
    wr64(b + 24, meta_n);
    wr64(b + 32, table_off);
    wr64(b + 40, table);
    wr64(b + 48, size);
    memcpy(b + 64, meta, meta_n);
    pos = align(table_off + table, 64);
    for (i = 0, rec = table_off; i < n; i++) {
        uint8_t *p = b + rec;
        size_t len = strlen(r[i].name);
        pos = align(pos, 64);
        wr16(p, (uint32_t)len);
        p[2] = (uint8_t)r[i].dtype;
        p[3] = (uint8_t)r[i].rank;
        for (d = 0; d < r[i].rank; d++) wr64(p + 4 + 8 * d, (uint64_t)r[i].shape[d]);
        wr64(p + 4 + 8 * r[i].rank, pos);
        wr64(p + 12 + 8 * r[i].rank, r[i].bytes);
        memcpy(p + 20 + 8 * r[i].rank, r[i].name, len + 1);
        memcpy(b + pos, r[i].data, r[i].bytes);
        pos += r[i].bytes;
        rec += align(4 + 8 * (size_t)r[i].rank + 16 + len + 1, 8);
    }
    blob_fix_crc(b, size);
    ok = write_bytes(path, b, size);
    free(b);
    return ok;
}

/* A variant of the toy blob: metadata keys set ("key=value", added when new) or removed ("key"), one
 * tensor left out, one cut to its first rows, one u8 tensor added, or the first tensor written twice. */
typedef struct {
    const char *file;
    const char *meta[3];
    const char *drop;
    const char *cut;
    int         cut_rows;
    const char *add, *add_data;
    int         dup;
} Variant;

static int write_variant(const Blob *toy, const Variant *v)
{
    size_t cap = 1 << 20, len = 0;
    char *meta = xmalloc(cap), path[256];
    Rec *r = xcalloc((size_t)toy->n_tensors + 2, sizeof *r);
    int i, k, n = 0, ok;
    for (i = 0; i < toy->n_meta; i++) {                  /* kept keys, then the ones set */
        const char *key = toy->meta_kv[2 * i];
        int edited = 0;
        for (k = 0; k < 3 && v->meta[k]; k++) {
            size_t kl = strcspn(v->meta[k], "=");
            edited |= strlen(key) == kl && strncmp(key, v->meta[k], kl) == 0;
        }
        if (!edited) len += (size_t)snprintf(meta + len, cap - len, "%s=%s\n", key, toy->meta_kv[2 * i + 1]);
    }
    for (k = 0; k < 3 && v->meta[k]; k++)
        if (strchr(v->meta[k], '=')) len += (size_t)snprintf(meta + len, cap - len, "%s\n", v->meta[k]);
    for (i = 0; i < toy->n_tensors; i++) {
        const Tensor *t = &toy->tensors[i];
        Rec *x = &r[n];
        if (v->drop && strcmp(t->name, v->drop) == 0) continue;
        x->name = t->name;
        x->dtype = t->dtype;
        x->rank = t->rank;
        memcpy(x->shape, t->shape, sizeof x->shape);
        x->data = t->data;
        x->bytes = (size_t)t->numel * dtype_size(t->dtype);
        if (v->cut && strcmp(t->name, v->cut) == 0) {
            x->bytes = x->bytes / (size_t)t->shape[0] * (size_t)v->cut_rows;
            x->shape[0] = v->cut_rows;
        }
        n++;
        if (v->dup && n == 1) r[n++] = *x;
    }
    if (v->add) {
        r[n].name = v->add;
        r[n].dtype = DT_U8;
        r[n].rank = 1;
        r[n].shape[0] = (int64_t)strlen(v->add_data);
        r[n].data = v->add_data;
        r[n].bytes = strlen(v->add_data);
        n++;
    }
    snprintf(path, sizeof path, DIR "/%s", v->file);
    ok = write_blob(path, meta, r, n);
    free(meta);
    free(r);
    return ok;
}

static const Variant variants[] = {
    {"t5_width.bin", {"t5.d_model=8"}, NULL, NULL, 0, NULL, NULL, 0},
    {"unet_width.bin", {"base.0.unet.block_out_channels=4,16"}, NULL, NULL, 0, NULL, NULL, 0},
    {"no_conv_in.bin", {NULL}, "base.1.unet.conv_in.weight", NULL, 0, NULL, NULL, 0},
    {"no_max_tokens.bin", {"t5.max_tokens"}, NULL, NULL, 0, NULL, NULL, 0},
    {"not_int.bin", {"t5.d_model=abc"}, NULL, NULL, 0, NULL, NULL, 0},
    {"wrap_int.bin", {"base.0.unet.in_channels=4294967299"}, NULL, NULL, 0, NULL, NULL, 0},
    {"max_tokens.bin", {"t5.max_tokens=100000"}, NULL, NULL, 0, NULL, NULL, 0},
    {"resolution.bin", {"base.resolution=100000"}, NULL, NULL, 0, NULL, NULL, 0},
    {"resolution0.bin", {"base.resolution=0"}, NULL, NULL, 0, NULL, NULL, 0},
    {"experts0.bin", {"base.experts=0"}, NULL, NULL, 0, NULL, NULL, 0},
    {"experts_many.bin", {"base.experts=1000000"}, NULL, NULL, 0, NULL, NULL, 0},
    {"steps_neg.bin", {"base.steps=-1"}, NULL, NULL, 0, NULL, NULL, 0},
    {"cfg_nan.bin", {"base.cfg_scale=nan"}, NULL, NULL, 0, NULL, NULL, 0},
    {"sigma_data_inf.bin", {"base.sigma_data=inf"}, NULL, NULL, 0, NULL, NULL, 0},
    {"sampler.bin", {"base.sampler=lms"}, NULL, NULL, 0, NULL, NULL, 0},
    {"stages_empty.bin", {"stages="}, NULL, NULL, 0, NULL, NULL, 0},
    {"stages_twice.bin", {"stages=base,base"}, NULL, NULL, 0, NULL, NULL, 0},
    {"stages_sr_first.bin", {"stages=sr"}, NULL, NULL, 0, NULL, NULL, 0},
    {"upsample.bin", {"sr.lowres_upsample=nearest"}, NULL, NULL, 0, NULL, NULL, 0},
    {"experts_overlap.bin", {"base.1.sigma_lo=0.9"}, NULL, NULL, 0, NULL, NULL, 0},
    {"positions.bin", {"clip.text.max_position_embeddings=76"}, NULL, NULL, 0, NULL, NULL, 0},
    {"sr_down.bin", {"sr.resolution=8"}, NULL, NULL, 0, NULL, NULL, 0},
    {"groups.bin", {"base.0.unet.norm_num_groups=3"}, NULL, NULL, 0, NULL, NULL, 0},
    {"vocab.bin", {"clip.text.vocab_size=64"}, NULL, "clip.text_model.embeddings.token_embedding.weight", 64, NULL, NULL, 0},
    {"spiece.bin", {NULL}, NULL, NULL, 0, "tokenizer.t5_spiece", "not a sentencepiece model", 0},
    {"merges.bin", {NULL}, NULL, NULL, 0, "tokenizer.clip_merges", "#version: 0.2\na b\n", 0},
    {"dup_name.bin", {NULL}, NULL, NULL, 0, NULL, NULL, 1},
    {"bad_key.bin", {"bad key!=1"}, NULL, NULL, 0, NULL, NULL, 0},
    {"t5_layers.bin", {"t5.num_layers=16777216"}, NULL, NULL, 0, NULL, NULL, 0},
    {"clip_layers.bin", {"clip.text.num_hidden_layers=16777216"}, NULL, NULL, 0, NULL, NULL, 0},
    {"huge_res.bin", {"base.resolution=16384", "stages=base"}, NULL, NULL, 0, NULL, NULL, 0},
    {"wide.bin", {"base.resolution=64", "stages=base", "stage_alternatives"}, NULL, NULL, 0, NULL, NULL, 0},
};

/* Copies of the toy blob with one field of the header or of the first tensor record (t5.shared.weight,
 * rank 2) changed, the CRC made right unless the case is the CRC. */
static int write_patches(const uint8_t *toy, size_t n)
{
    uint8_t *b = xmalloc(n + 1);
    uint64_t table = rd64(toy + 32), meta = rd64(toy + 16), meta_n = rd64(toy + 24);
    int ok = 1, i;
    static const struct { const char *file; int field; } patch[] = {
        {"magic.bin", 0}, {"version.bin", 1}, {"reserved.bin", 2}, {"count_limit.bin", 3}, {"count_fit.bin", 4},
        {"meta_extent.bin", 5}, {"table_extent.bin", 6}, {"dtype.bin", 7}, {"rank.bin", 8},
        {"align.bin", 9}, {"data_outside.bin", 10}, {"data_size.bin", 11}, {"name_len.bin", 12},
        {"name_nul.bin", 13}, {"dim.bin", 14}, {"meta_nul.bin", 15}, {"meta_eol.bin", 16}, {"crc.bin", 17},
    };
    for (i = 0; i < (int)(sizeof patch / sizeof patch[0]); i++) {
        char path[256];
        uint8_t *rec = b + table;
        memcpy(b, toy, n);
        switch (patch[i].field) {
        case 0: b[0] = 'X'; break;
        case 1: wr32(b + 8, 2); break;
        case 2: wr32(b + 60, 1); break;
        case 3: wr32(b + 12, (1 << 20) + 1); break;
        case 4: wr32(b + 12, 1 << 20); break;
        case 5: wr64(b + 24, n); break;
        case 6: wr64(b + 32, n - 8); break;
        case 7: rec[2] = 9; break;
        case 8: rec[3] = 9; break;
        case 9: wr64(rec + 20, rd64(rec + 20) + 1); break;
        case 10: wr64(rec + 20, align(n, 64)); break;
        case 11: wr64(rec + 28, rd64(rec + 28) + 2); break;
        case 12: wr16(rec, 0); break;
        case 13: rec[36 + (rec[0] | rec[1] << 8)] = 'x'; break;
        case 14: wr64(rec + 4, (uint64_t)1 << 31); break;
        case 15: b[meta + 3] = 0; break;
        case 16: b[meta + meta_n - 1] = 'x'; break;
        case 17: b[n - 1] ^= 1; break;
        }
        if (patch[i].field != 0 && patch[i].field != 17) blob_fix_crc(b, n);
        snprintf(path, sizeof path, DIR "/%s", patch[i].file);
        ok &= write_bytes(path, b, n);
    }
    memcpy(b, toy, n);
    b[n] = 0;
    ok &= write_bytes(DIR "/empty.bin", b, 0) && write_bytes(DIR "/short.bin", b, 10) &&
          write_bytes(DIR "/half.bin", b, n / 2) && write_bytes(DIR "/cut1.bin", b, n - 1) &&
          write_bytes(DIR "/padded.bin", b, n + 1);
    free(b);
    return ok;
}

/* A PNG made by our encoder, then changed: IHDR width/height (0: kept), a chunk spliced in after IHDR,
 * the file cut to `keep` bytes (0: whole), a byte of the zlib stream's header flipped. Chunk CRCs are
 * made right except where the case is the CRC (bad_crc). */
static int write_png(const char *file, const uint8_t *px, int w, int h, int channels, uint32_t ihdr_w, uint32_t ihdr_h,
                     const char *chunk_type, const uint8_t *chunk, size_t chunk_n, size_t keep, int bad_zlib, int bad_crc)
{
    uint8_t *png, *b;
    size_t n, m;
    char err[EDIFF_ERR], path[256];
    int ok;
    if (png_encode(px, w, h, channels, NULL, &png, &n, file, err)) return 0;
    m = n + (chunk_type ? chunk_n + 12 : 0);
    b = xmalloc(m);
    memcpy(b, png, 33);                                   /* signature + IHDR */
    if (ihdr_w) wr32be(b + 16, ihdr_w);
    if (ihdr_h) wr32be(b + 20, ihdr_h);
    wr32be(b + 29, crc32_update(0, b + 12, 17));
    if (bad_crc) b[32] ^= 1;
    if (chunk_type) {
        wr32be(b + 33, (uint32_t)chunk_n);
        memcpy(b + 37, chunk_type, 4);
        memcpy(b + 41, chunk, chunk_n);
        wr32be(b + 41 + chunk_n, crc32_update(0, b + 37, chunk_n + 4));
    }
    memcpy(b + m - (n - 33), png + 33, n - 33);          /* IDAT, IEND */
    if (bad_zlib) {
        uint8_t *idat = b + m - (n - 33);
        uint32_t len = (uint32_t)idat[0] << 24 | (uint32_t)idat[1] << 16 | (uint32_t)idat[2] << 8 | idat[3];
        idat[8] ^= 0x01;                                  /* CMF: the zlib header check fails */
        wr32be(idat + 8 + len, crc32_update(0, idat + 4, len + 4));
    }
    snprintf(path, sizeof path, DIR "/%s", file);
    ok = write_bytes(path, b, keep ? keep : m);
    free(png);
    free(b);
    return ok;
}

/* A .npy file: the header text given (shape and dtype), then `floats` float32 values (NaN at `nan_at`). */
static int write_npy(const char *file, const char *header, int floats, int nan_at)
{
    char h[128], path[256];
    size_t hl;
    float *x = xcalloc((size_t)floats + 1, sizeof *x);
    FILE *f;
    int ok;
    snprintf(h, sizeof h, "%-117s\n", header);           /* 10 + 118 = 128 bytes, as numpy pads it */
    hl = strlen(h);
    if (nan_at >= 0) x[nan_at] = NAN;
    snprintf(path, sizeof path, DIR "/%s", file);
    f = fopen(path, "wb");
    ok = f && fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fputc((int)(hl & 255), f) != EOF &&
         fputc((int)(hl >> 8), f) != EOF &&
         fwrite(h, 1, hl, f) == hl && fwrite(x, sizeof *x, (size_t)floats, f) == (size_t)floats;
    if (f) ok = fclose(f) == 0 && ok;
    free(x);
    return ok;
}

/* Every input file of the battery, under test/out/rel/. */
static int make_fixtures(void)
{
    static const char npy_f4[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 16, 16), }";
    uint8_t white[3] = {255, 255, 255}, clear[4] = {255, 255, 255, 0}, px[16 * 16 * 3], *toy, *ztxt = NULL, *text;
    size_t n = 0, zn = 0, i, tn = (size_t)10 << 20;
    char err[EDIFF_ERR], *prompt;
    Blob b;
    int ok = 1, k;
    if (run_cmd("rm -rf " DIR " && mkdir -p " OUTD " " DIR "/b-1", NULL, 0) != 0 || !(toy = read_file(TOY, &n))) return 0;
    ok &= write_patches(toy, n);
    free(toy);
    if (blob_open(&b, TOY, err)) return 0;
    for (k = 0; k < (int)(sizeof variants / sizeof variants[0]); k++) ok &= write_variant(&b, &variants[k]);
    blob_close(&b);

    for (i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7);
    text = xmalloc(tn + 32);                              /* a 10 MB prompt, as a PNG's parameters text */
    for (i = 0; i < tn; i++) text[i] = "a red fox "[i % 10];
    text[tn] = '\n';
    memcpy(text + tn + 1, "Steps: 2", 8);
    if (zlib_compress(text, tn + 9, &ztxt, &zn, err)) return 0;
    free(text);
    text = xmalloc(zn + 12);                              /* zTXt: keyword, NUL, compression method 0 */
    memcpy(text, "parameters\0\0", 12);
    memcpy(text + 12, ztxt, zn);
    ok &= write_png("params10m.png", white, 1, 1, 3, 0, 0, "zTXt", text, zn + 12, 0, 0, 0);
    free(text);
    free(ztxt);
    ok &= write_png("mask1_white.png", white, 1, 1, 3, 0, 0, NULL, NULL, 0, 0, 0, 0) &&
          write_png("mask1_clear.png", clear, 1, 1, 4, 0, 0, NULL, NULL, 0, 0, 0, 0) &&
          write_png("huge.png", white, 1, 1, 3, 100000, 100000, NULL, NULL, 0, 0, 0, 0) &&
          write_png("side.png", white, 1, 1, 3, 16385, 1, NULL, NULL, 0, 0, 0, 0) &&
          write_png("pixels.png", white, 1, 1, 3, 16384, 16384, NULL, NULL, 0, 0, 0, 0) &&
          write_png("zero.png", white, 1, 1, 3, 0x80000000u, 1, NULL, NULL, 0, 0, 0, 0) &&
          write_png("cut.png", px, 16, 16, 3, 0, 0, NULL, NULL, 0, 200, 0, 0) &&
          write_png("crc.png", px, 16, 16, 3, 0, 0, NULL, NULL, 0, 0, 0, 1) &&
          write_png("zlib.png", px, 16, 16, 3, 0, 0, NULL, NULL, 0, 0, 1, 0) &&
          write_bytes(DIR "/empty.png", "", 0) && write_bytes(DIR "/garbage.png", "\x89PNG but not really", 19);
    {                                                     /* parameters texts: A1111's sampler name; a plain one */
        const char *a1111[] = {"parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512", NULL};
        const char *plain[] = {"parameters", "a cat\nSteps: 3, Seed: 1", NULL};
        ok &= png_write(DIR "/a1111.png", white, 1, 1, 3, a1111, err) == 0 &&
              png_write(DIR "/params.png", white, 1, 1, 3, plain, err) == 0;
    }
    {
        float small[3 * 8 * 8] = {0};
        int64_t shape[3] = {3, 8, 8};
        ok &= npy_write(DIR "/noise_shape.npy", small, 3, shape, err) == 0;
    }
    ok &= write_npy("noise_short.npy", npy_f4, 100, -1) && write_npy("noise_nan.npy", npy_f4, 768, 5) &&
          write_npy("noise_huge.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }", 0,
                    -1) &&
          write_npy("noise_f16.npy", "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 16, 16), }", 384, -1);
    prompt = xmalloc(131072);                             /* the longest argument Linux passes: 128 KiB - 1 */
    for (i = 0; i < 131071; i++) prompt[i] = "a red fox "[i % 10];
    ok &= write_bytes(DIR "/prompt128k.txt", prompt, 131071);
    free(prompt);
    return ok;
}

/* ================================================================ the battery ================== */

typedef struct {
    const char *args;     /* after "ediff -o test/out/rel/o/out.png " (a later -o wins) */
    int         status;
    const char *error;    /* the start of the one error line; NULL: a good input (exit 0, silent, PNG written) */
} BadCase;

#define R DIR "/"
static const BadCase battery[] = {
    /* ---- the command line: flags, values, stage names (exit 2, or 1 once the model is read) */
    {"", 2, "ediff: no prompt"},
    {"a b", 2, "ediff: more than one prompt"},
    {"x --frobnicate 3", 2, "ediff: unknown option '--frobnicate'"},
    {"x -q", 2, "ediff: unknown option '-q'"},
    {"x --steps", 2, "ediff: --steps needs a value"},
    {"x -o", 2, "ediff: -o needs a value"},
    {"x --no-sr=1", 2, "ediff: --no-sr takes no value"},
    {"x --steps abc", 2, "ediff: --steps: 'abc' is not an integer"},
    {"x --steps 3.5", 2, "ediff: --steps: '3.5' is not an integer"},
    {"x --steps nan", 2, "ediff: --steps: 'nan' is not an integer"},
    {"x --steps -3", 2, "ediff: --steps: -3 is out of range 1..10000"},
    {"x --steps 0", 2, "ediff: --steps: 0 is out of range"},
    {"x --steps 10001", 2, "ediff: --steps: 10001 is out of range"},
    {"x --steps 99999999999999999999", 2, "ediff: --steps: '99999999999999999999' is not an integer"},
    {"x --steps sr=0", 2, "ediff: --steps: 0 is out of range"},
    {"x --steps =5", 2, "ediff: --steps: '=5': expected VALUE or STAGE=VALUE"},
    {"x --sampler lms", 2, "ediff: --sampler: unknown sampler 'lms'"},
    {"x --sampler Heun", 2, "ediff: --sampler: unknown sampler 'Heun'"},
    {"x --cfg-scale nan", 2, "ediff: --cfg-scale: 'nan' is not a finite number"},
    {"x --cfg-scale inf", 2, "ediff: --cfg-scale: 'inf' is not a finite number"},
    {"x --cfg-scale -1", 2, "ediff: --cfg-scale: -1 is out of range"},
    {"x --cfg-scale 3x", 2, "ediff: --cfg-scale: '3x' is not a finite number"},
    {"x --cfg-scale ''", 2, "ediff: --cfg-scale: '' is not a finite number"},
    {"x --seed abc", 2, "ediff: --seed: 'abc' is not -1 or an integer"},
    {"x -s -5", 2, "ediff: -s: '-5' is not -1 or an integer"},
    {"x -s 18446744073709551616", 2, "ediff: -s: '18446744073709551616' is not -1"},
    {"x --threads 0", 2, "ediff: --threads: 0 is out of range 1..1024"},
    {"x -t two", 2, "ediff: -t: 'two' is not an integer"},
    {"x --batch-count 0", 2, "ediff: --batch-count: 0 is out of range"},
    {"x --paint-weight -0.5", 2, "ediff: --paint-weight: -0.5 is out of range"},
    {"x --paint-weight nan", 2, "ediff: --paint-weight: 'nan' is not a finite number"},
    {"x --paint circle", 2, "ediff: --paint: 'circle': expected WORDS=MASK.png"},
    {"x --paint =m.png", 2, "ediff: --paint: '=m.png': expected WORDS=MASK.png"},
    {"x --paint x=m.png --no-t5 --no-clip-text", 2, "ediff: --paint needs a text conditioning"},
    {"x --sigma-min 0", 2, "ediff: --sigma-min: 0 is out of range"},
    {"x --s-churn -1", 2, "ediff: --s-churn: -1 is out of range"},
    {"x -o ''", 2, "ediff: -o: empty file name"},
    {"x " MODEL "--steps nosuch=3", 2, "ediff: no stage 'nosuch' in this run (stages: base, sr)"},
    {"x " MODEL "--no-sr --steps sr=3", 2, "ediff: no stage 'sr' in this run (stages: base)"},
    {"x " MODEL "--sampler ddpm --steps 1001", 2, "ediff: stage 'base': sampler ddpm: ddpm takes at most 1000 steps"},
    {"x " MODEL "--sigma-min 5 --sigma-max 1", 2, "ediff: stage 'base': sampler heun: need 0 < sigma_min < sigma_max"},
    {"x " MODEL "--stage nosuch", 1, "ediff: test/ref/pipeline.bin: 'nosuch' replaces no stage"},
    {"x --threads 1025", 2, "ediff: --threads: 1025 is out of range 1..1024"},
    {"x -t ''", 2, "ediff: -t: '' is not an integer"},
    {"x --batch-count 10001", 2, "ediff: --batch-count: 10001 is out of range 1..10000"},
    {"x --steps ''", 2, "ediff: --steps: '' is not an integer"},
    {"x --steps 2147483648", 2, "ediff: --steps: 2147483648 is out of range 1..10000"},
    {"x --steps base=1=2", 2, "ediff: --steps: '1=2' is not an integer"},
    {"x --steps 0123456789012345678901234567890123456789012345678901234567890123=2", 2, "ediff: --steps: '0123456789"},
    {"x --cfg-scale 1e309", 2, "ediff: --cfg-scale: '1e309' is not a finite number"},
    {"x --cfg-scale -nan", 2, "ediff: --cfg-scale: '-nan' is not a finite number"},
    {"x --cfg-scale 0x1p9", 2, "ediff: --cfg-scale: 0x1p9 is out of range"},
    {"x --sigma-max 1e11", 2, "ediff: --sigma-max: 1e11 is out of range"},
    {"x --rho 0", 2, "ediff: --rho: 0 is out of range"},
    {"x --eta -1", 2, "ediff: --eta: -1 is out of range"},
    {"x --s-noise nan", 2, "ediff: --s-noise: 'nan' is not a finite number"},
    {"x --paint-weight inf", 2, "ediff: --paint-weight: 'inf' is not a finite number"},
    {"x --seed 0x10", 2, "ediff: --seed: '0x10' is not -1 or an integer"},
    {"x --seed ' 5'", 2, "ediff: --seed: ' 5' is not -1 or an integer"},
    {"x --seed ''", 2, "ediff: --seed: '' is not -1 or an integer"},
    {"x --dump ''", 2, "ediff: --dump: empty directory name"},
    {"x --dump-steps 0", 2, "ediff: --dump-steps needs --dump DIR"},
    {"x --dump-filter unet", 2, "ediff: --dump-filter needs --dump DIR"},
    {"x --dump d --dump-filter ''", 2, "ediff: --dump-filter: empty pattern"},
    {"x --dump d --dump-steps ''", 2, "ediff: --dump-steps: '' is not a step"},
    {"x --dump d --dump-steps 1,x", 2, "ediff: --dump-steps: 'x' is not a step (N, A-B, A-last, last, all or none)"},
    {"x --dump d --dump-steps 3-", 2, "ediff: --dump-steps: '3-' is not a step"},
    {"x --dump d --dump-steps last-3", 2, "ediff: --dump-steps: 'last-3' is not a step"},
    {"x --dump d --dump-steps -1", 2, "ediff: --dump-steps: '-1' is not a step"},
    {"x --dump d --dump-steps 10000", 2, "ediff: --dump-steps: '10000' is not a step"},
    {"x" " --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m"
     " --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m --paint a=m",
     2, "ediff: more than 16 --paint flags"},
    {"x --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1"
     " --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1"
     " --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1"
     " --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1"
     " --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1 --eta 1",
     2, "ediff: more than 64 sampler settings"},
    {"\"$(printf 'a\nb')\" --stage \"$(printf 'x\ny')\" " MODEL, 1, "ediff: " TOY ": 'x\\x0ay' replaces no stage"},
    /* ---- prompts: any bytes; invalid UTF-8 is refused before any work; good edge cases */
    {"\"$(printf 'caf\\351')\" " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    {"-n \"$(printf 'caf\351')\" x " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    {"\"$(printf '\300\257')\" " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    {"\"$(printf '\355\240\200')\" " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    {"\"$(printf 'x\342\202')\" " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    {"\"$(printf '\364\220\200\200')\" " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    {"\"$(printf 'a \377 b')\" --paint \"$(printf '\377')=" R "mask1_white.png\" " MODEL, 2, "ediff: the prompt, negative prompt or a file name is not valid UTF-8"},
    {"'' " MODEL "--steps 2", 0, NULL},
    {"'   ' " MODEL "--steps 2", 0, NULL},
    {"\"$(printf '\001\177\360\237\231\202 \303\251')\" " MODEL "--steps 2", 0, NULL},
    {"\"$(cat " R "prompt128k.txt)\" " MODEL "--steps 2", 0, NULL},
    {MODEL "--from-png " R "params10m.png", 1, "ediff: " R "params10m.png: zTXt chunk 'parameters': zlib stream: more data than"},
    /* ---- blobs: the file (header, metadata, tensor table), made from the toy blob by write_patches */
    {"x --model test/out/no-such-model.bin", 1, "ediff: test/out/no-such-model.bin: cannot open"},
    {"x --model test/ref/pipeline_style.png", 1, "ediff: test/ref/pipeline_style.png:"},
    {"x --model " R "empty.bin", 1, "ediff: " R "empty.bin: file is empty"},
    {"x --model " R "short.bin", 1, "ediff: " R "short.bin: file is 10 bytes, shorter than the 64-byte header"},
    {"x --model " R "half.bin", 1, "ediff: " R "half.bin: header says 1448256 bytes, file has 724128 (truncated or padded)"},
    {"x --model " R "cut1.bin", 1, "ediff: " R "cut1.bin: header says 1448256 bytes, file has 1448255"},
    {"x --model " R "padded.bin", 1, "ediff: " R "padded.bin: header says 1448256 bytes, file has 1448257"},
    {"x --model " R "crc.bin", 1, "ediff: " R "crc.bin: checksum mismatch (file corrupt)"},
    {"x --model " R "magic.bin", 1, "ediff: " R "magic.bin: not an ediff blob (bad magic)"},
    {"x --model " R "version.bin", 1, "ediff: " R "version.bin: format version 2, this ediff reads version 1"},
    {"x --model " R "reserved.bin", 1, "ediff: " R "reserved.bin: header: reserved field is not zero"},
    {"x --model " R "count_limit.bin", 1, "ediff: " R "count_limit.bin: header: 1048577 tensors (limit 1048576)"},
    {"x --model " R "count_fit.bin", 1, "ediff: " R "count_fit.bin: header: 1048576 tensors cannot fit"},
    {"x --model " R "meta_extent.bin", 1, "ediff: " R "meta_extent.bin: header: metadata extent"},
    {"x --model " R "table_extent.bin", 1, "ediff: " R "table_extent.bin: header: tensor table extent"},
    {"x --model " R "meta_nul.bin", 1, "ediff: " R "meta_nul.bin: metadata: NUL byte at offset 3"},
    {"x --model " R "meta_eol.bin", 1, "ediff: " R "meta_eol.bin: metadata: last line is not terminated"},
    {"x --model " R "bad_key.bin", 1, "ediff: " R "bad_key.bin: metadata line"},
    {"x --model " R "dtype.bin", 1, "ediff: " R "dtype.bin: tensor 't5.shared.weight': unknown dtype 9"},
    {"x --model " R "rank.bin", 1, "ediff: " R "rank.bin: tensor 0: rank 9 (limit 8)"},
    {"x --model " R "align.bin", 1, "ediff: " R "align.bin: tensor 't5.shared.weight': data offset"},
    {"x --model " R "data_outside.bin", 1, "ediff: " R "data_outside.bin: tensor 't5.shared.weight': data ["},
    {"x --model " R "data_size.bin", 1, "ediff: " R "data_size.bin: tensor 't5.shared.weight': 257026 data bytes"},
    {"x --model " R "name_len.bin", 1, "ediff: " R "name_len.bin: tensor 0: name length 0"},
    {"x --model " R "name_nul.bin", 1, "ediff: " R "name_nul.bin: tensor 0: name is not NUL-terminated"},
    {"x --model " R "dim.bin", 1, "ediff: " R "dim.bin: tensor 't5.shared.weight': dimension 0 is 2147483648"},
    {"x --model " R "dup_name.bin", 1, "ediff: " R "dup_name.bin: duplicate tensor name 't5.shared.weight'"},
    {"x --model " R, 1, "ediff: " R ": not a regular file"},
    {"x --model /dev/zero", 1, "ediff: /dev/zero: not a regular file"},
    {"x --model ''", 1, "ediff: : cannot open"},
    /* ---- blobs: configurations that contradict the tensors or are out of range (write_variant) */
    {"x --model " R "t5_width.bin", 1, "ediff: " R "t5_width.bin: tensor 't5.shared.weight' has shape [32128,4], the config needs [32128,8]"},
    {"x --model " R "unet_width.bin", 1, "ediff: " R "unet_width.bin: tensor 'base.0.unet."},
    {"x --model " R "no_conv_in.bin", 1, "ediff: " R "no_conv_in.bin: missing tensor 'base.1.unet.conv_in.weight'"},
    {"x --model " R "no_max_tokens.bin", 1, "ediff: " R "no_max_tokens.bin: missing metadata key 't5.max_tokens'"},
    {"x --model " R "not_int.bin", 1, "ediff: " R "not_int.bin: metadata 't5.d_model=abc' is not an integer"},
    {"x --model " R "wrap_int.bin", 1, "ediff: " R "wrap_int.bin: metadata 'base.0.unet.in_channels=4294967299' is out of range"},
    {"x --model " R "t5_layers.bin", 1, "ediff: " R "t5_layers.bin: metadata 't5.num_layers=16777216': more layers than"},
    {"x --model " R "clip_layers.bin", 1, "ediff: " R "clip_layers.bin: metadata 'clip.text.num_hidden_layers=16777216': "
     "more layers than the blob has tensors (1299)"},
    {"x --model " R "max_tokens.bin", 1, "ediff: " R "max_tokens.bin: t5.max_tokens=100000 out of range 1..4096"},
    {"x --model " R "resolution.bin", 1, "ediff: " R "resolution.bin: stage 'base': resolution 100000 out of range"},
    {"x --model " R "resolution0.bin", 1, "ediff: " R "resolution0.bin: stage 'base': resolution 0 out of range"},
    {"x --model " R "experts0.bin", 1, "ediff: " R "experts0.bin: stage 'base': 0 experts"},
    {"x --model " R "experts_many.bin", 1, "ediff: " R "experts_many.bin: stage 'base': 1000000 experts"},
    {"x --model " R "steps_neg.bin", 1, "ediff: " R "steps_neg.bin: stage 'base': sampler heun: steps must be in 1..10000"},
    {"x --model " R "cfg_nan.bin", 1, "ediff: " R "cfg_nan.bin: metadata 'base.cfg_scale=nan' is not a number"},
    {"x --model " R "sigma_data_inf.bin", 1, "ediff: " R "sigma_data_inf.bin: stage 'base': sigma_data must be positive and finite"},
    {"x --model " R "sampler.bin", 1, "ediff: " R "sampler.bin: stage 'base': unknown sampler 'lms'"},
    {"x --model " R "stages_empty.bin", 1, "ediff: " R "stages_empty.bin: stages '': no stage"},
    {"x --model " R "stages_twice.bin", 1, "ediff: " R "stages_twice.bin: stage 'base' follows another stage"},
    {"x --model " R "stages_sr_first.bin", 1, "ediff: " R "stages_sr_first.bin: stage 'sr' is a super-resolution stage but comes first"},
    {"x --model " R "upsample.bin", 1, "ediff: " R "upsample.bin: stage 'sr': lowres_upsample 'nearest' is not supported"},
    {"x --model " R "experts_overlap.bin", 1, "ediff: " R "experts_overlap.bin: stage 'base': expert "},
    {"x --model " R "positions.bin", 1, "ediff: " R "positions.bin: tensor 'clip.text_model.embeddings.position_embedding.weight'"},
    {"x --model " R "sr_down.bin", 1, "ediff: " R "sr_down.bin: stage 'sr' expert 0: super-resolution from 16 down to 8"},
    {"x --model " R "groups.bin", 1, "ediff: " R "groups.bin: UNet 'base.0.unet.down_blocks.0.resnets.0.norm1': GroupNorm over 4"},
    {"x --model " R "vocab.bin", 1, "ediff: clip text: token id 49406 at position 0 is outside the vocabulary (64 ids)"},
    {"x --model " R "spiece.bin", 1, "ediff: " R "spiece.bin: tokenizer.t5_spiece: t5 spiece: not a sentencepiece model"},
    {"x --model " R "merges.bin", 1, "ediff: " R "merges.bin: tokenizer.clip_merges: clip merges: 1 merges, expected 48894"},
    /* ---- images: masks, style images, --from-png */
    {"'a circle' " MODEL "--paint circle=test/out/no-such-mask.png", 1, "ediff: test/out/no-such-mask.png: cannot open"},
    {"'a circle' " MODEL "--paint circle=test/ref/pipeline.bin", 1, "ediff: test/ref/pipeline.bin: not a PNG file"},
    {"'a circle' " MODEL "--paint square=test/ref/pipeline_mask_left.png", 1, "ediff: --paint: 'square' is not in the prompt"},
    {"'a circle' " MODEL "--paint 'red circle=test/ref/pipeline_mask_left.png'", 1, "ediff: --paint: 'red circle' is not in the prompt"},
    {"'a circle' " MODEL "--paint circ=test/ref/pipeline_mask_left.png", 1, "ediff: --paint: 'circ' is not in the prompt"},
    {"x " MODEL "--style-image test/out/no-such-style.png", 1, "ediff: test/out/no-such-style.png: cannot open"},
    {"x " MODEL "--style-image test/out/rel/garbage.png", 1, "ediff: test/out/rel/garbage.png: not a PNG file"},
    {MODEL "--from-png test/ref/pipeline_style.png", 1, "ediff: --from-png test/ref/pipeline_style.png: no ediff parameters text"},
    {MODEL "--from-png test/out/no-such.png", 1, "ediff: test/out/no-such.png: cannot open"},
    {MODEL "--from-png test/out/rel/a1111.png", 2, "ediff: --from-png: unknown sampler 'Euler a'"},
    {MODEL "--from-png test/out/rel/params.png --from-png test/out/rel/params.png", 2, "ediff: --from-png given twice"},
    {"'a circle' " MODEL "--paint circle=" R "huge.png", 1, "ediff: " R "huge.png: image is 100000x100000; the limit is 16384 pixels per side"},
    {"'a circle' " MODEL "--paint circle=" R "side.png", 1, "ediff: " R "side.png: image is 16385x1; the limit is 16384"},
    {"'a circle' " MODEL "--paint circle=" R "pixels.png", 1, "ediff: " R "pixels.png: image is 16384x16384 = 268435456 pixels; the limit is 67108864"},
    {"'a circle' " MODEL "--paint circle=" R "zero.png", 1, "ediff: " R "zero.png: invalid image size 2147483648x1"},
    {"'a circle' " MODEL "--paint circle=" R "cut.png", 1, "ediff: " R "cut.png: truncated"},
    {"'a circle' " MODEL "--paint circle=" R "crc.png", 1, "ediff: " R "crc.png: CRC mismatch in chunk 'IHDR'"},
    {"'a circle' " MODEL "--paint circle=" R "zlib.png", 1, "ediff: " R "zlib.png: image data: zlib stream"},
    {"'a circle' " MODEL "--paint circle=" R "empty.png", 1, "ediff: " R "empty.png: not a PNG file (0 bytes)"},
    {"'a circle' " MODEL "--paint circle=" R, 1, "ediff: " R ": not a regular file"},
    {"'a circle' " MODEL "--paint circle=/dev/zero", 1, "ediff: /dev/zero: not a regular file"},
    {"'a circle' " MODEL "--steps 2 --paint circle=" R "mask1_white.png", 0, NULL},
    {"'a circle' " MODEL "--steps 2 --paint circle=" R "mask1_clear.png", 0, NULL},
    {"x " MODEL "--style-image " R "huge.png", 1, "ediff: " R "huge.png: image is 100000x100000"},
    {"x " MODEL "--style-image " R "crc.png", 1, "ediff: " R "crc.png: CRC mismatch"},
    {"x " MODEL "--steps 2 --style-image " R "mask1_white.png", 0, NULL},
    {MODEL "--from-png " R "zlib.png", 1, "ediff: " R "zlib.png: image data: zlib stream"},
    {MODEL "--from-png " R, 1, "ediff: " R ": not a regular file"},
    /* ---- noise files */
    {"x " MODEL "--noise test/ref/pipeline_style.png", 1, "ediff: test/ref/pipeline_style.png: not a version-1 .npy"},
    {"x " MODEL "--noise test/out/rel/noise_shape.npy", 1, "ediff: test/out/rel/noise_shape.npy: noise has shape [3,8,8], need [3,16,16]"},
    {"x " MODEL "--noise " R "noise_short.npy", 1, "ediff: " R "noise_short.npy: file holds fewer than the 768 elements"},
    {"x " MODEL "--noise " R "noise_huge.npy", 1, "ediff: " R "noise_huge.npy: bad or too large shape"},
    {"x " MODEL "--noise " R "noise_nan.npy", 1, "ediff: " R "noise_nan.npy: noise element 5 is not finite"},
    {"x " MODEL "--noise " R "noise_f16.npy", 1, "ediff: " R "noise_f16.npy: only C-order float32/float64"},
    {"x " MODEL "--noise /dev/zero", 1, "ediff: /dev/zero: not a regular file"},
    /* ---- the output */
    {"x --model test/ref/pipeline.bin -o test/out/no-such-dir/out.png", 1,
     "ediff: test/out/no-such-dir/out.png: cannot write to directory 'test/out/no-such-dir'"},
    {"x --model test/ref/pipeline.bin -o test/out", 1, "ediff: test/out: is a directory"},
    {"x " MODEL "--dump test/ref/pipeline.bin/d", 1, "ediff: --dump test/ref/pipeline.bin/d: cannot create the directory"},
    {"x " MODEL "-o /dev/null", 1, "ediff: /dev/null: exists and is not a regular file"},
    {"x " MODEL "--batch-count 2 -o " R "b", 1, "ediff: " R "b-1: is a directory"},
    {"x " MODEL "-o \"" R "o/$(printf '%04096d' 0).png\"", 1, "ediff: -o: path too long"},
};
#undef R

/* What the output folder holds (its file names, one a line), which is then emptied. */
static void outd_take(char *names, size_t cap)
{
    run_cmd("ls -A " OUTD " && rm -f " OUTD "/* " OUTD "/.[!.]*", names, cap);
}

static void test_battery(TestRun *T)
{
    char out[OUT], name[64], written[256], *nl;
    int i, rc, ok, n = (int)(sizeof battery / sizeof battery[0]), failed = 0, good = 0;
    if (!selected(T, "rel.bad")) return;
    for (i = 0; i < n; i++) {
        const BadCase *c = &battery[i];
        rc = run_ediff(T, out, sizeof out, "-o " OUTD "/out.png %s", c->args);
        nl = strchr(out, '\n');
        outd_take(written, sizeof written);
        if (c->error) {
            ok = rc == c->status && strncmp(out, c->error, strlen(c->error)) == 0 && nl && nl[1] == 0 && !written[0];
        } else {
            ok = rc == 0 && out[0] == 0 && strcmp(written, "out.png\n") == 0;
            good++;
        }
        snprintf(name, sizeof name, "rel.bad.%d", i);
        if (!ok) {
            failed++;
            report(T, 0, name, "ediff %.300s: exit %d (want %d), output '%.600s' (want %s%s%s), wrote '%s'", c->args, rc,
                   c->status, out, c->error ? "one line '" : "none and the PNG", c->error ? c->error : "",
                   c->error ? "...'" : "", written);
        }
    }
    if (!failed)
        report(T, 1, "rel.bad", "%d cases (%d bad inputs, %d good edge cases): exit status, one error line, nothing "
               "written", n,
               n - good, good);
}

/* ================================================================ limits ======================= */

/* ASan reserves terabytes of address space, so `ulimit -v` cannot apply to a sanitized program: there,
 * ASan's own per-allocation limit stands in for it (its allocator then returns NULL, as malloc would). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
#define MEMORY_LIMIT "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=200"
#define LIMIT_TEXT   "ASan's max_allocation_size_mb=200"
#else
#define MEMORY_LIMIT "ulimit -v 600000 &&"                /* 600 MB of address space */
#define LIMIT_TEXT   "ulimit -v 600000 (600 MB)"
#endif

/* A 64-megapixel mask (16384 x 4096, 1-bit grey: 8 MiB of image data, 8 KiB of file): 256 MiB as RGBA,
 * 320 MiB more as the painted mask in bytes and floats. */
static int write_big_mask(const char *path)
{
    size_t row = 1 + 16384 / 8, n = row * 4096, zn, i;
    uint8_t *raw = xcalloc(n, 1), *z, ihdr[13] = {0, 0, 0x40, 0, 0, 0, 0x10, 0, 1, 0, 0, 0, 0};
    uint8_t *b;
    char err[EDIFF_ERR];
    int ok;
    for (i = 0; i < n; i += row) raw[i + 1] = 0x80;     /* a painted pixel at the start of each row */
    if (zlib_compress(raw, n, &z, &zn, err)) return 0;
    b = xmalloc(zn + 64);
    memcpy(b, "\211PNG\r\n\032\n\0\0\0\rIHDR", 16);
    memcpy(b + 16, ihdr, 13);
    wr32be(b + 29, crc32_update(0, b + 12, 17));
    wr32be(b + 33, (uint32_t)zn);
    memcpy(b + 37, "IDAT", 4);
    memcpy(b + 41, z, zn);
    wr32be(b + 41 + zn, crc32_update(0, b + 37, zn + 4));
    memcpy(b + 45 + zn, "\0\0\0\0IEND\256B`\202", 12);
    ok = write_bytes(path, b, zn + 57);
    free(raw);
    free(z);
    free(b);
    return ok;
}

/* Runs ediff ARGS under the memory limit: exit 1 and one "out of memory" line, nothing written. */
static void under_limit(TestRun *T, const char *name, const char *what, const char *args)
{
    char cmd[1024], out[OUT], written[256], test[64];
    int rc;
    snprintf(cmd, sizeof cmd, MEMORY_LIMIT " OMP_WAIT_POLICY=passive %s -o " OUTD "/out.png %s", T->ediff, args);
    rc = run_cmd(cmd, out, sizeof out);
    outd_take(written, sizeof written);
#ifdef UNDER_ASAN
    while (strncmp(out, "==", 2) == 0 && strchr(out, '\n'))     /* ASan's "WARNING: ... failed to allocate" */
        memmove(out, strchr(out, '\n') + 1, strlen(strchr(out, '\n') + 1) + 1);
#endif
    snprintf(test, sizeof test, "rel.limits.%s", name);
    report(T, rc == 1 && strncmp(out, "ediff: out of memory", 20) == 0 && strchr(out, '\n') == out + strlen(out) - 1 &&
           !written[0], test, "%s under %s: exit %d, '%.*s'", what, LIMIT_TEXT, rc, (int)strcspn(out, "\n"), out);
}

static void test_limits(TestRun *T)
{
    static const char want[] = "ediff: " OUTD "/out.png: cannot write (File too large)";
    char cmd[1024], out[OUT], written[256];
    int rc;
    if (!selected(T, "rel.limits")) return;
#ifndef UNDER_ASAN
    if (run_cmd("ulimit -v 600000", NULL, 0) != 0) {
        report(T, 1, "rel.limits", "skipped: this shell has no ulimit -v");
        return;
    }
#endif
#ifndef UNDER_ASAN
    {   /* every allocation of a full run in turn meets the limit: 6 MB of address space up to 40 MB */
        char seen[16][96];
        int v, n_seen = 0, bad = 0, ok_runs = 0, runs = 0, k;
        for (v = 6000; v <= 40000; v += 2000, runs++) {
            snprintf(cmd, sizeof cmd, "ulimit -v %d && OMP_WAIT_POLICY=passive %s -o " OUTD "/out.png -t 2 " MODEL
                     "'a red circle' -n blurry --paint circle=test/ref/pipeline_mask_left.png --style-image "
                     "test/ref/pipeline_style.png", v, T->ediff);
            rc = run_cmd(cmd, out, sizeof out);
            outd_take(written, sizeof written);
            if (rc == 0 && !out[0] && strcmp(written, "out.png\n") == 0) {
                ok_runs++;
                continue;
            }
            if (rc != 1 || strncmp(out, "ediff: ", 7) != 0 || strchr(out, '\n') != out + strlen(out) - 1 ||
                !strstr(out, "memory") || written[0]) {
                if (!bad++)
                    report(T, 0, "rel.limits.sweep", "ulimit -v %d: exit %d, '%.300s', wrote '%s'", v, rc, out, written);
                continue;
            }
            out[strcspn(out, "\n")] = 0;                               /* the message, cut to 95 bytes */
            if (strlen(out) >= sizeof seen[0]) out[sizeof seen[0] - 1] = 0;
            for (k = 0; k < n_seen && strcmp(seen[k], out); k++) {}
            if (k == n_seen && n_seen < 16) memcpy(seen[n_seen++], out, strlen(out) + 1);
        }
        if (!bad)
            report(T, 1, "rel.limits.sweep", "a full run (style, paint, negative, SR) under ulimit -v 6..40 MB: %d runs "
                   "complete, %d stop with one 'out of memory' line (%d distinct allocations)", ok_runs, runs - ok_runs,
                   n_seen);
    }
#endif
    under_limit(T, "arena", "a 16384x16384 base stage (tens of GiB of activations)", "x --model " DIR "/huge_res.bin");
    if (!write_big_mask(DIR "/mask64m.png")) {
        report(T, 0, "rel.limits.mask", "cannot write " DIR "/mask64m.png");
    } else {
        under_limit(T, "mask", "a 16384x4096 mask", "'a circle' " MODEL "--paint circle=" DIR "/mask64m.png");
    }
    /* A write that fails midway: the file-size limit (1 block), SIGXFSZ ignored so that write() fails. */
    snprintf(cmd, sizeof cmd, "trap '' XFSZ; ulimit -f 1 && OMP_WAIT_POLICY=passive %s -o " OUTD "/out.png 'a circle' "
             MODEL "--steps 2", T->ediff);
    rc = run_cmd(cmd, out, sizeof out);
    outd_take(written, sizeof written);
    report(T, rc == 1 && strncmp(out, want, strlen(want)) == 0 && !written[0], "rel.limits.write",
           "a write that fails midway (ulimit -f): exit %d, '%.*s', left behind: '%s'", rc, (int)strcspn(out, "\n"), out,
           written);
}

/* ================================================================ determinism ================== */

/* `args` with 1, 2 and 3 threads, and with the build without OpenMP: byte-identical PNGs. */
static void same_image(TestRun *T, const char *name, const char *what, const char *args)
{
    char out[OUT], path[128], first[128];
    size_t n = 0;
    unsigned char *png;
    int t, rc = 0, same = 1, serial = T->serial && strcmp(T->serial, T->ediff) != 0;
    for (t = 1; t <= 4; t++) {
        if (t == 4 && !T->serial) break;
        snprintf(path, sizeof path, DIR "/det_%s_%s.png", name, t == 4 ? "serial" : t == 1 ? "t1" : t == 2 ? "t2" : "t3");
        if (t == 1) snprintf(first, sizeof first, "%s", path);
        remove(path);
        rc |= run_program(t == 4 ? T->serial : T->ediff, out, sizeof out, "%s -t %d -o %s", args, t == 4 ? 1 : t, path);
        if (t > 1) same &= same_file(first, path);
    }
    png = read_file(first, &n);
    snprintf(path, sizeof path, "rel.determinism.%s", name);
    report(T, rc == 0 && same && png, path, "%s: 1, 2, 3 threads%s: byte-identical (%zu bytes, CRC-32 %08x)%s", what,
           !T->serial ? "" : serial ? " and the OMP=0 build" : " (this build has no OpenMP: the same program)", n,
           png ? (unsigned)crc32_update(0, png, n) : 0u, T->serial ? "" : "; no --serial build given");
    free(png);
}

static void test_determinism(TestRun *T)
{
    if (!selected(T, "rel.determinism")) return;
    same_image(T, "toy", "toy pipeline, style + paint + negative prompt, base 16x16 + SR 32x32",
               MODEL "'a red circle and a blue square' -n blurry --style-image test/ref/pipeline_style.png "
               "--paint circle=test/ref/pipeline_mask_left.png --paint 'blue square=test/ref/pipeline_mask_right.png' "
               "-s 11");
    same_image(T, "wide", "the toy base stage at 64x64 (its larger GEMMs and attention, 1.8M to 17M multiply-adds, "
               "are split between threads)", "--model " DIR "/wide.bin 'a red circle' --steps 1 -s 3");
}

/* ================================================================ fuzz corpora ================= */

/* Every harness test/fuzz/fuzz_NAME.c has a replay driver REPLAY/replay-fuzz_NAME, which runs the whole
 * committed corpus test/fuzz/corpus/fuzz_NAME/ without a crash or a failed property. */
static void test_fuzz(TestRun *T)
{
    char list[2048], cmd[1024], out[OUT], test[96], *name;
    int rc;
    if (!selected(T, "rel.fuzz")) return;
    if (!T->replay) {
        report(T, 0, "rel.fuzz", "no --replay folder given (make test builds the replay drivers and gives it)");
        return;
    }
    if (run_cmd("cd test/fuzz && ls fuzz_*.c", list, sizeof list) != 0 || !list[0]) {
        report(T, 0, "rel.fuzz", "no harness test/fuzz/fuzz_*.c");
        return;
    }
    for (name = strtok(list, "\n"); name; name = strtok(NULL, "\n")) {
        name[strlen(name) - 2] = 0;                                   /* fuzz_NAME */
        snprintf(cmd, sizeof cmd, "%s/replay-%s test/fuzz/corpus/%s/* >" DIR "/replay-%s.log 2>&1; rc=$?; "
                 "tail -1 " DIR "/replay-%s.log; exit $rc", T->replay, name, name, name, name);
        rc = run_cmd(cmd, out, sizeof out);
        snprintf(test, sizeof test, "rel.fuzz.%s", name + 5);
        report(T, rc == 0 && strncmp(out, "replayed ", 9) == 0, test, "%.*s of test/fuzz/corpus/%s (exit %d%s)",
               (int)strcspn(out, "\n"), out, name, rc, rc ? "; log " DIR "/replay-*.log" : "");
    }
}

void suite_reliability(TestRun *T)
{
    if (!selected(T, "rel.bad") && !selected(T, "rel.limits") && !selected(T, "rel.determinism") &&
        !selected(T, "rel.fuzz"))
        return;
    if (!make_fixtures()) {
        report(T, 0, "rel.fixtures", "cannot write the fixtures under " DIR);
        return;
    }
    test_battery(T);
    test_limits(T);
    test_determinism(T);
    test_fuzz(T);
}
