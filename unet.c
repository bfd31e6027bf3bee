/* unet.c — the UNet expert of eDiff-I: diffusers' UNet2DConditionModel forward pass (structure, names
 * and config as diffusers has them), paint-with-words inside its cross-attention (eDiff-I §4.3), and
 * eDiff-I's conditioning module (weights/ediffi.py EDiffIConditioning). docs/unet.md describes all three.
 *
 * Layouts: images are channels-first [C, H*W], token sequences row-major [T, D]. Memory: one arena holds
 * the skip connections of the down path, two ping-pong buffers for the mid and up path, and above them
 * the scratch of one layer at a time (mark/reset), so unet_arena_bytes() bounds a forward from the
 * config alone; each scratch-using function has its *_scratch twin next to it. */
#include "ediff.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME 192                      /* module paths, "up_blocks.3.attentions.2.transformer_blocks.9.attn2" */
#define MAX_SKIPS (1 + UNET_MAX_LEVELS * (UNET_MAX_LAYERS + 1))
#define TRANSFORMER_GN_EPS 1e-6f      /* Transformer2DModel's GroupNorm (fixed in diffusers) */
#define BLOCK_LN_EPS 1e-5f            /* BasicTransformerBlock's LayerNorms (norm_eps default) */

/* A module path into buf[NAME] (paths are far shorter than NAME; a longer one would only be cut). */
static const char *path(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, NAME, fmt, ap);
    va_end(ap);
    return buf;
}

static const char *join(char *buf, const char *base, const char *leaf) { return path(buf, "%s.%s", base, leaf); }

/* ================================================================== configuration ================ */

/* PREFIX<key> (dflt when absent) must be one of the '|'-separated `allowed` values; returns it. */
static const char *cfg_one_of(Loader *L, const char *key, const char *dflt, const char *allowed)
{
    const char *v = ld_str_or(L, dflt, "%s", key), *s = allowed;
    size_t n = strlen(v);
    if (L->failed) return dflt;
    while (*s) {
        size_t len = strcspn(s, "|");
        if (len == n && strncmp(s, v, n) == 0) return v;
        s += len + (s[len] == '|');
    }
    loader_fail(L, "UNet config '%s%s=%s' is not supported by ediff (supported: %s)", L->prefix, key, v,
                allowed);
    return dflt;
}

/* An integer, or `none` (and absent) as none_value. */
static int cfg_int_or_none(Loader *L, const char *key, int none_value)
{
    if (strcmp(ld_str_or(L, "none", "%s", key), "none") == 0) return none_value;
    return (int)ld_int(L, "%s", key);
}

/* An int or a list of one int per level (diffusers accepts both), into out[n]. */
static void cfg_per_level(Loader *L, const char *key, int dflt, int n, int *out)
{
    int v[UNET_MAX_LEVELS + 1], k = 1, i;
    v[0] = dflt;
    if (ld_str_or(L, NULL, "%s", key)) k = ld_ints(L, v, UNET_MAX_LEVELS + 1, "%s", key);
    if (L->failed) return;
    if (k != 1 && k != n) {
        loader_fail(L, "UNet config '%s%s' has %d values for %d levels", L->prefix, key, k, n);
        return;
    }
    for (i = 0; i < n; i++) out[i] = v[k == 1 ? 0 : i];
}

/* A boolean or a list of one boolean per level ("true,false,..."), into out[n]. */
static void cfg_bools_per_level(Loader *L, const char *key, int n, int *out)
{
    const char *v = ld_str_or(L, "false", "%s", key), *s = v;
    int vals[UNET_MAX_LEVELS + 1], k = 0, i;
    while (*s && k <= UNET_MAX_LEVELS) {
        size_t len = strcspn(s, ",");
        if (len == 4 && strncmp(s, "true", 4) == 0) vals[k++] = 1;
        else if (len == 5 && strncmp(s, "false", 5) == 0) vals[k++] = 0;
        else break;
        s += len + (s[len] == ',');
    }
    if (L->failed) return;
    if (*s || (k != 1 && k != n)) {
        loader_fail(L, "UNet config '%s%s=%s' is not a boolean or one boolean per level", L->prefix, key, v);
        return;
    }
    for (i = 0; i < n; i++) out[i] = vals[k == 1 ? 0 : i];
}

/* Block type names (comma-separated) into names[]: 1 for the CrossAttn variant, 0 for the plain one,
 * anything else refused. diffusers drops a "UNetRes" prefix, so do we. */
static void cfg_block_types(Loader *L, const char *key, const char *plain, const char *cross, int n, int *attn)
{
    const char *v = ld_str(L, "%s", key), *s = v;
    int k = 0;
    char name[64];
    while (*s && !L->failed) {
        size_t len = strcspn(s, ",");
        snprintf(name, sizeof name, "%.*s", (int)len, s);
        s += len + (s[len] == ',');
        if (k == n) break;
        if (strncmp(name, "UNetRes", 7) == 0) memmove(name, name + 7, strlen(name + 7) + 1);
        if (strcmp(name, plain) == 0 || strcmp(name, cross) == 0) attn[k++] = strcmp(name, cross) == 0;
        else loader_fail(L, "UNet config '%s%s': block type '%s' is not supported by ediff (supported: %s|%s)",
                         L->prefix, key, name, plain, cross);
    }
    if (!L->failed && (k != n || *s))
        loader_fail(L, "UNet config '%s%s=%s' must name %d blocks, one per block_out_channels entry", L->prefix,
                    key, v, n);
}

static int act_of(const char *v) { return strcmp(v, "none") == 0 ? ACT_NONE : ACT_SILU; }

/* Every UNet2DConditionModel config field that changes the computation: read, defaulted as diffusers
 * defaults it, or refused. Fields that do not reach the supported blocks are ignored (docs/unet.md). */
static void unet_config(Loader *L, UnetConfig *c)
{
    int cad[UNET_MAX_LEVELS], n, i;
    const char *v;

    cfg_one_of(L, "center_input_sample", "false", "false");
    cfg_one_of(L, "time_embedding_type", "positional", "positional");
    cfg_one_of(L, "time_cond_proj_dim", "none", "none");
    cfg_one_of(L, "addition_embed_type", "none", "none");
    cfg_one_of(L, "dual_cross_attention", "false", "false");
    cfg_one_of(L, "attention_type", "default", "default");
    cfg_one_of(L, "class_embeddings_concat", "false", "false");
    cfg_one_of(L, "num_attention_heads", "none", "none");     /* diffusers itself refuses it in this class */
    cfg_one_of(L, "reverse_transformer_layers_per_block", "none", "none");
    cfg_one_of(L, "act_fn", "silu", "silu|swish");

    c->in_channels = (int)ld_int(L, "in_channels");
    c->out_channels = (int)ld_int(L, "out_channels");
    n = c->n_levels = ld_ints(L, c->block_out_channels, UNET_MAX_LEVELS, "block_out_channels");
    cfg_block_types(L, "down_block_types", "DownBlock2D", "CrossAttnDownBlock2D", n, c->down_attention);
    cfg_block_types(L, "up_block_types", "UpBlock2D", "CrossAttnUpBlock2D", n, c->up_attention);
    v = cfg_one_of(L, "mid_block_type", "UNetMidBlock2DCrossAttn", "UNetMidBlock2DCrossAttn|UNetMidBlock2D|none");
    c->mid_block = strcmp(v, "none") == 0 ? UNET_MID_NONE : strcmp(v, "UNetMidBlock2D") == 0 ? UNET_MID_RESNET
                                                                                             : UNET_MID_CROSSATTN;
    cfg_per_level(L, "layers_per_block", 2, n, c->layers_per_block);
    cfg_per_level(L, "attention_head_dim", 8, n, c->heads);
    cfg_per_level(L, "transformer_layers_per_block", 1, n, c->transformer_layers);
    cfg_bools_per_level(L, "only_cross_attention", n, c->only_cross_attention);
    cfg_per_level(L, "cross_attention_dim", 1280, n, cad);
    c->cross_attention_dim = cad[0];
    for (i = 1; i < n && !L->failed; i++)
        if (cad[i] != cad[0])
            loader_fail(L, "UNet config '%scross_attention_dim': one width per level is not supported", L->prefix);

    /* encoder_hid_proj: diffusers makes it "text_proj" when only encoder_hid_dim is given */
    v = cfg_one_of(L, "encoder_hid_dim_type", "none", "none|text_proj");
    c->encoder_hid_dim = cfg_int_or_none(L, "encoder_hid_dim", 0);
    if (!L->failed && strcmp(v, "text_proj") == 0 && c->encoder_hid_dim <= 0)
        loader_fail(L, "UNet config '%sencoder_hid_dim_type=text_proj' needs encoder_hid_dim", L->prefix);
    c->context_dim = c->encoder_hid_dim ? c->encoder_hid_dim : c->cross_attention_dim;

    c->use_linear_projection = ld_bool_or(L, 0, "use_linear_projection");
    c->norm_num_groups = cfg_int_or_none(L, "norm_num_groups", 0);
    c->norm_eps = (float)ld_float_or(L, 1e-5, "norm_eps");
    c->scale_shift = strcmp(cfg_one_of(L, "resnet_time_scale_shift", "default", "default|scale_shift"),
                            "scale_shift") == 0;
    c->flip_sin_to_cos = ld_bool_or(L, 1, "flip_sin_to_cos");
    c->freq_shift = (float)ld_float_or(L, 0.0, "freq_shift");
    c->time_embed_dim = cfg_int_or_none(L, "time_embedding_dim", 4 * c->block_out_channels[0]);
    if (strcmp(cfg_one_of(L, "class_embed_type", "none", "none|projection"), "projection") == 0)
        c->class_embed_dim = cfg_int_or_none(L, "projection_class_embeddings_input_dim", 0);
    else
        cfg_one_of(L, "num_class_embeds", "none", "none");
    c->time_embedding_act = act_of(cfg_one_of(L, "time_embedding_act_fn", "none", "none|silu|swish"));
    c->timestep_post_act = act_of(cfg_one_of(L, "timestep_post_act", "none", "none|silu|swish"));
    c->conv_in_kernel = (int)ld_int_or(L, 3, "conv_in_kernel");
    c->conv_out_kernel = (int)ld_int_or(L, 3, "conv_out_kernel");
    c->downsample_padding = (int)ld_int_or(L, 1, "downsample_padding");
    c->mid_block_scale_factor = (float)ld_float_or(L, 1.0, "mid_block_scale_factor");
    if (L->failed) return;
    if (c->norm_num_groups == 0) {
        loader_fail(L, "UNet config '%snorm_num_groups=none' is not supported by ediff (supported: a number)",
                    L->prefix);
        return;
    }

    /* values diffusers would not build, or that would make ediff read out of bounds */
    if (c->in_channels < 1 || c->out_channels < 1 || c->norm_num_groups < 1 || c->time_embed_dim < 1 ||
        c->cross_attention_dim < 1 || c->encoder_hid_dim < 0 || c->class_embed_dim < 0 || c->downsample_padding < 0 ||
        c->conv_in_kernel < 1 || c->conv_in_kernel % 2 == 0 || c->conv_out_kernel < 1 ||
        c->conv_out_kernel % 2 == 0 || c->mid_block_scale_factor == 0.0f ||
        (float)(c->block_out_channels[0] / 2) == c->freq_shift) {
        loader_fail(L, "UNet config under '%s' is invalid (channels, groups, kernels, paddings or scales out of range)",
                    L->prefix);
        return;
    }
    for (i = 0; i < n; i++)
        if (c->block_out_channels[i] < 1 || c->layers_per_block[i] < 1 || c->layers_per_block[i] >= UNET_MAX_LAYERS ||
            c->transformer_layers[i] < 1 || c->transformer_layers[i] > UNET_MAX_LAYERS || c->heads[i] < 1) {
            loader_fail(L, "UNet config under '%s': level %d has block_out_channels=%d, layers_per_block=%d, "
                        "transformer_layers_per_block=%d, attention_head_dim=%d (supported: >= 1, layers < %d)",
                        L->prefix, i, c->block_out_channels[i], c->layers_per_block[i], c->transformer_layers[i],
                        c->heads[i], UNET_MAX_LAYERS);
            return;
        }
}

/* ================================================================== weights ====================== */

static void load_linear(Loader *L, UnetLayer *l, int out, int in, int bias, const char *name)
{
    int s[2] = {out, in};
    l->weight = ld_tensor(L, 2, s, "%s.weight", name);
    l->bias = bias ? ld_tensor(L, 1, s, "%s.bias", name) : NULL;
}

static void load_conv(Loader *L, UnetLayer *l, int out, int in, int k, const char *name)
{
    int s[4] = {out, in, k, k};
    l->weight = ld_tensor(L, 4, s, "%s.weight", name);
    l->bias = ld_tensor(L, 1, s, "%s.bias", name);
}

static void load_norm(Loader *L, UnetLayer *l, int C, int groups, const char *name)
{
    if (groups && C % groups) {
        loader_fail(L, "UNet '%s%s': GroupNorm over %d channels, not divisible by norm_num_groups=%d", L->prefix,
                    name, C, groups);
        return;
    }
    l->weight = ld_tensor(L, 1, &C, "%s.weight", name);
    l->bias = ld_tensor(L, 1, &C, "%s.bias", name);
}

/* A tensor the config has no place for means config and weights disagree: refuse rather than ignore. */
static void refuse_tensor(Loader *L, const char *name)
{
    if (!L->failed && ld_has(L, "%s", name))
        loader_fail(L, "tensor '%s%s' is in the blob but not in the UNet its config describes", L->prefix, name);
}

/* A view of rows r0 .. r0+n-1 of a tensor (the two halves of GEGLU's projection). */
static Tensor tensor_rows(const Tensor *t, int64_t r0, int64_t n)
{
    Tensor v = *t;
    int64_t row = t->numel / t->shape[0];
    v.shape[0] = n;
    v.numel = n * row;
    v.data = (const char *)t->data + (size_t)(r0 * row) * dtype_size(t->dtype);
    return v;
}

static void resnet_load(Loader *L, const UnetConfig *c, UnetResnet *r, int cin, int cout, float scale,
                        const char *name)
{
    char n[NAME];
    r->cin = cin;
    r->cout = cout;
    r->output_scale_factor = scale;
    load_norm(L, &r->norm1, cin, c->norm_num_groups, join(n, name, "norm1"));
    load_conv(L, &r->conv1, cout, cin, 3, join(n, name, "conv1"));
    load_linear(L, &r->time_emb_proj, c->scale_shift ? 2 * cout : cout, c->time_embed_dim, 1,
                join(n, name, "time_emb_proj"));
    load_norm(L, &r->norm2, cout, c->norm_num_groups, join(n, name, "norm2"));
    load_conv(L, &r->conv2, cout, cout, 3, join(n, name, "conv2"));
    if (cin != cout) load_conv(L, &r->conv_shortcut, cout, cin, 1, join(n, name, "conv_shortcut"));
    else refuse_tensor(L, join(n, name, "conv_shortcut.weight"));
}

static void attention_load(Loader *L, UnetAttention *a, int D, int kv_dim, int cross, const char *name)
{
    char n[NAME];
    a->cross = cross;
    load_linear(L, &a->to_q, D, D, 0, join(n, name, "to_q"));
    load_linear(L, &a->to_k, D, kv_dim, 0, join(n, name, "to_k"));
    load_linear(L, &a->to_v, D, kv_dim, 0, join(n, name, "to_v"));
    load_linear(L, &a->to_out, D, D, 1, join(n, name, "to_out.0"));
}

static void transformer_load(Loader *L, const UnetConfig *c, UnetTransformer *t, int C, int heads, int n_blocks,
                             int only_cross, const char *name)
{
    char n[NAME], b[NAME];
    int D, k;
    if (heads > C) {
        loader_fail(L, "UNet '%s%s': %d attention heads for %d channels", L->prefix, name, heads, C);
        return;
    }
    t->channels = C;
    t->heads = heads;
    t->head_dim = C / heads;
    t->ff_dim = 4 * (D = heads * t->head_dim);                     /* FeedForward(mult=4) */
    t->n_blocks = n_blocks;
    t->blocks = xcalloc((size_t)n_blocks, sizeof *t->blocks);
    load_norm(L, &t->norm, C, c->norm_num_groups, join(n, name, "norm"));
    if (c->use_linear_projection) load_linear(L, &t->proj_in, D, C, 1, join(n, name, "proj_in"));
    else load_conv(L, &t->proj_in, D, C, 1, join(n, name, "proj_in"));
    for (k = 0; k < n_blocks; k++) {
        UnetTransformerBlock *tb = &t->blocks[k];
        path(b, "%s.transformer_blocks.%d", name, k);
        load_norm(L, &tb->norm1, D, 0, join(n, b, "norm1"));
        attention_load(L, &tb->attn1, D, only_cross ? c->cross_attention_dim : D, only_cross, join(n, b, "attn1"));
        load_norm(L, &tb->norm2, D, 0, join(n, b, "norm2"));
        attention_load(L, &tb->attn2, D, c->cross_attention_dim, 1, join(n, b, "attn2"));
        load_norm(L, &tb->norm3, D, 0, join(n, b, "norm3"));
        {
            UnetLayer proj;                                          /* GEGLU: [value | gate] rows */
            load_linear(L, &proj, 2 * t->ff_dim, D, 1, join(n, b, "ff.net.0.proj"));
            if (L->failed) return;
            tb->ff_value_w = tensor_rows(proj.weight, 0, t->ff_dim);
            tb->ff_gate_w = tensor_rows(proj.weight, t->ff_dim, t->ff_dim);
            tb->ff_value_b = tensor_rows(proj.bias, 0, t->ff_dim);
            tb->ff_gate_b = tensor_rows(proj.bias, t->ff_dim, t->ff_dim);
        }
        load_linear(L, &tb->ff_out, D, t->ff_dim, 1, join(n, b, "ff.net.2"));
    }
    path(b, "%s.transformer_blocks.%d.norm1.weight", name, n_blocks);
    refuse_tensor(L, b);
    if (c->use_linear_projection) load_linear(L, &t->proj_out, C, D, 1, join(n, name, "proj_out"));
    else load_conv(L, &t->proj_out, C, D, 1, join(n, name, "proj_out"));
}

/* The resnets (and n_attn attentions) of one block; cin[j] is resnet j's input channels. */
static void block_load(Loader *L, const UnetConfig *c, UnetBlock *blk, const char *name, int n_resnets,
                       int n_attn, const int *cin, int cout, float scale, int heads, int tlayers, int only_cross)
{
    char n[NAME];
    int j;
    blk->n_resnets = n_resnets;
    blk->has_attention = n_attn > 0;
    blk->resnets = xcalloc((size_t)n_resnets, sizeof *blk->resnets);
    if (n_attn) blk->attentions = xcalloc((size_t)n_resnets, sizeof *blk->attentions);  /* mid: one unused */
    for (j = 0; j < n_resnets && !L->failed; j++) {
        path(n, "%s.resnets.%d", name, j);
        resnet_load(L, c, &blk->resnets[j], cin[j], cout, scale, n);
    }
    for (j = 0; j < n_attn && !L->failed; j++) {
        path(n, "%s.attentions.%d", name, j);
        transformer_load(L, c, &blk->attentions[j], cout, heads, tlayers, only_cross, n);
    }
    path(n, "%s.resnets.%d.norm1.weight", name, n_resnets);
    refuse_tensor(L, n);
    path(n, "%s.attentions.%d.norm.weight", name, n_attn);
    refuse_tensor(L, n);
}

/* Builds the module tree exactly as UNet2DConditionModel.__init__ does (channels per resnet included). */
static void unet_weights(Loader *L, Unet *u)
{
    const UnetConfig *c = &u->config;
    const int *boc = c->block_out_channels;
    int nl = c->n_levels, C0 = boc[0], ted = c->time_embed_dim, cin[UNET_MAX_LAYERS + 1], i, j;
    char n[NAME];

    load_conv(L, &u->conv_in, C0, c->in_channels, c->conv_in_kernel, "conv_in");
    load_linear(L, &u->time_embedding[0], ted, C0, 1, "time_embedding.linear_1");
    load_linear(L, &u->time_embedding[1], ted, ted, 1, "time_embedding.linear_2");
    if (c->class_embed_dim) {
        load_linear(L, &u->class_embedding[0], ted, c->class_embed_dim, 1, "class_embedding.linear_1");
        load_linear(L, &u->class_embedding[1], ted, ted, 1, "class_embedding.linear_2");
    } else {
        refuse_tensor(L, "class_embedding.linear_1.weight");
    }
    if (c->encoder_hid_dim) load_linear(L, &u->encoder_hid_proj, c->cross_attention_dim, c->encoder_hid_dim, 1,
                                        "encoder_hid_proj");
    else refuse_tensor(L, "encoder_hid_proj.weight");

    for (i = 0; i < nl && !L->failed; i++) {                    /* down: level i */
        int cout = boc[i], lpb = c->layers_per_block[i];
        for (j = 0; j < lpb; j++) cin[j] = j ? cout : boc[i > 0 ? i - 1 : 0];
        path(n, "down_blocks.%d", i);
        block_load(L, c, &u->down[i], n, lpb, c->down_attention[i] ? lpb : 0, cin, cout, 1.0f, c->heads[i],
                   c->transformer_layers[i], c->only_cross_attention[i]);
        path(n, "down_blocks.%d.downsamplers.0.conv", i);
        if (i < nl - 1) load_conv(L, &u->down[i].sampler, cout, cout, 3, n);
        else refuse_tensor(L, strcat(n, ".weight"));
    }
    if (c->mid_block != UNET_MID_NONE) {                          /* mid: its resnets keep the channels */
        int cross = c->mid_block == UNET_MID_CROSSATTN;
        cin[0] = cin[1] = boc[nl - 1];
        block_load(L, c, &u->mid, "mid_block", 1 + cross, cross, cin, boc[nl - 1], c->mid_block_scale_factor,
                   c->heads[nl - 1], c->transformer_layers[nl - 1], 0);
    } else {
        refuse_tensor(L, "mid_block.resnets.0.norm1.weight");
    }
    for (i = 0; i < nl && !L->failed; i++) {                    /* up block i works at level r = nl-1-i */
        int r = nl - 1 - i, cout = boc[r], skip_in = boc[r > 0 ? r - 1 : 0], prev = boc[r < nl - 1 ? r + 1 : r];
        int nr = c->layers_per_block[r] + 1;
        for (j = 0; j < nr; j++) cin[j] = (j ? cout : prev) + (j == nr - 1 ? skip_in : cout);
        path(n, "up_blocks.%d", i);
        block_load(L, c, &u->up[i], n, nr, c->up_attention[i] ? nr : 0, cin, cout, 1.0f, c->heads[r],
                   c->transformer_layers[r], c->only_cross_attention[r]);
        path(n, "up_blocks.%d.upsamplers.0.conv", i);
        if (i < nl - 1) load_conv(L, &u->up[i].sampler, cout, cout, 3, n);
        else refuse_tensor(L, strcat(n, ".weight"));
    }
    load_norm(L, &u->conv_norm_out, C0, c->norm_num_groups, "conv_norm_out");
    load_conv(L, &u->conv_out, c->out_channels, C0, c->conv_out_kernel, "conv_out");
}

/* Every attention layer that reads the context, into u->cross_layers; each learns its slot there. */
static void list_cross_layers(Unet *u)
{
    UnetBlock *blocks[2 * UNET_MAX_LEVELS + 1];
    int nb = 0, pass, i, j, k, n;
    for (i = 0; i < u->config.n_levels; i++) blocks[nb++] = &u->down[i];
    blocks[nb++] = &u->mid;
    for (i = 0; i < u->config.n_levels; i++) blocks[nb++] = &u->up[i];
    for (pass = 0; pass < 2; pass++) {                            /* count, then list */
        for (i = 0, n = 0; i < nb; i++) {
            int n_attn = !blocks[i]->has_attention ? 0 : blocks[i] == &u->mid ? blocks[i]->n_resnets - 1
                                                                               : blocks[i]->n_resnets;
            for (j = 0; j < n_attn; j++)
                for (k = 0; k < blocks[i]->attentions[j].n_blocks; k++) {
                    UnetAttention *at[2];
                    int a;
                    at[0] = &blocks[i]->attentions[j].blocks[k].attn1;
                    at[1] = &blocks[i]->attentions[j].blocks[k].attn2;
                    for (a = 0; a < 2; a++) {
                        if (!at[a]->cross) continue;
                        if (pass) u->cross_layers[n] = at[a];
                        at[a]->kv_slot = n++;
                    }
                }
        }
        if (!pass) u->cross_layers = xcalloc((size_t)(n ? n : 1), sizeof *u->cross_layers);
        u->n_cross = n;
    }
}

int unet_load(Unet *u, const Blob *b, const char *prefix, char err[EDIFF_ERR])
{
    Loader L;
    memset(u, 0, sizeof *u);
    loader_init(&L, b, prefix);
    unet_config(&L, &u->config);
    if (!L.failed) unet_weights(&L, u);
    if (!L.failed) list_cross_layers(u);
    if (L.failed) {
        snprintf(err, EDIFF_ERR, "%s", L.err);
        unet_free(u);
        return -1;
    }
    return 0;
}

static void block_free(UnetBlock *b)
{
    int j;
    if (b->attentions)
        for (j = 0; j < b->n_resnets; j++) free(b->attentions[j].blocks);   /* calloc'd: unused entries NULL */
    free(b->attentions);
    free(b->resnets);
}

void unet_free(Unet *u)
{
    int i;
    for (i = 0; i < UNET_MAX_LEVELS; i++) {
        block_free(&u->down[i]);
        block_free(&u->up[i]);
    }
    block_free(&u->mid);
    free(u->cross_layers);
    memset(u, 0, sizeof *u);
}

/* ================================================================== shapes and memory ============ */

/* Spatial size of every level: level 0 is the input; each Downsample2D is a 3x3 stride-2 conv with
 * downsample_padding p (p = 0: diffusers first pads one zero row and column at the bottom/right).
 * -1 if some level would be empty (a kernel larger than its padded input, which PyTorch refuses). */
static int level_sizes(const UnetConfig *c, int H, int W, int *hs, int *ws)
{
    int l, p = c->downsample_padding, extra = p == 0;
    if (H < 1 || W < 1) return -1;
    hs[0] = H;
    ws[0] = W;
    for (l = 1; l < c->n_levels; l++) {
        if (hs[l - 1] + extra + 2 * p < 3 || ws[l - 1] + extra + 2 * p < 3) return -1;
        hs[l] = conv_out_size(hs[l - 1] + extra, 3, 2, p);
        ws[l] = conv_out_size(ws[l - 1] + extra, 3, 2, p);
    }
    return 0;
}

/* Floats that an arena allocation of n floats occupies (64-byte granules). */
static size_t fl(size_t n) { return (n + 15) / 16 * 16; }
static size_t max2(size_t a, size_t b) { return a > b ? a : b; }

static size_t resnet_scratch(const UnetConfig *c, const UnetResnet *r, size_t hw)
{
    return fl(r->cin * hw) + fl(r->cout * hw) + fl((size_t)(c->scale_shift ? 2 : 1) * r->cout);
}

static size_t attention_scratch(const UnetTransformer *t, const UnetAttention *a, size_t hw, int n_ctx)
{
    size_t D = (size_t)t->heads * t->head_dim, tk = a->cross ? (size_t)n_ctx : hw;
    return 2 * fl(hw * D) + 2 * fl(tk * D);                        /* q (reused for to_out), o; k, v */
}

static size_t transformer_scratch(const UnetTransformer *t, size_t hw, int n_ctx)
{
    size_t D = (size_t)t->heads * t->head_dim, s = 2 * fl(hw * t->ff_dim), k;
    for (k = 0; k < (size_t)t->n_blocks; k++)                      /* largest of attn1, attn2, ff */
        s = max2(s, max2(attention_scratch(t, &t->blocks[k].attn1, hw, n_ctx),
                         attention_scratch(t, &t->blocks[k].attn2, hw, n_ctx)));
    return fl(t->channels * hw) + fl(hw * D) + fl(hw * D) + s;    /* group norm, tokens, normed tokens */
}

/* resnets[j] then attentions[j] (resnet_attention below). */
static size_t layer_scratch(const UnetConfig *c, const UnetBlock *b, int j, size_t hw, int n_ctx)
{
    const UnetResnet *r = &b->resnets[j];
    if (!b->has_attention) return resnet_scratch(c, r, hw);
    return fl(r->cout * hw) + max2(resnet_scratch(c, r, hw), transformer_scratch(&b->attentions[j], hw, n_ctx));
}

static size_t mid_scratch(const UnetConfig *c, const UnetBlock *b, size_t hw, int n_ctx)
{
    size_t C = (size_t)b->resnets[0].cout;
    if (!b->has_attention) return resnet_scratch(c, &b->resnets[0], hw);
    return fl(C * hw) + max2(resnet_scratch(c, &b->resnets[0], hw),
                             fl(C * hw) + max2(transformer_scratch(&b->attentions[0], hw, n_ctx),
                                               resnet_scratch(c, &b->resnets[1], hw)));
}

/* Floats of each of the two ping-pong buffers: the largest output of the mid block and the up path. */
static size_t pingpong_floats(const Unet *u, const int *hs, const int *ws)
{
    const UnetConfig *c = &u->config;
    int nl = c->n_levels, i;
    size_t m = (size_t)c->block_out_channels[nl - 1] * hs[nl - 1] * ws[nl - 1];
    for (i = 0; i < nl; i++) {
        int r = nl - 1 - i, t = r > 0 ? r - 1 : r;
        m = max2(m, (size_t)c->block_out_channels[r] * hs[r] * ws[r]);
        if (i < nl - 1) m = max2(m, (size_t)c->block_out_channels[r] * hs[t] * ws[t]);
    }
    return m;
}

size_t unet_arena_bytes(const Unet *u, int H, int W, int n_ctx)
{
    const UnetConfig *c = &u->config;
    int hs[UNET_MAX_LEVELS], ws[UNET_MAX_LEVELS], nl = c->n_levels, C0 = c->block_out_channels[0], i, j;
    size_t keep, scratch = 0, hw;
    if (level_sizes(c, H, W, hs, ws)) return 0;
    /* kept for the whole call: embeddings, projected context, every skip, the ping-pong pair */
    keep = fl(C0) + 4 * fl(c->time_embed_dim) + (c->encoder_hid_dim ? fl((size_t)n_ctx * c->cross_attention_dim) : 0);
    keep += fl((size_t)C0 * H * W) + 2 * fl(pingpong_floats(u, hs, ws));
    for (i = 0; i < nl; i++) {
        const UnetBlock *b = &u->down[i];
        hw = (size_t)hs[i] * ws[i];
        for (j = 0; j < b->n_resnets; j++) {
            keep += fl(b->resnets[j].cout * hw);
            scratch = max2(scratch, layer_scratch(c, b, j, hw, n_ctx));
        }
        if (b->sampler.weight) {
            keep += fl((size_t)c->block_out_channels[i] * hs[i + 1] * ws[i + 1]);
            if (c->downsample_padding == 0)
                scratch = max2(scratch, fl((size_t)c->block_out_channels[i] * (hs[i] + 1) * (ws[i] + 1)));
        }
    }
    if (c->mid_block != UNET_MID_NONE)
        scratch = max2(scratch, mid_scratch(c, &u->mid, (size_t)hs[nl - 1] * ws[nl - 1], n_ctx));
    for (i = 0; i < nl; i++) {
        const UnetBlock *b = &u->up[i];
        int r = nl - 1 - i;
        hw = (size_t)hs[r] * ws[r];
        for (j = 0; j < b->n_resnets; j++)                          /* concatenated input, then the layer */
            scratch = max2(scratch, fl(b->resnets[j].cin * hw) + layer_scratch(c, b, j, hw, n_ctx));
        if (b->sampler.weight)
            scratch = max2(scratch, fl((size_t)c->block_out_channels[r] * hs[r - 1] * ws[r - 1]));
    }
    scratch = max2(scratch, fl((size_t)C0 * H * W));                /* conv_norm_out */
    return 64 + 4 * (keep + scratch);
}

int unet_attention_grids(const Unet *u, int H, int W, int *grids, int max)
{
    const UnetConfig *c = &u->config;
    int hs[UNET_MAX_LEVELS], ws[UNET_MAX_LEVELS], nl = c->n_levels, n = 0, l;
    if (level_sizes(c, H, W, hs, ws)) return -1;
    for (l = 0; l < nl; l++) {                                      /* largest grid first */
        int cross = c->down_attention[l] || c->up_attention[nl - 1 - l] ||
                    (l == nl - 1 && c->mid_block == UNET_MID_CROSSATTN);
        if (cross && n < max && !(n > 0 && grids[2 * n - 2] == hs[l] && grids[2 * n - 1] == ws[l])) {
            grids[2 * n] = hs[l];                                   /* levels only repeat a size at 1x1 */
            grids[2 * n + 1] = ws[l];
            n++;
        }
    }
    return n;
}

/* ================================================================== forward ====================== */

typedef struct {
    const Unet      *u;
    Arena           *arena;
    const float     *temb;       /* SiLU(emb) [time_embed_dim]: the input of every time_emb_proj */
    const float     *context;    /* [n_ctx, cross_attention_dim] */
    int              n_ctx;
    const UnetCrossKV *kv;       /* the context's keys and values, or NULL */
    const PaintBias *paint;
    const DumpHook  *hook;
} Run;

/* The skip connections of the down path (diffusers' down_block_res_samples), consumed last-first. */
typedef struct {
    float *x[MAX_SKIPS];
    int    channels[MAX_SKIPS], n;
} Skips;

static void dump(const Run *r, const char *name, const float *x, int rank, long d1, long d2, long d3)
{
    int64_t shape[4];
    if (!r->hook || !r->hook->fn) return;
    shape[0] = 1; shape[1] = d1; shape[2] = d2; shape[3] = d3;
    r->hook->fn(r->hook->ctx, name, x, rank, shape);
}

/* y[i, :] += b for every row i of y[n, dim]. */
static void add_row_bias(float *y, long n, int dim, const Tensor *b)
{
    float *bias = xmalloc((size_t)dim * sizeof(float));
    long i;
    tensor_to_f32(b, bias, 0, dim);
OMP(omp parallel for schedule(static) if ((double)n * dim >= PAR_WORK))
    for (i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) y[i * dim + j] += bias[j];
    free(bias);
}

/* ResnetBlock2D (diffusers resnet.py): x [cin, HW] -> y [cout, HW]. */
static void resnet_forward(const Run *r, const UnetResnet *rb, const float *x, int H, int W, float *y)
{
    const UnetConfig *c = &r->u->config;
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int cout = rb->cout, HW = H * W, G = c->norm_num_groups, ch;
    long i, n = (long)cout * HW;
    float *h = arena_alloc(a, (size_t)rb->cin * HW), *t = arena_alloc(a, (size_t)n);
    float *e = arena_alloc(a, (size_t)(c->scale_shift ? 2 : 1) * cout), inv = 1.0f / rb->output_scale_factor;
    group_norm(h, x, rb->cin, HW, G, c->norm_eps, rb->norm1.weight, rb->norm1.bias, 1);
    conv2d(t, h, rb->cin, H, W, rb->conv1.weight, rb->conv1.bias, 1, 1);
    linear(e, r->temb, 1, c->time_embed_dim, rb->time_emb_proj.weight, rb->time_emb_proj.bias);
    if (c->scale_shift) {                                          /* FiLM: GN(t) * (1 + scale) + shift */
        group_norm(t, t, cout, HW, G, c->norm_eps, rb->norm2.weight, rb->norm2.bias, 0);
OMP(omp parallel for schedule(static) if ((double)n >= PAR_WORK))
        for (ch = 0; ch < cout; ch++)
            for (long p = 0; p < HW; p++) t[(long)ch * HW + p] = t[(long)ch * HW + p] * (1.0f + e[ch]) + e[cout + ch];
        activate(ACT_SILU, t, (size_t)n);
    } else {                                                       /* GN(t + emb) */
OMP(omp parallel for schedule(static) if ((double)n >= PAR_WORK))
        for (ch = 0; ch < cout; ch++)
            for (long p = 0; p < HW; p++) t[(long)ch * HW + p] += e[ch];
        group_norm(t, t, cout, HW, G, c->norm_eps, rb->norm2.weight, rb->norm2.bias, 1);
    }
    conv2d(y, t, cout, H, W, rb->conv2.weight, rb->conv2.bias, 1, 1);
    if (rb->conv_shortcut.weight) {                                /* t is free again */
        conv2d(t, x, rb->cin, H, W, rb->conv_shortcut.weight, rb->conv_shortcut.bias, 1, 0);
        x = t;
    }
OMP(omp parallel for schedule(static) if ((double)n >= PAR_WORK))
    for (i = 0; i < n; i++) y[i] = (x[i] + y[i]) * inv;
    arena_reset(a, m);
}

/* diffusers Attention with AttnProcessor, n [HW, D] normed tokens: h += to_out(softmax(q kᵀ/sqrt(d)) v).
 * A cross-attention call under paint-with-words adds weight · max(q kᵀ) · A / sqrt(d) to the logits
 * (eDiff-I §4.3; attention() takes the max over all heads, queries and keys of this call). */
static void attention_forward(const Run *r, const UnetTransformer *t, const UnetAttention *at, const float *n,
                              int H, int W, float *h, const char *name)
{
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int HW = H * W, D = t->heads * t->head_dim, Tk = at->cross ? r->n_ctx : HW;
    int kv_dim = at->cross ? r->u->config.cross_attention_dim : D;
    const float *kv = at->cross ? r->context : n, *k, *v;
    float *q = arena_alloc(a, (size_t)HW * D), *o = arena_alloc(a, (size_t)HW * D);
    float scale = 1.0f / sqrtf((float)t->head_dim);
    AttnBias paint;
    const AttnBias *bias = NULL;
    linear(q, n, HW, D, at->to_q.weight, at->to_q.bias);
    if (at->cross && r->kv) {                                      /* memoised for this context */
        k = r->kv->k[at->kv_slot];
        v = r->kv->v[at->kv_slot];
    } else {
        float *kb = arena_alloc(a, (size_t)Tk * D), *vb = arena_alloc(a, (size_t)Tk * D);
        linear(kb, kv, Tk, kv_dim, at->to_k.weight, at->to_k.bias);
        linear(vb, kv, Tk, kv_dim, at->to_v.weight, at->to_v.bias);
        k = kb;
        v = vb;
    }
    if (at->cross && r->paint) {
        int g;
        memset(&paint, 0, sizeof paint);
        for (g = 0; g < r->paint->n_maps; g++)
            if (r->paint->maps[g].h == H && r->paint->maps[g].w == W) paint.add = r->paint->maps[g].A;
        paint.qs = r->n_ctx;                                       /* A[p, j]: same for every head */
        paint.ks = 1;
        paint.add_scale = scale * r->paint->weight;
        paint.add_times_max = 1;
        bias = &paint;
    }
    attention(o, D, q, D, k, D, v, D, HW, Tk, t->heads, t->head_dim, scale, bias);
    linear(q, o, HW, D, at->to_out.weight, at->to_out.bias);      /* q is free again */
    dump(r, name, q, 3, HW, D, 0);
    vec_add(h, q, (size_t)HW * D);
    arena_reset(a, m);
}

/* FeedForward with GEGLU: h += net.2(value * GELU(gate)), [value | gate] = net.0.proj(n). n is reused. */
static void feed_forward(const Run *r, const UnetTransformer *t, const UnetTransformerBlock *b, float *n, int HW,
                         float *h, const char *name)
{
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int D = t->heads * t->head_dim, F = t->ff_dim;
    long i, nf = (long)HW * F;
    float *x = arena_alloc(a, (size_t)nf), *g = arena_alloc(a, (size_t)nf);
    linear(x, n, HW, D, &b->ff_value_w, &b->ff_value_b);
    linear(g, n, HW, D, &b->ff_gate_w, &b->ff_gate_b);
    activate(ACT_GELU, g, (size_t)nf);
OMP(omp parallel for schedule(static) if ((double)nf >= PAR_WORK))
    for (i = 0; i < nf; i++) x[i] *= g[i];
    linear(n, x, HW, F, b->ff_out.weight, b->ff_out.bias);
    dump(r, name, n, 3, HW, D, 0);
    vec_add(h, n, (size_t)HW * D);
    arena_reset(a, m);
}

/* BasicTransformerBlock (norm_type "layer_norm"): pre-LN self- (or cross-) attention, cross-attention,
 * feed-forward, each added to the tokens h [HW, D]. */
static void transformer_block(const Run *r, const UnetTransformer *t, const UnetTransformerBlock *b, float *h,
                              int H, int W, const char *name)
{
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int HW = H * W, D = t->heads * t->head_dim;
    float *n = arena_alloc(a, (size_t)HW * D);
    char sub[NAME];
    layer_norm(n, h, HW, D, BLOCK_LN_EPS, b->norm1.weight, b->norm1.bias);
    attention_forward(r, t, &b->attn1, n, H, W, h, join(sub, name, "attn1"));
    layer_norm(n, h, HW, D, BLOCK_LN_EPS, b->norm2.weight, b->norm2.bias);
    attention_forward(r, t, &b->attn2, n, H, W, h, join(sub, name, "attn2"));
    layer_norm(n, h, HW, D, BLOCK_LN_EPS, b->norm3.weight, b->norm3.bias);
    feed_forward(r, t, b, n, HW, h, join(sub, name, "ff"));
    dump(r, name, h, 3, HW, D, 0);
    arena_reset(a, m);
}

/* Transformer2DModel: y = x + proj_out(blocks(proj_in(GroupNorm(x)))), over the H*W pixels as tokens.
 * proj_in/proj_out (1x1 conv or linear: the same matrix) read and write the transposed layouts
 * directly through the GEMM's strides. x, y [C, HW]. */
static void transformer_forward(const Run *r, const UnetTransformer *t, const float *x, int H, int W, float *y,
                                const char *name)
{
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int C = t->channels, D = t->heads * t->head_dim, HW = H * W, k, ch;
    float *g = arena_alloc(a, (size_t)C * HW), *h = arena_alloc(a, (size_t)HW * D);
    char sub[NAME];
    Mat A, B;
    group_norm(g, x, C, HW, r->u->config.norm_num_groups, TRANSFORMER_GN_EPS, t->norm.weight, t->norm.bias, 0);
    A = mat_f32(g, 1, HW);                                         /* g as [HW, C] */
    B = mat_tensor(t->proj_in.weight, 1, C);                       /* W as [C, D] */
    gemm(HW, D, C, &A, &B, h, D, 0);
    add_row_bias(h, HW, D, t->proj_in.bias);
    for (k = 0; k < t->n_blocks; k++) {
        path(sub, "%s.transformer_blocks.%d", name, k);
        transformer_block(r, t, &t->blocks[k], h, H, W, sub);
    }
    A = mat_tensor(t->proj_out.weight, D, 1);                      /* W [C, D] */
    B = mat_f32(h, 1, D);                                          /* h as [D, HW] */
    gemm(C, HW, D, &A, &B, y, HW, 0);
OMP(omp parallel for schedule(static) if ((double)C * HW >= PAR_WORK))
    for (ch = 0; ch < C; ch++) {
        float bc = tensor_at(t->proj_out.bias, ch);
        for (long p = 0; p < HW; p++) y[(long)ch * HW + p] += bc + x[(long)ch * HW + p];
    }
    arena_reset(a, m);
}

/* resnets[j] of a block, then attentions[j] in a CrossAttn block: x [cin, HW] -> y [cout, HW]. */
static void resnet_attention(const Run *r, const UnetBlock *b, int j, const float *x, int H, int W, float *y,
                             const char *block)
{
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int cout = b->resnets[j].cout;
    float *t = b->has_attention ? arena_alloc(a, (size_t)cout * H * W) : y;
    char name[NAME];
    path(name, "%s.resnets.%d", block, j);
    resnet_forward(r, &b->resnets[j], x, H, W, t);
    dump(r, name, t, 4, cout, H, W);
    if (b->has_attention) {
        path(name, "%s.attentions.%d", block, j);
        transformer_forward(r, &b->attentions[j], t, H, W, y, name);
        dump(r, name, y, 4, cout, H, W);
    }
    arena_reset(a, m);
}

/* Downsample2D(use_conv=True): 3x3 stride-2 conv; padding 0 means diffusers' F.pad(x, (0, 1, 0, 1)). */
static void downsample(const Run *r, const UnetLayer *conv, const float *x, int C, int H, int W, float *y)
{
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int p = r->u->config.downsample_padding, ch;
    float *xp;
    if (p > 0) {
        conv2d(y, x, C, H, W, conv->weight, conv->bias, 2, p);
        return;
    }
    xp = arena_alloc(a, (size_t)C * (H + 1) * (W + 1));
OMP(omp parallel for schedule(static) if ((double)C * (H + 1) * (W + 1) >= PAR_WORK))
    for (ch = 0; ch < C; ch++)
        for (int i = 0; i <= H; i++)
            for (int j = 0; j <= W; j++)
                xp[((long)ch * (H + 1) + i) * (W + 1) + j] = i < H && j < W ? x[((long)ch * H + i) * W + j] : 0.0f;
    conv2d(y, xp, C, H + 1, W + 1, conv->weight, conv->bias, 2, 0);
    arena_reset(a, m);
}

/* UNetMidBlock2DCrossAttn (resnet, attention, resnet) or UNetMidBlock2D (one resnet). */
static void mid_block(const Run *r, const float *x, int H, int W, float *y)
{
    const UnetBlock *b = &r->u->mid;
    Arena *a = r->arena;
    size_t m = arena_mark(a);
    int C = b->resnets[0].cout;
    if (!b->has_attention) {
        resnet_forward(r, &b->resnets[0], x, H, W, y);
        dump(r, "mid_block.resnets.0", y, 4, C, H, W);
    } else {
        float *t1 = arena_alloc(a, (size_t)C * H * W), *t2 = arena_alloc(a, (size_t)C * H * W);
        resnet_forward(r, &b->resnets[0], x, H, W, t1);
        dump(r, "mid_block.resnets.0", t1, 4, C, H, W);
        transformer_forward(r, &b->attentions[0], t1, H, W, t2, "mid_block.attentions.0");
        dump(r, "mid_block.attentions.0", t2, 4, C, H, W);
        resnet_forward(r, &b->resnets[1], t2, H, W, y);
        dump(r, "mid_block.resnets.1", y, 4, C, H, W);
    }
    dump(r, "mid_block", y, 4, C, H, W);
    arena_reset(a, m);
}

/* emb = time_embedding(time_proj(t)) [+ class_embedding(class_vec)], then time_embedding_act; returns
 * SiLU(emb), which every resnet's time_emb_proj reads (diffusers applies it inside each resnet). */
static const float *time_embed(const Run *r, float timestep, const float *class_vec)
{
    const Unet *u = r->u;
    const UnetConfig *c = &u->config;
    int C0 = c->block_out_channels[0], ted = c->time_embed_dim;
    float *t_emb = arena_alloc(r->arena, (size_t)C0), *emb = arena_alloc(r->arena, (size_t)ted);
    float *tmp = arena_alloc(r->arena, (size_t)ted), *cls = arena_alloc(r->arena, (size_t)ted);
    float *temb = arena_alloc(r->arena, (size_t)ted);
    timestep_embedding(t_emb, timestep, C0, c->flip_sin_to_cos, c->freq_shift);
    linear(tmp, t_emb, 1, C0, u->time_embedding[0].weight, u->time_embedding[0].bias);
    activate(ACT_SILU, tmp, (size_t)ted);
    linear(emb, tmp, 1, ted, u->time_embedding[1].weight, u->time_embedding[1].bias);
    activate(c->timestep_post_act, emb, (size_t)ted);
    dump(r, "time_embedding", emb, 2, ted, 0, 0);
    if (c->class_embed_dim) {                                      /* class_embed_type "projection" */
        linear(tmp, class_vec, 1, c->class_embed_dim, u->class_embedding[0].weight, u->class_embedding[0].bias);
        activate(ACT_SILU, tmp, (size_t)ted);
        linear(cls, tmp, 1, ted, u->class_embedding[1].weight, u->class_embedding[1].bias);
        dump(r, "class_embedding", cls, 2, ted, 0, 0);
        vec_add(emb, cls, (size_t)ted);
    }
    activate(c->time_embedding_act, emb, (size_t)ted);
    memcpy(temb, emb, (size_t)ted * sizeof(float));
    activate(ACT_SILU, temb, (size_t)ted);
    return temb;
}

static int has_cross_attention(const UnetConfig *c)
{
    int l, any = c->mid_block == UNET_MID_CROSSATTN;
    for (l = 0; l < c->n_levels; l++) any |= c->down_attention[l] | c->up_attention[l];
    return any;
}

static int check_input(const Unet *u, int H, int W, const float *context, int n_ctx, const float *class_vec,
                       const PaintBias *paint, int *hs, int *ws, char err[EDIFF_ERR])
{
    const UnetConfig *c = &u->config;
    int grids[2 * (2 * UNET_MAX_LEVELS + 1)], n, g, k;
    if (level_sizes(c, H, W, hs, ws)) {
        snprintf(err, EDIFF_ERR, "UNet input %dx%d is too small for %d levels", H, W, c->n_levels);
        return -1;
    }
    if (has_cross_attention(c) && (!context || n_ctx < 1)) {
        snprintf(err, EDIFF_ERR, "this UNet cross-attends: it needs a context of at least one row");
        return -1;
    }
    if (c->class_embed_dim && !class_vec) {
        snprintf(err, EDIFF_ERR, "this UNet has a class embedding (class_embed_type=projection): class_vec is needed");
        return -1;
    }
    if (!paint) return 0;
    if (paint->n_ctx != n_ctx) {
        snprintf(err, EDIFF_ERR, "paint-with-words maps have %d context columns, the context has %d rows",
                 paint->n_ctx, n_ctx);
        return -1;
    }
    n = unet_attention_grids(u, H, W, grids, 2 * UNET_MAX_LEVELS + 1);
    for (g = 0; g < n; g++) {
        int found = 0;
        for (k = 0; k < paint->n_maps; k++)
            found |= paint->maps[k].h == grids[2 * g] && paint->maps[k].w == grids[2 * g + 1] && paint->maps[k].A;
        if (!found) {
            snprintf(err, EDIFF_ERR, "paint-with-words has no map for the %dx%d attention grid",
                     grids[2 * g], grids[2 * g + 1]);
            return -1;
        }
    }
    return 0;
}

/* UNet2DConditionModel.forward: time embedding; conv_in; down blocks (every resnet/attention output
 * and every downsampler output is a skip); mid block; up blocks (each resnet takes [h, last skip]
 * concatenated on channels; each upsampler resizes to the size of the next skip, which is diffusers'
 * forward_upsample_size for sizes that do not halve evenly); GroupNorm-SiLU; conv_out. */
void unet_cross_kv(const Unet *u, const float *context, int n_ctx, UnetCrossKV *kv)
{
    const UnetConfig *c = &u->config;
    float *ctx = NULL, *p;
    size_t total = 0;
    int i;
    memset(kv, 0, sizeof *kv);
    kv->n_ctx = n_ctx;
    kv->n = u->n_cross;
    kv->k = xcalloc((size_t)(kv->n ? kv->n : 1), sizeof *kv->k);
    kv->v = xcalloc((size_t)(kv->n ? kv->n : 1), sizeof *kv->v);
    for (i = 0; i < kv->n; i++) total += 2 * fl((size_t)n_ctx * (size_t)u->cross_layers[i]->to_k.weight->shape[0]);
    kv->mem = p = xmalloc((total ? total : 1) * sizeof(float));
    if (c->encoder_hid_dim && kv->n) {                             /* as unet_forward projects it */
        ctx = xmalloc((size_t)n_ctx * c->cross_attention_dim * sizeof(float));
        linear(ctx, context, n_ctx, c->encoder_hid_dim, u->encoder_hid_proj.weight, u->encoder_hid_proj.bias);
        context = ctx;
    }
    for (i = 0; i < kv->n; i++) {
        const UnetAttention *at = u->cross_layers[i];
        size_t D = (size_t)at->to_k.weight->shape[0];
        kv->k[i] = p;
        kv->v[i] = p + fl((size_t)n_ctx * D);
        p += 2 * fl((size_t)n_ctx * D);
        linear(kv->k[i], context, n_ctx, c->cross_attention_dim, at->to_k.weight, at->to_k.bias);
        linear(kv->v[i], context, n_ctx, c->cross_attention_dim, at->to_v.weight, at->to_v.bias);
    }
    free(ctx);
}

void unet_cross_kv_free(UnetCrossKV *kv)
{
    free(kv->k);
    free(kv->v);
    free(kv->mem);
    memset(kv, 0, sizeof *kv);
}

int unet_forward(const Unet *u, Arena *a, const float *x, int H, int W, float timestep,
                 const float *context, int n_ctx, const UnetCrossKV *kv, const float *class_vec,
                 const PaintBias *paint, const DumpHook *hook, float *out, char err[EDIFF_ERR])
{
    const UnetConfig *c = &u->config;
    int hs[UNET_MAX_LEVELS], ws[UNET_MAX_LEVELS], nl = c->n_levels, C0 = c->block_out_channels[0], C, i, j;
    size_t m0, m;
    float *h, *pp[2];
    char name[NAME];
    Skips s;
    Run r;
    if (check_input(u, H, W, context, n_ctx, class_vec, paint, hs, ws, err)) return -1;
    if (kv && (kv->n_ctx != n_ctx || kv->n != u->n_cross)) {
        snprintf(err, EDIFF_ERR, "cross-attention keys/values of %d context rows and %d layers, the call has %d and "
                 "the UNet %d", kv->n_ctx, kv->n, n_ctx, u->n_cross);
        return -1;
    }
    m0 = arena_mark(a);
    r.u = u; r.arena = a; r.context = context; r.n_ctx = n_ctx; r.kv = kv; r.paint = paint; r.hook = hook;
    r.temb = time_embed(&r, timestep, class_vec);
    if (c->encoder_hid_dim && (!kv || hook)) {                     /* encoder_hid_dim_type "text_proj" (with kv:
                                                                      only for its dump) */
        float *ctx = arena_alloc(a, (size_t)n_ctx * c->cross_attention_dim);
        linear(ctx, context, n_ctx, c->encoder_hid_dim, u->encoder_hid_proj.weight, u->encoder_hid_proj.bias);
        dump(&r, "encoder_hid_proj", ctx, 3, n_ctx, c->cross_attention_dim, 0);
        r.context = ctx;
    }

    h = arena_alloc(a, (size_t)C0 * H * W);
    conv2d(h, x, c->in_channels, H, W, u->conv_in.weight, u->conv_in.bias, 1, (c->conv_in_kernel - 1) / 2);
    dump(&r, "conv_in", h, 4, C0, H, W);
    s.x[0] = h;
    s.channels[0] = C0;
    s.n = 1;
    for (i = 0; i < nl; i++) {                                     /* down */
        const UnetBlock *b = &u->down[i];
        C = c->block_out_channels[i];
        path(name, "down_blocks.%d", i);
        for (j = 0; j < b->n_resnets; j++) {
            float *y = arena_alloc(a, (size_t)C * hs[i] * ws[i]);
            resnet_attention(&r, b, j, h, hs[i], ws[i], y, name);
            s.x[s.n] = h = y;
            s.channels[s.n++] = C;
        }
        if (b->sampler.weight) {
            float *y = arena_alloc(a, (size_t)C * hs[i + 1] * ws[i + 1]);
            downsample(&r, &b->sampler, h, C, hs[i], ws[i], y);
            path(name, "down_blocks.%d.downsamplers.0", i);
            dump(&r, name, y, 4, C, hs[i + 1], ws[i + 1]);
            s.x[s.n] = h = y;
            s.channels[s.n++] = C;
        }
        path(name, "down_blocks.%d", i);
        dump(&r, name, h, 4, C, hs[i + (b->sampler.weight != NULL)], ws[i + (b->sampler.weight != NULL)]);
    }

    pp[0] = arena_alloc(a, pingpong_floats(u, hs, ws));
    pp[1] = arena_alloc(a, pingpong_floats(u, hs, ws));
    C = c->block_out_channels[nl - 1];
    if (c->mid_block != UNET_MID_NONE) {
        mid_block(&r, h, hs[nl - 1], ws[nl - 1], pp[0]);
        h = pp[0];
    }
    for (i = 0; i < nl; i++) {                                     /* up: block i works at level lv */
        const UnetBlock *b = &u->up[i];
        int lv = nl - 1 - i, hw = hs[lv] * ws[lv];
        path(name, "up_blocks.%d", i);
        for (j = 0; j < b->n_resnets; j++) {
            float *y = h == pp[0] ? pp[1] : pp[0], *cat;
            s.n--;
            m = arena_mark(a);
            cat = arena_alloc(a, (size_t)(C + s.channels[s.n]) * hw);
            concat_channels(cat, h, C, s.x[s.n], s.channels[s.n], hw);
            resnet_attention(&r, b, j, cat, hs[lv], ws[lv], y, name);
            arena_reset(a, m);
            h = y;
            C = c->block_out_channels[lv];
        }
        if (b->sampler.weight) {                                   /* to the size of the next skip */
            float *y = h == pp[0] ? pp[1] : pp[0], *up;
            m = arena_mark(a);
            up = arena_alloc(a, (size_t)C * hs[lv - 1] * ws[lv - 1]);
            upsample_nearest(up, h, C, hs[lv], ws[lv], hs[lv - 1], ws[lv - 1]);
            conv2d(y, up, C, hs[lv - 1], ws[lv - 1], b->sampler.weight, b->sampler.bias, 1, 1);
            arena_reset(a, m);
            h = y;
            path(name, "up_blocks.%d.upsamplers.0", i);
            dump(&r, name, h, 4, C, hs[lv - 1], ws[lv - 1]);
            lv--;
        }
        path(name, "up_blocks.%d", i);
        dump(&r, name, h, 4, C, hs[lv], ws[lv]);
    }

    {                                                              /* conv_norm_out, SiLU, conv_out */
        float *g = arena_alloc(a, (size_t)C0 * H * W);
        group_norm(g, h, C0, H * W, c->norm_num_groups, c->norm_eps, u->conv_norm_out.weight, u->conv_norm_out.bias,
                   1);
        conv2d(out, g, C0, H, W, u->conv_out.weight, u->conv_out.bias, 1, (c->conv_out_kernel - 1) / 2);
        dump(&r, "conv_out", out, 4, c->out_channels, H, W);
    }
    arena_reset(a, m0);
    return 0;
}

/* ================================================================== conditioning ================= */

/* Width along axis of a 2-D tensor PREFIX<name>, or 0 if absent or not 2-D (ld_tensor then says why). */
static int tensor_dim(Loader *L, const char *name, int axis)
{
    char full[NAME];
    const Tensor *t;
    path(full, "%s%s", L->prefix, name);
    t = blob_get(L->blob, full);
    return t && t->rank == 2 ? (int)t->shape[axis] : 0;
}

int cond_load(Cond *c, const Blob *b, const char *prefix, char err[EDIFF_ERR])
{
    Loader L;
    char full[NAME];
    const Tensor *null_token;
    memset(c, 0, sizeof *c);
    loader_init(&L, b, prefix);
    c->dim = tensor_dim(&L, "t5_proj.weight", 0);
    c->t5_dim = tensor_dim(&L, "t5_proj.weight", 1);
    c->clip_dim = tensor_dim(&L, "clip_proj.weight", 1);
    c->embed_dim = tensor_dim(&L, "image_proj.weight", 1);
    load_linear(&L, &c->t5_proj, c->dim, c->t5_dim, 1, "t5_proj");
    load_linear(&L, &c->clip_proj, c->dim, c->clip_dim, 1, "clip_proj");
    load_linear(&L, &c->image_proj, c->dim, c->embed_dim, 1, "image_proj");
    path(full, "%snull_token", prefix);
    null_token = blob_get(b, full);
    if (null_token && null_token->rank == 2) {                     /* nn.Parameter [1, dim] */
        int s[2] = {1, c->dim};
        c->null_token = ld_tensor(&L, 2, s, "null_token");
    } else {
        c->null_token = ld_tensor(&L, 1, &c->dim, "null_token");
    }
    if (L.failed) {
        snprintf(err, EDIFF_ERR, "%s", L.err);
        return -1;
    }
    return 0;
}

int cond_context_rows(int L5, int n_clip) { return L5 + n_clip + 2; }

/* y[n, dim] = x W^T + b; a dropped input (NULL, i.e. zeros) gives b in every row. */
static void project_rows(float *y, const float *x, int n, int in, const UnetLayer *p)
{
    int dim = (int)p->weight->shape[0], i;
    if (x) {
        linear(y, x, n, in, p->weight, p->bias);
        return;
    }
    for (i = 0; i < n; i++) tensor_to_f32(p->bias, y + (long)i * dim, 0, dim);
}

void cond_context(const Cond *c, const float *t5_tokens, int L5, const float *clip_tokens, int n_clip,
                  const float *clip_image_embed, float *context)
{
    long D = c->dim;
    project_rows(context, t5_tokens, L5, c->t5_dim, &c->t5_proj);
    project_rows(context + L5 * D, clip_tokens, n_clip, c->clip_dim, &c->clip_proj);
    project_rows(context + (L5 + n_clip) * D, clip_image_embed, 1, c->embed_dim, &c->image_proj);
    tensor_to_f32(c->null_token, context + (L5 + n_clip + 1) * D, 0, D);
}

void cond_class_vector(const Cond *c, const float *clip_text_embed, const float *clip_image_embed,
                       const float *aug, int n_aug, float *class_vec)
{
    size_t E = (size_t)c->embed_dim;
    const float *part[3];
    size_t len[3], k, off = 0;
    part[0] = clip_text_embed; part[1] = clip_image_embed; part[2] = aug;
    len[0] = E; len[1] = E; len[2] = (size_t)n_aug;
    for (k = 0; k < 3; k++) {
        if (part[k]) memcpy(class_vec + off, part[k], len[k] * sizeof(float));
        else memset(class_vec + off, 0, len[k] * sizeof(float));
        off += len[k];
    }
}
