/* ediff.c — the command-line program, and the eDiff-I pipeline in one pass from weights to PNG:
 *
 *   prompt ─tokenizers─> ids ─T5, CLIP text─> TextEncoding          encode_prompt   (eDiff-I §4.2)
 *   style image ─CLIP preprocessing, CLIP image tower─> embedding    encode_style    (eDiff-I §4.2)
 *   WORDS=mask.png ─> token columns x resized masks = A per grid     build_paint     (eDiff-I §4.3)
 *   per stage, per expert, per CFG branch: context + class vector    prepare_stage   (docs/model.md)
 *   for each stage of the cascade (base, then super-resolution):
 *       x = sigma_0 n, sampled through route -> precondition -> UNet -> CFG           run_stage (EDM)
 *   last stage's [3,R,R] ─> RGB8 ─> PNG with the settings as its "parameters" text   write_image
 *
 * The numerics live elsewhere (tensor.c ops, encoders.c, unet.c, sampler.c); this file wires them in
 * the order above, then the command line (options, --help, progress) follows. docs/cli.md is the manual.
 */
#include "ediff.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>
#define HAVE_POSIX 1
#define HAVE_TTY(fd) isatty(fd)
#else
#define HAVE_TTY(fd) 0
#endif

#define DEFAULT_MODEL  "weights/ediff-tiny.bin"
#define DEFAULT_OUTPUT "output.png"
#define DEFAULT_SEED   42
/* w' of eDiff-I §4.3 (W = w' ln(1 + sigma) max(QKᵀ) A). The paper gives no value; 0.4 is what
 * cloneofsimo/paint-with-words-sd's examples use (0.4 x region strength 1). docs/cli.md discusses it. */
#define PAINT_WEIGHT   0.4
#define PAINT_MAX      16                /* --paint flags */
#define SETTINGS_MAX   64                /* sampler-setting flags (--steps, --cfg-scale, ...) */
#define GRIDS_MAX      (2 * UNET_MAX_LEVELS)

static double seconds_now(void)
{
#ifdef HAVE_POSIX
    struct timeval t;
    gettimeofday(&t, NULL);
    return (double)t.tv_sec + 1e-6 * (double)t.tv_usec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

/* One error line on stderr, "ediff: MESSAGE": control characters in the message (a newline in a file
 * or stage name given on the command line) are shown as \xHH, so that it stays one line. */
static void print_error(const char *fmt, ...)
{
    char msg[2 * EDIFF_ERR];
    const char *c;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fputs("ediff: ", stderr);
    for (c = msg; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) fprintf(stderr, "\\x%02x", (unsigned)(unsigned char)*c);
        else fputc(*c, stderr);
    }
    fputc('\n', stderr);
}

/* An input file must be a regular file if it exists: opening a FIFO would wait for a writer forever,
 * and a device or a directory is no PNG, blob or .npy. (A missing file is left to the reader's error.) */
static int regular_file(const char *path, char err[EDIFF_ERR])
{
#ifdef HAVE_POSIX
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) return errorf(err, "%s: not a regular file", path);
#else
    (void)path;
    (void)err;
#endif
    return 0;
}

/* ================================================================ options ====================== */

/* A sampler setting from the command line, for every stage (stage "") or one ("--steps sr=10"). */
enum { SET_STEPS, SET_SAMPLER, SET_CFG, SET_SIGMA_MIN, SET_SIGMA_MAX, SET_RHO, SET_S_CHURN, SET_S_NOISE, SET_ETA };
typedef struct {
    int    what;                   /* SET_* */
    char   stage[64];
    double value;                  /* the number, or the SAMPLER_* kind */
} Setting;

/* Everything the command line decides. */
typedef struct {
    const char *prompt, *negative;             /* negative NULL: none */
    const char *model, *output, *dump, *style, *noise, *alternative;
    const char *dump_steps, *dump_filter;      /* NULL: the defaults ("0,last", everything) */
    int         argc;                          /* the command line, for --dump's run.json */
    char      **argv;
    uint64_t    seed;
    int         random_seed, threads, batch, verbose, no_t5, no_clip_text, no_sr;
    double      paint_weight;
    const char *paint[PAINT_MAX];              /* "WORDS=MASK.png" */
    int         n_paint;
    Setting     set[SETTINGS_MAX];
    int         n_set;
    char       *from_text;                     /* --from-png: its parameters text, which fields point into */
    const char *from_stages;                   /* --from-png: the stages it ran, "base+sr" */
} Options;

/* ================================================================ the model ==================== */

/* One stage of the cascade: its settings (sampler.c) and, per expert k, the UNet "S.k.unet." and
 * eDiff-I's conditioning module "S.k.cond." (each expert projects the encoders' outputs its own way). */
typedef struct {
    StageConfig cfg;
    Unet       *unet;          /* cfg.experts.n, owned */
    Cond       *cond;          /* cfg.experts.n, owned */
} Stage;

/* Everything read from the blob. Encoders and tokenizers are loaded only when the run uses them, so a
 * run with --no-t5 needs no T5 and a run without --style-image no image tower. */
typedef struct {
    Blob          blob;
    int           blob_open;
    char          name[64];        /* ediff.model, or the file name */
    uint32_t      crc;             /* the blob header's CRC-32 of the whole file: "Model hash" */
    int           use_t5, use_clip_text, use_clip_image;
    ClipTokenizer clip_tok;
    T5Tokenizer   t5_tok;
    T5Encoder     t5;
    ClipText      clip_text;
    ClipVision    clip_vision;
    int           L5;              /* t5.max_tokens: rows of the T5 segment of the context */
    int           d_t5, d_clip, embed_dim;
    Stage         stage[CASCADE_MAX];
    int           n_stages;
} Model;

static void model_free(Model *m)
{
    int s, k;
    for (s = 0; s < m->n_stages; s++) {
        for (k = 0; m->stage[s].unet && k < m->stage[s].cfg.experts.n; k++) unet_free(&m->stage[s].unet[k]);
        free(m->stage[s].unet);
        free(m->stage[s].cond);
    }
    clip_tokenizer_free(&m->clip_tok);
    t5_tokenizer_free(&m->t5_tok);
    t5_free(&m->t5);
    clip_text_free(&m->clip_text);
    clip_vision_free(&m->clip_vision);
    if (m->blob_open) blob_close(&m->blob);
    memset(m, 0, sizeof *m);
}

/* The tokenizer files: from the blob's u8 tensors when it has them (an error then names the blob), else
 * from weights/vocab/. */
static int tokenizers_load(Model *m, char err[EDIFF_ERR])
{
    const Blob *clip_src = blob_get(&m->blob, "tokenizer.clip_merges") ? &m->blob : NULL;
    const Blob *t5_src = blob_get(&m->blob, "tokenizer.t5_spiece") ? &m->blob : NULL;
    char why[EDIFF_ERR];
    if (m->use_clip_text && tokenizers_open(&m->clip_tok, NULL, clip_src, why))
        return clip_src ? errorf(err, "%s: tokenizer.clip_merges: %s", m->blob.path, why) : errorf(err, "%s", why);
    if (m->use_t5 && tokenizers_open(NULL, &m->t5_tok, t5_src, why))
        return t5_src ? errorf(err, "%s: tokenizer.t5_spiece: %s", m->blob.path, why) : errorf(err, "%s", why);
    return 0;
}

/* Expert k of stage st must fit the encoders and its place in the cascade (docs/model.md). */
static int expert_check(const Model *m, const Stage *st, int k, int lowres, char err[EDIFF_ERR])
{
    const UnetConfig *u = &st->unet[k].config;
    const Cond *c = &st->cond[k];
    int R = st->cfg.resolution, grids[2 * GRIDS_MAX];
    int in = st->cfg.sr ? 6 : 3, class_dim = 2 * c->embed_dim + (st->cfg.sr ? st->cfg.aug_dim : 0);
    char at[EDIFF_ERR];
    snprintf(at, sizeof at, "%s: stage '%s' expert %d", m->blob.path, st->cfg.name, k);
    if (u->in_channels != in || u->out_channels != 3)
        return errorf(err, "%s: the UNet maps %d to %d channels, the stage needs %d to 3", at, u->in_channels,
                    u->out_channels, in);
    if (c->dim != u->context_dim)
        return errorf(err, "%s: conditioning width %d, the UNet's context width %d", at, c->dim, u->context_dim);
    if (u->class_embed_dim != class_dim)
        return errorf(err, "%s: class embedding input %d, the stage needs 2 x %d%s = %d", at, u->class_embed_dim,
                    c->embed_dim, st->cfg.sr ? " + aug_dim" : "", class_dim);
    if ((m->use_t5 && c->t5_dim != m->d_t5) || (m->use_clip_text && c->clip_dim != m->d_clip) ||
        (m->embed_dim && c->embed_dim != m->embed_dim))
        return errorf(err, "%s: conditioning takes widths %d/%d/%d (T5/CLIP/embedding), the encoders give %d/%d/%d", at,
                    c->t5_dim, c->clip_dim, c->embed_dim, m->d_t5, m->d_clip, m->embed_dim);
    if (unet_attention_grids(&st->unet[k], R, R, grids, GRIDS_MAX) < 0)
        return errorf(err, "%s: resolution %d is too small for the UNet", at, R);
    if (st->cfg.sr && lowres > R) return errorf(err, "%s: super-resolution from %d down to %d", at, lowres, R);
    return 0;
}

/* A stage's experts: UNet "S.k.unet.", conditioning "S.k.cond.", each checked against the rest. */
static int stage_load(Model *m, Stage *st, int lowres, char err[EDIFF_ERR])
{
    char prefix[96];
    int k, n = st->cfg.experts.n;
    st->unet = xcalloc((size_t)n, sizeof *st->unet);
    st->cond = xcalloc((size_t)n, sizeof *st->cond);
    for (k = 0; k < n; k++) {
        snprintf(prefix, sizeof prefix, "%s.%d.unet.", st->cfg.name, k);
        if (unet_load(&st->unet[k], &m->blob, prefix, err)) return -1;
        snprintf(prefix, sizeof prefix, "%s.%d.cond.", st->cfg.name, k);
        if (cond_load(&st->cond[k], &m->blob, prefix, err)) return -1;
        if (expert_check(m, st, k, lowres, err)) return -1;
    }
    return 0;
}

/* --from-png: the cascade a PNG records ("base_single+sr"): a stage that is not in the default cascade
 * `cfg` is the alternative it ran (then the cascade is loaded again with it), a single stage means
 * --no-sr. Returns the number of stages. */
static int from_stages(Model *m, const char *recorded, StageConfig *cfg, int n, char err[EDIFF_ERR])
{
    char name[64];
    const char *p;
    int count = 0, s, known;
    for (p = recorded; *p; count++) {
        size_t len = strcspn(p, "+");
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        p += len + (p[len] == '+');
        for (s = 0, known = 0; s < n; s++) known |= strcmp(cfg[s].name, name) == 0;
        if (!known && (n = cascade_load(cfg, CASCADE_MAX, &m->blob, name, err)) < 0) return -1;
    }
    return count == 1 ? 1 : n;
}

/* The model in the open blob m->blob (o->model names it): the encoders the run uses and the cascade,
 * the stages `stages` names, with o->alternative swapped in, only the first with --no-sr. Reads no
 * other file (the tokenizers are tokenizers_load's), so the blob fuzz harness can drive it. */
static int model_init(Model *m, const Options *o, char err[EDIFF_ERR])
{
    StageConfig cfg[CASCADE_MAX];
    const char *path = o->model, *name, *slash;
    Loader L;
    int s, n, lowres = 0;
    m->use_t5 = !o->no_t5;
    m->use_clip_text = !o->no_clip_text;
    m->use_clip_image = o->style != NULL;
    m->crc = (uint32_t)m->blob.base[56] | (uint32_t)m->blob.base[57] << 8 | (uint32_t)m->blob.base[58] << 16 |
             (uint32_t)m->blob.base[59] << 24;
    slash = strrchr(path, '/');
    name = blob_meta(&m->blob, "ediff.model");
    snprintf(m->name, sizeof m->name, "%s", name ? name : slash ? slash + 1 : path);
    loader_init(&L, &m->blob, "t5.");              /* the T5 rows exist even when T5 is dropped */
    m->L5 = (int)ld_int(&L, "max_tokens");
    if (!L.failed && (m->L5 < 1 || m->L5 > 4096)) loader_fail(&L, "t5.max_tokens=%d out of range 1..4096", m->L5);
    if (L.failed) return errorf(err, "%s", L.err);
    if (m->use_t5) {
        if (t5_load(&m->t5, &m->blob, "t5.", err)) return -1;
        m->d_t5 = m->t5.cfg.d_model;
    }
    if (m->use_clip_text) {
        if (clip_text_load(&m->clip_text, &m->blob, "clip.", err)) return -1;
        m->d_clip = m->clip_text.cfg.hidden_size;
        m->embed_dim = m->clip_text.cfg.projection_dim;
    }
    if (m->use_clip_image) {
        if (clip_vision_load(&m->clip_vision, &m->blob, "clip.", err)) return -1;
        if (m->embed_dim && m->clip_vision.cfg.projection_dim != m->embed_dim)
            return errorf(err, "%s: CLIP text and image embeddings differ in width (%d, %d)", path, m->embed_dim,
                        m->clip_vision.cfg.projection_dim);
        m->embed_dim = m->clip_vision.cfg.projection_dim;
    }
    if ((n = cascade_load(cfg, CASCADE_MAX, &m->blob, o->alternative, err)) < 0) return -1;
    if (o->from_stages && !o->alternative && (n = from_stages(m, o->from_stages, cfg, n, err)) < 0) return -1;
    if (o->no_sr) n = 1;
    for (s = 0; s < n; s++) {
        m->stage[s].cfg = cfg[s];
        m->n_stages = s + 1;
        if (stage_load(m, &m->stage[s], lowres, err)) return -1;
        lowres = cfg[s].resolution;
    }
    return 0;
}

/* The blob o->model, its model (model_init) and the tokenizers the run uses. */
static int model_load(Model *m, const Options *o, char err[EDIFF_ERR])
{
    memset(m, 0, sizeof *m);
    if (regular_file(o->model, err) || blob_open(&m->blob, o->model, err)) return -1;
    m->blob_open = 1;
    return model_init(m, o, err) || tokenizers_load(m, err) ? -1 : 0;
}

/* ================================================================ tensor dumps (--dump DIR) ===== */

/* NAME (printf format) as a batch of one, PyTorch's shape: [1, d1], [1, d1, d2] or [1, d1, d2, d3] for
 * rank 1, 2, 3; rank 0 gives [1] (a per-call scalar such as sigma). dump.c names the scheme. */
static void dump1(Dumper *d, int dtype, const void *x, int rank, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
{
    char name[512];
    int64_t shape[4];
    va_list ap;
    if (!d || !d->dir) return;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    shape[0] = 1; shape[1] = d1; shape[2] = d2; shape[3] = d3;
    dump_array(d, name, dtype, x, rank ? rank + 1 : 1, shape);
}

/* ================================================================ conditioning (eDiff-I §4.2) === */

/* The encoder outputs of one prompt (docs/model.md "Conditioning"); NULL = dropped (all zero). */
typedef struct {
    Tokens   t5_ids;                    /* EncodeAsIds + </s>, at most L5 */
    int32_t  clip_ids[CLIP_CONTEXT];    /* clip.tokenize(text, truncate=True) */
    float   *t5_tokens;                 /* [L5, d_t5]: last_hidden_state, rows past the prompt zero */
    float   *clip_tokens;               /* [77, d_clip]: last_hidden_state after final_layer_norm */
    float   *clip_text_embed;           /* [E]: text_embeds (pooled at <|endoftext|>, projected) */
} TextEncoding;

static void text_encoding_free(TextEncoding *e)
{
    tokens_free(&e->t5_ids);
    free(e->t5_tokens);
    free(e->clip_tokens);
    free(e->clip_text_embed);
    memset(e, 0, sizeof *e);
}

/* prompt -> ids of the tokenizers the run uses: T5 EncodeAsIds + </s> cut to L5, clip.tokenize. */
static int tokenize_prompt(const Model *m, const char *text, TextEncoding *e, char err[EDIFF_ERR])
{
    size_t len = strlen(text);
    memset(e, 0, sizeof *e);
    if (m->use_t5 && t5_tokenize(&m->t5_tok, text, len, m->L5, &e->t5_ids, err)) return -1;
    if (m->use_clip_text && clip_tokenize(&m->clip_tok, text, len, e->clip_ids, err)) return -1;
    return 0;
}

/* ids -> T5 tokens [L5, d_t5] (the encoder runs on the unpadded ids; rows past them stay zero), CLIP
 * tokens [77, d_clip] and the pooled CLIP embedding [E]. Dumped as NAME/t5.input_ids, NAME/t5.* (the
 * encoder's modules), NAME/clip.input_ids, NAME/clip.*, and NAME/t5_tokens, clip_tokens, clip_text_embed. */
static int encode_prompt(const Model *m, TextEncoding *e, Arena *a, Dumper *dump, const char *name,
                         char err[EDIFF_ERR])
{
    char prefix[64];
    DumpHook hook;
    if (m->use_t5) {
        dump1(dump, DT_I32, e->t5_ids.id, 1, e->t5_ids.n, 0, 0, "%s/t5.input_ids", name);
        snprintf(prefix, sizeof prefix, "%s/t5.", name);
        hook = dump_hook(dump, prefix, 1);
        e->t5_tokens = xcalloc((size_t)m->L5 * (size_t)m->d_t5, sizeof(float));
        if (t5_encode(&m->t5, e->t5_ids.id, NULL, e->t5_ids.n, e->t5_tokens, a, dump->dir ? &hook : NULL, err))
            return -1;
    }
    if (m->use_clip_text) {
        dump1(dump, DT_I32, e->clip_ids, 1, CLIP_CONTEXT, 0, 0, "%s/clip.input_ids", name);
        snprintf(prefix, sizeof prefix, "%s/clip.", name);
        hook = dump_hook(dump, prefix, 1);
        e->clip_tokens = xmalloc((size_t)CLIP_CONTEXT * (size_t)m->d_clip * sizeof(float));
        e->clip_text_embed = xmalloc((size_t)m->embed_dim * sizeof(float));
        if (clip_text_encode(&m->clip_text, e->clip_ids, CLIP_CONTEXT, e->clip_tokens, e->clip_text_embed, a,
                             dump->dir ? &hook : NULL, err))
            return -1;
    }
    dump1(dump, DT_F32, e->t5_tokens, 2, m->L5, m->d_t5, 0, "%s/t5_tokens", name);
    dump1(dump, DT_F32, e->clip_tokens, 2, CLIP_CONTEXT, m->d_clip, 0, "%s/clip_tokens", name);
    dump1(dump, DT_F32, e->clip_text_embed, 1, m->embed_dim, 0, 0, "%s/clip_text_embed", name);
    return 0;
}

/* Style transfer: the reference image through CLIP preprocessing and the CLIP image tower ->
 * clip_image_embed [E] (image_embeds, not normalised; alpha is ignored). */
static int encode_style(const Model *m, const Image *img, Arena *a, Dumper *dump, float **embed,
                        char err[EDIFF_ERR])
{
    const ClipImageProcessor *p = &m->clip_vision.processor;
    size_t i, n = (size_t)img->w * (size_t)img->h;
    uint8_t *rgb = xmalloc(n * 3);
    float *pixels = xmalloc((size_t)3 * p->crop_height * p->crop_width * sizeof(float));
    DumpHook hook = dump_hook(dump, "style/clip.", 1);
    int rc;
    for (i = 0; i < n; i++) memcpy(rgb + 3 * i, img->rgba + 4 * i, 3);
    *embed = xmalloc((size_t)m->embed_dim * sizeof(float));
    rc = clip_preprocess(p, rgb, img->w, img->h, pixels, err);
    if (!rc) {
        dump1(dump, DT_F32, pixels, 3, 3, p->crop_height, p->crop_width, "style/pixel_values");
        clip_vision_encode(&m->clip_vision, pixels, *embed, NULL, NULL, a, dump->dir ? &hook : NULL);
        dump1(dump, DT_F32, *embed, 1, m->embed_dim, 0, 0, "style/clip_image_embed");
    }
    free(rgb);
    free(pixels);
    return rc;
}

/* ================================================================ paint-with-words (§4.3) ====== */

/* One --paint WORDS=MASK: the mask (1 = painted) and the context rows of the words' tokens. */
typedef struct {
    char       *words;             /* owned */
    const char *path;
    int         w, h;
    float      *mask;              /* [h, w] */
    uint8_t    *column;            /* [n_ctx]: 1 for every token of an occurrence of the words */
} Paint;

/* Marks in col[offset + j] every run j.. of `phrase` inside seq[from, to) (all occurrences, as
 * cloneofsimo's paint-with-words marks them); returns the number of occurrences. */
static int mark_phrase(const int32_t *seq, int from, int to, const Tokens *phrase, uint8_t *col, int offset)
{
    int j = from, found = 0, t;
    while ((j = token_find(seq, to, phrase->id, phrase->n, j)) >= 0) {
        for (t = 0; t < phrase->n; t++) col[offset + j + t] = 1;
        found++;
        j++;
    }
    return found;
}

/* The context rows of a phrase (shared/docs/ediffi.md §4.4): its tokens in the T5 segment (rows
 * 0..L5-1) and in the CLIP segment (rows L5..L5+76), each tokenizer finding its own run; never the
 * CLIP start/end tokens, padding, the image token or the null token. */
static int paint_columns(const Model *m, const TextEncoding *e, Paint *p, int n_ctx, char err[EDIFF_ERR])
{
    Tokens ids = {0};
    size_t len = strlen(p->words);
    int found = 0, end;
    p->column = xcalloc((size_t)n_ctx, 1);
    if (m->use_t5) {                                    /* the words alone, without </s> */
        if (t5_tokenizer_encode(&m->t5_tok, p->words, len, m->L5, &ids, err)) return -1;
        found += mark_phrase(e->t5_ids.id, 0, e->t5_ids.n - 1, &ids, p->column, 0);
        tokens_free(&ids);
    }
    if (m->use_clip_text) {                             /* between <|startoftext|> and <|endoftext|> */
        if (clip_tokenizer_encode(&m->clip_tok, p->words, len, CLIP_CONTEXT, &ids, err)) return -1;
        for (end = 1; end < CLIP_CONTEXT && e->clip_ids[end] != m->clip_tok.eot; end++) {}
        found += mark_phrase(e->clip_ids, 1, end, &ids, p->column, m->L5);
        tokens_free(&ids);
    }
    if (!found) return errorf(err, "--paint: '%s' is not in the prompt", p->words);
    return 0;
}

/* The painted pixels of a mask image (any size and type): visible and not black (png.c image_mask). */
static void mask_from_image(Paint *p, const Image *img)
{
    size_t i, n = (size_t)img->w * (size_t)img->h;
    uint8_t *painted = xmalloc(n);
    image_mask(img, painted);
    p->w = img->w;
    p->h = img->h;
    p->mask = xmalloc(n * sizeof(float));
    for (i = 0; i < n; i++) p->mask[i] = painted[i];
    free(painted);
}

static int read_mask(Paint *p, char err[EDIFF_ERR])
{
    Image img;
    if (regular_file(p->path, err) || png_read(p->path, &img, err)) return -1;
    mask_from_image(p, &img);
    image_free(&img);
    return 0;
}

/* Paint-with-words maps of one stage: for every cross-attention grid (h, w) of its experts,
 * A[p, j] = sum over flags of bilinear_align_corners(mask)[p] * column[j] (shared/docs/ediffi.md §4.3). */
typedef struct {
    PaintMap maps[GRIDS_MAX];
    float   *A[GRIDS_MAX];         /* owned storage of maps[i].A */
    int      n_maps;
} Painting;

static void painting_free(Painting *pt)
{
    int i;
    for (i = 0; i < pt->n_maps; i++) free(pt->A[i]);
    pt->n_maps = 0;
}

/* The map of one grid: A [h*w, n_ctx] (calloc'd, the caller owns it). */
static float *paint_map(int h, int w, const Paint *paint, int n_paint, int n_ctx)
{
    float *A = xcalloc((size_t)h * w * n_ctx, sizeof(float)), *resized = xmalloc((size_t)h * w * sizeof(float));
    int f, i, j;
    for (f = 0; f < n_paint; f++) {
        resize_bilinear(resized, paint[f].mask, 1, paint[f].h, paint[f].w, h, w, 1);
        for (i = 0; i < h * w; i++)
            for (j = 0; j < n_ctx; j++)
                if (paint[f].column[j]) A[(size_t)i * n_ctx + j] += resized[i];
    }
    free(resized);
    return A;
}

static void build_paint(const Stage *st, const Paint *paint, int n_paint, int n_ctx, Painting *pt)
{
    int grids[2 * GRIDS_MAX], k, g, i;
    memset(pt, 0, sizeof *pt);
    for (k = 0; k < st->cfg.experts.n; k++) {
        int n = unet_attention_grids(&st->unet[k], st->cfg.resolution, st->cfg.resolution, grids, GRIDS_MAX);
        for (g = 0; g < n; g++) {
            int h = grids[2 * g], w = grids[2 * g + 1], seen = 0;
            for (i = 0; i < pt->n_maps; i++) seen |= pt->maps[i].h == h && pt->maps[i].w == w;
            if (seen || pt->n_maps == GRIDS_MAX) continue;
            pt->A[pt->n_maps] = paint_map(h, w, paint, n_paint, n_ctx);
            pt->maps[pt->n_maps].h = h;
            pt->maps[pt->n_maps].w = w;
            pt->maps[pt->n_maps].A = pt->A[pt->n_maps];
            pt->n_maps++;
        }
    }
}

/* ================================================================ one stage ==================== */

/* What --dump records of one stage's sampling (ediff.c's side of the names dump.c describes): the
 * initial noise, each step's sample (and noise, for samplers that draw it), and in the steps
 * --dump-steps selects each denoiser call: x, sigma, the expert, the EDM scalings, each CFG branch's
 * UNet modules and denoised image, and the guided denoised image. */
typedef struct {
    Dumper            *dump;
    const StageConfig *cfg;
    Denoiser           guided;        /* the denoiser observed */
    int                steps, step, call;
    int                active;        /* the current call is dumped */
    int                stochastic;    /* the sampler draws noise in every step: dump it */
    char               scope[96];     /* the current call: "base/step03/call1" */
} StageDump;

/* One CFG branch of one stage, prepared once per run: each expert's context and class vector (its own
 * projections of the same encoder outputs), and the paint maps (conditional branch only). */
typedef struct {
    const Stage    *stage;
    const char     *name;          /* "cond" or "uncond" */
    Arena          *arena;
    int             n_ctx;
    float         **context;       /* [experts] -> [n_ctx, dim_k], owned */
    UnetCrossKV    *kv;            /* [experts]: the cross-attention keys/values of context[k], computed at
                                      the expert's first call (in this branch's thread), owned */
    float         **class_vec;     /* [experts] -> [class_embed_dim_k], owned */
    const Painting *paint;         /* NULL: unpainted */
    double          paint_weight;  /* w' */
    StageDump      *dump;          /* while a dumped stage runs, else NULL */
    Denoiser        edm;           /* this branch's D, when dumped (branch_denoise wraps it) */
    int             failed;
    char            err[EDIFF_ERR];
} Branch;

static void branch_init(Branch *b, const char *name, const Stage *st, const Conditioning *c, int L5, const float *aug,
                        Arena *a)
{
    int k, n = st->cfg.experts.n;
    memset(b, 0, sizeof *b);
    b->stage = st;
    b->name = name;
    b->arena = a;
    b->n_ctx = cond_context_rows(L5, CLIP_CONTEXT);
    b->context = xcalloc((size_t)n, sizeof *b->context);
    b->class_vec = xcalloc((size_t)n, sizeof *b->class_vec);
    b->kv = xcalloc((size_t)n, sizeof *b->kv);
    for (k = 0; k < n; k++) {
        const Cond *cd = &st->cond[k];
        b->context[k] = xmalloc((size_t)b->n_ctx * cd->dim * sizeof(float));
        b->class_vec[k] = xmalloc((size_t)st->unet[k].config.class_embed_dim * sizeof(float));
        cond_context(cd, c->t5_tokens, L5, c->clip_tokens, CLIP_CONTEXT, c->clip_image_embed, b->context[k]);
        cond_class_vector(cd, c->clip_text_embed, c->clip_image_embed, aug, aug ? st->cfg.aug_dim : 0, b->class_vec[k]);
    }
}

static void branch_free(Branch *b)
{
    int k;
    for (k = 0; b->context && k < b->stage->cfg.experts.n; k++) {
        free(b->context[k]);
        free(b->class_vec[k]);
        unet_cross_kv_free(&b->kv[k]);
    }
    free(b->context);
    free(b->class_vec);
    free(b->kv);
    memset(b, 0, sizeof *b);
}

/* F_k of one CFG branch (docs/model.md "The denoiser"): expert k's UNet on this branch's context and
 * class vector. Painted branches bias the cross-attention by weight = w' ln(1 + sigma), with
 * sigma = exp(4 c_noise) of this call (eDiff-I §4.3). */
static void expert_forward(void *ctx, int k, const float *input, float c_noise, float *out)
{
    Branch *b = ctx;
    const Stage *st = b->stage;
    int R = st->cfg.resolution;
    PaintBias paint;
    DumpHook hook;
    char prefix[256];
    int dumped = b->dump && b->dump->active;
    if (!b->failed) {
        if (b->paint) {
            paint.maps = b->paint->maps;
            paint.n_maps = b->paint->n_maps;
            paint.n_ctx = b->n_ctx;
            paint.weight = (float)(b->paint_weight * log1p(exp(4.0 * (double)c_noise)));
        }
        if (dumped) {
            snprintf(prefix, sizeof prefix, "%s/%s/%s.%d.unet.", b->dump->scope, b->name, st->cfg.name, k);
            hook = dump_hook(b->dump->dump, prefix, 0);
        }
        if (!b->kv[k].k) unet_cross_kv(&st->unet[k], b->context[k], b->n_ctx, &b->kv[k]);
        if (unet_forward(&st->unet[k], b->arena, input, R, R, c_noise, b->context[k], b->n_ctx, &b->kv[k],
                         b->class_vec[k], b->paint ? &paint : NULL, dumped ? &hook : NULL, out, b->err) == 0)
            return;
        b->failed = 1;                  /* reported after sampling; the remaining calls do nothing */
    }
    memset(out, 0, (size_t)3 * R * R * sizeof(float));
}

/* ---- --dump of a stage: wrappers around its denoisers and the sampler's SampleHook (NAME: docs/crosscheck.md) */

/* A [1, 3, R, R] image of the stage, NAME a printf format (the sampler's state and the denoised images
 * are double, as sampler.c keeps them). */
static void dump_image(const StageDump *sd, int dtype, const void *x, const char *fmt, ...)
{
    char name[256];
    int R = sd->cfg->resolution;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    dump1(sd->dump, dtype, x, 3, 3, R, R, "%s", name);
}

/* The guided D(x; sigma) of a call; in the steps --dump-steps selects, its input x, sigma, the expert
 * that serves it, the EDM scalings (sampler.c edm_scalings) and the result, under STAGE/stepNN/callM. */
static void stage_dump_denoise(void *ctx, const double *x, double sigma, double *denoised)
{
    StageDump *sd = ctx;
    snprintf(sd->scope, sizeof sd->scope, "%s/step%02d/call%d", sd->cfg->name, sd->step, sd->call);
    sd->active = dump_step_wanted(sd->dump, sd->step, sd->steps);
    if (sd->active) {
        EdmScalings e = edm_scalings(sigma, sd->cfg->sigma_data);
        int32_t expert = expert_for_sigma(&sd->cfg->experts, sigma);
        dump_image(sd, DT_F64, x, "%s/x", sd->scope);
        dump1(sd->dump, DT_F64, &sigma, 0, 0, 0, 0, "%s/sigma", sd->scope);
        dump1(sd->dump, DT_I32, &expert, 0, 0, 0, 0, "%s/expert", sd->scope);
        dump1(sd->dump, DT_F64, &e.c_skip, 0, 0, 0, 0, "%s/c_skip", sd->scope);
        dump1(sd->dump, DT_F64, &e.c_out, 0, 0, 0, 0, "%s/c_out", sd->scope);
        dump1(sd->dump, DT_F64, &e.c_in, 0, 0, 0, 0, "%s/c_in", sd->scope);
        dump1(sd->dump, DT_F64, &e.c_noise, 0, 0, 0, 0, "%s/c_noise", sd->scope);
    }
    sd->guided.fn(sd->guided.ctx, x, sigma, denoised);
    if (sd->active) dump_image(sd, DT_F64, denoised, "%s/denoised", sd->scope);
    sd->active = 0;
    sd->call++;
}

/* One CFG branch's D = c_skip x + c_out F (its UNet's modules are dumped by expert_forward). */
static void branch_denoise(void *ctx, const double *x, double sigma, double *denoised)
{
    Branch *b = ctx;
    b->edm.fn(b->edm.ctx, x, sigma, denoised);
    if (b->dump->active) dump_image(b->dump, DT_F64, denoised, "%s/%s/denoised", b->dump->scope, b->name);
}

static Denoiser branch_tap(Branch *b, StageDump *sd, Denoiser edm)
{
    Denoiser d = edm;
    b->dump = sd;
    b->edm = edm;
    d.fn = branch_denoise;
    d.ctx = b;
    return d;
}

/* SampleHook: the sample after step i (every step), then the next call belongs to step i + 1. */
static void stage_dump_step(void *ctx, int i, const double *x, size_t n)
{
    StageDump *sd = ctx;
    (void)n;
    dump_image(sd, DT_F64, x, "%s/step%02d/sample", sd->cfg->name, i);
    sd->step = i + 1;
    sd->call = 0;
}

/* SampleHook: the initial noise n (x_0 = sigma_0 n), and each step's noise when the sampler uses it. */
static void stage_dump_noise(void *ctx, int draw, const double *eps, size_t n)
{
    StageDump *sd = ctx;
    (void)n;
    if (draw == 0) dump_image(sd, DT_F64, eps, "%s/noise", sd->cfg->name);
    else if (sd->stochastic) dump_image(sd, DT_F64, eps, "%s/step%02d/noise", sd->cfg->name, sd->step);
}

/* SR's augmentation noise n_aug of z_lr = up(y_lr) + sigma_aug n_aug, dumped as it is drawn. */
typedef struct {
    NoiseSource inner;
    StageDump  *sd;
} AugNoiseTap;

static void aug_noise_draw(void *ctx, double *out, size_t n)
{
    AugNoiseTap *t = ctx;
    t->inner.draw(t->inner.ctx, out, n);
    dump_image(t->sd, DT_F64, out, "%s/aug_noise", t->sd->cfg->name);
}

/* What the pipeline reports after each denoiser call (the CLI draws it; see show_progress). */
typedef struct {
    const char *stage;
    int         stage_index, n_stages, image, images;
    int         step, steps, step_done;   /* sampler step (1-based) of this call; the step is complete */
    int         expert, experts;
    double      sigma, elapsed;           /* sigma of the call; seconds since the stage began */
    int         finished;                 /* the stage is done (last report) */
} ProgressEvent;
typedef struct {
    void (*fn)(void *ctx, const ProgressEvent *e);
    void *ctx;
} Progress;

/* A denoiser that forwards to another and reports progress: Heun evaluates twice per step but once in
 * its last step (2N - 1 calls, docs/sampling.md §4.1), the others once per step. */
typedef struct {
    Denoiser        inner;
    const Stage    *stage;
    const Progress *progress;
    ProgressEvent   ev;
    int             calls, heun;
    double          start;
} Tracked;

static void tracked_denoise(void *ctx, const double *x, double sigma, double *denoised)
{
    Tracked *t = ctx;
    int nfe = t->heun ? 2 * t->ev.steps - 1 : t->ev.steps;
    t->inner.fn(t->inner.ctx, x, sigma, denoised);
    t->calls++;
    t->ev.step = t->heun ? (t->calls + 1) / 2 : t->calls;
    t->ev.step_done = !t->heun || t->calls % 2 == 0 || t->calls == nfe;
    t->ev.sigma = sigma;
    t->ev.expert = expert_for_sigma(&t->stage->cfg.experts, sigma);
    t->ev.elapsed = seconds_now() - t->start;
    if (t->progress) t->progress->fn(t->progress->ctx, &t->ev);
}

/* A stage prepared for the run: both CFG branches, its paint maps, its sampler settings. */
typedef struct {
    const Stage  *stage;
    SamplerConfig sampler;
    double        cfg_scale;
    Branch        cond, uncond;       /* uncond is unused when cfg_scale is 1 */
    Painting      paint;
    float        *aug;                /* SR: aug_features [aug_dim], else NULL */
} StageRun;

/* One stage for one image (eDiff-I §4.1; EDM): x = sigma_0 n (n from `init`, else the seed's stream),
 * sampled with the guided expert ensemble; a super-resolution stage is conditioned on y_lr [3, lr, lr],
 * the previous stage's output, upsampled and noise-augmented. out [3, R, R] in [-1, 1]. With dump
 * (NULL: none), the stage's sampling is dumped under its name (StageDump). */
static int run_stage(StageRun *r, int s, int n_stages, uint64_t seed, const float *init, const float *y_lr, int lr,
                     const Progress *progress, int image, int images, Dumper *dump, float *out, char err[EDIFF_ERR])
{
    const StageConfig *cfg = &r->stage->cfg;
    int R = cfg->resolution, guided = r->cfg_scale != 1.0, dumped = dump && dump->dir;
    float *z_lr = NULL;
    EdmDenoiser e_cond, e_uncond;
    Denoiser d_cond, d_uncond, d_guided;
    Guidance g;
    Tracked t;
    Network net_cond, net_uncond;
    StageDump sd;
    SampleHook hook;
    memset(&sd, 0, sizeof sd);
    sd.dump = dump;
    sd.cfg = cfg;
    sd.steps = r->sampler.steps;
    sd.stochastic = r->sampler.kind == SAMPLER_EULER_A || r->sampler.kind == SAMPLER_DDPM || r->sampler.s_churn > 0;
    if (dumped) {
        double *sigmas = xmalloc(((size_t)r->sampler.steps + 1) * sizeof(double));
        int64_t n = r->sampler.steps + 1;
        char name[96];
        sampler_sigmas(&r->sampler, sigmas);
        snprintf(name, sizeof name, "%s/sigmas", cfg->name);
        dump_array(dump, name, DT_F64, sigmas, 1, &n);
        free(sigmas);
    }
    if (cfg->sr) {                      /* z_lr = up(y_lr) + sigma_aug n_aug (docs/model.md) */
        Rng aug = rng_init(seed, rng_stream(0, s, RNG_AUG));
        NoiseSource noise = noise_from_rng(&aug);
        AugNoiseTap tap;
        if (dumped) {
            tap.inner = noise;
            tap.sd = &sd;
            noise.draw = aug_noise_draw;
            noise.ctx = &tap;
        }
        z_lr = xmalloc((size_t)3 * R * R * sizeof(float));
        lowres_condition(z_lr, y_lr, 3, lr, lr, R, R, cfg->aug_sigma, &noise);
        if (dumped) dump_image(&sd, DT_F32, z_lr, "%s/z_lr", cfg->name);
    }
    net_cond.forward = net_uncond.forward = expert_forward;
    net_cond.ctx = &r->cond;
    net_uncond.ctx = &r->uncond;
    d_cond = edm_denoiser(&e_cond, &cfg->experts, net_cond, cfg->sigma_data, 3, R, R, z_lr, 3);
    if (guided) d_uncond = edm_denoiser(&e_uncond, &cfg->experts, net_uncond, cfg->sigma_data, 3, R, R, z_lr, 3);
    if (dumped) {
        d_cond = branch_tap(&r->cond, &sd, d_cond);
        if (guided) d_uncond = branch_tap(&r->uncond, &sd, d_uncond);
    }
    d_guided = cfg_denoiser(&g, &d_cond, guided ? &d_uncond : NULL, r->cfg_scale);
    if (dumped) {
        sd.guided = d_guided;
        d_guided.fn = stage_dump_denoise;
        d_guided.ctx = &sd;
        hook.step = stage_dump_step;
        hook.noise = stage_dump_noise;
        hook.ctx = &sd;
    }

    memset(&t, 0, sizeof t);
    t.inner = d_guided;
    t.stage = r->stage;
    t.progress = progress;
    t.heun = r->sampler.kind == SAMPLER_HEUN;
    t.start = seconds_now();
    t.ev.stage = cfg->name;
    t.ev.stage_index = s;
    t.ev.n_stages = n_stages;
    t.ev.image = image;
    t.ev.images = images;
    t.ev.steps = r->sampler.steps;
    t.ev.experts = cfg->experts.n;
    {
        Denoiser tracked;
        tracked.fn = tracked_denoise;
        tracked.ctx = &t;
        tracked.n = d_guided.n;
        stage_sample(&r->sampler, &tracked, seed, 0, s, init, dumped ? &hook : NULL, out);
    }
    r->cond.dump = r->uncond.dump = NULL;
    t.ev.finished = 1;
    t.ev.elapsed = seconds_now() - t.start;
    if (progress) progress->fn(progress->ctx, &t.ev);

    cfg_free(&g);
    edm_denoiser_free(&e_cond);
    if (guided) edm_denoiser_free(&e_uncond);
    free(z_lr);
    if (r->cond.failed) return errorf(err, "stage '%s': %s", cfg->name, r->cond.err);
    if (r->uncond.failed) return errorf(err, "stage '%s': %s", cfg->name, r->uncond.err);
    return 0;
}

/* ================================================================ the run ====================== */

/* Everything one run prepares before sampling: encodings, paint maps, each stage's branches. */
typedef struct {
    const Model   *model;
    const Options *opt;
    Arena          arena[2];                   /* [0] encoders and conditional branches, [1] unconditional
                                                  branches: the two branches of CFG run side by side */
    TextEncoding   prompt, negative;
    float         *style;                      /* clip_image_embed [E], or NULL */
    Paint          paint[PAINT_MAX];
    int            n_paint;
    float         *init;                       /* --noise [3, R0, R0], or NULL */
    StageRun       stage[CASCADE_MAX];
    Dumper         dump;
} Run;

static void run_free(Run *r)
{
    int i;
    for (i = 0; i < r->model->n_stages; i++) {
        branch_free(&r->stage[i].cond);
        branch_free(&r->stage[i].uncond);
        painting_free(&r->stage[i].paint);
        free(r->stage[i].aug);
    }
    for (i = 0; i < r->n_paint; i++) {
        free(r->paint[i].words);
        free(r->paint[i].mask);
        free(r->paint[i].column);
    }
    text_encoding_free(&r->prompt);
    text_encoding_free(&r->negative);
    free(r->style);
    free(r->init);
    arena_free(&r->arena[0]);
    arena_free(&r->arena[1]);
    dump_free(&r->dump);
}

/* The stage's sampler settings: the blob's defaults (S.steps, S.sampler, S.cfg_scale, ...), then the
 * command line's, in the order given. */
static int stage_settings(StageRun *r, const Options *o, char err[EDIFF_ERR])
{
    const StageConfig *cfg = &r->stage->cfg;
    char why[EDIFF_ERR];
    int i;
    r->sampler = cfg->sampler;
    r->cfg_scale = cfg->cfg_scale;
    for (i = 0; i < o->n_set; i++) {
        const Setting *s = &o->set[i];
        if (s->stage[0] && strcmp(s->stage, cfg->name) != 0) continue;
        switch (s->what) {
        case SET_STEPS: r->sampler.steps = (int)s->value; break;
        case SET_SAMPLER: r->sampler.kind = (int)s->value; break;
        case SET_CFG: r->cfg_scale = s->value; break;
        case SET_SIGMA_MIN: r->sampler.sigma_min = s->value; break;
        case SET_SIGMA_MAX: r->sampler.sigma_max = s->value; break;
        case SET_RHO: r->sampler.rho = s->value; break;
        case SET_S_CHURN: r->sampler.s_churn = s->value; break;
        case SET_S_NOISE: r->sampler.s_noise = s->value; break;
        case SET_ETA: r->sampler.eta = s->value; break;
        }
    }
    if (sampler_check(&r->sampler, why)) return errorf(err, "stage '%s': %s", cfg->name, why);
    return 0;
}

/* The arenas of the run, sized once: the largest of the encoders' and every expert's needs. */
static size_t run_arena_bytes(const Model *m)
{
    size_t need = 0, b;
    int s, k, n_ctx = cond_context_rows(m->L5, CLIP_CONTEXT);
    if (m->use_t5 && (b = t5_arena_bytes(&m->t5, m->L5)) > need) need = b;
    if (m->use_clip_text && (b = clip_text_arena_bytes(&m->clip_text, CLIP_CONTEXT)) > need) need = b;
    if (m->use_clip_image && (b = clip_vision_arena_bytes(&m->clip_vision)) > need) need = b;
    for (s = 0; s < m->n_stages; s++)
        for (k = 0; k < m->stage[s].cfg.experts.n; k++) {
            const Stage *st = &m->stage[s];
            if ((b = unet_arena_bytes(&st->unet[k], st->cfg.resolution, st->cfg.resolution, n_ctx)) > need) need = b;
        }
    return need;
}

/* A branch's conditioning per expert k, the outputs (context, class vector) of module S.k.cond:
 * S/BRANCH/S.k.cond.context [1, n_ctx, D], S/BRANCH/S.k.cond.class_labels [1, C]. */
static void dump_branch(Dumper *d, const Branch *b)
{
    const StageConfig *cfg;
    int k;
    if (!d->dir || !b->context) return;
    cfg = &b->stage->cfg;
    for (k = 0; k < cfg->experts.n; k++) {
        dump1(d, DT_F32, b->context[k], 2, b->n_ctx, b->stage->cond[k].dim, 0, "%s/%s/%s.%d.cond.context", cfg->name,
              b->name, cfg->name, k);
        dump1(d, DT_F32, b->class_vec[k], 1, b->stage->unet[k].config.class_embed_dim, 0, 0,
              "%s/%s/%s.%d.cond.class_labels", cfg->name, b->name, cfg->name, k);
    }
}

/* Conditioning of each stage (docs/sampling.md §5): the conditional branch sees every encoding the run
 * has (and the paint maps); the unconditional one the negative prompt's text or none, and the style
 * embedding only in super-resolution stages. SR stages append aug_features to the class vector. */
static void prepare_stage(Run *r, int s)
{
    const Model *m = r->model;
    StageRun *sr = &r->stage[s];
    const StageConfig *cfg = &sr->stage->cfg;
    Conditioning cond, neg, uncond;
    char name[128];
    int i;
    cond.t5_tokens = r->prompt.t5_tokens;
    cond.clip_tokens = r->prompt.clip_tokens;
    cond.clip_text_embed = r->prompt.clip_text_embed;
    cond.clip_image_embed = r->style;
    neg = cond;
    neg.t5_tokens = r->negative.t5_tokens;
    neg.clip_tokens = r->negative.clip_tokens;
    neg.clip_text_embed = r->negative.clip_text_embed;
    uncond = cfg_uncond(&cond, r->opt->negative ? &neg : NULL, cfg->sr);
    if (cfg->sr) {
        sr->aug = xmalloc((size_t)cfg->aug_dim * sizeof(float));
        aug_features(sr->aug, cfg->aug_sigma, cfg->aug_dim);
    }
    branch_init(&sr->cond, "cond", sr->stage, &cond, m->L5, sr->aug, &r->arena[0]);
    if (sr->cfg_scale != 1.0) branch_init(&sr->uncond, "uncond", sr->stage, &uncond, m->L5, sr->aug, &r->arena[1]);
    if (r->n_paint) {
        build_paint(sr->stage, r->paint, r->n_paint, sr->cond.n_ctx, &sr->paint);
        sr->cond.paint = &sr->paint;
        sr->cond.paint_weight = r->opt->paint_weight;
    }
    dump_branch(&r->dump, &sr->cond);
    dump_branch(&r->dump, &sr->uncond);
    for (i = 0; r->dump.dir && i < sr->paint.n_maps; i++) {
        int64_t shape[2];
        shape[0] = (int64_t)sr->paint.maps[i].h * sr->paint.maps[i].w;
        shape[1] = sr->cond.n_ctx;
        snprintf(name, sizeof name, "%s/paint.%dx%d", cfg->name, sr->paint.maps[i].h, sr->paint.maps[i].w);
        dump_array(&r->dump, name, DT_F32, sr->paint.maps[i].A, 2, shape);
    }
}

/* Reads and checks every input file and the prompt's paint words, before any long work. */
static int run_inputs(Run *r, Image *style, char err[EDIFF_ERR])
{
    const Model *m = r->model;
    const Options *o = r->opt;
    int i, R0 = m->stage[0].cfg.resolution;
    if (tokenize_prompt(m, o->prompt, &r->prompt, err)) return -1;
    if (o->negative && tokenize_prompt(m, o->negative, &r->negative, err)) return -1;
    for (i = 0; i < o->n_paint; i++) {               /* WORDS=MASK.png, split at the first '=' */
        Paint *p = &r->paint[r->n_paint++];
        size_t n = strcspn(o->paint[i], "=");
        p->words = xmalloc(n + 1);
        memcpy(p->words, o->paint[i], n);
        p->words[n] = 0;
        p->path = o->paint[i] + n + 1;
        if (paint_columns(m, &r->prompt, p, cond_context_rows(m->L5, CLIP_CONTEXT), err) || read_mask(p, err))
            return -1;
    }
    if (o->style && (regular_file(o->style, err) || png_read(o->style, style, err))) return -1;
    if (o->noise && (regular_file(o->noise, err) || noise_load(o->noise, 3, R0, R0, &r->init, err))) return -1;
    return 0;
}

/* Everything before sampling: arenas, encoders, style, each stage's conditioning. */
static int run_prepare(Run *r, const Image *style, char err[EDIFF_ERR])
{
    const Model *m = r->model;
    int s;
    size_t bytes = run_arena_bytes(m);
    if (arena_init(&r->arena[0], bytes, err) || arena_init(&r->arena[1], bytes, err)) return -1;
    if (encode_prompt(m, &r->prompt, &r->arena[0], &r->dump, "prompt", err)) return -1;
    if (r->opt->negative && encode_prompt(m, &r->negative, &r->arena[0], &r->dump, "negative", err)) return -1;
    if (r->opt->style && encode_style(m, style, &r->arena[0], &r->dump, &r->style, err)) return -1;
    for (s = 0; s < m->n_stages; s++) prepare_stage(r, s);
    return r->dump.failed ? errorf(err, "%s", r->dump.err) : 0;
}

/* ================================================================ output ======================= */

/* A growable string. */
typedef struct {
    char  *p;
    size_t len, cap;
} Text;

static void text_add(Text *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = 2 * (t->len + (size_t)n + 1);
        t->p = realloc(t->p, t->cap);
        if (!t->p) { fprintf(stderr, "ediff: out of memory\n"); exit(1); }
    }
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* ", KEY: VALUE", the value quoted (JSON-style) when it holds a comma, colon, quote or newline, as
 * A1111 writes its infotext. */
static void text_key(Text *t, const char *key, const char *value)
{
    const char *c;
    text_add(t, ", %s: ", key);
    if (!strpbrk(value, ",:\"\n\\")) {
        text_add(t, "%s", value);
        return;
    }
    text_add(t, "\"");
    for (c = value; *c; c++) text_add(t, *c == '"' ? "\\\"" : *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" : "%c", *c);
    text_add(t, "\"");
}

/* The shortest decimal that reads back as x. */
static const char *number(char buf[32], double x)
{
    int digits;
    for (digits = 1; digits < 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) return buf;
    }
    snprintf(buf, 32, "%.17g", x);
    return buf;
}

/* The PNG's "parameters" text, in A1111's layout so that tools reading that can show it:
 *   PROMPT
 *   Negative prompt: NEGATIVE
 *   Steps: 18, Sampler: heun, CFG scale: 3, Seed: 42, Model: ediff-tiny, Model hash: 1a2b3c4d, ...
 * Later stages' settings carry the stage name ("sr Steps: 10"); docs/cli.md lists every key. */
static char *parameters_text(const Run *r, uint64_t seed)
{
    const Model *m = r->model;
    const Options *o = r->opt;
    Text t = {NULL, 0, 0};
    char key[96], buf[32];
    int s, i;
    text_add(&t, "%s\n", o->prompt);
    if (o->negative) text_add(&t, "Negative prompt: %s\n", o->negative);
    for (s = 0; s < m->n_stages; s++) {
        const StageRun *sr = &r->stage[s];
        const SamplerConfig *c = &sr->sampler, *d = &sr->stage->cfg.sampler;
        const char *pre = s ? sr->stage->cfg.name : "";
        const char *sep = s ? " " : "";
        struct { const char *name; double value, dflt; } extra[6];
        extra[0].name = "Sigma min"; extra[0].value = c->sigma_min; extra[0].dflt = d->sigma_min;
        extra[1].name = "Sigma max"; extra[1].value = c->sigma_max; extra[1].dflt = d->sigma_max;
        extra[2].name = "Rho"; extra[2].value = c->rho; extra[2].dflt = d->rho;
        extra[3].name = "S churn"; extra[3].value = c->s_churn; extra[3].dflt = d->s_churn;
        extra[4].name = "S noise"; extra[4].value = c->s_noise; extra[4].dflt = d->s_noise;
        extra[5].name = "Eta"; extra[5].value = c->eta; extra[5].dflt = d->eta;
        if (s) text_add(&t, ", ");
        text_add(&t, "%s%sSteps: %d, %s%sSampler: %s, %s%sCFG scale: %s", pre, sep, c->steps, pre, sep,
                 sampler_name(c->kind), pre, sep, number(buf, sr->cfg_scale));
        for (i = 0; i < 6; i++)
            if (extra[i].value != extra[i].dflt) {
                snprintf(key, sizeof key, "%s%s%s", pre, sep, extra[i].name);
                text_key(&t, key, number(buf, extra[i].value));
            }
        if (s == 0) {
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
            text_key(&t, "Seed", buf);
            text_key(&t, "Model", m->name);
            snprintf(buf, sizeof buf, "%08x", (unsigned)m->crc);
            text_key(&t, "Model hash", buf);
        }
    }
    text_add(&t, ", Stages: ");
    for (s = 0; s < m->n_stages; s++) text_add(&t, "%s%s", s ? "+" : "", m->stage[s].cfg.name);
    if (o->style) text_key(&t, "Style image", o->style);
    for (i = 0; i < o->n_paint; i++) text_key(&t, "Paint", o->paint[i]);
    if (o->n_paint) text_key(&t, "Paint weight", number(buf, o->paint_weight));
    if (o->no_t5 || o->no_clip_text)
        text_key(&t, "Dropped", o->no_t5 && o->no_clip_text ? "T5+CLIP text" : o->no_t5 ? "T5" : "CLIP text");
    if (o->noise) text_key(&t, "Noise", o->noise);
    text_key(&t, "Version", "ediff " EDIFF_VERSION);
    return t.p;
}

/* The parameters text can be written (PNG text must be UTF-8): encoded once into a 1x1 PNG. Only the
 * seed, ASCII digits, differs from image to image. */
static int check_text(const Run *r)
{
    char *text = parameters_text(r, r->opt->seed), err[EDIFF_ERR];
    const char *chunks[3];
    uint8_t pixel[3] = {0, 0, 0}, *png = NULL;
    size_t n;
    int rc;
    chunks[0] = "parameters";
    chunks[1] = text;
    chunks[2] = NULL;
    rc = png_encode(pixel, 1, 1, 3, chunks, &png, &n, "parameters", err);
    free(png);
    free(text);
    return rc;
}

/* A JSON string: quotes, backslashes and control characters escaped (UTF-8 passes through). */
static void json_string(Text *t, const char *s)
{
    if (!s) {
        text_add(t, "null");
        return;
    }
    text_add(t, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') text_add(t, "\\%c", c);
        else if (c < 0x20) text_add(t, "\\u%04x", c);
        else text_add(t, "%c", c);
    }
    text_add(t, "\"");
}

/* A number that reads back exactly; infinity as the string "inf" (JSON has no infinity). */
static void json_number(Text *t, double x)
{
    char buf[32];
    if (x == HUGE_VAL) text_add(t, "\"inf\"");
    else text_add(t, "%s", number(buf, x));
}

/* DIR/run.json of --dump: the invocation, every setting the run used (per stage, as resolved from the
 * blob's defaults and the flags), and the manifest: the names of the tensors written, in the order they
 * were computed. weights/crosscheck.py reruns the pipeline in PyTorch from this (docs/crosscheck.md). */
static int write_run_json(const Run *r, char err[EDIFF_ERR])
{
    const Model *m = r->model;
    const Options *o = r->opt;
    Text t = {NULL, 0, 0};
    char path[4200];
    FILE *f;
    int i, s, k, ok;
    text_add(&t, "{\n  \"format\": \"ediff-dump 1\",\n  \"version\": \"%s\",\n  \"argv\": [", EDIFF_VERSION);
    for (i = 0; i < o->argc; i++) {
        if (i) text_add(&t, ", ");
        json_string(&t, o->argv[i]);
    }
    text_add(&t, "],\n  \"model\": ");
    json_string(&t, o->model);
    text_add(&t, ",\n  \"model_name\": ");
    json_string(&t, m->name);
    text_add(&t, ",\n  \"model_hash\": \"%08x\",\n  \"prompt\": ", (unsigned)m->crc);
    json_string(&t, o->prompt);
    text_add(&t, ",\n  \"negative_prompt\": ");
    json_string(&t, o->negative);
    text_add(&t, ",\n  \"seed\": %llu,\n  \"style_image\": ", (unsigned long long)o->seed);
    json_string(&t, o->style);
    text_add(&t, ",\n  \"noise\": ");
    json_string(&t, o->noise);
    text_add(&t, ",\n  \"paint\": [");
    for (i = 0; i < o->n_paint; i++) {
        if (i) text_add(&t, ", ");
        json_string(&t, o->paint[i]);
    }
    text_add(&t, "],\n  \"paint_weight\": ");
    json_number(&t, o->paint_weight);
    text_add(&t, ",\n  \"no_t5\": %s,\n  \"no_clip_text\": %s,\n  \"t5_max_tokens\": %d,\n  \"dump_steps\": ",
             o->no_t5 ? "true" : "false", o->no_clip_text ? "true" : "false", m->L5);
    json_string(&t, o->dump_steps ? o->dump_steps : "0,last");
    text_add(&t, ",\n  \"dump_filter\": ");
    json_string(&t, o->dump_filter);
    text_add(&t, ",\n  \"stages\": [");
    for (s = 0; s < m->n_stages; s++) {
        const StageRun *sr = &r->stage[s];
        const StageConfig *cfg = &sr->stage->cfg;
        const SamplerConfig *c = &sr->sampler;
        struct { const char *key; double value; } num[11];
        num[0].key = "sigma_min"; num[0].value = c->sigma_min;
        num[1].key = "sigma_max"; num[1].value = c->sigma_max;
        num[2].key = "rho"; num[2].value = c->rho;
        num[3].key = "s_churn"; num[3].value = c->s_churn;
        num[4].key = "s_tmin"; num[4].value = c->s_tmin;
        num[5].key = "s_tmax"; num[5].value = c->s_tmax;
        num[6].key = "s_noise"; num[6].value = c->s_noise;
        num[7].key = "eta"; num[7].value = c->eta;
        num[8].key = "cfg_scale"; num[8].value = sr->cfg_scale;
        num[9].key = "sigma_data"; num[9].value = cfg->sigma_data;
        num[10].key = "aug_sigma"; num[10].value = cfg->aug_sigma;
        text_add(&t, "%s\n    {\"name\": ", s ? "," : "");
        json_string(&t, cfg->name);
        text_add(&t, ", \"index\": %d, \"resolution\": %d, \"sr\": %s, \"aug_dim\": %d, \"sampler\": \"%s\", \"steps\": %d",
                 s, cfg->resolution, cfg->sr ? "true" : "false", cfg->aug_dim, sampler_name(c->kind), c->steps);
        for (i = 0; i < 11; i++) {
            text_add(&t, ", \"%s\": ", num[i].key);
            json_number(&t, num[i].value);
        }
        text_add(&t, ", \"experts\": [");
        for (k = 0; k < cfg->experts.n; k++) {
            text_add(&t, "%s[", k ? ", " : "");
            json_number(&t, cfg->experts.sigma_lo[k]);
            text_add(&t, ", ");
            json_number(&t, cfg->experts.sigma_hi[k]);
            text_add(&t, "]");
        }
        text_add(&t, "]}");
    }
    text_add(&t, "\n  ],\n  \"tensors\": [");
    for (i = 0; i < r->dump.n_names; i++) {
        text_add(&t, "%s\n    ", i ? "," : "");
        json_string(&t, r->dump.names[i]);
    }
    text_add(&t, "\n  ]\n}\n");
    snprintf(path, sizeof path, "%s/run.json", o->dump);
    ok = (f = fopen(path, "wb")) != NULL;
    if (ok) ok = fwrite(t.p, 1, t.len, f) == t.len;
    if (f && fclose(f) != 0) ok = 0;
    free(t.p);
    return ok ? 0 : errorf(err, "%s: cannot write", path);
}

/* Image j of a batch: j = 0 writes `path` itself, j > 0 inserts "-j" before a ".png" extension
 * (out.png, out-1.png, out-2.png, ...) or appends it. */
static void output_name(char *buf, size_t n, const char *path, int j)
{
    size_t len = strlen(path);
    int ext = len >= 4 && (strcmp(path + len - 4, ".png") == 0 || strcmp(path + len - 4, ".PNG") == 0);
    if (j == 0) snprintf(buf, n, "%s", path);
    else if (ext) snprintf(buf, n, "%.*s-%d%s", (int)(len - 4), path, j, path + len - 4);
    else snprintf(buf, n, "%s-%d", path, j);
}

/* The last stage's [3, R, R] as an 8-bit RGB PNG (written through a temporary file and a rename). */
static int write_image(const char *path, const float *x, int R, const char *parameters, char err[EDIFF_ERR])
{
    uint8_t *rgb = xmalloc((size_t)3 * R * R);
    const char *text[3];
    int rc;
    text[0] = "parameters";
    text[1] = parameters;
    text[2] = NULL;
    image_to_rgb8(rgb, x, R, R);
    rc = png_write(path, rgb, R, R, 3, text, err);
    free(rgb);
    return rc;
}

/* Image j of the run: every stage in turn, each from the previous one's output, then the PNG.
 * Image j uses seed + j (so each PNG's "Seed" reproduces it alone); every stage draws from its own
 * streams of that seed (docs/sampling.md §7). */
static int generate(Run *r, int j, const Progress *progress, const char *path, char err[EDIFF_ERR])
{
    const Model *m = r->model;
    uint64_t seed = r->opt->seed + (uint64_t)j;
    float *prev = NULL, *out = NULL;
    int s, lr = 0, rc = 0;
    char *parameters;
    for (s = 0; s < m->n_stages && rc == 0; s++) {
        int R = m->stage[s].cfg.resolution;
        out = xmalloc((size_t)3 * R * R * sizeof(float));
        rc = run_stage(&r->stage[s], s, m->n_stages, seed, s == 0 ? r->init : NULL, prev, lr, progress, j,
                       r->opt->batch, j == 0 ? &r->dump : NULL, out, err);
        if (j == 0 && rc == 0) dump1(&r->dump, DT_F32, out, 3, 3, R, R, "%s/out", m->stage[s].cfg.name);
        free(prev);
        prev = out;
        lr = R;
    }
    if (rc == 0 && j == 0 && r->dump.dir) rc = write_run_json(r, err);
    if (rc == 0 && r->dump.failed) rc = errorf(err, "%s", r->dump.err);
    if (rc == 0) {
        parameters = parameters_text(r, seed);
        rc = write_image(path, prev, lr, parameters, err);
        free(parameters);
    }
    free(prev);
    return rc;
}

/* ================================================================ the command line ============= */

enum { F_PROMPT, F_NEGATIVE, F_FROM_PNG, F_OUTPUT, F_BATCH, F_SEED, F_MODEL, F_STEPS, F_SAMPLER, F_CFG, F_SIGMA_MIN,
       F_SIGMA_MAX, F_RHO, F_S_CHURN, F_S_NOISE, F_ETA, F_STAGE, F_NO_SR, F_NOISE, F_STYLE, F_NO_T5,
       F_NO_CLIP_TEXT, F_PAINT, F_PAINT_WEIGHT, F_THREADS, F_DUMP, F_DUMP_STEPS, F_DUMP_FILTER, F_VERBOSE, F_HELP,
       F_VERSION };

/* Every flag, in --help order; id < 0 is a heading. --help is printed from this table. */
typedef struct {
    int         id;
    const char *short_name, *long_name, *arg, *help;
} Flag;
static const Flag flags[] = {
    {-1, NULL, NULL, NULL, "Prompt and output:"},
    {F_PROMPT, "-p", "--prompt", "TEXT", "the prompt (or give it as the first argument)"},
    {F_NEGATIVE, "-n", "--negative-prompt", "TEXT",
     "text guidance steers away from: it replaces the dropped text of CFG's unconditional branch (default none)"},
    {F_FROM_PNG, NULL, "--from-png", "FILE.png", "the prompt, seed and settings of a PNG ediff wrote (its "
     "parameters text); every other flag overrides them"},
    {F_OUTPUT, "-o", "--output", "FILE", "the PNG to write (default " DEFAULT_OUTPUT "); image j > 0 of a batch "
     "goes to FILE-j.png"},
    {F_BATCH, NULL, "--batch-count", "N", "number of images, 1..10000, with seeds SEED, SEED+1, ... (default 1)"},
    {F_SEED, "-s", "--seed", "N", "0..18446744073709551615, or -1 for a random one (default 42)"},
    {F_MODEL, NULL, "--model", "FILE", "the weight blob (default " DEFAULT_MODEL ", here or beside the program)"},
    {-1, NULL, NULL, NULL, "Sampling (VALUE sets every stage, STAGE=VALUE one stage, e.g. --steps sr=10; "
     "defaults are the model's):"},
    {F_STEPS, NULL, "--steps", "N", "sampler steps, 1..10000 (ddpm 1..1000)"},
    {F_SAMPLER, NULL, "--sampler", "NAME", "heun, euler, euler_a, ddpm or dpmpp2m"},
    {F_CFG, NULL, "--cfg-scale", "W", "classifier-free guidance scale, 0..100; 1 = no guidance"},
    {F_SIGMA_MIN, NULL, "--sigma-min", "S", "lowest noise level of the Karras schedule (EDM's 0.002)"},
    {F_SIGMA_MAX, NULL, "--sigma-max", "S", "highest noise level (EDM's 80)"},
    {F_RHO, NULL, "--rho", "R", "Karras schedule exponent (7)"},
    {F_S_CHURN, NULL, "--s-churn", "X", "stochastic churn of heun and euler, >= 0 (0: deterministic)"},
    {F_S_NOISE, NULL, "--s-noise", "X", "noise scale of churn and ancestral steps (1)"},
    {F_ETA, NULL, "--eta", "X", "ancestral noise of euler_a, >= 0 (1)"},
    {-1, NULL, NULL, NULL, "Cascade:"},
    {F_STAGE, NULL, "--stage", "NAME", "run the alternative stage NAME in place of the one it replaces (the "
     "model's stage_alternatives; base_single is the single-model control of the expert ensemble)"},
    {F_NO_SR, NULL, "--no-sr", NULL, "stop after the first stage (the image has its resolution)"},
    {F_NOISE, NULL, "--noise", "FILE.npy", "initial noise n of the first stage, x = sigma_0 n, shape [3,H,W] or "
     "[1,3,H,W] (to match a PyTorch run)"},
    {-1, NULL, NULL, NULL, "Conditioning (eDiff-I 4.2, 4.3):"},
    {F_STYLE, NULL, "--style-image", "FILE.png", "style reference: its CLIP image embedding conditions the image"},
    {F_NO_T5, NULL, "--no-t5", NULL, "drop the T5 text embeddings"},
    {F_NO_CLIP_TEXT, NULL, "--no-clip-text", NULL, "drop the CLIP text embeddings (tokens and pooled)"},
    {F_PAINT, NULL, "--paint", "WORDS=MASK.png", "paint-with-words: the prompt's WORDS go where MASK (any size, "
     "any PNG type) is not black; repeatable"},
    {F_PAINT_WEIGHT, NULL, "--paint-weight", "W", "w' of the attention bias w' ln(1+sigma) max(QK^T) A, 0..100 "
     "(default 0.4)"},
    {-1, NULL, NULL, NULL, "Run:"},
    {F_THREADS, "-t", "--threads", "N", "threads, 1..1024 (default: all cores); the image does not depend on it"},
    {F_DUMP, NULL, "--dump", "DIR", "write the first image's intermediate tensors to DIR as .npy files named after "
     "their modules, and DIR/run.json (settings, tensor list): cross-check with weights/crosscheck.py"},
    {F_DUMP_STEPS, NULL, "--dump-steps", "LIST", "sampler steps whose denoiser calls --dump writes in full (UNet "
     "modules, expert, sigma, scalings, CFG branches): N, A-B, last, all, none, comma-separated (default 0,last)"},
    {F_DUMP_FILTER, NULL, "--dump-filter", "PATTERNS", "write only the tensors whose name matches one of the "
     "comma-separated patterns (* and ? wildcards over the whole name, else a substring)"},
    {F_VERBOSE, "-v", "--verbose", NULL, "print the settings, and progress even when stderr is not a terminal"},
    {F_HELP, "-h", "--help", NULL, "print this help"},
    {F_VERSION, NULL, "--version", NULL, "print the version"},
};
#define N_FLAGS (int)(sizeof flags / sizeof flags[0])

/* --help: usage, then every flag with its argument and default, words wrapped at 100 columns. */
static void print_help(FILE *f)
{
    int i;
    fprintf(f, "usage: ediff [options] PROMPT          generate an image (eDiff-I: T5 + CLIP conditioning, an ensemble\n"
               "                                       of expert denoisers per stage, super-resolution cascade)\n"
               "       ediff info FILE                 print a blob's metadata and tensor table\n"
               "       ediff tokenize [--model FILE] clip|t5 TEXT\n"
               "                                       print the token ids of TEXT on one line (clip: the 77 of\n"
               "                                       clip.tokenize; t5: EncodeAsIds + </s>)\n"
               "       ediff tokenize [--model FILE] --cases FILE.tsv\n"
               "                                       check every case of a tokenizer case file\n"
               "       ediff --help | --version\n");
    for (i = 0; i < N_FLAGS; i++) {
        const Flag *g = &flags[i];
        const char *w = g->help;
        char left[64];
        int col;
        if (g->id < 0) {
            fprintf(f, "\n%s\n", g->help);
            continue;
        }
        snprintf(left, sizeof left, "  %s%s%s%s%s", g->short_name ? g->short_name : "", g->short_name ? ", " : "    ",
                 g->long_name, g->arg ? " " : "", g->arg ? g->arg : "");
        col = fprintf(f, "%-31s", left);
        if (col > 31) col = fprintf(f, "\n%31s", "") - 1;
        while (*w) {                                  /* one word at a time */
            int len = (int)strcspn(w, " ");
            if (col + 1 + len > 110) col = fprintf(f, "\n%31s", "") - 1;
            col += fprintf(f, " %.*s", len, w);
            w += len;
            while (*w == ' ') w++;
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nExit status: 0 done, 1 bad input (a missing or invalid file, a word not in the prompt, a model\n"
               "that does not load, a failed write), 2 bad usage (unknown flag, missing or out-of-range value).\n"
               "Manual: docs/cli.md.\n");
}

static int usage_error(const char *fmt, ...)
{
    char msg[2 * EDIFF_ERR];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_error("%s (see ediff --help)", msg);
    return 2;
}

/* Strict numbers: the whole text, finite, inside [lo, hi]; else a usage error naming the flag. */
static int parse_long(const char *flag, const char *text, long lo, long hi, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (end == text || *end || errno == ERANGE) return usage_error("%s: '%s' is not an integer", flag, text);
    if (v < lo || v > hi) return usage_error("%s: %ld is out of range %ld..%ld", flag, v, lo, hi);
    *out = v;
    return 0;
}

static int parse_double(const char *flag, const char *text, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v == v) || v == HUGE_VAL || v == -HUGE_VAL)
        return usage_error("%s: '%s' is not a finite number", flag, text);
    if (v < lo || v > hi) return usage_error("%s: %s is out of range %g..%g", flag, text, lo, hi);
    *out = v;
    return 0;
}

/* -1 (random) or 0 .. 2^64 - 1. */
static int parse_seed(Options *o, const char *flag, const char *text)
{
    char *end;
    unsigned long long v;
    if (strcmp(text, "-1") == 0) {
        o->random_seed = 1;
        return 0;
    }
    errno = 0;
    v = strtoull(text, &end, 10);
    if (!(text[0] >= '0' && text[0] <= '9') || *end || errno == ERANGE)
        return usage_error("%s: '%s' is not -1 or an integer 0..18446744073709551615", flag, text);
    o->seed = (uint64_t)v;
    o->random_seed = 0;
    return 0;
}

/* A sampler setting: VALUE or STAGE=VALUE. */
static int parse_setting(Options *o, int what, const char *flag, const char *text)
{
    Setting *s = &o->set[o->n_set];
    const char *eq = strchr(text, '='), *value = eq ? eq + 1 : text;
    long n = 0;
    if (o->n_set == SETTINGS_MAX) return usage_error("more than %d sampler settings", SETTINGS_MAX);
    memset(s, 0, sizeof *s);
    s->what = what;
    if (eq && (eq == text || eq - text >= (long)sizeof s->stage))
        return usage_error("%s: '%s': expected VALUE or STAGE=VALUE", flag, text);
    if (eq) memcpy(s->stage, text, (size_t)(eq - text));
    switch (what) {
    case SET_STEPS:
        if (parse_long(flag, value, 1, 10000, &n)) return 2;
        s->value = (double)n;
        break;
    case SET_SAMPLER:
        if ((s->value = sampler_from_name(value)) < 0)
            return usage_error("%s: unknown sampler '%s' (heun, euler, euler_a, ddpm, dpmpp2m)", flag, value);
        break;
    case SET_CFG: if (parse_double(flag, value, 0, 100, &s->value)) return 2; break;
    case SET_SIGMA_MIN: case SET_SIGMA_MAX:
        if (parse_double(flag, value, 1e-10, 1e10, &s->value)) return 2;
        break;
    case SET_RHO: if (parse_double(flag, value, 1e-3, 1e3, &s->value)) return 2; break;
    default: if (parse_double(flag, value, 0, 1e6, &s->value)) return 2; break;   /* s_churn, s_noise, eta */
    }
    o->n_set++;
    return 0;
}

/* One flag and its value (NULL for switches). Returns 0, 2 (usage error) or -1 (help/version done). */
static int set_flag(Options *o, int id, const char *flag, const char *v)
{
    long n = 0;
    switch (id) {
    case F_PROMPT: o->prompt = v; break;
    case F_NEGATIVE: o->negative = v; break;
    case F_OUTPUT:
        if (!*v) return usage_error("%s: empty file name", flag);
        o->output = v;
        break;
    case F_BATCH: if (parse_long(flag, v, 1, 10000, &n)) return 2; o->batch = (int)n; break;
    case F_SEED: return parse_seed(o, flag, v);
    case F_MODEL: o->model = v; break;
    case F_STEPS: return parse_setting(o, SET_STEPS, flag, v);
    case F_SAMPLER: return parse_setting(o, SET_SAMPLER, flag, v);
    case F_CFG: return parse_setting(o, SET_CFG, flag, v);
    case F_SIGMA_MIN: return parse_setting(o, SET_SIGMA_MIN, flag, v);
    case F_SIGMA_MAX: return parse_setting(o, SET_SIGMA_MAX, flag, v);
    case F_RHO: return parse_setting(o, SET_RHO, flag, v);
    case F_S_CHURN: return parse_setting(o, SET_S_CHURN, flag, v);
    case F_S_NOISE: return parse_setting(o, SET_S_NOISE, flag, v);
    case F_ETA: return parse_setting(o, SET_ETA, flag, v);
    case F_STAGE: o->alternative = v; break;
    case F_NO_SR: o->no_sr = 1; break;
    case F_NOISE: o->noise = v; break;
    case F_STYLE: o->style = v; break;
    case F_NO_T5: o->no_t5 = 1; break;
    case F_NO_CLIP_TEXT: o->no_clip_text = 1; break;
    case F_PAINT:
        if (o->n_paint == PAINT_MAX) return usage_error("more than %d --paint flags", PAINT_MAX);
        if (!strchr(v, '=') || v[0] == '=' || !strchr(v, '=')[1])
            return usage_error("%s: '%s': expected WORDS=MASK.png", flag, v);
        o->paint[o->n_paint++] = v;
        break;
    case F_PAINT_WEIGHT: return parse_double(flag, v, 0, 100, &o->paint_weight) ? 2 : 0;
    case F_THREADS: if (parse_long(flag, v, 1, 1024, &n)) return 2; o->threads = (int)n; break;
    case F_DUMP:
        if (!*v) return usage_error("%s: empty directory name", flag);
        o->dump = v;
        break;
    case F_DUMP_STEPS: o->dump_steps = v; break;
    case F_DUMP_FILTER:
        if (!*v) return usage_error("%s: empty pattern", flag);
        o->dump_filter = v;
        break;
    case F_VERBOSE: o->verbose = 1; break;
    case F_HELP: print_help(stdout); return -1;
    case F_VERSION: printf("ediff %s\n", EDIFF_VERSION); return -1;
    }
    return 0;
}

/* The value of a quoted parameters-text value (v at its opening quote) unescaped in place; returns
 * where the text goes on after the closing quote. */
static char *unquote(char *v)
{
    char *r = v + 1, *w = v;
    for (; *r && *r != '"'; r++) *w++ = *r == '\\' && r[1] ? (++r, *r == 'n' ? '\n' : *r) : *r;
    *w = 0;
    return *r ? r + 1 : r;
}

/* --from-png FILE: the prompt, negative prompt, seed and settings of the parameters text ediff wrote
 * (parameters_text's layout; an A1111 text works as far as its keys are ediff's). Unknown keys are
 * ignored. The strings stay in o->from_text. Returns 0, 1 (unreadable) or 2 (a bad value). */
static int read_parameters(Options *o, const char *path)
{
    static const struct { const char *key; int what; } knobs[] = {
        {"Steps", SET_STEPS}, {"Sampler", SET_SAMPLER}, {"CFG scale", SET_CFG}, {"Sigma min", SET_SIGMA_MIN},
        {"Sigma max", SET_SIGMA_MAX}, {"Rho", SET_RHO}, {"S churn", SET_S_CHURN}, {"S noise", SET_S_NOISE}, {"Eta", SET_ETA}};
    Image img;
    char err[EDIFF_ERR], setting[256], *line, *neg, *key[64], *val[64], first[64] = "";
    int n = 0, i, k, rc = 0;
    if (o->from_text) return usage_error("--from-png given twice");
    if (regular_file(path, err) || png_read(path, &img, err)) return print_error("%s", err), 1;
    o->from_text = img.parameters;
    img.parameters = NULL;
    image_free(&img);
    if (!o->from_text || !(line = strrchr(o->from_text, '\n')))
        return print_error("--from-png %s: no ediff parameters text in it", path), 1;
    *line++ = 0;                                              /* the last line: KEY: VALUE, ... */
    o->prompt = o->from_text;
    if ((neg = strstr(o->from_text, "\nNegative prompt: "))) *neg = 0, o->negative = neg + 18;
    while (*line && n < 64) {
        char *colon = strstr(line, ": "), *end;
        if (!colon) break;
        *colon = 0;
        key[n] = line;
        val[n] = colon + 2;
        if (*val[n] == '"') end = unquote(val[n]);
        else if ((end = strstr(val[n], ", "))) *end = 0, end++;
        else end = val[n] + strlen(val[n]);
        if (!strcmp(key[n], "Stages")) snprintf(first, sizeof first, "%.*s", (int)strcspn(val[n], "+"), val[n]);
        n++;
        line = end + strspn(end, ", ");
    }
    for (i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(key[i]);
        for (k = 0; k < (int)(sizeof knobs / sizeof knobs[0]); k++) {
            size_t kl = strlen(knobs[k].key);
            if (len < kl || strcmp(key[i] + len - kl, knobs[k].key) || (len > kl && key[i][len - kl - 1] != ' ')) continue;
            if (len > kl) snprintf(setting, sizeof setting, "%.*s=%s", (int)(len - kl - 1), key[i], val[i]);
            else snprintf(setting, sizeof setting, "%s%s%s", first, first[0] ? "=" : "", val[i]);
            rc = parse_setting(o, knobs[k].what, "--from-png", setting);
        }
        if (!strcmp(key[i], "Seed")) rc = parse_seed(o, "--from-png Seed", val[i]);
        else if (!strcmp(key[i], "Style image")) o->style = val[i];
        else if (!strcmp(key[i], "Paint")) rc = set_flag(o, F_PAINT, "--from-png Paint", val[i]);
        else if (!strcmp(key[i], "Paint weight")) rc = set_flag(o, F_PAINT_WEIGHT, "--from-png Paint weight", val[i]);
        else if (!strcmp(key[i], "Noise")) o->noise = val[i];
        else if (!strcmp(key[i], "Stages")) o->from_stages = val[i];
        else if (!strcmp(key[i], "Dropped")) o->no_t5 = strstr(val[i], "T5") != NULL, o->no_clip_text = strstr(val[i], "CLIP text") != NULL;
    }
    return rc;
}

/* The command line into o: flags anywhere ("--flag value", "--flag=value" for long flags), the prompt
 * as -p or the one positional argument, "--" ends the flags. --from-png is read first (pass 0), so that
 * every other flag overrides it wherever it is. Returns 0, 1 or 2 (bad input or usage), -1 (help shown). */
static int parse_options(Options *o, int argc, char **argv)
{
    int i, k, rc, pass, flags_done;
    const char *png_prompt = NULL;
    memset(o, 0, sizeof *o);
    o->argc = argc;
    o->argv = argv;
    o->model = DEFAULT_MODEL;
    o->output = DEFAULT_OUTPUT;
    o->seed = DEFAULT_SEED;
    o->batch = 1;
    o->paint_weight = PAINT_WEIGHT;
    for (pass = 0; pass < 2; pass++) {
        if (pass == 1) {                                              /* the command line's prompt wins */
            png_prompt = o->prompt;
            o->prompt = NULL;
        }
        for (i = 1, flags_done = 0; i < argc; i++) {
            const char *a = argv[i], *value = NULL, *eq;
            const Flag *f = NULL;
            char name[64];
            if (flags_done || a[0] != '-' || a[1] == 0) {             /* the prompt */
                if (pass == 0) continue;
                if (o->prompt) return usage_error("more than one prompt ('%.40s' and '%.40s'); quote it", o->prompt, a);
                o->prompt = a;
                continue;
            }
            if (strcmp(a, "--") == 0) {
                flags_done = 1;
                continue;
            }
            eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;    /* --flag=value */
            snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
            for (k = 0; k < N_FLAGS && !f; k++)
                if (flags[k].id >= 0 && ((flags[k].short_name && strcmp(name, flags[k].short_name) == 0) ||
                                         strcmp(name, flags[k].long_name) == 0))
                    f = &flags[k];
            if (!f) return usage_error("unknown option '%s'", a);
            if (f->arg) {
                if (eq) value = eq + 1;
                else if (i + 1 < argc) value = argv[++i];
                else return usage_error("%s needs a value (%s)", name, f->arg);
            } else if (eq) {
                return usage_error("%s takes no value", name);
            }
            if ((f->id == F_FROM_PNG) != (pass == 0)) continue;
            if ((rc = f->id == F_FROM_PNG ? read_parameters(o, value) : set_flag(o, f->id, name, value)) != 0) return rc;
        }
    }
    if (!o->prompt) o->prompt = png_prompt;
    if (!o->prompt) return usage_error("no prompt: give it as the first argument or with -p (\"\" for none)");
    if ((o->dump_steps || o->dump_filter) && !o->dump)
        return usage_error("%s needs --dump DIR", o->dump_steps ? "--dump-steps" : "--dump-filter");
    if (o->dump_steps) {
        Dumper check;
        char err[EDIFF_ERR];
        if (dump_init(&check, NULL, NULL, o->dump_steps, err)) return usage_error("%s", err);
    }
    if (o->n_paint && o->no_t5 && o->no_clip_text)
        return usage_error("--paint needs a text conditioning, but --no-t5 and --no-clip-text drop both");
    return 0;
}

/* Every STAGE= of the settings must name a stage of this run. */
static int check_setting_stages(const Options *o, const Model *m)
{
    int i, s, found;
    for (i = 0; i < o->n_set; i++) {
        if (!o->set[i].stage[0]) continue;
        for (s = 0, found = 0; s < m->n_stages; s++) found |= strcmp(o->set[i].stage, m->stage[s].cfg.name) == 0;
        if (!found) {
            char names[256] = "";
            for (s = 0; s < m->n_stages; s++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", s ? ", " : "", m->stage[s].cfg.name);
            return usage_error("no stage '%s' in this run (stages: %s)", o->set[i].stage, names);
        }
    }
    return 0;
}

/* The output can be written (its directory exists and is writable; every image's path is a regular file
 * if it exists: the PNG replaces it by a rename, which must not replace a directory or a device such as
 * /dev/null) and the dump directory exists or can be made: checked before any long work. */
static int check_paths(const Options *o, char err[EDIFF_ERR])
{
    if (strlen(o->output) > 4000) return errorf(err, "-o: path too long");
#ifdef HAVE_POSIX
    {
        struct stat sb;
        char dir[4096], path[4096];
        const char *slash = strrchr(o->output, '/');
        int j;
        for (j = 0; j < o->batch; j++) {
            output_name(path, sizeof path, o->output, j);
            if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
                return errorf(err, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory" :
                            "exists and is not a regular file (a device or a pipe?)");
        }
        if (!slash) snprintf(dir, sizeof dir, ".");
        else snprintf(dir, sizeof dir, "%.*s", slash == o->output ? 1 : (int)(slash - o->output), o->output);
        if (access(dir, W_OK | X_OK) != 0)
            return errorf(err, "%s: cannot write to directory '%s' (%s)", o->output, dir, strerror(errno));
        if (o->dump && stat(o->dump, &sb) != 0 && mkdir(o->dump, 0777) != 0)
            return errorf(err, "--dump %s: cannot create the directory (%s)", o->dump, strerror(errno));
        if (o->dump && access(o->dump, W_OK | X_OK) != 0) return errorf(err, "--dump %s: not a writable directory", o->dump);
    }
#endif
    return 0;
}

/* Progress on stderr: one line per stage redrawn with '\r' on a terminal; with -v, also a line per
 * step when stderr is not a terminal. */
typedef struct {
    int tty, verbose;
} ProgressView;

static void show_progress(void *ctx, const ProgressEvent *e)
{
    const ProgressView *v = ctx;
    char image[32] = "", bar[21];
    int i, filled = e->steps ? 20 * (e->finished ? e->steps : e->step) / e->steps : 0, len;
    if (!v->tty && !(v->verbose && (e->step_done || e->finished))) return;
    if (e->images > 1) snprintf(image, sizeof image, "[%d/%d] ", e->image + 1, e->images);
    for (i = 0; i < 20; i++) bar[i] = i < filled ? '#' : '.';
    bar[20] = 0;
    if (e->finished) {
        len = fprintf(stderr, "%s%s%-8s [%s] %d/%d steps  %.1fs", v->tty ? "\r" : "", image, e->stage, bar, e->steps,
                      e->steps, e->elapsed);
    } else {
        len = fprintf(stderr, "%s%s%-8s [%s] %d/%d  sigma %.4g  expert %d/%d  %.1fs", v->tty ? "\r" : "", image, e->stage,
                      bar, e->step, e->steps, e->sigma, e->expert + 1, e->experts, e->elapsed);
    }
    if (v->tty) fprintf(stderr, "%*s", len < 90 ? 90 - len : 0, "");        /* erase the longer line before */
    if (!v->tty || e->finished) fprintf(stderr, "\n");
    fflush(stderr);
}

/* The images of the command line: model, inputs, conditioning, then each image's stages and PNG. */
static int generate_all(const Options *o)
{
    Model m;
    Run r;
    Image style;
    ProgressView view;
    Progress progress;
    char err[EDIFF_ERR], path[4096];
    int rc, j, s;
    double start = seconds_now();

    set_threads(o->threads);
    memset(&m, 0, sizeof m);
    memset(&r, 0, sizeof r);
    memset(&style, 0, sizeof style);
    if (model_load(&m, o, err)) {
        print_error("%s%s", err, m.blob_open || !strstr(o->model, DEFAULT_MODEL) ? "" :
                    " (the default model; give another with --model FILE)");
        model_free(&m);
        return 1;
    }
    if ((rc = check_setting_stages(o, &m)) != 0) {
        model_free(&m);
        return rc;
    }
    r.model = &m;
    r.opt = o;
    dump_init(&r.dump, o->dump, o->dump_filter, o->dump_steps, err);     /* the steps were checked */
    for (s = 0; s < m.n_stages; s++) {
        r.stage[s].stage = &m.stage[s];
        if (stage_settings(&r.stage[s], o, err)) {
            model_free(&m);
            return usage_error("%s", err);
        }
    }
    if (check_text(&r)) {
        model_free(&m);
        return usage_error("the prompt, negative prompt or a file name is not valid UTF-8 (the PNG's parameters "
                           "text must be)");
    }
    rc = run_inputs(&r, &style, err) || check_paths(o, err) || run_prepare(&r, &style, err);
    image_free(&style);
    view.tty = HAVE_TTY(2);
    view.verbose = o->verbose;
    progress.fn = show_progress;
    progress.ctx = &view;
    if (!rc && o->verbose) {
        fprintf(stderr, "ediff: model %s (%s, hash %08x), %d stage%s, seed %llu, %d thread%s\n", m.name, o->model,
                (unsigned)m.crc, m.n_stages, m.n_stages > 1 ? "s" : "", (unsigned long long)o->seed, get_threads(),
                get_threads() > 1 ? "s" : "");
        for (s = 0; s < m.n_stages; s++)
            fprintf(stderr, "ediff: stage %s: %dx%d, %d expert%s, %s, %d steps, cfg scale %g\n", m.stage[s].cfg.name,
                    m.stage[s].cfg.resolution, m.stage[s].cfg.resolution, m.stage[s].cfg.experts.n,
                    m.stage[s].cfg.experts.n > 1 ? "s" : "", sampler_name(r.stage[s].sampler.kind),
                    r.stage[s].sampler.steps, r.stage[s].cfg_scale);
    }
    for (j = 0; j < o->batch && !rc; j++) {
        output_name(path, sizeof path, o->output, j);
        rc = generate(&r, j, &progress, path, err) != 0;
        if (!rc && (view.tty || o->verbose)) fprintf(stderr, "ediff: wrote %s\n", path);
    }
    if (rc) print_error("%s", err);
    else if (view.tty || o->verbose) fprintf(stderr, "ediff: done in %.1fs\n", seconds_now() - start);
    run_free(&r);
    model_free(&m);
    return rc ? 1 : 0;
}

/* The default model is weights/ediff-tiny.bin of the working directory or, when that does not exist,
 * of the program's own directory (argv[0]'s), so that a built checkout's ediff runs from anywhere. */
static const char *default_model(const char *argv0, char *buf, size_t n)
{
    const char *slash = strrchr(argv0, '/');
    FILE *f = fopen(DEFAULT_MODEL, "rb");
    if (f || !slash || (size_t)(slash - argv0) + sizeof DEFAULT_MODEL + 1 > n) {
        if (f) fclose(f);
        return DEFAULT_MODEL;
    }
    snprintf(buf, n, "%.*s/%s", (int)(slash - argv0), argv0, DEFAULT_MODEL);
    if (!(f = fopen(buf, "rb"))) return DEFAULT_MODEL;
    fclose(f);
    return buf;
}

static int cmd_generate(int argc, char **argv)
{
    Options o;
    char model[4096];
    int rc = parse_options(&o, argc, argv);
    if (rc == 0 && strcmp(o.model, DEFAULT_MODEL) == 0) o.model = default_model(argv[0], model, sizeof model);
    if (rc == 0 && o.random_seed) o.seed = (uint64_t)(seconds_now() * 1e6) * 6364136223846793005u + (uint64_t)clock();
    if (rc == 0) rc = generate_all(&o);
    free(o.from_text);
    return rc < 0 ? 0 : rc;
}

/* ================================================================ other subcommands ============ */

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
    if (regular_file(argv[2], err) || blob_open(&b, argv[2], err)) {
        print_error("%s", err);
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
    if (model && (regular_file(model, err) || blob_open(&blob, model, err))) {
        print_error("%s", err);
        return 1;
    }
    if (tokenizers_open(&clip, &t5, model ? &blob : NULL, err)) {
        print_error("%s", err);
        if (model) blob_close(&blob);
        return 1;
    }
    if (strcmp(argv[a], "--cases") == 0) {
        if (tokenizer_check_cases(&clip, &t5, argv[a + 1], stdout, &passed, &failed, err)) {
            print_error("%s", err);
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
        if (rc) print_error("%s", err);
        else printf("\n");
        rc = rc ? 1 : 0;
        tokens_free(&ids);
    }
    clip_tokenizer_free(&clip);
    t5_tokenizer_free(&t5);
    if (model) blob_close(&blob);
    return rc;
}

/* The program. Fuzz harnesses include this file with EDIFF_NO_MAIN defined, which makes it ediff_main
 * (keeping every function referenced) so that they can call the static functions directly. */
#ifdef EDIFF_NO_MAIN
int ediff_main(int argc, char **argv);
int ediff_main(int argc, char **argv)
#else
int main(int argc, char **argv)
#endif
{
    if (argc >= 2 && strcmp(argv[1], "info") == 0) return cmd_info(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "tokenize") == 0) return cmd_tokenize(argc, argv);
    return cmd_generate(argc, argv);
}
