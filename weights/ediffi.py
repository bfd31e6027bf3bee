"""The ediff-tiny model in PyTorch: tokenizers, encoders, eDiff-I conditioning, EDM expert denoisers, sampling.

This is the reference the C side is checked against. docs/model.md is the contract; formulas and their
sources are in /work/shared/docs/ediffi.md (sections named in the comments as "ediffi.md §N").
"""
import gzip
import html
import importlib.util
import inspect
import math
import sys
import types
from functools import lru_cache
from pathlib import Path

import ftfy
import numpy as np
import regex
import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor
from diffusers.models.embeddings import get_timestep_embedding
from PIL import Image
from transformers import CLIPConfig, CLIPModel, T5Config, T5EncoderModel

REPO = Path(__file__).resolve().parents[1]
CLIP_MERGES = REPO / "weights/vocab/clip_bpe_simple_vocab_16e6.txt.gz"
T5_SPIECE = REPO / "weights/vocab/t5_spiece.model"

T5_MAX_TOKENS = 32            # L5: T5 context rows (prompt ids + </s>, zero rows after)
CLIP_CONTEXT = 77             # CLIP text context length (OpenAI clip.tokenize)
CLIP_SOT, CLIP_EOT = 49406, 49407
T5_EOS = 1
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # OpenAI CLIP preprocessing (ediffi.md §6)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGMA_DATA = 0.5
P_MEAN, P_STD = -1.2, 1.2     # training ln(sigma) ~ N(P_mean, P_std^2) (EDM; eDiff-I §3)
AUG_DIM = 32                  # width of the SR noise-augmentation sinusoid


def load_k_diffusion_sampling():
    """Import k_diffusion.sampling without the package __init__, which imports torchvision (no CPU wheel here)."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["k_diffusion"] = pkg
    stubs = {n: types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")}
    sys.modules.update(stubs)
    import k_diffusion.sampling as K
    for n in stubs:
        del sys.modules[n]
    return K


# ---------------------------------------------------------------------------------------------------
# Tokenizers


def _bytes_to_unicode():
    """CLIP's reversible byte -> printable-unicode map (openai/CLIP simple_tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ClipTokenizer:
    """OpenAI `clip.tokenize(text, truncate=True)`: [49406] + BPE ids + [49407], zero-padded to 77."""

    PATTERN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                            regex.IGNORECASE)

    def __init__(self, merges=None):
        """merges: the text of a merges file (a blob's tokenizer.clip_merges); None: weights/vocab's."""
        text = merges.decode("utf-8") if merges is not None else gzip.open(CLIP_MERGES).read().decode("utf-8")
        lines = text.split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(line.split()) for line in lines]
        self.byte_encoder = _bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}

    @lru_cache(maxsize=None)
    def bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text):
        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        text = regex.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for token in self.PATTERN.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token))
        return ids

    def __call__(self, text):
        ids = [CLIP_SOT] + self.encode(text) + [CLIP_EOT]
        if len(ids) > CLIP_CONTEXT:
            ids = ids[:CLIP_CONTEXT]
            ids[-1] = CLIP_EOT
        return ids + [0] * (CLIP_CONTEXT - len(ids))


class T5Tokenizer:
    """SentencePiece ids + </s>, truncated to T5_MAX_TOKENS keeping </s> last (docs/model.md)."""

    def __init__(self, spiece=None, max_tokens=T5_MAX_TOKENS):
        """spiece: the bytes of a spiece.model (a blob's tokenizer.t5_spiece); None: weights/vocab's."""
        self.sp = (spm.SentencePieceProcessor(model_file=str(T5_SPIECE)) if spiece is None
                   else spm.SentencePieceProcessor(model_proto=spiece))
        self.max_tokens = max_tokens

    def __call__(self, text):
        return self.sp.EncodeAsIds(text)[:self.max_tokens - 1] + [T5_EOS]


# ---------------------------------------------------------------------------------------------------
# Architecture (every value listed in docs/model.md)


ATTN = "eager"   # plain softmax(QK^T)V: the same math as "sdpa", and faster on CPU at these sizes (bf16 backward)


def t5_config():
    return T5Config(vocab_size=32128, d_model=64, d_kv=16, num_heads=4, d_ff=256, num_layers=3,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                    is_encoder_decoder=False, use_cache=False, attn_implementation=ATTN)


def clip_config():
    text = dict(vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                max_position_embeddings=CLIP_CONTEXT, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=64,
                bos_token_id=CLIP_SOT, eos_token_id=CLIP_EOT, pad_token_id=0, attention_dropout=0.0)
    vision = dict(image_size=32, patch_size=4, num_channels=3, hidden_size=64, intermediate_size=256,
                  num_hidden_layers=3, num_attention_heads=4, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                  projection_dim=64, attention_dropout=0.0)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64, attn_implementation=ATTN)


CLIP_EMBED = 64       # projection_dim: width of clip_text_embed / clip_image_embed
CROSS_ATTENTION_DIM = 128


def unet_config(stage):
    """diffusers UNet2DConditionModel config of a stage ('base' 32x32, 'sr' 32->64)."""
    common = dict(out_channels=3, layers_per_block=1, cross_attention_dim=CROSS_ATTENTION_DIM, attention_head_dim=4,
                  resnet_time_scale_shift="scale_shift", class_embed_type="projection", flip_sin_to_cos=True,
                  freq_shift=0, norm_num_groups=32, act_fn="silu")
    if stage == "base":   # self+cross attention at 16x16, 8x8 and the mid block (ediffi.md §1.3, scaled down)
        return dict(common, sample_size=32, in_channels=3, block_out_channels=(32, 64, 128),
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    mid_block_type="UNetMidBlock2DCrossAttn",
                    projection_class_embeddings_input_dim=2 * CLIP_EMBED)
    if stage == "sr":     # convolutional only, trained on crops (eDiff-I SR1024 style, ediffi.md §1.3)
        return dict(common, sample_size=64, in_channels=6, block_out_channels=(16, 32, 64), norm_num_groups=16,
                    down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                    mid_block_type="UNetMidBlock2D",
                    projection_class_embeddings_input_dim=2 * CLIP_EMBED + AUG_DIM)
    raise ValueError(stage)


def cond_config(stage):
    return dict(t5_dim=t5_config().d_model, clip_dim=clip_config().text_config.hidden_size, clip_embed_dim=CLIP_EMBED,
                cross_attention_dim=CROSS_ATTENTION_DIM, aug_dim=AUG_DIM if stage == "sr" else 0)


# ---------------------------------------------------------------------------------------------------
# Encoders


def clip_preprocess(image, size=32):
    """OpenAI CLIP `_transform`: shorter side to `size` (PIL bicubic), centre crop, /255, mean/std -> [3,size,size]."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, int(w * scale)), max(size, int(h * scale))), Image.BICUBIC)
    w, h = image.size
    left, top = int(round((w - size) / 2)), int(round((h - size) / 2))
    image = image.crop((left, top, left + size, top + size))
    return normalize_clip_pixels(torch.from_numpy(np.asarray(image).copy()))


def normalize_clip_pixels(uint8_hwc):
    """uint8 [..., H, W, 3] -> normalised float [..., 3, H, W] (CLIP mean/std)."""
    x = uint8_hwc.float().movedim(-1, -3) / 255
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


class Encoders(nn.Module):
    """The frozen text/image encoders shared by every stage (docs/model.md "Conditioning")."""

    def __init__(self, t5=None, clip=None, t5_tokenizer=None, clip_tokenizer=None):
        super().__init__()
        self.t5 = t5 or T5EncoderModel(t5_config())
        self.clip = clip or CLIPModel(clip_config())
        self.t5_tokenizer = t5_tokenizer or T5Tokenizer()
        self.clip_tokenizer = clip_tokenizer or ClipTokenizer()

    def tokenize(self, prompts):
        """-> t5 ids [B, L5] (0-padded), t5 mask [B, L5], clip ids [B, 77]."""
        t5 = torch.zeros(len(prompts), T5_MAX_TOKENS, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids = self.t5_tokenizer(p)
            t5[i, :len(ids)] = torch.tensor(ids)
        clip = torch.tensor([self.clip_tokenizer(p) for p in prompts])
        return t5, (t5 != 0).long(), clip

    def encode_t5(self, t5_ids, t5_mask):
        """t5_tokens: last_hidden_state with the rows past the prompt zeroed."""
        h = self.t5(input_ids=t5_ids, attention_mask=t5_mask).last_hidden_state
        return h * t5_mask[..., None].to(h.dtype)

    def encode_clip_text(self, clip_ids):
        """clip_tokens (after final_layer_norm) and clip_text_embed (EOT state @ text_projection, not normalised)."""
        out = self.clip.text_model(input_ids=clip_ids)
        return out.last_hidden_state, self.clip.text_projection(out.pooler_output)

    def encode_image(self, pixels):
        """clip_image_embed of CLIP-preprocessed pixels [B, 3, 32, 32] (not normalised)."""
        return self.clip.visual_projection(self.clip.vision_model(pixel_values=pixels).pooler_output)

    @torch.no_grad()
    def encode(self, prompts, style_images=None):
        """Conditioning dict of a list of prompts (and optional PIL style images, one per prompt)."""
        t5_ids, t5_mask, clip_ids = self.tokenize(prompts)
        clip_tokens, clip_text_embed = self.encode_clip_text(clip_ids)
        if style_images is None:
            clip_image_embed = torch.zeros(len(prompts), CLIP_EMBED)
        else:
            clip_image_embed = self.encode_image(torch.stack([clip_preprocess(im) for im in style_images]))
        return dict(t5_tokens=self.encode_t5(t5_ids, t5_mask), clip_tokens=clip_tokens,
                    clip_text_embed=clip_text_embed, clip_image_embed=clip_image_embed)


def drop_conditions(cond, keep_t5=None, keep_clip_text=None, keep_clip_image=None):
    """Replace dropped encoder outputs by zeros (eDiff-I §4.2); keep_* are [B] 0/1 masks, None keeps all."""
    out = dict(cond)
    for keep, names in ((keep_t5, ("t5_tokens",)), (keep_clip_text, ("clip_tokens", "clip_text_embed")),
                        (keep_clip_image, ("clip_image_embed",))):
        if keep is None:
            continue
        for name in names:
            x = cond[name]
            out[name] = x * keep.to(x.dtype).view(-1, *[1] * (x.dim() - 1))
    return out


def null_conditions(cond, text_only=False):
    """CFG's unconditional branch: all three dropped (base); text only dropped (super-resolution)."""
    zero = torch.zeros(cond["t5_tokens"].shape[0])
    return drop_conditions(cond, zero, zero, None if text_only else zero)


# ---------------------------------------------------------------------------------------------------
# Denoiser


def aug_features(sigma_aug, dim=AUG_DIM):
    """Sinusoid of ln(sigma_aug)/4, the same embedding as time_proj (docs/model.md "Super-resolution")."""
    return get_timestep_embedding(torch.log(sigma_aug) / 4, dim, flip_sin_to_cos=True, downscale_freq_shift=0)


class EDiffIConditioning(nn.Module):
    """eDiff-I §4.2: cross-attention context = [T5 | CLIP text | CLIP image | null] rows, class vector = pooled vectors."""

    def __init__(self, t5_dim, clip_dim, clip_embed_dim, cross_attention_dim, aug_dim=0):
        super().__init__()
        self.t5_proj = nn.Linear(t5_dim, cross_attention_dim)
        self.clip_proj = nn.Linear(clip_dim, cross_attention_dim)
        self.image_proj = nn.Linear(clip_embed_dim, cross_attention_dim)
        self.null_token = nn.Parameter(torch.randn(1, cross_attention_dim) * 0.02)
        self.aug_dim = aug_dim

    def forward(self, t5_tokens, clip_tokens, clip_text_embed, clip_image_embed, sigma_aug=None):
        batch = t5_tokens.shape[0]
        context = torch.cat([self.t5_proj(t5_tokens), self.clip_proj(clip_tokens),
                             self.image_proj(clip_image_embed)[:, None], self.null_token.expand(batch, 1, -1)], dim=1)
        parts = [clip_text_embed, clip_image_embed]
        if self.aug_dim:
            parts.append(aug_features(sigma_aug, self.aug_dim).to(clip_text_embed.dtype))
        return context, torch.cat(parts, dim=1)


class PaintWithWords:
    """eDiff-I §4.3 paint-with-words as a diffusers attention processor (no PyTorch library implements it):
    AttnProcessor's attention written out, except that a cross-attention call computes
    softmax((Q Kᵀ + W) · scale) V with W = weight · max(Q Kᵀ) · A, the max over every head, query and key of
    the call, A the paint map [pixels, context rows] of the call's grid, looked up in `maps` by its number of
    pixels. The caller sets `weight` per call: w' ln(1 + sigma) in the conditional branch, 0 (diffusers'
    attention) in the unconditional one. `record`, a list, receives each cross-attention call's
    (plain, painted) attention probabilities."""

    def __init__(self, maps, weight=0.0, record=None):
        self.maps, self.weight, self.record = maps, weight, record

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        cross = encoder_hidden_states is not None
        context = encoder_hidden_states if cross else hidden_states
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(context))
        v = attn.head_to_batch_dim(attn.to_v(context))
        scores = q @ k.transpose(-1, -2)                                  # [heads, N_i, N_t], raw
        painted = scores
        if cross and self.weight:
            painted = scores + self.weight * scores.max() * self.maps[q.shape[1]].to(scores.dtype)[None]
        probs = torch.softmax(painted * attn.scale, dim=-1)
        if cross and self.record is not None:
            self.record.append((torch.softmax(scores * attn.scale, dim=-1), probs))
        out = attn.batch_to_head_dim(probs @ v)
        return attn.to_out[1](attn.to_out[0](out))


def edm_precond(sigma, sigma_data=SIGMA_DATA):
    """EDM Table 1 (ediffi.md §2.1): c_skip, c_out, c_in, c_noise."""
    r = torch.sqrt(sigma ** 2 + sigma_data ** 2)
    return sigma_data ** 2 / r ** 2, sigma * sigma_data / r, 1 / r, torch.log(sigma) / 4


class Expert(nn.Module):
    """One expert denoiser D(x; sigma) = c_skip x + c_out F(c_in x [++ z_lr]; c_noise, cond) (docs/model.md)."""

    def __init__(self, stage=None, sigma_data=SIGMA_DATA, unet=None, cond=None):
        """The ediff-tiny expert of a stage ("base", "sr"), or one over given modules (load_blob's)."""
        super().__init__()
        self.unet = UNet2DConditionModel(**unet_config(stage)) if unet is None else unet
        self.unet.set_attn_processor(AttnProcessor())   # classic attention: same math as SDPA, faster on CPU here
        self.cond = EDiffIConditioning(**cond_config(stage)) if cond is None else cond
        self.sigma_data = sigma_data

    def raw(self, x, sigma, cond, z_lr=None):
        """(F, c_skip, c_out): the raw network output and the precond coefficients, sigma of shape [B]."""
        c_skip, c_out, c_in, c_noise = [c.view(-1, 1, 1, 1) for c in edm_precond(sigma, self.sigma_data)]
        context, class_vector = self.cond(**cond)
        inp = c_in * x
        if z_lr is not None:
            inp = torch.cat([inp, z_lr], dim=1)   # c_in is not applied to z_lr (ediffi.md §5.1)
        out = self.unet(inp.to(x.dtype), c_noise.flatten(), encoder_hidden_states=context, class_labels=class_vector)
        return out.sample.to(x.dtype), c_skip, c_out

    def forward(self, x, sigma, cond, z_lr=None):
        F_x, c_skip, c_out = self.raw(x, sigma, cond, z_lr)
        return c_skip * x + c_out * F_x


def edm_loss(expert, y, sigma, cond, z_lr=None, noise=None):
    """lambda(sigma) ||D(y + sigma n) - y||^2 with lambda = 1/c_out^2 (ediffi.md §2.2), mean over elements.

    Computed as ||F - (y - c_skip x)/c_out||^2, which is the same quantity (ediffi.md §2.2, "equivalent form")."""
    noise = torch.randn_like(y) if noise is None else noise
    x = y + sigma.view(-1, 1, 1, 1) * noise
    F_x, c_skip, c_out = expert.raw(x, sigma, cond, z_lr)
    target = (y - c_skip * x) / c_out
    return ((F_x.float() - target) ** 2).mean()


def expert_bounds(quantile_cuts, p_mean=P_MEAN, p_std=P_STD):
    """Sigma intervals [(lo, hi)], low to high, of experts that own the quantile intervals between
    consecutive `quantile_cuts` (0 ... 1) of the log-normal p(sigma) (eDiff-I §4.1; ediffi.md §1.5):
    (0, 0.5, 1) is the level-1 equal-mass split, (0, 15/16, 1) the high-noise expert E(4, 15) plus one
    model for the rest (Config-C)."""
    from scipy.stats import norm
    sig = lambda q: 0.0 if q <= 0 else math.inf if q >= 1 else math.exp(p_mean + p_std * norm.ppf(q))  # noqa: E731
    return [(sig(a), sig(b)) for a, b in zip(quantile_cuts[:-1], quantile_cuts[1:])]


def sample_sigma(n, generator, quantile_lo=0.0, quantile_hi=1.0, p_mean=P_MEAN, p_std=P_STD):
    """ln(sigma) ~ N(p_mean, p_std^2) truncated to a quantile interval, by inverse CDF (ediffi.md §1.5)."""
    u = quantile_lo + (quantile_hi - quantile_lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    u = u.clamp(1e-12, 1 - 1e-12)
    return torch.exp(p_mean + p_std * math.sqrt(2) * torch.erfinv(2 * u - 1)).float()


class Stage(nn.Module):
    """An ensemble of experts; each denoiser call runs the expert whose [sigma_lo, sigma_hi) holds sigma."""

    def __init__(self, experts, bounds, meta):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.bounds = bounds
        self.meta = meta    # sampling defaults: steps, sampler, cfg_scale, sigma_min, sigma_max, rho, (aug_sigma)

    def expert_for(self, sigma):
        return next(k for k, (lo, hi) in enumerate(self.bounds) if lo <= sigma < hi)

    def forward(self, x, sigma, cond, z_lr=None):
        s = float(sigma.flatten()[0])
        assert torch.all(sigma == sigma.flatten()[0]), "one sigma per denoiser call"
        return self.experts[self.expert_for(s)](x, sigma.to(x.dtype), cond, z_lr)


def _cat_cond(a, b):
    return {k: torch.cat([a[k], b[k]]) for k in a}


def guided_denoiser(stage, cond, cfg_scale, z_lr=None, text_only_null=False):
    """CFG (ediffi.md §3.7): D_null + w (D_cond - D_null), both from the expert owning sigma; w = 1 is off."""
    if cfg_scale == 1:
        return lambda x, sigma: stage(x, sigma, cond, z_lr)
    both = _cat_cond(cond, null_conditions(cond, text_only=text_only_null))
    z_both = None if z_lr is None else torch.cat([z_lr, z_lr])

    def denoise(x, sigma):
        d_cond, d_null = stage(torch.cat([x, x]), torch.cat([sigma, sigma]), both, z_both).chunk(2)
        return d_null + cfg_scale * (d_cond - d_null)
    return denoise


SAMPLERS = {"heun": "sample_heun", "euler": "sample_euler", "euler_a": "sample_euler_ancestral",
            "dpmpp2m": "sample_dpmpp_2m"}


def sample_stage(stage, cond, noise, z_lr=None, steps=None, sampler=None, cfg_scale=None, draw=None):
    """Run one stage from x = sigma_max * noise down to 0 on the Karras schedule (ediffi.md §3.1).

    `draw(shape)` gives the fresh noise of ancestral samplers (default torch.randn)."""
    K = load_k_diffusion_sampling()
    m = stage.meta
    steps, sampler = steps or m["steps"], sampler or m["sampler"]
    cfg_scale = m["cfg_scale"] if cfg_scale is None else cfg_scale
    sigmas = K.get_sigmas_karras(steps, m["sigma_min"], m["sigma_max"], m["rho"]).to(noise.dtype)
    denoise = guided_denoiser(stage, cond, cfg_scale, z_lr, text_only_null=z_lr is not None)
    extra = {}
    if sampler == "euler_a" and draw is not None:
        extra["noise_sampler"] = lambda sigma, sigma_next: draw(noise.shape[1:])
    return getattr(K, SAMPLERS[sampler])(denoise, noise * sigmas[0], sigmas, disable=True, **extra)


def upsample_lowres(y_lr, size):
    """up(y_lr): bilinear, half-pixel centres (docs/model.md "Super-resolution stages")."""
    return F.interpolate(y_lr, size=(size, size), mode="bilinear", align_corners=False)


class Pipeline(nn.Module):
    """Encoders + the cascade of stages (base [or base_single], then sr)."""

    def __init__(self, encoders, stages, meta=None):
        super().__init__()
        self.encoders = encoders
        self.stages = nn.ModuleDict(stages)
        self.meta = meta or {}      # the blob's metadata (load_blob)

    @torch.no_grad()
    def generate(self, prompts, seeds, base="base", style_images=None, cfg_scale=None, steps=None, sampler=None,
                 sr=True, dtype=torch.float32):
        """Images in [-1, 1], [B, 3, R, R]. Prompt i's noise comes from torch.Generator(seeds[i]) in a fixed
        order (base start noise, then z_lr augmentation noise, then SR start noise), so it does not depend on
        the batch it runs in."""
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        draw = lambda shape: torch.stack([torch.randn(shape, generator=g) for g in gens]).to(dtype)
        cond = {k: v.to(dtype) for k, v in self.encoders.encode(prompts, style_images).items()}
        stage = self.stages[base]
        r = stage.meta["resolution"]
        y = sample_stage(stage, cond, draw((3, r, r)), steps=steps, sampler=sampler, cfg_scale=cfg_scale,
                         draw=draw).clamp(-1, 1)
        if not sr:
            return y
        sr_stage = self.stages["sr"]
        r2 = sr_stage.meta["resolution"]
        aug = sr_stage.meta["aug_sigma"]
        z_lr = upsample_lowres(y, r2) + aug * draw((3, r2, r2))
        sr_cond = dict(cond, sigma_aug=torch.full((len(prompts),), aug, dtype=dtype))
        return sample_stage(sr_stage, sr_cond, draw((3, r2, r2)), z_lr=z_lr, draw=draw).clamp(-1, 1)


def to_uint8(images):
    """[-1, 1] float [B, 3, H, W] -> uint8 [B, H, W, 3]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------------------------------
# Loading an ediff blob (weights/blob.py format, keys of weights/train/export.py)


def parse_value(text):
    """Blob metadata text -> Python value (docs/blob.md: true/false, none, inf, numbers, strings)."""
    if text in ("true", "false"):
        return text == "true"
    if text == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def unet_kwargs(meta, prefix):
    """UNet2DConditionModel arguments from PREFIX<field> metadata: the constructor's parameters only,
    list-valued where the constructor's default is a tuple."""
    out = {}
    for name, p in inspect.signature(UNet2DConditionModel.__init__).parameters.items():
        if prefix + name not in meta:
            continue
        text = meta[prefix + name]
        is_list = isinstance(p.default, (tuple, list)) and text != "none"
        out[name] = tuple(parse_value(t) for t in text.split(",")) if is_list else parse_value(text)
    return out


# Config fields the C loaders read (ediff.c, encoders.c). export.py writes these; a convert.py blob holds a
# whole HF config, of which the rest does not matter. CLIP_KEYS serves both towers (each has a subset).
T5_KEYS = ("vocab_size", "d_model", "d_kv", "num_heads", "d_ff", "num_layers", "relative_attention_num_buckets",
           "relative_attention_max_distance", "feed_forward_proj", "layer_norm_epsilon")
CLIP_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "max_position_embeddings", "hidden_act", "layer_norm_eps", "projection_dim", "image_size",
             "patch_size", "num_channels", "eos_token_id")


def _load(module, tensors, prefix, optional=()):
    """Load PREFIX* tensors into module as float32; every parameter not under an `optional` prefix must be there."""
    state = {k[len(prefix):]: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith(optional + ("encoder.embed_tokens.", "logit_scale"))]
    if missing or unexpected:
        raise ValueError(f"{prefix}*: the blob does not fit the module (missing {missing[:3]}, unexpected {unexpected[:3]})")


def load_blob(path):
    """Pipeline from an ediff blob (export.py's, convert.py's or a test's), as ediff reads it: the encoders
    with the tokenizer files the blob carries (else weights/vocab's) and every stage, alternatives included;
    weights as float32. Raises OSError/ValueError for a blob that cannot be read or does not fit."""
    sys.path.insert(0, str(REPO / "weights"))
    from blob import read_blob
    meta, tensors = read_blob(path)
    num = lambda key: parse_value(meta[key])  # noqa: E731
    t5 = T5EncoderModel(T5Config(**{k: num("t5." + k) for k in T5_KEYS if "t5." + k in meta}, dropout_rate=0.0,
                                 is_encoder_decoder=False, use_cache=False, attn_implementation=ATTN))
    if any(k.startswith("t5.") for k in tensors):
        _load(t5, tensors, "t5.")
        t5.encoder.embed_tokens = t5.shared
    tower = lambda name: {k: num(f"clip.{name}.{k}") for k in CLIP_KEYS if f"clip.{name}.{k}" in meta}  # noqa: E731
    text = {"eos_token_id": CLIP_EOT, **tower("text"), "bos_token_id": CLIP_SOT, "pad_token_id": 0}
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=tower("vision"), attn_implementation=ATTN,
                                projection_dim=num("clip.text.projection_dim") if "clip.text.projection_dim" in meta else 512))
    has_vision = any(k.startswith("clip.vision_model.") for k in tensors)
    _load(clip, tensors, "clip.", optional=() if has_vision else ("vision_model.", "visual_projection."))
    blob_bytes = lambda key: tensors[key].tobytes() if key in tensors else None  # noqa: E731
    encoders = Encoders(t5=t5, clip=clip, clip_tokenizer=ClipTokenizer(blob_bytes("tokenizer.clip_merges")),
                        t5_tokenizer=T5Tokenizer(blob_bytes("tokenizer.t5_spiece"), int(meta["t5.max_tokens"])))
    stage_names = meta["stages"].split(",") + [a.split(":")[0] for a in meta.get("stage_alternatives", "").split(",") if a]
    stages = {}
    for s in stage_names:
        experts, bounds = [], []
        for k in range(int(meta[f"{s}.experts"])):
            shape = lambda name: tensors[f"{s}.{k}.cond.{name}.weight"].shape  # noqa: E731
            cond = EDiffIConditioning(t5_dim=shape("t5_proj")[1], clip_dim=shape("clip_proj")[1],
                                      clip_embed_dim=shape("image_proj")[1], cross_attention_dim=shape("t5_proj")[0],
                                      aug_dim=int(meta.get(f"{s}.aug_dim", 0)))
            expert = Expert(unet=UNet2DConditionModel(**unet_kwargs(meta, f"{s}.{k}.unet.")), cond=cond,
                            sigma_data=num(f"{s}.sigma_data"))
            _load(expert, tensors, f"{s}.{k}.")
            experts.append(expert)
            bounds.append((float(meta[f"{s}.{k}.sigma_lo"]), float(meta[f"{s}.{k}.sigma_hi"])))
        keys = ("resolution", "steps", "sampler", "cfg_scale", "sigma_min", "sigma_max", "rho", "aug_sigma")
        stages[s] = Stage(experts, bounds, {key: num(f"{s}.{key}") for key in keys if f"{s}.{key}" in meta})
    return Pipeline(encoders, stages, meta).eval().requires_grad_(False)
