/* test/fuzz/fuzz_blob.c — libFuzzer harness: any bytes as a weight blob (docs/blob.md), through the
 * program's own loading path (ediff.c's model_init: T5, CLIP text and image towers, the cascade, every
 * expert's UNet and conditioning, the cross-checks between them), then one forward of each component.
 * Properties checked on any input:
 *   - blob_open_memory on the bytes as given, and again with the header's file size and CRC-32 made
 *     right (so that mutations reach the table, the metadata and the configs the CRC guards), either
 *     opens the blob or fails with an error message that starts with the label;
 *   - every tensor of an opened blob lies inside it (its first and last elements are read);
 *   - model_init (default cascade, and the first stage alternative) loads or fails with a message;
 *   - a model that loads: tokenizers stored in the blob load or fail with a message; the arena size the
 *     program computes (run_arena_bytes) holds one forward of T5, the CLIP towers and every expert's
 *     UNet at its stage's resolution, run on zero inputs when it is at most 64 MiB (an arena too small
 *     exits, which libFuzzer reports).
 * Build and run: make fuzz FUZZ=fuzz_blob FUZZ_SECONDS=N (clang -fsanitize=fuzzer,address,undefined; this
 * file includes ediff.c). Seeds: test/fuzz/corpus/fuzz_blob/, written by test/fuzz/gen_seeds.py. */
#define EDIFF_NO_MAIN
#include "../../ediff.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LABEL       "fuzz.bin"
#define ARENA_LIMIT ((size_t)64 << 20)

/* An error message; loading errors name the blob (label NULL: a forward's error, which names the model).
 * Names taken from the blob may hold a newline: the program prints errors escaped (print_error). */
static void check_error(const char *err, const char *label)
{
    if (!err[0] || (label && strncmp(err, label, strlen(label)) != 0)) abort();
}

/* A float buffer of n zeros (n may be 0). */
static float *zeros(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }

/* The tokenizers the blob holds (tokenizer.t5_spiece, tokenizer.clip_merges), each on its own; a T5
 * tokenizer that loads gives the ids T5 then encodes. Returns the number of ids written to ids[]. */
static int blob_tokenizers(const Blob *b, int L5, int32_t *ids)
{
    char err[EDIFF_ERR];
    int n = 0;
    if (blob_get(b, "tokenizer.t5_spiece")) {
        T5Tokenizer t5;
        Tokens t = {0};
        if (tokenizers_open(NULL, &t5, b, err)) {
            check_error(err, NULL);
        } else {
            if (t5_tokenize(&t5, "a red fox", 9, L5, &t, err)) abort();
            for (n = 0; n < t.n; n++) ids[n] = t.id[n];
            tokens_free(&t);
            t5_tokenizer_free(&t5);
        }
    }
    if (blob_get(b, "tokenizer.clip_merges")) {
        ClipTokenizer clip;
        if (tokenizers_open(&clip, NULL, b, err)) check_error(err, NULL);
        else clip_tokenizer_free(&clip);
    }
    return n;
}

/* One forward of every component of a loaded model, on zeros, in an arena of run_arena_bytes. */
static void forward_all(const Model *m)
{
    size_t need = run_arena_bytes(m);
    int n_ctx = cond_context_rows(m->L5, CLIP_CONTEXT), s, k, T = 0, i;
    int32_t *ids = xcalloc((size_t)m->L5 + CLIP_CONTEXT, sizeof *ids);
    char err[EDIFF_ERR];
    Arena a;
    if (need == 0 || need > ARENA_LIMIT || arena_init(&a, need, err)) {
        free(ids);
        return;
    }
    T = blob_tokenizers(&m->blob, m->L5, ids);
    if (m->use_t5) {
        float *out = zeros((size_t)m->L5 * m->d_t5);
        for (i = 0; T == 0 && i < m->L5 && i < 4; i++) ids[i] = i % m->t5.cfg.vocab_size;
        if (T == 0) T = i;
        if (t5_encode(&m->t5, ids, NULL, T, out, &a, NULL, err)) check_error(err, NULL);
        free(out);
    }
    if (m->use_clip_text) {
        float *hidden = zeros((size_t)CLIP_CONTEXT * m->d_clip), *embed = zeros((size_t)m->embed_dim);
        memset(ids, 0, CLIP_CONTEXT * sizeof *ids);
        if (clip_text_encode(&m->clip_text, ids, CLIP_CONTEXT, hidden, embed, &a, NULL, err)) check_error(err, NULL);
        free(hidden);
        free(embed);
    }
    if (m->use_clip_image) {
        int S = m->clip_vision.image_size;
        float *pixels = zeros((size_t)3 * S * S), *embed = zeros((size_t)m->embed_dim);
        clip_vision_encode(&m->clip_vision, pixels, embed, NULL, NULL, &a, NULL);
        free(pixels);
        free(embed);
    }
    for (s = 0; s < m->n_stages; s++)
        for (k = 0; k < m->stage[s].cfg.experts.n; k++) {
            const Unet *u = &m->stage[s].unet[k];
            int R = m->stage[s].cfg.resolution;
            float *x = zeros((size_t)u->config.in_channels * R * R), *out = zeros((size_t)u->config.out_channels * R * R);
            float *context = zeros((size_t)n_ctx * u->config.context_dim), *cls = zeros((size_t)u->config.class_embed_dim);
            if (unet_forward(u, &a, x, R, R, 0.0f, context, n_ctx, NULL, u->config.class_embed_dim ? cls : NULL, NULL, NULL,
                             out, err))
                check_error(err, NULL);
            free(x);
            free(out);
            free(context);
            free(cls);
        }
    arena_free(&a);
    free(ids);
}

/* model_init on an opened blob (not closed here), with `alternative` swapped into the cascade. */
static void load_model(const Blob *b, const char *alternative)
{
    Options o;
    Model m;
    char err[EDIFF_ERR];
    memset(&o, 0, sizeof o);
    o.model = LABEL;
    o.style = "style.png";                      /* loads the CLIP image tower too */
    o.alternative = alternative;
    memset(&m, 0, sizeof m);
    m.blob = *b;                                /* blob_open stays 0: model_free leaves it open */
    if (model_init(&m, &o, err)) check_error(err, LABEL);
    else forward_all(&m);
    model_free(&m);
}

/* Returns whether the bytes opened as a blob. */
static int open_blob(const uint8_t *data, size_t size)
{
    Blob b;
    char err[EDIFF_ERR], alt[64];
    const char *alts;
    int i;
    err[0] = 0;
    if (blob_open_memory(&b, data, size, LABEL, err)) {
        check_error(err, LABEL);
        return 0;
    }
    for (i = 0; i < b.n_tensors; i++)
        if (b.tensors[i].numel > 0) {
            volatile float first = tensor_at(&b.tensors[i], 0), last = tensor_at(&b.tensors[i], b.tensors[i].numel - 1);
            (void)first;
            (void)last;
        }
    load_model(&b, NULL);
    if ((alts = blob_meta(&b, "stage_alternatives")) && *alts) {     /* "name:replaces,..." */
        snprintf(alt, sizeof alt, "%.*s", (int)strcspn(alts, ":,"), alts);
        if (alt[0]) load_model(&b, alt);
    }
    blob_close(&b);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;
    uint32_t crc;
    int i;
    if (open_blob(data, size) || size < 64) return 0;
    copy = xmalloc(size);                       /* file size and CRC-32 made right */
    memcpy(copy, data, size);
    for (i = 0; i < 8; i++) copy[48 + i] = (uint8_t)((uint64_t)size >> (8 * i));
    memset(copy + 56, 0, 4);
    crc = crc32_update(0, copy, size);
    for (i = 0; i < 4; i++) copy[56 + i] = (uint8_t)(crc >> (8 * i));
    open_blob(copy, size);
    free(copy);
    return 0;
}
