"""Reference data for the UNet suite (test/t_unet.c): diffusers' own UNet2DConditionModel in float64,
with every parameter re-initialised to non-trivial random values (diffusers zero-initialises some
output layers, which would leave paths untested). Writes test/ref/unet_*.bin.

    .venv/bin/python test/gen_unet.py

Each blob holds a UNet exactly as weights/convert.py writes one (tensors PREFIX + state_dict name,
config keys PREFIX + config field), the conditioning module's tensors where the case uses it, the
inputs (float32) and diffusers' outputs (float64, computed from those same float32 / float16 values).
Metadata `cases` lists the cases; each case stores its inputs, `present` (which conditionings are
given; an absent one is dropped = zeros) and `want`.

  unet_a.bin   eDiff-I base-like, bf16 UNet weights: 9x11 input (odd: diffusers forwards upsample sizes), attention at two
               of three levels, per-level layers/heads/transformer depth, only_cross_attention at one
               level, scale_shift, projection class embedding, conditioning module, module dumps, and
               paint-with-words (weights/ediffi.py PaintWithWords, a diffusers attention processor
               implementing eDiff-I §4.3)
  unet_b.bin   SR-like, f16 weights: 12x10 input with downsample_padding 0 (sizes 12x10, 6x5, 3x2),
               linear projections, default time shift, encoder_hid_proj, UNetMidBlock2D with
               mid_block_scale_factor, time_embedding_dim / time_embedding_act_fn / timestep_post_act,
               freq_shift 1 without flip, conv_out_kernel 1
  unet_c.bin   tiny, f32 weights, no mid block; its tensors also back two config/weights mismatch cases
  unet_refuse.bin  real diffusers configs (SD 1.5, SD 2.1, SDXL) and unsupported variants, metadata only
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import diffusers
from diffusers import UNet2DConditionModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402
from convert import config_meta  # noqa: E402  (the converter's own config -> metadata mapping)
from ediffi import EDiffIConditioning, PaintWithWords  # noqa: E402

CLIP_ROWS = 77


g = torch.Generator().manual_seed(2024)


def randn(*shape):
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def randomize(module):
    """Non-trivial float32 values everywhere: weights ~ N(0, 1/fan_in), norm scales 1 + 0.25 N,
    biases and norm shifts 0.2 N."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(randn(*p.shape) / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.25 * randn(*p.shape))
            else:
                p.copy_(0.2 * randn(*p.shape))


def store_module(out, module, prefix, dtype):
    """State dict into the blob (f32, f16 or bf16), and the module set to exactly those values in f64."""
    torch_dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dtype]
    with torch.no_grad():
        for name, p in module.state_dict().items():
            stored = p.to(torch_dtype)
            out.tensors[prefix + name] = stored.float().numpy() if dtype == "bf16" else stored.numpy()
            out.dtypes[prefix + name] = dtype
            p.copy_(stored.double())


class Blob:
    def __init__(self, name):
        self.name, self.tensors, self.meta, self.cases, self.dtypes = name, {}, {}, [], {}

    def case(self, name, **arrays):
        self.cases.append(name)
        for key, value in arrays.items():
            self.tensors[f"{name}.{key}"] = value

    def write(self):
        self.meta["cases"] = ",".join(self.cases)
        self.meta["generator"] = f"test/gen_unet.py, torch {torch.__version__}, diffusers {diffusers.__version__}"
        path = os.path.join(ROOT, "test", "ref", self.name)
        blob.write_blob(path, self.tensors, self.meta, dtype_overrides=self.dtypes)
        print(f"wrote {path}: {len(self.tensors)} tensors, {os.path.getsize(path) / 1024:.0f} KiB, cases {self.meta['cases']}")


def make_unet(cfg, prefix, out, dtype="f32"):
    unet = UNet2DConditionModel(**cfg).double().eval()
    randomize(unet)
    store_module(out, unet, prefix, dtype)
    out.meta.update(config_meta(dict(unet.config), prefix))
    return unet


def make_cond(dims, prefix, out, dtype="f32"):
    cond = EDiffIConditioning(**dims).double().eval()
    randomize(cond)
    store_module(out, cond, prefix, dtype)
    return cond


def encoder_outputs(L5, dims, present):
    """Random encoder outputs; an absent (dropped) one is all zeros, as in training (docs/model.md)."""
    parts = {"t5": randn(L5, dims["t5_dim"]), "clip": randn(CLIP_ROWS, dims["clip_dim"]),
             "text_embed": randn(dims["clip_embed_dim"]), "image_embed": randn(dims["clip_embed_dim"])}
    return {k: v if k in present else torch.zeros_like(v) for k, v in parts.items()}


def conditioned_case(out, name, unet, cond, dims, L5, H, W, t, present, class_labels=True, **extra):
    x = randn(unet.config.in_channels, H, W)
    enc = encoder_outputs(L5, dims, present)
    with torch.no_grad():
        context, class_vec = cond(enc["t5"][None].double(), enc["clip"][None].double(),
                                  enc["text_embed"][None].double(), enc["image_embed"][None].double())
        want = unet(x[None].double(), t, encoder_hidden_states=context,
                    class_labels=class_vec if class_labels else None).sample[0]
    arrays = dict(x=x.numpy(), timestep=np.array([t], np.float64), want=want.numpy(), context=context[0].numpy(),
                  class_vec=class_vec[0].numpy(), present=np.array([k in present for k in ("t5", "clip", "text_embed", "image_embed")], np.int32))
    arrays.update({k: v.numpy() for k, v in enc.items() if k in present})
    out.case(name, **arrays, **extra)
    return x, context, class_vec


# ----------------------------------------------------------------------------------------- unet_a
A_CFG = dict(in_channels=3, out_channels=3, block_out_channels=(16, 24, 24),
             down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
             mid_block_type="UNetMidBlock2DCrossAttn", layers_per_block=(1, 2, 1),
             transformer_layers_per_block=(1, 2, 1), attention_head_dim=(2, 4, 2),
             only_cross_attention=(False, False, True), cross_attention_dim=24, norm_num_groups=8,
             resnet_time_scale_shift="scale_shift", class_embed_type="projection",
             projection_class_embeddings_input_dim=24, flip_sin_to_cos=True, freq_shift=0, act_fn="silu")
A_DIMS = dict(t5_dim=20, clip_dim=16, clip_embed_dim=12, cross_attention_dim=24)
A_L5, A_H, A_W = 6, 9, 11
A_DUMPS = ["conv_in", "time_embedding", "class_embedding", "down_blocks.0.resnets.0", "down_blocks.0.downsamplers.0",
           "down_blocks.0", "down_blocks.1.attentions.1", "down_blocks.1.attentions.1.transformer_blocks.1",
           "down_blocks.1.attentions.1.transformer_blocks.1.attn1", "down_blocks.1.attentions.1.transformer_blocks.1.attn2",
           "down_blocks.1.attentions.1.transformer_blocks.1.ff", "down_blocks.2.attentions.0.transformer_blocks.0.attn1",
           "mid_block.attentions.0", "mid_block", "up_blocks.0.upsamplers.0", "up_blocks.1.resnets.2", "up_blocks.1",
           "conv_out"]
FIRST_CROSS = "down_blocks.1.attentions.0.transformer_blocks.0.attn2"    # its input does not depend on paint


def module_dumps(unet, names, run):
    """Outputs of the named modules during run(), as PyTorch forward hooks see them (tuples -> [0])."""
    got, handles = {}, []
    modules = dict(unet.named_modules())
    for name in names:
        def hook(mod, inp, output, name=name):
            got[name] = (output[0] if isinstance(output, tuple) else getattr(output, "sample", output)).detach()
        handles.append(modules[name].register_forward_hook(hook))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return got


def paint_maps(unet, H, W, L5):
    """A per attention grid: two phrases, each a binary mask at image resolution resized with bilinear
    align_corners=True (as the CLI builds them) and marked on its tokens in both the T5 and the CLIP
    segments of the context; the image token and the null token are never marked."""
    n_ctx = L5 + CLIP_ROWS + 2
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    phrases = [((xx < W * 0.55) & (yy > H * 0.3), 1.0, [1, 2], [1, 2]),   # mask, strength, T5 rows, CLIP rows
               ((xx > W * 0.6) & (yy < H * 0.5), 0.7, [4], [4, 5])]
    grids = []
    h, w = H, W
    for _ in range(len(unet.config.block_out_channels)):
        grids.append((h, w))
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1                          # downsample_padding 1
    maps = {}
    for gh, gw in grids:
        A = torch.zeros(gh * gw, n_ctx, dtype=torch.float64)
        for mask, strength, t5_rows, clip_rows in phrases:
            small = F.interpolate(mask[None, None].double(), size=(gh, gw), mode="bilinear", align_corners=True)
            col = strength * small.reshape(-1)
            for j in t5_rows:
                A[:, j] += col
            for j in clip_rows:
                A[:, L5 + j] += col
        maps[(gh, gw)] = A
    return maps


def gen_a():
    out = Blob("unet_a.bin")
    unet = make_unet(A_CFG, "base.0.unet.", out, dtype="bf16")
    cond = make_cond(A_DIMS, "base.0.cond.", out)
    out.meta["L5"] = str(A_L5)
    all_present = ("t5", "clip", "text_embed", "image_embed")
    x, context, class_vec = conditioned_case(out, "all", unet, cond, A_DIMS, A_L5, A_H, A_W, 0.37, all_present)
    conditioned_case(out, "none", unet, cond, A_DIMS, A_L5, A_H, A_W, -1.2, ())
    conditioned_case(out, "t5_image", unet, cond, A_DIMS, A_L5, A_H, A_W, 0.81, ("t5", "image_embed"))

    # module dumps of case "all", named as PyTorch forward hooks name them
    dumps = module_dumps(unet, A_DUMPS, lambda: unet(x[None].double(), 0.37, encoder_hidden_states=context,
                                                      class_labels=class_vec))
    for name, t in dumps.items():
        out.tensors[f"dump.{name}"] = t[0].numpy().astype(np.float32)
    out.meta["dumps"] = ",".join(A_DUMPS)

    # paint-with-words on case "all": w' = 0.6 at sigma = 2.5
    maps = paint_maps(unet, A_H, A_W, A_L5)
    weight = 0.6 * math.log(1 + 2.5)
    by_n = {gh * gw: A for (gh, gw), A in maps.items()}
    run = lambda: unet(x[None].double(), 0.37, encoder_hidden_states=context, class_labels=class_vec).sample[0]
    default = unet.attn_processors
    with torch.no_grad():
        plain = run()
        unet.set_attn_processor(PaintWithWords(by_n, 0.0))
        same = run()                                                   # the processor is diffusers' attention
        assert (same - plain).abs().max() < 1e-12, "PaintWithWords(weight=0) differs from diffusers"
        record = []
        unet.set_attn_processor(PaintWithWords(by_n, weight, record))
        painted = run()
        first = module_dumps(unet, [FIRST_CROSS], run)[FIRST_CROSS][0]
        check_paint_probabilities(record[0], maps[(5, 6)])
        unet.set_attn_processor(default)
    grids = sorted(maps)
    out.case("paint", want=painted.numpy(), weight=np.array([weight], np.float64),
             grids=np.array(grids, np.int32), first_cross=first.numpy().astype(np.float32),
             **{f"A.{gh}x{gw}": maps[(gh, gw)].numpy().astype(np.float32) for gh, gw in grids})
    out.meta["paint.first_cross"] = FIRST_CROSS
    print(f"  paint changes the output by up to {(painted - plain).abs().max():.3f}")
    out.write()


def check_paint_probabilities(record, A):
    """On the first cross-attention call: rows outside every mask keep their probabilities exactly; in a
    painted row, unpainted tokens keep their ratios (only the normalisation changes) and painted tokens
    gain probability relative to them."""
    plain, painted = record
    rows_out = (A == 0).all(dim=1)
    assert torch.equal(plain[:, rows_out], painted[:, rows_out])
    ratio = painted / plain
    for p in torch.nonzero(~rows_out).flatten():
        cols = A[p] != 0
        r_un, r_pa = ratio[:, p][:, ~cols], ratio[:, p][:, cols]
        assert (r_un.max(dim=1).values - r_un.min(dim=1).values).abs().max() < 1e-10
        assert (r_pa.min(dim=1).values > r_un.max(dim=1).values).all()


# ----------------------------------------------------------------------------------------- unet_b
B_CFG = dict(in_channels=6, out_channels=3, block_out_channels=(8, 16, 24),
             down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
             up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "CrossAttnUpBlock2D"),
             mid_block_type="UNetMidBlock2D", mid_block_scale_factor=1.5, layers_per_block=1, attention_head_dim=2,
             cross_attention_dim=16, encoder_hid_dim=20, use_linear_projection=True, norm_num_groups=4, norm_eps=1e-6,
             resnet_time_scale_shift="default", flip_sin_to_cos=False, freq_shift=1, downsample_padding=0,
             time_embedding_dim=48, time_embedding_act_fn="silu", timestep_post_act="silu", conv_out_kernel=1)
B_DIMS = dict(t5_dim=12, clip_dim=10, clip_embed_dim=8, cross_attention_dim=20)
B_L5, B_H, B_W = 4, 12, 10


def gen_b():
    out = Blob("unet_b.bin")
    unet = make_unet(B_CFG, "unet.", out, dtype="f16")
    cond = make_cond(B_DIMS, "cond.", out, dtype="f16")
    out.meta["L5"] = str(B_L5)
    conditioned_case(out, "all", unet, cond, B_DIMS, B_L5, B_H, B_W, 1.1, ("t5", "clip", "text_embed", "image_embed"),
                     class_labels=False)
    conditioned_case(out, "none", unet, cond, B_DIMS, B_L5, B_H, B_W, -0.4, (), class_labels=False)
    out.write()


# ----------------------------------------------------------------------------------------- unet_c
C_CFG = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16),
             down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
             mid_block_type=None, layers_per_block=1, attention_head_dim=2, cross_attention_dim=8, norm_num_groups=4)


def gen_c():
    out = Blob("unet_c.bin")
    unet = make_unet(C_CFG, "unet.", out)
    x, context = randn(3, 8, 8), randn(5, 8)
    with torch.no_grad():
        want = unet(x[None].double(), 0.5, encoder_hidden_states=context[None].double()).sample[0]
    out.case("plain", x=x.numpy(), context=context.numpy(), timestep=np.array([0.5], np.float64), want=want.numpy())
    # the same tensors under configs that disagree with them: two resnets per block where there is one
    # (a tensor is missing), and no attention at level 0 (the blob has tensors the config has no place for)
    for prefix, key, value in [("fewer", "layers_per_block", "2"), ("extra", "down_block_types", "DownBlock2D,DownBlock2D")]:
        for name, t in list(out.tensors.items()):                       # enough to reach the refusal
            if name.startswith(("unet.conv_in", "unet.time_embedding", "unet.down_blocks.0.")):
                out.tensors[prefix + "." + name[len("unet."):]] = t
        out.meta.update({prefix + "." + k[len("unet."):]: v for k, v in out.meta.items() if k.startswith("unet.")})
        out.meta[f"{prefix}.{key}"] = value
    out.write()


# ----------------------------------------------------------------------------------------- refusals
SD15 = {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}
SD21 = dict(SD15, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
            upcast_attention=True, sample_size=96)
SDXL = dict(SD15, addition_embed_type="text_time", addition_time_embed_dim=256, attention_head_dim=[5, 10, 20],
            block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            projection_class_embeddings_input_dim=2816, transformer_layers_per_block=[1, 2, 10],
            use_linear_projection=True, sample_size=128)

# prefix -> (config, the words the C error line must contain)
REFUSE = {
    "sd15": (SD15, "missing tensor 'sd15.conv_in.weight'"),           # supported: gets as far as the weights
    "sd21": (SD21, "missing tensor 'sd21.conv_in.weight'"),
    "sdxl": (SDXL, "addition_embed_type=text_time"),
    "dual": (dict(SD15, dual_cross_attention=True), "dual_cross_attention=true"),
    "fourier": (dict(SD15, time_embedding_type="fourier"), "time_embedding_type=fourier"),
    "simpleblock": (dict(SD15, down_block_types=["SimpleCrossAttnDownBlock2D"] + SD15["down_block_types"][1:]),
                    "SimpleCrossAttnDownBlock2D"),
    "simplemid": (dict(SD15, mid_block_type="UNetMidBlock2DSimpleCrossAttn"), "mid_block_type=UNetMidBlock2DSimpleCrossAttn"),
    "spatial": (dict(SD15, resnet_time_scale_shift="spatial"), "resnet_time_scale_shift=spatial"),
    "timestep_class": (dict(SD15, class_embed_type="timestep"), "class_embed_type=timestep"),
    "condproj": (dict(SD15, time_cond_proj_dim=256), "time_cond_proj_dim=256"),
    "gelu": (dict(SD15, act_fn="gelu"), "act_fn=gelu"),
    "gligen": (dict(SD15, attention_type="gated"), "attention_type=gated"),
    "imageproj": (dict(SD15, encoder_hid_dim_type="image_proj", encoder_hid_dim=1024), "encoder_hid_dim_type=image_proj"),
    "groupsnone": (dict(SD15, norm_num_groups=None), "norm_num_groups=none"),
    "crossdims": (dict(SD15, cross_attention_dim=[768, 768, 1024, 1024]), "one width per level"),
    "levels": (dict(SD15, layers_per_block=[2, 2]), "2 values for 4 levels"),
    "concat": (dict(SD15, class_embeddings_concat=True), "class_embeddings_concat=true"),
}


def gen_refuse():
    out = Blob("unet_refuse.bin")
    for prefix, (cfg, words) in REFUSE.items():
        out.meta.update(config_meta(cfg, prefix + "."))
        out.meta[f"expect.{prefix}"] = words
    out.cases = list(REFUSE)
    out.tensors["unused"] = np.zeros(1, np.float32)
    out.write()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    gen_a()
    gen_b()
    gen_c()
    gen_refuse()
