"""A toy eDiff-I pipeline and the whole pipeline's reference, for the CLI suite (test/t_cli.c).

    .venv/bin/python test/gen_pipeline.py

test/ref/pipeline.bin — a model blob as docs/model.md and docs/blob.md describe one, random weights
  (float16), real libraries: T5EncoderModel and CLIPModel (text + vision) from transformers,
  diffusers UNet2DConditionModel experts with eDiff-I's conditioning module (weights/ediffi.py
  EDiffIConditioning): stage `base` 16x16 with 3 experts split at the equal-mass cuts of
  ln sigma ~ N(-1.2, 1.2^2), its single-expert control `base_single`, stage `sr`
  16 -> 32 with 2 experts; both UNets cross-attend (base at 8x8, sr at 16x16), so paint-with-words
  reaches both stages. No tokenizer tensors: the C side reads weights/vocab/.
test/ref/pipeline_ref.bin — for each case (metadata `cases`, each with the command-line arguments
  `CASE.args`), what ediff must dump with --dump, computed here with the real tokenizers (sentencepiece,
  OpenAI CLIP's simple_tokenizer), transformers, diffusers, k-diffusion and Pillow, in float64:
  encoder outputs, each expert's context and class labels for both CFG branches, the paint maps, and
  every stage's output (route -> EDM preconditioning -> UNet -> CFG, k-diffusion samplers, the
  Philox noise of docs/sampling.md §7 reimplemented in numpy). Masks and the style image are written
  to test/ref/pipeline_*.png by Pillow.
"""
import importlib.util
import math
import os
import shlex
import sys

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(ROOT, "test", "ref")
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402
from convert import component_of, config_meta, processor_meta  # noqa: E402
from ediffi import EDiffIConditioning, PaintWithWords, load_k_diffusion_sampling  # noqa: E402

import transformers  # noqa: E402
import diffusers  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, T5Config, T5EncoderModel  # noqa: E402

transformers.logging.set_verbosity_error()
torch.set_grad_enabled(False)
torch.set_default_dtype(torch.float64)       # k-diffusion's schedule and everything else in float64

L5, CLIP_ROWS, SOT, EOT = 16, 77, 49406, 49407
EMBED, CTX = 8, 16               # CLIP projection width, cross-attention width
AUG_DIM, AUG_SIGMA = 8, 0.1
SIGMA_DATA = 0.5


def load_clip_tokenizer():
    """OpenAI CLIP's SimpleTokenizer, loaded from the openai-clip package without its torchvision-importing __init__."""
    folder = importlib.util.find_spec("clip").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", os.path.join(folder, "simple_tokenizer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SimpleTokenizer()


K = load_k_diffusion_sampling()
CLIP_TOK = load_clip_tokenizer()
T5_TOK = spm.SentencePieceProcessor(model_file=os.path.join(ROOT, "weights", "vocab", "t5_spiece.model"))


# ------------------------------------------------------------------------------ the toy model

g = torch.Generator().manual_seed(20240607)


def randn(*shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def randomize(module):
    """O(1) random weights (diffusers zero-initialises output layers, HF uses tiny inits): matrices
    N(0,1)/sqrt(fan_in), norm scales 1 + 0.2 N, biases and shifts 0.1 N, embeddings N(0, 1)."""
    for name, p in module.named_parameters():
        if p.ndim == 0:
            continue
        r = randn(*p.shape)
        if "embedding" in name or name.endswith("shared.weight") or "relative_attention_bias" in name:
            p.copy_(r)
        elif p.ndim >= 2:
            p.copy_(r / math.sqrt(p[0].numel()))
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1 + 0.2 * r)
        else:
            p.copy_(0.1 * r)
    return module


TENSORS, META = {}, {}


def store(module, prefix, skip=()):
    """The module's float parameters into the blob as float16, and the module set to exactly those values in float64."""
    module.double()
    for name, p in module.state_dict().items():
        if not p.is_floating_point() or p.ndim == 0 or name in skip:
            continue
        stored = p.to(torch.float16)
        TENSORS[prefix + name] = stored.numpy()
        p.copy_(stored.double())
    return module.eval()


t5_config = T5Config(vocab_size=32128, d_model=4, d_kv=2, num_heads=2, d_ff=8, num_layers=1,
                     relative_attention_num_buckets=8, relative_attention_max_distance=20,
                     feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False, use_cache=False)
t5_config._attn_implementation = "eager"
t5 = store(randomize(T5EncoderModel(t5_config)), "t5.", skip=("encoder.embed_tokens.weight",))
META.update(component_of(t5_config.to_dict())[1])
META["t5.max_tokens"] = str(L5)

clip_config = CLIPConfig(
    text_config=dict(vocab_size=49408, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                     max_position_embeddings=CLIP_ROWS, hidden_act="quick_gelu", projection_dim=EMBED,
                     bos_token_id=SOT, eos_token_id=EOT, pad_token_id=0),
    vision_config=dict(image_size=16, patch_size=8, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                       num_attention_heads=2, hidden_act="quick_gelu", projection_dim=EMBED),
    projection_dim=EMBED)
clip_config._attn_implementation = "eager"
clip = store(randomize(CLIPModel(clip_config)), "clip.")
META.update(component_of(clip_config.to_dict())[1])
PROCESSOR = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
META.update(processor_meta(PROCESSOR.to_dict()))


def unet_config(sr):
    return dict(sample_size=32 if sr else 16, in_channels=6 if sr else 3, out_channels=3, block_out_channels=(4, 8),
                layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                mid_block_type="UNetMidBlock2D" if sr else "UNetMidBlock2DCrossAttn",
                attention_head_dim=2, norm_num_groups=2, cross_attention_dim=CTX, class_embed_type="projection",
                projection_class_embeddings_input_dim=2 * EMBED + (AUG_DIM if sr else 0),
                resnet_time_scale_shift="scale_shift", flip_sin_to_cos=True, freq_shift=0)


def lognormal_cuts(n, p_mean=-1.2, p_std=1.2):
    """Equal-probability-mass cuts of ln sigma ~ N(p_mean, p_std^2) (eDiff-I §4.1)."""
    from scipy.stats import norm
    return [0.0] + [math.exp(p_mean + p_std * norm.ppf(k / n)) for k in range(1, n)] + [math.inf]


class Stage:
    def __init__(self, name, resolution, n_experts, steps, sampler, cfg_scale, sr=False):
        self.name, self.resolution, self.sr = name, resolution, sr
        self.bounds = lognormal_cuts(n_experts)
        self.experts = []
        for k in range(n_experts):
            unet = UNet2DConditionModel(**unet_config(sr))
            store(randomize(unet), f"{name}.{k}.unet.")
            META.update(config_meta(dict(unet.config), f"{name}.{k}.unet."))
            cond = EDiffIConditioning(t5_config.d_model, 8, EMBED, CTX, aug_dim=AUG_DIM if sr else 0)
            store(randomize(cond), f"{name}.{k}.cond.")
            self.experts.append((unet, cond))
        keys = dict(resolution=resolution, experts=n_experts, sigma_data=SIGMA_DATA, sigma_min=0.002, sigma_max=80.0,
                    rho=7.0, p_mean=-1.2, p_std=1.2, steps=steps, sampler=sampler, cfg_scale=cfg_scale)
        if sr:
            keys.update(lowres_upsample="bilinear", aug_sigma=AUG_SIGMA, aug_dim=AUG_DIM)
        for key, value in keys.items():
            META[f"{name}.{key}"] = repr(value) if isinstance(value, float) else str(value)
        for k in range(n_experts):
            META[f"{name}.{k}.sigma_lo"] = repr(self.bounds[k])
            META[f"{name}.{k}.sigma_hi"] = "inf" if math.isinf(self.bounds[k + 1]) else repr(self.bounds[k + 1])

    def expert(self, sigma):
        return next(k for k in range(len(self.experts)) if self.bounds[k] <= sigma < self.bounds[k + 1])


STAGES = {"base": Stage("base", 16, 3, steps=4, sampler="heun", cfg_scale=2.0),
          "base_single": Stage("base_single", 16, 1, steps=4, sampler="heun", cfg_scale=2.0),
          "sr": Stage("sr", 32, 2, steps=3, sampler="heun", cfg_scale=1.5, sr=True)}
META.update({"ediff.model": "toy-pipeline", "ediff.description": "random-weight eDiff-I pipeline for the CLI tests",
             "stages": "base,sr", "stage_alternatives": "base_single:base",
             "generator": f"test/gen_pipeline.py, torch {torch.__version__}, transformers {transformers.__version__}, "
                          f"diffusers {diffusers.__version__}"})

# ------------------------------------------------------------------------------ random numbers (docs/sampling.md §7)

M32 = 0xFFFFFFFF


def philox4x32_10(ctr, key):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
    return c0, c1, c2, c3


def normals(seed, stream, count):
    out = []
    for b in range((count + 1) // 2):
        w = philox4x32_10((b & M32, b >> 32, stream & M32, stream >> 32), (seed & M32, seed >> 32))
        u1 = ((((w[1] << 32) | w[0]) >> 11) + 1) * 2.0 ** -53
        u2 = (((w[3] << 32) | w[2]) >> 11) * 2.0 ** -53
        r = math.sqrt(-2 * math.log(u1))
        out += [r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)]
    return torch.tensor(out[:count], dtype=torch.float64)


def rng_stream(image, stage, purpose):
    return image << 16 | stage << 8 | purpose


# ------------------------------------------------------------------------------ the pipeline in PyTorch

def t5_ids(text):
    return T5_TOK.EncodeAsIds(text)[:L5 - 1] + [1]


def clip_ids(text):
    ids = [SOT] + CLIP_TOK.encode(text) + [EOT]
    if len(ids) > CLIP_ROWS:
        ids = ids[:CLIP_ROWS]
        ids[-1] = EOT
    return ids + [0] * (CLIP_ROWS - len(ids))


def encode_text(text, use_t5, use_clip):
    """docs/model.md "Conditioning": T5 tokens zero-padded to L5 rows, CLIP tokens, pooled CLIP embedding."""
    enc = dict(t5_tokens=None, clip_tokens=None, clip_text_embed=None)
    if use_t5:
        ids = t5_ids(text)
        enc["t5_tokens"] = torch.zeros(L5, t5_config.d_model, dtype=torch.float64)
        enc["t5_tokens"][:len(ids)] = t5(input_ids=torch.tensor([ids])).last_hidden_state[0]
    if use_clip:
        out = clip.text_model(input_ids=torch.tensor([clip_ids(text)]))
        enc["clip_tokens"] = out.last_hidden_state[0]
        enc["clip_text_embed"] = clip.text_projection(out.pooler_output)[0]
    return enc


def encode_style(path):
    pixels = PROCESSOR(images=Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"].double()
    return clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)[0]


def phrase_columns(prompt, words, use_t5, use_clip):
    """Context rows of every occurrence of the words' tokens: T5 segment (no </s>), CLIP segment (between
    the start and end tokens); shared/docs/ediffi.md §4.4."""
    col = np.zeros(L5 + CLIP_ROWS + 2)

    def mark(seq, sub, offset):
        for j in range(len(seq) - len(sub) + 1):
            if seq[j:j + len(sub)] == sub:
                col[offset + j:offset + j + len(sub)] = 1
    if use_t5:
        mark(t5_ids(prompt)[:-1], T5_TOK.EncodeAsIds(words), 0)
    if use_clip:
        ids = clip_ids(prompt)
        end = ids.index(EOT, 1)
        mark(ids[1:end], CLIP_TOK.encode(words), L5 + 1)
    assert col.any(), words
    return col


def painted(path):
    """png.c image_mask: a pixel is painted when it is visible and not black."""
    rgba = np.asarray(Image.open(path).convert("RGBA")).astype(np.int64)
    return torch.tensor(((rgba[..., 3] > 0) & (rgba[..., :3].max(-1) > 0)).astype(np.float64))


def paint_maps(paint, columns, grids):
    maps = {}
    for h, w in grids:
        A = torch.zeros(h * w, L5 + CLIP_ROWS + 2, dtype=torch.float64)
        for (words, path), col in zip(paint, columns):
            m = F.interpolate(painted(path)[None, None], size=(h, w), mode="bilinear", align_corners=True).reshape(-1)
            A += m[:, None] * torch.tensor(col)[None]
        maps[(h, w)] = A
    return maps


def denoiser(stage, branches, z_lr):
    """D(x; sigma): route to the expert of sigma, EDM preconditioning (Karras et al. Table 1), each CFG
    branch's context/class labels, paint weight w' ln(1 + sigma) in a painted branch, then CFG."""
    def D(x, sigma):
        s = float(sigma)
        k = stage.expert(s)
        unet = stage.experts[k][0]
        r = math.sqrt(s * s + SIGMA_DATA ** 2)
        c_skip, c_out, c_in, c_noise = SIGMA_DATA ** 2 / r ** 2, s * SIGMA_DATA / r, 1 / r, math.log(s) / 4
        inp = c_in * x
        if z_lr is not None:
            inp = torch.cat([inp, z_lr[None]], dim=1)
        outs = []
        for b in branches:
            b["proc"].weight = b["paint_weight"] * math.log1p(s) if b["painted"] else 0.0
            F_k = unet(inp, torch.tensor([c_noise], dtype=torch.float64), encoder_hidden_states=b["context"][k],
                       class_labels=b["class"][k]).sample
            outs.append(c_skip * x + c_out * F_k)
        if len(outs) == 1:
            return outs[0]
        return outs[1] + branches[0]["scale"] * (outs[0] - outs[1])
    return D


def setting(settings, flag, stage, default):
    """The value of a sampler flag (VALUE or STAGE=VALUE, later flags win) for one stage."""
    value = default
    for f, v in settings:
        if f == flag and ("=" not in v or v.split("=")[0] == stage):
            value = v.split("=")[-1]
    return value


def run_case(name, prompt, negative=None, seed=0, style=None, paint=(), paint_weight=0.4, no_t5=False,
             no_clip_text=False, noise=None, settings=None, stages=("base", "sr")):
    """One CLI run in PyTorch; its arguments and every tensor ediff --dump writes go into the reference."""
    use_t5, use_clip = not no_t5, not no_clip_text
    args = ["-p", prompt, "-s", str(seed)]
    if negative is not None:
        args += ["-n", negative]
    if style:
        args += ["--style-image", style]
    for words, path in paint:
        args += ["--paint", f"{words}={path}"]
    if paint:
        args += ["--paint-weight", repr(paint_weight)]
    args += ["--no-t5"] * no_t5 + ["--no-clip-text"] * no_clip_text
    if noise is not None:
        np.save(os.path.join(REF, f"pipeline_{name}_noise.npy"), noise.numpy().astype(np.float32).reshape(3, 16, 16))
        args += ["--noise", f"test/ref/pipeline_{name}_noise.npy"]
    settings = settings or []
    for flag, value in settings:
        args += [flag, value]
    REF_META[f"{name}.args"] = " ".join(shlex.quote(a) for a in args)
    REF_META[f"{name}.prompt"] = prompt
    out = {}

    enc = encode_text(prompt, use_t5, use_clip)
    neg = encode_text(negative, use_t5, use_clip) if negative is not None else None
    image_embed = encode_style(os.path.join(ROOT, style)) if style else None
    for key, value in enc.items():
        if value is not None:
            out[f"prompt/{key}"] = value[None]
    if image_embed is not None:
        out["style/clip_image_embed"] = image_embed[None]
    columns = [phrase_columns(prompt, words, use_t5, use_clip) for words, _ in paint]
    if paint:                                          # the context rows painted, for the C test's report
        REF_META[f"{name}.paint_columns"] = ",".join(str(j) for j in np.nonzero(sum(columns))[0])

    y_lr = None
    for s, stage_name in enumerate(stages):
        stage = STAGES[stage_name]
        R = stage.resolution
        steps = int(setting(settings, "--steps", stage_name, META[f"{stage_name}.steps"]))
        sampler = setting(settings, "--sampler", stage_name, META[f"{stage_name}.sampler"])
        scale = float(setting(settings, "--cfg-scale", stage_name, META[f"{stage_name}.cfg_scale"]))
        zeros_e = torch.zeros(EMBED, dtype=torch.float64)
        sigma_aug = torch.full((1,), AUG_SIGMA) if stage.sr else None

        def condition(text_enc, image):
            t5_tokens = text_enc["t5_tokens"] if text_enc and text_enc["t5_tokens"] is not None else torch.zeros(L5, t5_config.d_model)
            clip_tokens = text_enc["clip_tokens"] if text_enc and text_enc["clip_tokens"] is not None else torch.zeros(CLIP_ROWS, 8)
            pooled = text_enc["clip_text_embed"] if text_enc and text_enc["clip_text_embed"] is not None else zeros_e
            image = image if image is not None else zeros_e
            pairs = [cond(t5_tokens[None], clip_tokens[None], pooled[None], image[None], sigma_aug)
                     for _, cond in stage.experts]
            return [p[0] for p in pairs], [p[1] for p in pairs]

        grids = {(R // 2, R // 2)}                     # both toy UNets cross-attend at half resolution
        maps = paint_maps(paint, columns, sorted(grids)) if paint else {}
        for (h, w), A in maps.items():
            out[f"{stage_name}/paint.{h}x{w}"] = A
        branches = []
        ctx, cls = condition(enc, image_embed)
        proc = PaintWithWords({h * w: A for (h, w), A in maps.items()})
        branches.append(dict(context=ctx, **{"class": cls}, painted=bool(paint), paint_weight=paint_weight, proc=proc,
                             scale=scale))
        for k in range(len(stage.experts)):
            out[f"{stage_name}/cond/{stage_name}.{k}.cond.context"] = ctx[k]
            out[f"{stage_name}/cond/{stage_name}.{k}.cond.class_labels"] = cls[k]
        if scale != 1.0:                               # docs/sampling.md §5: negative text or none; image kept in SR
            uctx, ucls = condition(neg, image_embed if stage.sr else None)
            branches.append(dict(context=uctx, **{"class": ucls}, painted=False, paint_weight=0.0, proc=proc,
                                 scale=scale))
            for k in range(len(stage.experts)):
                out[f"{stage_name}/uncond/{stage_name}.{k}.cond.context"] = uctx[k]
                out[f"{stage_name}/uncond/{stage_name}.{k}.cond.class_labels"] = ucls[k]
        for unet, _ in stage.experts:
            unet.set_attn_processor(proc)

        z_lr = None
        if stage.sr:
            up = F.interpolate(y_lr[None], size=(R, R), mode="bilinear", align_corners=False)[0]
            z_lr = up + AUG_SIGMA * normals(seed, rng_stream(0, s, 2), 3 * R * R).reshape(3, R, R)
        n = noise if (s == 0 and noise is not None) else normals(seed, rng_stream(0, s, 0), 3 * R * R)
        sigmas = K.get_sigmas_karras(steps, 0.002, 80.0, 7.0, device="cpu").double()
        x = sigmas[0] * n.reshape(1, 3, R, R).double()
        D = denoiser(stage, branches, z_lr)
        if sampler == "heun":
            x = K.sample_heun(D, x, sigmas, disable=True)
        elif sampler == "dpmpp2m":
            x = K.sample_dpmpp_2m(D, x, sigmas, disable=True)
        else:
            raise ValueError(sampler)
        y_lr = x[0].clamp(-1, 1)
        out[f"{stage_name}/out"] = y_lr[None]
    for key, value in out.items():
        REF_TENSORS[f"{name}.{key}"] = value.detach().numpy().astype(np.float32)
    CASES.append(name)


def write_pngs():
    """Masks (different sizes and PNG types) and a style image, written by Pillow."""
    rng = np.random.default_rng(5)
    left = np.zeros((20, 20), np.uint8)
    left[:, :9] = 255                                    # grey, left 9 of 20 columns
    Image.fromarray(left).save(os.path.join(REF, "pipeline_mask_left.png"))
    right = np.zeros((17, 33, 4), np.uint8)              # RGBA: right part painted red, a transparent red strip is not
    right[:, 20:, 0] = 200
    right[:, 20:, 3] = 255
    right[:, 24:26, 3] = 0
    Image.fromarray(right, "RGBA").save(os.path.join(REF, "pipeline_mask_right.png"))
    style = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(style).save(os.path.join(REF, "pipeline_style.png"))


REF_TENSORS, REF_META, CASES = {}, {}, []

if __name__ == "__main__":
    write_pngs()
    blob.write_blob(os.path.join(REF, "pipeline.bin"), TENSORS, META)
    # full: every conditioning, a negative prompt, a style image, two painted phrases (one a word that
    # occurs twice, one of two words), CFG in both stages, Heun.
    run_case("full", "a red circle and a blue square next to a circle", negative="blurry", seed=7,
             style="test/ref/pipeline_style.png",
             paint=[("circle", "test/ref/pipeline_mask_left.png"), ("blue square", "test/ref/pipeline_mask_right.png")])
    # drop: no text conditioning, injected base noise, DPM-Solver++(2M) 3 steps, no guidance in the base.
    run_case("drop", "ignored text", seed=3, no_t5=True, no_clip_text=True,
             noise=torch.tensor(np.random.default_rng(9).standard_normal(3 * 16 * 16).astype(np.float32)).double(),
             settings=[("--sampler", "dpmpp2m"), ("--steps", "3"), ("--cfg-scale", "base=1")])
    REF_META["cases"] = ",".join(CASES)
    REF_META["generator"] = META["generator"]
    blob.write_blob(os.path.join(REF, "pipeline_ref.bin"), REF_TENSORS, REF_META)
    for f in ("pipeline.bin", "pipeline_ref.bin"):
        print(f"wrote test/ref/{f}: {os.path.getsize(os.path.join(REF, f)) / 1024:.0f} KiB")
