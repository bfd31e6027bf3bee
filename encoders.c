/* encoders.c — the three frozen encoders of eDiff-I (Balaji et al. 2022, §4.2): T5 (a token sequence),
 * CLIP text (a token sequence and a pooled, projected embedding) and CLIP vision (a projected image
 * embedding, for style transfer), plus CLIP's image preprocessing. Each follows Hugging Face
 * `transformers` exactly — T5EncoderModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection,
 * CLIPImageProcessor — so a `save_pretrained` checkpoint converted by weights/convert.py gives the
 * same tensors (docs/encoders.md lists conventions and measured errors). Weights are read in place. */
#include "ediff.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZE    (1L << 24)   /* largest config dimension accepted (sizes multiply into size_t) */
#define MAX_TOKENS  65536        /* longest T5 sequence accepted */
#define SLACK       64           /* bytes arena_alloc may spend on alignment, per allocation */

/* ------------------------------------------------------------------ shared helpers ---------------- */

/* A positive integer config field: required when dflt < 0, else dflt when absent. */
static int ld_size(Loader *L, long dflt, const char *key_fmt, ...)
{
    char key[128];
    long v;
    va_list ap;
    va_start(ap, key_fmt);
    vsnprintf(key, sizeof key, key_fmt, ap);
    va_end(ap);
    v = dflt < 0 ? ld_int(L, "%s", key) : ld_int_or(L, dflt, "%s", key);
    if (!L->failed && (v < 1 || v > MAX_SIZE))
        loader_fail(L, "metadata '%s%s=%ld' must be in 1..%ld", L->prefix, key, v, MAX_SIZE);
    return (int)v;
}

static int load_done(Loader *L, char err[EDIFF_ERR])
{
    if (!L->failed) return 0;
    snprintf(err, EDIFF_ERR, "%s", L->err);
    return -1;
}

/* Hand an intermediate output to the hook under its HF module path. */
static void dump(const DumpHook *hook, const float *x, int rank, int64_t d0, int64_t d1, const char *name_fmt, ...)
{
    char name[128];
    int64_t shape[2];
    va_list ap;
    if (!hook || !hook->fn) return;
    va_start(ap, name_fmt);
    vsnprintf(name, sizeof name, name_fmt, ap);
    va_end(ap);
    shape[0] = d0;
    shape[1] = d1;
    hook->fn(hook->ctx, name, x, rank, shape);
}

static int check_ids(const int32_t *ids, int T, int vocab, const char *model, char err[EDIFF_ERR])
{
    int i;
    for (i = 0; i < T; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            snprintf(err, EDIFF_ERR, "%s: token id %ld at position %d is outside the vocabulary (%d ids)",
                     model, (long)ids[i], i, vocab);
            return -1;
        }
    return 0;
}

/* ================================================================== T5 ============================ */

/* feed_forward_proj as T5Config parses it: "ACT" or "gated-ACT"; "gated-gelu" means gelu_new. */
static void t5_feed_forward(Loader *L, const char *proj, T5Config *c)
{
    const char *dash = strchr(proj, '-'), *act = dash ? dash + 1 : proj;
    if (dash && ((size_t)(dash - proj) != 5 || strncmp(proj, "gated", 5) != 0 || strchr(act, '-'))) {
        loader_fail(L, "metadata '%sfeed_forward_proj=%s' is neither ACT nor gated-ACT", L->prefix, proj);
        return;
    }
    c->gated = dash != NULL;
    c->act = strcmp(proj, "gated-gelu") == 0 ? ACT_GELU_TANH : act_from_name(act);
    if (c->act < 0) loader_fail(L, "metadata '%sfeed_forward_proj=%s': unsupported activation", L->prefix, proj);
}

void t5_free(T5Encoder *m)
{
    free(m->block);
    m->block = NULL;
}

int t5_load(T5Encoder *m, const Blob *b, const char *prefix, char err[EDIFF_ERR])
{
    Loader L;
    T5Config *c = &m->cfg;
    int i, d, inner;
    memset(m, 0, sizeof *m);
    loader_init(&L, b, prefix);
    c->vocab_size = ld_size(&L, -1, "vocab_size");
    c->d_model = ld_size(&L, -1, "d_model");
    c->d_kv = ld_size(&L, -1, "d_kv");
    c->num_heads = ld_size(&L, -1, "num_heads");
    c->d_ff = ld_size(&L, -1, "d_ff");
    c->num_layers = ld_size(&L, -1, "num_layers");
    c->num_buckets = ld_size(&L, 32, "relative_attention_num_buckets");
    c->max_distance = ld_size(&L, 128, "relative_attention_max_distance");
    c->eps = (float)ld_float_or(&L, 1e-6, "layer_norm_epsilon");
    t5_feed_forward(&L, ld_str_or(&L, "relu", "feed_forward_proj"), c);
    if (!L.failed && (long)c->num_heads * c->d_kv > MAX_SIZE)
        loader_fail(&L, "metadata %snum_heads * d_kv = %ld exceeds %ld", prefix, (long)c->num_heads * c->d_kv, MAX_SIZE);
    if (!L.failed && c->num_layers > b->n_tensors)               /* before the block array is allocated */
        loader_fail(&L, "metadata '%snum_layers=%d': more layers than the blob has tensors (%d)", prefix, c->num_layers,
                    b->n_tensors);
    if (!L.failed && (c->num_buckets < 4 || c->max_distance <= c->num_buckets / 4))
        loader_fail(&L, "metadata %srelative_attention_num_buckets=%d, _max_distance=%d: need >= 4 buckets and "
                    "max_distance > buckets/4", prefix, c->num_buckets, c->max_distance);
    if (L.failed) return load_done(&L, err);
    d = c->d_model;
    inner = c->num_heads * c->d_kv;
    {
        int vd[2] = {c->vocab_size, d}, bh[2] = {c->num_buckets, c->num_heads}, nd[1] = {d};
        int qd[2] = {inner, d}, od[2] = {d, inner}, fi[2] = {c->d_ff, d}, fo[2] = {d, c->d_ff};
        if (ld_has(&L, "shared.weight")) m->embed = ld_tensor(&L, 2, vd, "shared.weight");
        else if (ld_has(&L, "encoder.embed_tokens.weight")) m->embed = ld_tensor(&L, 2, vd, "encoder.embed_tokens.weight");
        else loader_fail(&L, "missing tensor '%sshared.weight' (or '%sencoder.embed_tokens.weight')", prefix, prefix);
        m->rel_bias = ld_tensor(&L, 2, bh, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        m->block = xcalloc((size_t)c->num_layers, sizeof *m->block);
        for (i = 0; i < c->num_layers && !L.failed; i++) {
            T5Block *k = &m->block[i];
#define BLOCK(name) "encoder.block.%d.layer." name, i
            k->ln_attn = ld_tensor(&L, 1, nd, BLOCK("0.layer_norm.weight"));
            k->q = ld_tensor(&L, 2, qd, BLOCK("0.SelfAttention.q.weight"));
            k->k = ld_tensor(&L, 2, qd, BLOCK("0.SelfAttention.k.weight"));
            k->v = ld_tensor(&L, 2, qd, BLOCK("0.SelfAttention.v.weight"));
            k->o = ld_tensor(&L, 2, od, BLOCK("0.SelfAttention.o.weight"));
            k->ln_ff = ld_tensor(&L, 1, nd, BLOCK("1.layer_norm.weight"));
            if (c->gated) {
                k->wi0 = ld_tensor(&L, 2, fi, BLOCK("1.DenseReluDense.wi_0.weight"));
                k->wi1 = ld_tensor(&L, 2, fi, BLOCK("1.DenseReluDense.wi_1.weight"));
            } else {
                k->wi0 = ld_tensor(&L, 2, fi, BLOCK("1.DenseReluDense.wi.weight"));
            }
            k->wo = ld_tensor(&L, 2, fo, BLOCK("1.DenseReluDense.wo.weight"));
#undef BLOCK
        }
        m->final_ln = ld_tensor(&L, 1, nd, "encoder.final_layer_norm.weight");
    }
    if (L.failed) t5_free(m);
    return load_done(&L, err);
}

/* T5Attention._relative_position_bucket, bidirectional: keys after the query use the upper half of
 * the buckets; |distance| < max_exact is exact, beyond it log-spaced up to max_distance. PyTorch
 * evaluates the log branch in float32 and truncates, so we do the same. */
int t5_relative_position_bucket(int relative_position, int num_buckets, int max_distance)
{
    int nb = num_buckets / 2, max_exact = nb / 2, n = relative_position < 0 ? -relative_position : relative_position;
    int bucket = relative_position > 0 ? nb : 0, large;
    float f;
    if (n < max_exact) return bucket + n;
    f = logf((float)n / (float)max_exact) / (float)log((double)max_distance / max_exact) * (float)(nb - max_exact);
    large = max_exact + (f < (float)nb ? (int)f : nb);
    return bucket + (large < nb - 1 ? large : nb - 1);
}

size_t t5_arena_bytes(const T5Encoder *m, int T)
{
    const T5Config *c = &m->cfg;
    size_t t = (size_t)T, inner = (size_t)c->num_heads * c->d_kv;
    size_t floats = (size_t)c->num_heads * t * t + (size_t)c->num_heads * (2 * t - 1) + t * c->d_model +
                    4 * t * inner + (c->gated ? 2 : 1) * t * c->d_ff;
    return floats * sizeof(float) + 10 * SLACK;
}

/* The additive logit bias all blocks share (HF computes it in block 0 and passes it on):
 * B[h, i, j] = relative_attention_bias[bucket(j - i), h], or -FLT_MAX on a padded key j (HF adds
 * finfo.min, which absorbs the bias in float32; a fully padded row then attends uniformly, as in HF). */
static void t5_position_bias(const T5Encoder *m, const int32_t *mask, int T, float *B, Arena *a)
{
    const T5Config *c = &m->cfg;
    int H = c->num_heads, R = 2 * T - 1, h, i, j, rp;
    size_t mark = arena_mark(a);
    float *table = arena_alloc(a, (size_t)H * R);           /* table[h, rp + T - 1] */
    for (rp = 1 - T; rp < T; rp++) {
        int bucket = t5_relative_position_bucket(rp, c->num_buckets, c->max_distance);
        for (h = 0; h < H; h++) table[(size_t)h * R + rp + T - 1] = tensor_at(m->rel_bias, (int64_t)bucket * H + h);
    }
    for (h = 0; h < H; h++)
        for (i = 0; i < T; i++) {
            float *row = B + ((size_t)h * T + i) * T;
            const float *t = table + (size_t)h * R + T - 1 - i;  /* t[j] = bias of rp = j - i */
            for (j = 0; j < T; j++) row[j] = mask && !mask[j] ? -FLT_MAX : t[j];
        }
    arena_reset(a, mark);
}

/* T5Block of the encoder (pre-norm residuals): h += o(Attn(RMS(h))); h += FF(RMS(h)). The logits are
 * q·kᵀ + B with no 1/sqrt(d_kv) scale (T5 folds it into the initialisation of q). FF: wo(act(wi h))
 * for v1.0, wo(act(wi_0 h) ⊙ wi_1 h) for the gated v1.1. */
static void t5_block(const T5Config *c, const T5Block *b, float *h, int T, const AttnBias *bias, Arena *a)
{
    int d = c->d_model, inner = c->num_heads * c->d_kv;
    size_t mark = arena_mark(a), td = (size_t)T * d, ti = (size_t)T * inner, tf = (size_t)T * c->d_ff, i;
    float *n = arena_alloc(a, td), *q = arena_alloc(a, ti), *k = arena_alloc(a, ti), *v = arena_alloc(a, ti);
    float *o = arena_alloc(a, ti), *f0 = arena_alloc(a, tf);
    rms_norm(n, h, T, d, c->eps, b->ln_attn);
    linear(q, n, T, d, b->q, NULL);
    linear(k, n, T, d, b->k, NULL);
    linear(v, n, T, d, b->v, NULL);
    attention(o, inner, q, inner, k, inner, v, inner, T, T, c->num_heads, c->d_kv, 1.0f, bias);
    linear(n, o, T, inner, b->o, NULL);
    vec_add(h, n, td);
    rms_norm(n, h, T, d, c->eps, b->ln_ff);
    linear(f0, n, T, d, b->wi0, NULL);
    activate(c->act, f0, tf);
    if (c->gated) {
        float *f1 = arena_alloc(a, tf);
        linear(f1, n, T, d, b->wi1, NULL);
        for (i = 0; i < tf; i++) f0[i] *= f1[i];
    }
    linear(n, f0, T, c->d_ff, b->wo, NULL);
    vec_add(h, n, td);
    arena_reset(a, mark);
}

/* T5Stack (encoder): embed, shared position bias, blocks, final RMS norm (T5EncoderModel). */
int t5_encode(const T5Encoder *m, const int32_t *ids, const int32_t *mask, int T, float *out,
              Arena *a, const DumpHook *hook, char err[EDIFF_ERR])
{
    const T5Config *c = &m->cfg;
    size_t mark = arena_mark(a);
    AttnBias bias;
    int i;
    if (T < 1 || T > MAX_TOKENS) {
        snprintf(err, EDIFF_ERR, "t5: %d tokens, expected 1..%d", T, MAX_TOKENS);
        return -1;
    }
    if (check_ids(ids, T, c->vocab_size, "t5", err)) return -1;
    for (i = 0; mask && i < T; i++)
        if (mask[i] != 0 && mask[i] != 1) {
            snprintf(err, EDIFF_ERR, "t5: attention mask value %ld at position %d is not 0 or 1", (long)mask[i], i);
            return -1;
        }
    embedding(out, m->embed, ids, T);
    dump(hook, out, 2, T, c->d_model, "encoder.embed_tokens");
    memset(&bias, 0, sizeof bias);
    bias.add = arena_alloc(a, (size_t)c->num_heads * T * T);
    bias.hs = (long)T * T;
    bias.qs = T;
    bias.ks = 1;
    bias.add_scale = 1.0f;
    t5_position_bias(m, mask, T, (float *)bias.add, a);
    for (i = 0; i < c->num_layers; i++) {
        t5_block(c, &m->block[i], out, T, &bias, a);
        dump(hook, out, 2, T, c->d_model, "encoder.block.%d", i);
    }
    rms_norm(out, out, T, c->d_model, c->eps, m->final_ln);
    dump(hook, out, 2, T, c->d_model, "encoder.final_layer_norm");
    arena_reset(a, mark);
    return 0;
}

/* ================================================================== CLIP towers =================== */

/* CLIPTextConfig / CLIPVisionConfig fields shared by both towers ("text." or "vision." keys). */
static void clip_tower_config(Loader *L, ClipTowerConfig *c, const char *tower)
{
    const char *act;
    c->hidden_size = ld_size(L, -1, "%s.hidden_size", tower);
    c->num_heads = ld_size(L, -1, "%s.num_attention_heads", tower);
    c->num_layers = ld_size(L, -1, "%s.num_hidden_layers", tower);
    c->intermediate_size = ld_size(L, -1, "%s.intermediate_size", tower);
    c->projection_dim = ld_size(L, 512, "%s.projection_dim", tower);
    c->eps = (float)ld_float_or(L, 1e-5, "%s.layer_norm_eps", tower);
    act = ld_str_or(L, "quick_gelu", "%s.hidden_act", tower);
    c->act = act_from_name(act);
    if (!L->failed && c->act < 0) loader_fail(L, "metadata '%s%s.hidden_act=%s': unsupported activation", L->prefix, tower, act);
    if (!L->failed && c->hidden_size % c->num_heads)
        loader_fail(L, "metadata %s%s: hidden_size %d is not a multiple of num_attention_heads %d", L->prefix,
                    tower, c->hidden_size, c->num_heads);
    if (!L->failed && c->num_layers > L->blob->n_tensors)        /* before the layer array is allocated */
        loader_fail(L, "metadata '%s%s.num_hidden_layers=%d': more layers than the blob has tensors (%d)", L->prefix,
                    tower, c->num_layers, L->blob->n_tensors);
}

/* {text,vision}_model.encoder.layers.N.* */
static ClipLayer *clip_layers(Loader *L, const ClipTowerConfig *c, const char *model)
{
    int W = c->hidden_size, I = c->intermediate_size, i;
    int ww[2] = {W, W}, w1[1] = {W}, fi[2] = {I, W}, i1[1] = {I}, fo[2] = {W, I};
    ClipLayer *layer = xcalloc((size_t)c->num_layers, sizeof *layer);
    for (i = 0; i < c->num_layers && !L->failed; i++) {
        ClipLayer *l = &layer[i];
#define LAYER(name) "%s.encoder.layers.%d." name, model, i
        l->ln1_w = ld_tensor(L, 1, w1, LAYER("layer_norm1.weight"));
        l->ln1_b = ld_tensor(L, 1, w1, LAYER("layer_norm1.bias"));
        l->q_w = ld_tensor(L, 2, ww, LAYER("self_attn.q_proj.weight"));
        l->q_b = ld_tensor(L, 1, w1, LAYER("self_attn.q_proj.bias"));
        l->k_w = ld_tensor(L, 2, ww, LAYER("self_attn.k_proj.weight"));
        l->k_b = ld_tensor(L, 1, w1, LAYER("self_attn.k_proj.bias"));
        l->v_w = ld_tensor(L, 2, ww, LAYER("self_attn.v_proj.weight"));
        l->v_b = ld_tensor(L, 1, w1, LAYER("self_attn.v_proj.bias"));
        l->out_w = ld_tensor(L, 2, ww, LAYER("self_attn.out_proj.weight"));
        l->out_b = ld_tensor(L, 1, w1, LAYER("self_attn.out_proj.bias"));
        l->ln2_w = ld_tensor(L, 1, w1, LAYER("layer_norm2.weight"));
        l->ln2_b = ld_tensor(L, 1, w1, LAYER("layer_norm2.bias"));
        l->fc1_w = ld_tensor(L, 2, fi, LAYER("mlp.fc1.weight"));
        l->fc1_b = ld_tensor(L, 1, i1, LAYER("mlp.fc1.bias"));
        l->fc2_w = ld_tensor(L, 2, fo, LAYER("mlp.fc2.weight"));
        l->fc2_b = ld_tensor(L, 1, w1, LAYER("mlp.fc2.bias"));
#undef LAYER
    }
    return layer;
}

static size_t clip_layer_floats(const ClipTowerConfig *c, int T)
{
    return (size_t)T * (5 * (size_t)c->hidden_size + c->intermediate_size);
}

/* CLIPEncoderLayer (pre-LN): x += out_proj(MHA(LN1 x)); x += fc2(act(fc1(LN2 x))). MHA: per head
 * softmax(q·kᵀ / sqrt(head_dim) [+ causal mask]) v. */
static void clip_layer(const ClipTowerConfig *c, const ClipLayer *l, float *x, int T, int causal, Arena *a)
{
    int W = c->hidden_size, I = c->intermediate_size, dh = W / c->num_heads;
    size_t mark = arena_mark(a), tw = (size_t)T * W;
    float *n = arena_alloc(a, tw), *q = arena_alloc(a, tw), *k = arena_alloc(a, tw), *v = arena_alloc(a, tw);
    float *o = arena_alloc(a, tw), *f = arena_alloc(a, (size_t)T * I);
    AttnBias bias;
    memset(&bias, 0, sizeof bias);
    bias.causal = causal;
    layer_norm(n, x, T, W, c->eps, l->ln1_w, l->ln1_b);
    linear(q, n, T, W, l->q_w, l->q_b);
    linear(k, n, T, W, l->k_w, l->k_b);
    linear(v, n, T, W, l->v_w, l->v_b);
    attention(o, W, q, W, k, W, v, W, T, T, c->num_heads, dh, (float)(1.0 / sqrt((double)dh)), &bias);
    linear(n, o, T, W, l->out_w, l->out_b);
    vec_add(x, n, tw);
    layer_norm(n, x, T, W, c->eps, l->ln2_w, l->ln2_b);
    linear(f, n, T, W, l->fc1_w, l->fc1_b);
    activate(c->act, f, (size_t)T * I);
    linear(n, f, T, I, l->fc2_w, l->fc2_b);
    vec_add(x, n, tw);
    arena_reset(a, mark);
}

/* ------------------------------------------------------------------ CLIP text --------------------- */

void clip_text_free(ClipText *m)
{
    free(m->layer);
    m->layer = NULL;
}

int clip_text_load(ClipText *m, const Blob *b, const char *prefix, char err[EDIFF_ERR])
{
    Loader L;
    ClipTowerConfig *c = &m->cfg;
    memset(m, 0, sizeof *m);
    loader_init(&L, b, prefix);
    clip_tower_config(&L, c, "text");
    m->vocab_size = ld_size(&L, 49408, "text.vocab_size");
    m->max_positions = ld_size(&L, 77, "text.max_position_embeddings");
    m->eos_token_id = (int)ld_int_or(&L, 49407, "text.eos_token_id");
    if (L.failed) return load_done(&L, err);
    {
        int W = c->hidden_size, vw[2] = {m->vocab_size, W}, pw[2] = {m->max_positions, W}, w1[1] = {W};
        int ew[2] = {c->projection_dim, W};
        m->token_embedding = ld_tensor(&L, 2, vw, "text_model.embeddings.token_embedding.weight");
        m->position_embedding = ld_tensor(&L, 2, pw, "text_model.embeddings.position_embedding.weight");
        m->layer = clip_layers(&L, c, "text_model");
        m->final_ln_w = ld_tensor(&L, 1, w1, "text_model.final_layer_norm.weight");
        m->final_ln_b = ld_tensor(&L, 1, w1, "text_model.final_layer_norm.bias");
        m->projection = ld_tensor(&L, 2, ew, "text_projection.weight");
    }
    if (L.failed) clip_text_free(m);
    return load_done(&L, err);
}

size_t clip_text_arena_bytes(const ClipText *m, int T)
{
    return ((size_t)T * m->cfg.hidden_size + clip_layer_floats(&m->cfg, T)) * sizeof(float) + 8 * SLACK;
}

int clip_text_pool_index(const ClipText *m, const int32_t *ids, int T)
{
    int i, best = 0;
    if (m->eos_token_id == 2) {                 /* configs before transformers PR #24773: argmax of ids */
        for (i = 1; i < T; i++)
            if (ids[i] > ids[best]) best = i;
        return best;
    }
    for (i = 0; i < T; i++)
        if (ids[i] == m->eos_token_id) return i;
    return 0;                                   /* no end token: HF's argmax of an all-false row */
}

/* CLIPTextTransformer: token + position embeddings, causal pre-LN layers, final LayerNorm; the
 * pooled output (hidden state at the end token) through text_projection. */
int clip_text_encode(const ClipText *m, const int32_t *ids, int T, float *hidden, float *text_embeds,
                     Arena *a, const DumpHook *hook, char err[EDIFF_ERR])
{
    const ClipTowerConfig *c = &m->cfg;
    int W = c->hidden_size, i;
    size_t mark = arena_mark(a), tw = (size_t)T * W;
    float *pos;
    if (T < 1 || T > m->max_positions) {
        snprintf(err, EDIFF_ERR, "clip text: %d tokens, the model takes 1..%d", T, m->max_positions);
        return -1;
    }
    if (check_ids(ids, T, m->vocab_size, "clip text", err)) return -1;
    embedding(hidden, m->token_embedding, ids, T);
    pos = arena_alloc(a, tw);
    tensor_to_f32(m->position_embedding, pos, 0, (int64_t)tw);
    vec_add(hidden, pos, tw);
    dump(hook, hidden, 2, T, W, "text_model.embeddings");
    for (i = 0; i < c->num_layers; i++) {
        clip_layer(c, &m->layer[i], hidden, T, 1, a);
        dump(hook, hidden, 2, T, W, "text_model.encoder.layers.%d", i);
    }
    layer_norm(hidden, hidden, T, W, c->eps, m->final_ln_w, m->final_ln_b);
    dump(hook, hidden, 2, T, W, "text_model.final_layer_norm");
    if (text_embeds) {
        linear(text_embeds, hidden + (size_t)clip_text_pool_index(m, ids, T) * W, 1, W, m->projection, NULL);
        dump(hook, text_embeds, 1, c->projection_dim, 0, "text_projection");
    }
    arena_reset(a, mark);
    return 0;
}

/* ------------------------------------------------------------------ CLIP image preprocessing ------- */
/* CLIPImageProcessor (its PIL backend, the classic processor): resize the short side to shortest_edge
 * with PIL.Image.resize(BICUBIC), centre-crop (top = (H - crop) // 2, zero padding if the crop is
 * larger), x * rescale_factor in double rounded to float32, then (x - mean) / std in float32.
 * Pillow resizes an 8-bit image with a separable filter in two passes, each with 22-bit fixed-point
 * weights and its result rounded to uint8 (libImaging/Resample.c). Because of that rounding the pass
 * order matters: Pillow 13 runs the vertical pass first when the height shrinks by more than twice as
 * many pixels as the width (Pillow PR #9549; condition confirmed on 1,500 random sizes against
 * Pillow 13.0.0), the horizontal pass first otherwise. We compute only the resized pixels inside the
 * crop: each output pixel depends on its own taps only. */

#define PIL_PRECISION_BITS 22    /* Resample.c: 32 - 8 bits of result - 2 bits of headroom */

/* Resample.c bicubic_filter: Keys' cubic convolution with a = -0.5, support 2. */
static double pil_bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Taps of outputs o0 .. o0+n-1 of an in -> out resize along one axis (Resample.c precompute_coeffs and
 * normalize_coeffs_8bpc): output o reads inputs first[o] .. first[o]+count[o]-1 with fixed-point
 * weights w[o*ksize + t]. When shrinking, the kernel is stretched by in/out (antialiasing). */
typedef struct {
    int      n, ksize, *first, *count;
    int32_t *w;
} PilTaps;

static void pil_taps(PilTaps *t, int in, int out, int o0, int n)
{
    double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale, ss = 1.0 / filterscale, *k;
    int o, x;
    t->n = n;
    t->ksize = (int)ceil(support) * 2 + 1;
    t->first = xmalloc((size_t)n * sizeof(int));
    t->count = xmalloc((size_t)n * sizeof(int));
    t->w = xmalloc((size_t)n * t->ksize * sizeof(int32_t));
    k = xmalloc((size_t)t->ksize * sizeof(double));
    for (o = 0; o < n; o++) {
        double center = (o0 + o + 0.5) * scale, sum = 0.0;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        for (x = 0; x < xmax; x++) {
            k[x] = pil_bicubic((x + xmin - center + 0.5) * ss);
            sum += k[x];
        }
        for (x = 0; x < xmax; x++) {
            double v = (sum != 0.0 ? k[x] / sum : k[x]) * (1 << PIL_PRECISION_BITS);
            t->w[(size_t)o * t->ksize + x] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        t->first[o] = xmin;
        t->count[o] = xmax;
    }
    free(k);
}

static void pil_taps_free(PilTaps *t)
{
    free(t->first);
    free(t->count);
    free(t->w);
}

/* The input range [lo, hi) the taps read. */
static void pil_span(const PilTaps *t, int *lo, int *hi)
{
    *lo = t->n ? t->first[0] : 0;
    *hi = t->n ? t->first[t->n - 1] + t->count[t->n - 1] : 0;
}

/* Resample.c clip8: the accumulator (which starts at 1 << 21, i.e. rounds) back to 0..255. */
static uint8_t pil_clip8(int32_t acc)
{
    if (acc < 0) return 0;
    acc >>= PIL_PRECISION_BITS;
    return (uint8_t)(acc > 255 ? 255 : acc);
}

/* One Pillow pass of RGB pixels along an axis: for outputs o < t->n and lines j < lines,
 * dst[o*dst_o + j*dst_j] = clip8(sum_k src[(first[o] - shift + k)*src_i + j*src_j] * w[o, k]), per
 * channel. Strides are in bytes; the same function does horizontal and vertical passes. */
static void pil_pass(uint8_t *dst, long dst_o, long dst_j, const uint8_t *src, long src_i, long src_j,
                     int shift, int lines, const PilTaps *t)
{
    int o, j, c, k;
    for (o = 0; o < t->n; o++) {
        const int32_t *w = t->w + (size_t)o * t->ksize;
        for (j = 0; j < lines; j++) {
            const uint8_t *s = src + (long)(t->first[o] - shift) * src_i + (long)j * src_j;
            for (c = 0; c < 3; c++) {
                int32_t acc = 1 << (PIL_PRECISION_BITS - 1);
                for (k = 0; k < t->count[o]; k++) acc += s[(long)k * src_i + c] * w[k];
                dst[(long)o * dst_o + (long)j * dst_j + c] = pil_clip8(acc);
            }
        }
    }
}

static int floor_div2(int x) { return x >= 0 ? x / 2 : -((1 - x) / 2); }

int clip_preprocess(const ClipImageProcessor *p, const uint8_t *rgb, int w, int h, float *pixels,
                    char err[EDIFF_ERR])
{
    int S = p->shortest_edge, ch = p->crop_height, cw = p->crop_width, nw, nh, top, left;
    int ry0, ry1, rx0, rx1, nr, nc, lo, hi, x, y, c;
    double long_side;
    PilTaps vt, ht;
    uint8_t *tmp, *crop;
    if (w < 1 || h < 1) {
        snprintf(err, EDIFF_ERR, "clip preprocess: empty image (%dx%d)", w, h);
        return -1;
    }
    /* transformers get_resize_output_image_size(default_to_square=False): short side -> S,
     * long side -> int(S * long / short) */
    long_side = (double)S * (w <= h ? h : w) / (w <= h ? w : h);
    if (long_side >= 2147483647.0) {
        snprintf(err, EDIFF_ERR, "clip preprocess: a %dx%d image is too elongated to resize", w, h);
        return -1;
    }
    nw = w <= h ? S : (int)long_side;
    nh = w <= h ? (int)long_side : S;
    /* the resized rows ry0..ry1-1 and columns rx0..rx1-1 that fall inside the crop */
    top = floor_div2(nh - ch);
    left = floor_div2(nw - cw);
    ry0 = top > 0 ? top : 0;
    ry1 = top + ch < nh ? top + ch : nh;
    rx0 = left > 0 ? left : 0;
    rx1 = left + cw < nw ? left + cw : nw;
    nr = ry1 - ry0;
    nc = rx1 - rx0;
    pil_taps(&vt, h, nh, ry0, nr);
    pil_taps(&ht, w, nw, rx0, nc);
    crop = xmalloc((size_t)nr * nc * 3 + 1);
    /* Pillow skips the pass of an axis whose size does not change; that pass is the identity anyway
     * (at scale 1 the taps are K(-1), K(0), K(1), K(2) = 0, 1, 0, 0), so both passes always run here. */
    if (nh < h && h - nh > 2 * (w - nw)) {                  /* vertical, then horizontal */
        pil_span(&ht, &lo, &hi);
        tmp = xmalloc((size_t)nr * (hi - lo) * 3 + 1);
        pil_pass(tmp, (long)(hi - lo) * 3, 3, rgb + (size_t)lo * 3, (long)w * 3, 3, 0, hi - lo, &vt);
        pil_pass(crop, 3, (long)nc * 3, tmp, 3, (long)(hi - lo) * 3, lo, nr, &ht);
    } else {                                                /* horizontal, then vertical */
        pil_span(&vt, &lo, &hi);
        tmp = xmalloc((size_t)(hi - lo) * nc * 3 + 1);
        pil_pass(tmp, 3, (long)nc * 3, rgb + (size_t)lo * w * 3, 3, (long)w * 3, 0, hi - lo, &ht);
        pil_pass(crop, (long)nc * 3, 3, tmp, (long)nc * 3, 3, lo, nc, &vt);
    }
    for (c = 0; c < 3; c++)                                  /* crop (zero outside), rescale, normalise */
        for (y = 0; y < ch; y++)
            for (x = 0; x < cw; x++) {
                int ry = y + top, rx = x + left;
                uint8_t v = ry >= ry0 && ry < ry1 && rx >= rx0 && rx < rx1 ? crop[((size_t)(ry - ry0) * nc + rx - rx0) * 3 + c] : 0;
                float f = (float)(v * p->rescale_factor);
                f = f - p->image_mean[c];
                pixels[((size_t)c * ch + y) * cw + x] = f / p->image_std[c];
            }
    free(tmp);
    free(crop);
    pil_taps_free(&vt);
    pil_taps_free(&ht);
    return 0;
}

/* ------------------------------------------------------------------ CLIP vision ------------------- */

void clip_vision_free(ClipVision *m)
{
    free(m->layer);
    m->layer = NULL;
}

/* clip.vision.{shortest_edge, crop_height, crop_width, rescale_factor, image_mean, image_std}, which
 * convert.py writes from preprocessor_config.json; absent keys take CLIPImageProcessor's defaults
 * with 224 replaced by the model's image_size. */
static void clip_processor_config(Loader *L, ClipImageProcessor *p, int image_size)
{
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, std[3] = {0.26862954, 0.26130258, 0.27577711};
    double m[3], s[3];
    int i, nm, ns;
    memcpy(m, mean, sizeof m);
    memcpy(s, std, sizeof s);
    p->shortest_edge = ld_size(L, image_size, "vision.shortest_edge");
    p->crop_height = ld_size(L, image_size, "vision.crop_height");
    p->crop_width = ld_size(L, image_size, "vision.crop_width");
    p->rescale_factor = ld_float_or(L, 1.0 / 255.0, "vision.rescale_factor");
    nm = ld_floats_or(L, m, 3, "vision.image_mean");
    ns = ld_floats_or(L, s, 3, "vision.image_std");
    if (L->failed) return;
    if ((nm && nm != 3) || (ns && ns != 3))
        loader_fail(L, "metadata %svision.image_mean / image_std: expected 3 numbers (R,G,B) each", L->prefix);
    else if (p->crop_height != image_size || p->crop_width != image_size)
        loader_fail(L, "metadata %svision: crop %dx%d differs from the model's image_size %d", L->prefix,
                    p->crop_width, p->crop_height, image_size);
    for (i = 0; i < 3 && !L->failed; i++) {
        p->image_mean[i] = (float)m[i];
        p->image_std[i] = (float)s[i];
        if (!(s[i] != 0.0)) loader_fail(L, "metadata %svision.image_std has a zero", L->prefix);
    }
}

int clip_vision_load(ClipVision *m, const Blob *b, const char *prefix, char err[EDIFF_ERR])
{
    Loader L;
    ClipTowerConfig *c = &m->cfg;
    memset(m, 0, sizeof *m);
    loader_init(&L, b, prefix);
    clip_tower_config(&L, c, "vision");
    m->image_size = ld_size(&L, 224, "vision.image_size");
    m->patch_size = ld_size(&L, 32, "vision.patch_size");
    if (!L.failed && ld_int_or(&L, 3, "vision.num_channels") != 3)
        loader_fail(&L, "metadata '%svision.num_channels': only RGB (3) images are supported", prefix);
    if (!L.failed && (m->patch_size > m->image_size || (long)(m->image_size / m->patch_size) * (m->image_size / m->patch_size) >= MAX_SIZE))
        loader_fail(&L, "metadata %svision: image_size %d and patch_size %d do not give 1..%ld patches", prefix,
                    m->image_size, m->patch_size, MAX_SIZE - 1);
    if (!L.failed) clip_processor_config(&L, &m->processor, m->image_size);
    if (L.failed) return load_done(&L, err);
    {
        int W = c->hidden_size, G = m->image_size / m->patch_size, w1[1] = {W};
        int pw[4] = {W, 3, m->patch_size, m->patch_size}, nw[2] = {1 + G * G, W}, ew[2] = {c->projection_dim, W};
        m->class_embedding = ld_tensor(&L, 1, w1, "vision_model.embeddings.class_embedding");
        m->patch_embedding = ld_tensor(&L, 4, pw, "vision_model.embeddings.patch_embedding.weight");
        m->position_embedding = ld_tensor(&L, 2, nw, "vision_model.embeddings.position_embedding.weight");
        m->pre_ln_w = ld_tensor(&L, 1, w1, "vision_model.pre_layrnorm.weight");
        m->pre_ln_b = ld_tensor(&L, 1, w1, "vision_model.pre_layrnorm.bias");
        m->layer = clip_layers(&L, c, "vision_model");
        m->post_ln_w = ld_tensor(&L, 1, w1, "vision_model.post_layernorm.weight");
        m->post_ln_b = ld_tensor(&L, 1, w1, "vision_model.post_layernorm.bias");
        m->projection = ld_tensor(&L, 2, ew, "visual_projection.weight");
    }
    if (L.failed) clip_vision_free(m);
    return load_done(&L, err);
}

size_t clip_vision_arena_bytes(const ClipVision *m)
{
    int G = m->image_size / m->patch_size, N = 1 + G * G, W = m->cfg.hidden_size;
    return ((size_t)3 * N * W + W + clip_layer_floats(&m->cfg, N)) * sizeof(float) + 12 * SLACK;
}

/* CLIPVisionTransformer: patch conv (no bias), class token, position embeddings, pre_layrnorm, the
 * layers (no mask); pooled = post_layernorm(class token); image_embeds = visual_projection(pooled). */
void clip_vision_encode(const ClipVision *m, const float *pixels, float *image_embeds, float *last_hidden,
                        float *pooled, Arena *a, const DumpHook *hook)
{
    const ClipTowerConfig *c = &m->cfg;
    int W = c->hidden_size, S = m->image_size, G = S / m->patch_size, N = 1 + G * G, i, p;
    size_t mark = arena_mark(a), nw = (size_t)N * W;
    float *x = last_hidden ? last_hidden : arena_alloc(a, nw);
    float *patches = arena_alloc(a, (size_t)W * G * G), *pos = arena_alloc(a, nw);
    float *pool = pooled ? pooled : arena_alloc(a, (size_t)W);
    conv2d(patches, pixels, 3, S, S, m->patch_embedding, NULL, m->patch_size, 0);
    tensor_to_f32(m->class_embedding, x, 0, W);
    for (p = 0; p < G * G; p++)                         /* [W, G*G] -> tokens 1..G*G, row-major patches */
        for (i = 0; i < W; i++) x[(size_t)(1 + p) * W + i] = patches[(size_t)i * G * G + p];
    tensor_to_f32(m->position_embedding, pos, 0, (int64_t)nw);
    vec_add(x, pos, nw);
    dump(hook, x, 2, N, W, "vision_model.embeddings");
    layer_norm(x, x, N, W, c->eps, m->pre_ln_w, m->pre_ln_b);
    dump(hook, x, 2, N, W, "vision_model.pre_layrnorm");
    for (i = 0; i < c->num_layers; i++) {
        clip_layer(c, &m->layer[i], x, N, 0, a);
        dump(hook, x, 2, N, W, "vision_model.encoder.layers.%d", i);
    }
    layer_norm(pool, x, 1, W, c->eps, m->post_ln_w, m->post_ln_b);
    dump(hook, pool, 1, W, 0, "vision_model.post_layernorm");
    linear(image_embeds, pool, 1, W, m->projection, NULL);
    dump(hook, image_embeds, 1, c->projection_dim, 0, "visual_projection");
    arena_reset(a, mark);
}
