"""Reference data for the encoders (test/t_encoders.c), made with `transformers` itself:
T5EncoderModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection and CLIPImageProcessor
(its PIL backend, CLIPImageProcessorPil: torchvision is absent) at two small random configs each.

    .venv/bin/python test/gen_encoders.py

Each model is built from its config with a fixed seed, given O(1) random weights, saved with
`save_pretrained` (safetensors) and converted by weights/convert.py to test/ref/enc_KIND_CASE.bin (f32;
config b also as _f16). Expected outputs come from the same model in float64. test/ref/enc_ref.bin
holds the inputs and outputs; its metadata `cases.KIND` lists the cases, so the C suite walks exactly
what is written here. Test images are saved as PNGs (test/ref/enc_img_*.png) through Pillow, read
back, and stored as raw RGB bytes, so the C test needs no PNG decoder.

test/bench_encoders.py reuses these functions for the real-size configs (written to /tmp, never
committed).
"""
import copy
import os
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402
import convert  # noqa: E402

import transformers  # noqa: E402
from transformers import (CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTextConfig,  # noqa: E402
                          CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection, T5Config,
                          T5EncoderModel)
from transformers.models.t5.modeling_t5 import T5Attention  # noqa: E402

transformers.logging.set_verbosity_error()
REF = os.path.join(ROOT, "test", "ref")
EMBEDDINGS = ("shared.", "embed_tokens", "token_embedding", "position_embedding", "class_embedding",
              "relative_attention_bias")


# ------------------------------------------------------------------------------ models

def randomize(model, seed):
    """O(1) random weights instead of HF's small init, so attention is peaked, biases matter and the
    outputs are far from trivial: norms 1 + 0.2 N(0,1), biases 0.1 N(0,1), embeddings and the
    relative-position table N(0,1), matrices N(0,1)/sqrt(fan_in). T5's q gets a further 1/sqrt(d_kv),
    the attention scale T5 folds into q (its own init does the same), so logits stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 0:                              # CLIPModel's logit_scale: unused here
                continue
            r = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if "norm" in name:
                p.copy_(1 + 0.2 * r if name.endswith("weight") else 0.1 * r)
            elif any(e in name for e in EMBEDDINGS):
                p.copy_(r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            else:
                p.copy_(r / p[0].numel() ** 0.5)
            if name.endswith("SelfAttention.q.weight"):
                p.mul_(model.config.d_kv ** -0.5)
    return model.eval()


def build(cls, config, seed):
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return randomize(cls(config), seed)


def save_and_convert(model, name, outdir, processor=None, f16=False):
    """save_pretrained + convert.py -> outdir/NAME.bin (and NAME_f16.bin)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, name)            # its name becomes the blob's ediff.source
        model.save_pretrained(folder, safe_serialization=True)
        if processor is not None:
            processor.save_pretrained(folder)
        convert.convert(folder, os.path.join(outdir, name + ".bin"))
        if f16:
            convert.convert(folder, os.path.join(outdir, name + "_f16.bin"), dtype="f16")


def as_f64(model, f16_weights=False):
    """A float64 copy; with f16_weights, every weight first rounded to float16 (what an f16 blob holds)."""
    m = copy.deepcopy(model)
    if f16_weights:
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(p.half().float())
    return m.double().eval()


def capture(model, names, run):
    """run() with forward hooks on the named modules; returns {name: output of batch row 0}."""
    out, handles = {}, []
    for n in names:
        def hook(mod, inp, o, n=n):
            o = o[0] if isinstance(o, tuple) else o
            out[n] = o[0].detach().numpy().astype(np.float32)
        handles.append(model.get_submodule(n).register_forward_hook(hook))
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return out


def f32(t):
    return t.detach().numpy().astype(np.float32)


# ------------------------------------------------------------------------------ per-encoder references

class Ref:
    """Tensors and metadata of a reference blob; cases.KIND lists the cases of each encoder."""

    def __init__(self):
        self.tensors, self.meta, self.cases = {}, {}, {}

    def case(self, kind, name):
        self.cases.setdefault(kind, []).append(name)
        return f"{kind}.{name}."

    def write(self, path):
        for kind, names in self.cases.items():
            self.meta["cases." + kind] = ",".join(names)
        blob.write_blob(path, self.tensors, self.meta)


def t5_case(ref, name, config, seed, ids, outdir, f16=False, hooks=False, pad=None, bucket_range=600):
    """T5: last_hidden_state of ids; optionally the f16 blob, per-module outputs, a padded batch row
    (pad = number of real tokens of a row padded to len(ids)) and the relative-position buckets."""
    model = build(T5EncoderModel, config, seed)
    save_and_convert(model, f"enc_t5_{name}", outdir, f16=f16)
    k = ref.case("t5", name)
    ref.meta[k + "model"] = f"enc_t5_{name}"
    ids_t = torch.tensor(ids)[None]
    m64 = as_f64(model)
    with torch.no_grad():
        ref.tensors[k + "want"] = f32(m64(input_ids=ids_t).last_hidden_state[0])
    ref.tensors[k + "ids"] = np.array(ids, np.int32)
    if f16:
        ref.meta[k + "model_f16"] = f"enc_t5_{name}_f16"
        with torch.no_grad():
            ref.tensors[k + "want_f16w"] = f32(as_f64(model, True)(input_ids=ids_t).last_hidden_state[0])
    if hooks:
        names = ["encoder.embed_tokens"] + [f"encoder.block.{i}" for i in range(config.num_layers)] + \
                ["encoder.final_layer_norm"]
        for n, v in capture(m64, names, lambda: m64(input_ids=ids_t)).items():
            ref.tensors[k + "hook." + n] = v
    if pad is not None:
        # a batch of two rows: all of ids, and its first `pad` tokens followed by padding (id 0, mask 0)
        padded = list(ids[:pad]) + [0] * (len(ids) - pad)
        mask = [1] * pad + [0] * (len(ids) - pad)
        with torch.no_grad():
            out = m64(input_ids=torch.tensor([ids, padded]),
                      attention_mask=torch.tensor([[1] * len(ids), mask])).last_hidden_state
        ref.tensors[k + "pad_ids"] = np.array(padded, np.int32)
        ref.tensors[k + "pad_mask"] = np.array(mask, np.int32)
        ref.tensors[k + "pad_want"] = f32(out[1])
    rp = torch.arange(-bucket_range, bucket_range + 1)
    buckets = T5Attention._relative_position_bucket(rp, bidirectional=True, num_buckets=config.relative_attention_num_buckets,
                                                    max_distance=config.relative_attention_max_distance)
    ref.tensors[k + "buckets"] = buckets.numpy().astype(np.int32)      # for rp = -range .. range
    return model


def clip_text_case(ref, name, config, seed, rows, outdir, f16=False, hooks=False):
    """CLIP text: last_hidden_state [R, T, W] and text_embeds [R, E] of a batch of id rows."""
    model = build(CLIPTextModelWithProjection, config, seed)
    save_and_convert(model, f"enc_clip_text_{name}", outdir, f16=f16)
    k = ref.case("clip_text", name)
    ref.meta[k + "model"] = f"enc_clip_text_{name}"
    ids_t = torch.tensor(rows)
    m64 = as_f64(model)
    with torch.no_grad():
        out = m64(input_ids=ids_t)
    ref.tensors[k + "ids"] = np.array(rows, np.int32)
    ref.tensors[k + "want_hidden"] = f32(out.last_hidden_state)
    ref.tensors[k + "want_embeds"] = f32(out.text_embeds)
    if f16:
        ref.meta[k + "model_f16"] = f"enc_clip_text_{name}_f16"
        with torch.no_grad():
            out = as_f64(model, True)(input_ids=ids_t)
        ref.tensors[k + "want_hidden_f16w"] = f32(out.last_hidden_state)
        ref.tensors[k + "want_embeds_f16w"] = f32(out.text_embeds)
    if hooks:
        names = ["text_model.embeddings"] + [f"text_model.encoder.layers.{i}" for i in range(config.num_hidden_layers)] + \
                ["text_model.final_layer_norm", "text_projection"]
        for n, v in capture(m64, names, lambda: m64(input_ids=ids_t[:1])).items():
            ref.tensors[k + "hook." + n] = v
    return model


def test_image(w, h, seed):
    """Gradients, a sine pattern and noise, plus a hard-edged block of saturated colour so that the
    bicubic overshoot has to be clamped."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 127 + 100 * np.sin(0.7 * x + 0.3 * y)], -1)
    img += rng.normal(0, 12, img.shape)
    img[h // 4: h // 2 + 1, w // 3: 2 * w // 3 + 1] = 255 * (rng.random(3) > 0.5)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_roundtrip(rgb, path):
    """Save through Pillow as PNG, read back as RGB: (PIL image, its bytes [h, w, 3])."""
    Image.fromarray(rgb).save(path)
    img = Image.open(path).convert("RGB")
    return img, np.asarray(img).copy()


def preprocess_case(ref, name, model_name, processor, w, h, seed, png_dir):
    """CLIPImageProcessor on a PNG of w x h pixels; returns the pixel values [3, S, S]."""
    img, rgb = png_roundtrip(test_image(w, h, seed), os.path.join(png_dir, f"enc_img_{name}.png"))
    k = ref.case("preprocess", name)
    ref.meta[k + "model"] = model_name
    ref.tensors[k + "rgb"] = rgb
    pixels = processor(images=img, return_tensors="np")["pixel_values"][0]
    ref.tensors[k + "want"] = pixels.astype(np.float32)
    return pixels


def clip_vision_case(ref, name, config, seed, processor, image, outdir, f16=False, hooks=False):
    """CLIP vision: image_embeds, last_hidden_state and pooled of the processed `image` (a preprocess
    case name, whose pixels are the input)."""
    model = build(CLIPVisionModelWithProjection, config, seed)
    save_and_convert(model, f"enc_clip_vision_{name}", outdir, processor=processor, f16=f16)
    k = ref.case("clip_vision", name)
    ref.meta[k + "model"] = f"enc_clip_vision_{name}"
    ref.meta[k + "image"] = image
    pixels = torch.from_numpy(ref.tensors[f"preprocess.{image}.want"]).double()[None]
    m64 = as_f64(model)
    with torch.no_grad():
        out = m64(pixel_values=pixels, output_hidden_states=False)
        pooled = m64.vision_model(pixel_values=pixels).pooler_output
    ref.tensors[k + "want_embeds"] = f32(out.image_embeds[0])
    ref.tensors[k + "want_hidden"] = f32(out.last_hidden_state[0])
    ref.tensors[k + "want_pooled"] = f32(pooled[0])
    if f16:
        ref.meta[k + "model_f16"] = f"enc_clip_vision_{name}_f16"
        with torch.no_grad():
            ref.tensors[k + "want_embeds_f16w"] = f32(as_f64(model, True)(pixel_values=pixels).image_embeds[0])
    if hooks:
        names = ["vision_model.embeddings", "vision_model.pre_layrnorm"] + \
                [f"vision_model.encoder.layers.{i}" for i in range(config.num_hidden_layers)] + \
                ["vision_model.post_layernorm", "visual_projection"]
        for n, v in capture(m64, names, lambda: m64(pixel_values=pixels)).items():
            ref.tensors[k + "hook." + n] = v
    return model


def clip_model_cases(ref, name, config, seed, rows, image, outdir):
    """A whole CLIPModel (both towers under one `clip.` prefix, projection_dim at the top level):
    adds a clip_text and a clip_vision case NAME reading the same blob."""
    model = build(CLIPModel, config, seed)
    save_and_convert(model, f"enc_clip_model_{name}", outdir)
    m64 = as_f64(model)
    ids_t = torch.tensor(rows)
    pixels = torch.from_numpy(ref.tensors[f"preprocess.{image}.want"]).double()[None]
    with torch.no_grad():
        text = m64.text_model(input_ids=ids_t)
        vision = m64.vision_model(pixel_values=pixels)
        k = ref.case("clip_text", name)
        ref.meta[k + "model"] = f"enc_clip_model_{name}"
        ref.tensors[k + "ids"] = np.array(rows, np.int32)
        ref.tensors[k + "want_hidden"] = f32(text.last_hidden_state)
        ref.tensors[k + "want_embeds"] = f32(m64.text_projection(text.pooler_output))
        k = ref.case("clip_vision", name)
        ref.meta[k + "model"] = f"enc_clip_model_{name}"
        ref.meta[k + "image"] = image
        ref.tensors[k + "want_embeds"] = f32(m64.visual_projection(vision.pooler_output)[0])
        ref.tensors[k + "want_hidden"] = f32(vision.last_hidden_state[0])
        ref.tensors[k + "want_pooled"] = f32(vision.pooler_output[0])


# ------------------------------------------------------------------------------ the committed cases

def main():
    rng = np.random.default_rng(5)
    ref = Ref()

    # T5 a: v1.0 (relu), d_model 64, 2 heads, 3 layers, 32 buckets up to 128; 140 tokens, so every bucket
    # and the bucket boundaries (|j - i| = 8, 12, 16, 23, 32, 46, 64, 91, >= 128) occur.
    t5_case(ref, "a", T5Config(vocab_size=100, d_model=64, d_kv=16, num_heads=2, d_ff=64, num_layers=3,
                               feed_forward_proj="relu", relative_attention_num_buckets=32,
                               relative_attention_max_distance=128),
            seed=11, ids=rng.integers(0, 100, 140).tolist(), outdir=REF)
    # T5 b: v1.1 (gated-gelu = gelu_new), inner 32 != d_model 48, 16 buckets up to 40, eps 1e-5;
    # f16 blob, per-module outputs, and a padded batch row (50 real tokens of 72).
    t5_case(ref, "b", T5Config(vocab_size=120, d_model=48, d_kv=8, num_heads=4, d_ff=48, num_layers=2,
                               feed_forward_proj="gated-gelu", relative_attention_num_buckets=16,
                               relative_attention_max_distance=40, layer_norm_epsilon=1e-5),
            seed=12, ids=rng.integers(0, 120, 72).tolist(), outdir=REF, f16=True, hooks=True, pad=50)

    # CLIP text a: width 64, 4 heads, 2 layers, quick_gelu, legacy eos_token_id 2 (pooling by argmax);
    # OpenAI-style rows: <start>=118, text ids < 118, <end>=119, zero padding to 77.
    def openai_row(n):
        return [118] + rng.integers(0, 118, n).tolist() + [119] + [0] * (75 - n)
    clip_text_case(ref, "a", CLIPTextConfig(vocab_size=120, hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                                            intermediate_size=96, projection_dim=48, max_position_embeddings=77,
                                            hidden_act="quick_gelu", eos_token_id=2, bos_token_id=118, pad_token_id=0),
                   seed=21, rows=[openai_row(9), openai_row(40)], outdir=REF)
    # CLIP text b: width 32, 2 heads, 3 layers, exact GELU, eps 1e-6, eos_token_id 97 (first-eos pooling),
    # 24 positions. Row 0 has an id above eos before its eos (argmax would pool elsewhere) and HF-style
    # eos padding; row 1 has no eos at all (HF pools position 0).
    row0 = [98] + rng.integers(0, 97, 6).tolist() + [99] + rng.integers(0, 97, 5).tolist() + [97] * 11
    row1 = [98] + rng.integers(0, 97, 23).tolist()
    clip_text_case(ref, "b", CLIPTextConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, num_hidden_layers=3,
                                            intermediate_size=64, projection_dim=40, max_position_embeddings=24,
                                            hidden_act="gelu", layer_norm_eps=1e-6, eos_token_id=97, bos_token_id=98,
                                            pad_token_id=0),
                   seed=22, rows=[row0, row1], outdir=REF, f16=True, hooks=True)

    # Preprocessing. Processor a: CLIPImageProcessor defaults at 32 px; b: shortest edge 36, crop 30,
    # other mean/std. Sizes cover identity, shrink, upscale, odd crop offsets, tall, wide, tiny.
    proc_a = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc_b = CLIPImageProcessorPil(size={"shortest_edge": 36}, crop_size={"height": 30, "width": 30},
                                   image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3])
    for i, (name, proc, model, w, h) in enumerate([
            ("a_32x32", proc_a, "enc_clip_vision_a", 32, 32), ("a_50x40", proc_a, "enc_clip_vision_a", 50, 40),
            ("a_17x23", proc_a, "enc_clip_vision_a", 17, 23), ("a_45x33", proc_a, "enc_clip_vision_a", 45, 33),
            ("a_33x100", proc_a, "enc_clip_vision_a", 33, 100), ("a_7x5", proc_a, "enc_clip_vision_a", 7, 5),
            ("a_97x31", proc_a, "enc_clip_vision_a", 97, 31), ("b_40x61", proc_b, "enc_clip_vision_b", 40, 61),
            ("b_36x36", proc_b, "enc_clip_vision_b", 36, 36), ("b_25x80", proc_b, "enc_clip_vision_b", 25, 80),
            ("b_160x120", proc_b, "enc_clip_vision_b", 160, 120)]):
        preprocess_case(ref, name, model, proc, w, h, seed=100 + i, png_dir=REF)

    # CLIP vision a: width 64, 4 heads, 2 layers, 32 px, patch 8, quick_gelu; b: width 32, 2 heads,
    # 3 layers, 30 px, patch 6, exact GELU, eps 1e-6, f16 blob and per-module outputs.
    clip_vision_case(ref, "a", CLIPVisionConfig(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                                                intermediate_size=96, projection_dim=48, image_size=32, patch_size=8,
                                                hidden_act="quick_gelu"),
                     seed=31, processor=proc_a, image="a_50x40", outdir=REF)
    clip_vision_case(ref, "b", CLIPVisionConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=3,
                                                intermediate_size=64, projection_dim=40, image_size=30, patch_size=6,
                                                hidden_act="gelu", layer_norm_eps=1e-6),
                     seed=32, processor=proc_b, image="b_40x61", outdir=REF, f16=True, hooks=True)

    # A whole CLIPModel: its nested configs keep the default projection_dim 512 while the model uses
    # the top-level 24; convert.py must write the latter for both towers.
    clip_model_cases(ref, "m", CLIPConfig(
        text_config=dict(vocab_size=40, hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32,
                         max_position_embeddings=12, eos_token_id=39, bos_token_id=38, pad_token_id=0),
        vision_config=dict(hidden_size=16, num_attention_heads=2, num_hidden_layers=1, intermediate_size=32,
                           image_size=32, patch_size=16), projection_dim=24),
        seed=51, rows=[[38] + rng.integers(0, 38, 6).tolist() + [39] * 5], image="a_97x31", outdir=REF)

    ref.write(os.path.join(REF, "enc_ref.bin"))
    total = sum(os.path.getsize(os.path.join(REF, f)) for f in os.listdir(REF) if f.startswith("enc_"))
    print(f"test/ref/enc_*: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
