"""Reference data for the op library (test/t_ops.c): inputs in float32, expected outputs computed by
PyTorch in float64 from those same float32 values. Writes test/ref/ops.bin.

    .venv/bin/python test/gen_ops.py

Each case stores its inputs, its parameters (small i32/f64 tensors) and `want`; the metadata key
`cases.OP` lists the case names of op OP, so the C suite walks exactly the cases written here.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402

rng = np.random.default_rng(1234)
tensors, cases = {}, {}
bf16_names = set()          # tensors stored as bf16 in the blob


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def d64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def add(op, name, **arrays):
    cases.setdefault(op, []).append(name)
    for key, value in arrays.items():
        tensors[f"{op}.{name}.{key}"] = value


# --- GEMM: C = A B (+ C0). layout "n" = stored as is, "t" = stored transposed (read with swapped strides);
# adt/bdt: the dtype A/B are stored in (f16/bf16 are converted while packing). The shapes cover the blocking
# of tensor.c (MR 8, NR 32, KC 256, MC 480, NC 2048): partial edge tiles in both directions, K split into
# several slices (257 = 129 + 128, 300 = 2 x 150, 530 = 3 x 177), M over one MC block, N over one NC block.
def rounded(X, dt):
    if dt == "f16":
        return X.astype(np.float16).astype(np.float32)
    if dt == "bf16":
        return blob.from_bf16_bits(blob.to_bf16_bits(X)).reshape(X.shape)
    return X


for M, N, K, la, lb, adt, bdt, acc in [(1, 1, 1, "n", "n", "f32", "f32", 0), (17, 33, 9, "n", "n", "f32", "f32", 0),
                                       (64, 48, 300, "n", "n", "f32", "f32", 0), (5, 100, 7, "n", "t", "f32", "f32", 0),
                                       (13, 31, 40, "t", "n", "f32", "f32", 0), (40, 24, 70, "n", "t", "f32", "f16", 0),
                                       (9, 20, 33, "n", "t", "f32", "bf16", 0), (8, 19, 12, "n", "n", "f32", "f32", 1),
                                       (130, 70, 300, "n", "t", "f32", "f32", 0), (9, 33, 257, "n", "n", "f32", "f32", 1),
                                       (17, 40, 530, "n", "t", "f16", "f16", 0), (23, 65, 60, "t", "n", "bf16", "f32", 0),
                                       (490, 5, 3, "n", "n", "f32", "f32", 0), (2, 2100, 4, "n", "n", "f32", "f32", 1)]:
    A, B = rounded(f32(M, K), adt), rounded(f32(K, N), bdt)
    C0 = f32(M, N)
    want = (d64(A) @ d64(B) + (d64(C0) if acc else 0)).numpy()
    a_store = A if la == "n" else np.ascontiguousarray(A.T)
    b_store = B if lb == "n" else np.ascontiguousarray(B.T)
    a_store = a_store.astype(np.float16) if adt == "f16" else a_store
    b_store = b_store.astype(np.float16) if bdt == "f16" else b_store
    arrays = dict(a=a_store, b=b_store, c0=C0, want=want,
                  dims=np.array([M, N, K, la == "t", lb == "t", acc], np.int32))
    name = (f"{M}x{N}x{K}" + ("" if la == "n" else ".aT") + ("" if lb == "n" else ".bT")
            + ("" if adt == "f32" else ".a" + adt) + ("" if bdt == "f32" else "." + bdt) + (".acc" if acc else ""))
    add("gemm", name, **arrays)
    if adt == "bf16":
        bf16_names.add(f"gemm.{name}.a")
    if bdt == "bf16":
        bf16_names.add(f"gemm.{name}.b")

# --- linear: y = x W^T + b
for n, i, o, dt in [(4, 24, 17, "f32"), (33, 64, 40, "f16")]:
    x, W, b = f32(n, i), f32(o, i, scale=0.2), f32(o)
    if dt == "f16":
        W, b = W.astype(np.float16), b.astype(np.float16)
    want = F.linear(d64(x), d64(W), d64(b)).numpy()
    add("linear", f"{n}x{i}to{o}.{dt}", x=x, w=W, b=b, want=want)

# --- conv2d (weights f32, or f16 converted while packing; 16x20x18 -> 24: im2col panels spanning two output
# rows, three row panels; widths 64 and 32 at stride 1: panels read in place from the padded image, one
# K slice and two)
for cin, h, w, cout, k, s, p, bias, wdt in [(3, 7, 9, 5, 3, 1, 1, 1, "f32"), (8, 11, 10, 6, 3, 2, 1, 1, "f32"),
                                            (6, 5, 5, 7, 1, 1, 0, 1, "f32"), (3, 32, 32, 16, 4, 4, 0, 0, "f32"),
                                            (4, 6, 7, 3, 5, 1, 2, 1, "f32"), (16, 20, 18, 24, 3, 1, 1, 1, "f16"),
                                            (9, 12, 13, 17, 3, 2, 1, 1, "f16"), (10, 5, 64, 12, 3, 1, 1, 1, "f16"),
                                            (40, 4, 32, 9, 3, 1, 1, 0, "f32")]:
    x, W, b = f32(cin, h, w), rounded(f32(cout, cin, k, k, scale=0.3), wdt), f32(cout)
    want = F.conv2d(d64(x)[None], d64(W), d64(b) if bias else None, stride=s, padding=p)[0].numpy()
    add("conv2d", f"{cin}x{h}x{w}.k{k}s{s}p{p}" + ("" if bias else ".nobias") + ("" if wdt == "f32" else "." + wdt),
        x=x, w=W.astype(np.float16) if wdt == "f16" else W, b=b, want=want, params=np.array([s, p, bias], np.int32))

# --- norms
for C, HW, G, silu in [(32, 49, 8, 0), (12, 30, 4, 1), (64, 17, 32, 0)]:
    x, g, b = f32(C, HW, scale=2.0) + 0.5, f32(C), f32(C)
    y = F.group_norm(d64(x)[None].reshape(1, C, HW), G, d64(g), d64(b), eps=1e-5)[0]
    want = (F.silu(y) if silu else y).numpy()
    add("group_norm", f"C{C}.HW{HW}.G{G}" + (".silu" if silu else ""), x=x, g=g, b=b, want=want,
        params=np.array([C, HW, G, silu], np.int32))
for rows, dim in [(7, 64), (3, 100)]:
    x, w, b = f32(rows, dim, scale=3.0) + 1.0, f32(dim), f32(dim)
    add("layer_norm", f"{rows}x{dim}", x=x, w=w, b=b, want=F.layer_norm(d64(x), (dim,), d64(w), d64(b), 1e-5).numpy())
for rows, dim in [(7, 64), (5, 48)]:
    x, w = f32(rows, dim, scale=3.0), f32(dim)
    xd = d64(x)
    want = (d64(w) * (xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-6))).numpy()
    add("rms_norm", f"{rows}x{dim}", x=x, w=w, want=want)
for rows, cols, scale in [(5, 77, 1.0), (3, 1000, 50.0)]:
    x = f32(rows, cols, scale=scale)
    add("softmax", f"{rows}x{cols}", x=x, want=torch.softmax(d64(x), -1).numpy())

# --- attention: out = softmax(scale q k^T + bias_mult * bias) v, per head
def attn_ref(q, k, v, H, dh, scale, bias=None, strides=(0, 0, 0), add_scale=1.0, times_max=0, causal=0):
    Tq, Tk = q.shape[0], k.shape[0]
    Q = d64(q).reshape(Tq, H, dh).transpose(0, 1)
    Kt = d64(k).reshape(Tk, H, dh).transpose(0, 1)
    V = d64(v).reshape(Tk, H, dh).transpose(0, 1)
    raw = Q @ Kt.transpose(1, 2)                                   # [H, Tq, Tk]
    logits = scale * raw
    if bias is not None:
        hs, qs, ks = strides
        flat = d64(bias).reshape(-1)
        idx = (torch.arange(H)[:, None, None] * hs + torch.arange(Tq)[None, :, None] * qs
               + torch.arange(Tk)[None, None, :] * ks)
        mult = add_scale * (raw.max() if times_max else 1.0)
        logits = logits + mult * flat[idx]
    if causal:
        logits = logits.masked_fill(torch.ones(Tq, Tk, dtype=torch.bool).triu(1), float("-inf"))
    out = torch.softmax(logits, -1) @ V                            # [H, Tq, dh]
    return out.transpose(0, 1).reshape(Tq, H * dh).numpy()


for name, Tq, Tk, H, dh, scale, kind in [("self.T40.H4.dh16", 40, 40, 4, 16, 0.25, None),
                                         ("cross.Tq300.Tk37.H2.dh8", 300, 37, 2, 8, 8 ** -0.5, None),
                                         ("t5bias.T20.H3.dh8", 20, 20, 3, 8, 1.0, "t5"),
                                         ("causal.T13.H2.dh16", 13, 13, 2, 16, 0.25, "causal"),
                                         ("padmask.T10.H2.dh4", 10, 10, 2, 4, 0.5, "pad"),
                                         ("paint.Tq64.Tk12.H2.dh8", 64, 12, 2, 8, 8 ** -0.5, "paint"),
                                         # past one query block (96) and one key block (1024) of the
                                         # online softmax: rescaled partial sums, fully masked key blocks
                                         ("paint.Tq200.Tk12.H2.dh8", 200, 12, 2, 8, 8 ** -0.5, "paint"),
                                         ("t5bias.Tq5.Tk1100.H1.dh4", 5, 1100, 1, 4, 0.5, "t5"),
                                         ("causal.T1030.H1.dh2", 1030, 1030, 1, 2, 0.5, "causal")]:
    q, k, v = f32(Tq, H * dh), f32(Tk, H * dh), f32(Tk, H * dh)
    bias, strides, add_scale, times_max, causal = None, (0, 0, 0), 1.0, 0, 0
    if kind == "t5":
        bias, strides = f32(H, Tq, Tk), (Tq * Tk, Tk, 1)
    if kind == "causal":
        causal = 1
    if kind == "pad":
        bias = np.zeros(Tk, np.float32)
        bias[7:] = np.finfo(np.float32).min
        strides = (0, 0, 1)
    if kind == "paint":
        bias = (rng.random((Tq, Tk)) > 0.6).astype(np.float32) * (rng.random((Tq, Tk)) * 1.5).astype(np.float32)
        bias[:, :4] = 0.0                                          # unpainted tokens
        strides, add_scale, times_max = (0, Tk, 1), 0.7 * scale, 1
    want = attn_ref(q, k, v, H, dh, scale, bias, strides, add_scale, times_max, causal)
    arrays = dict(q=q, k=k, v=v, want=want, dims=np.array([Tq, Tk, H, dh, causal, times_max, bias is not None, *strides], np.int32),
                  scales=np.array([scale, add_scale], np.float64))
    if bias is not None:
        arrays["bias"] = bias
    add("attention", name, **arrays)

# --- activations
acts = {"relu": lambda x: torch.relu(x), "silu": lambda x: F.silu(x), "gelu": lambda x: F.gelu(x),
        "gelu_new": lambda x: 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x ** 3))),
        "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x)}
for act, fn in acts.items():
    for n in (37, 1000):
        x = f32(n, scale=3.0)
        x[:4] = [20.0, -20.0, 0.0, 1e-3]
        add("activation", f"{act}.{n}", x=x, want=fn(d64(x)).numpy())

# --- resampling, pooling, embedding, concatenation
for C, H, W, f in [(3, 5, 7, 2), (2, 4, 4, 3)]:
    x = f32(C, H, W)
    add("upsample_nearest", f"C{C}.{H}x{W}.f{f}", x=x, want=F.interpolate(d64(x)[None], scale_factor=f, mode="nearest")[0].numpy(),
        params=np.array([C, H, W, H * f, W * f], np.int32))
for C, H, W, H2, W2, ac in [(2, 5, 7, 10, 14, 0), (3, 16, 16, 5, 7, 0), (2, 4, 6, 9, 13, 1)]:
    x = f32(C, H, W)
    want = F.interpolate(d64(x)[None], size=(H2, W2), mode="bilinear", align_corners=bool(ac))[0].numpy()
    add("resize_bilinear", f"C{C}.{H}x{W}to{H2}x{W2}" + (".ac" if ac else ""), x=x, want=want,
        params=np.array([C, H, W, H2, W2, ac], np.int32))
for C, H, W, k, s in [(3, 8, 8, 2, 2), (2, 9, 7, 3, 2)]:
    x = f32(C, H, W)
    add("avg_pool2d", f"C{C}.{H}x{W}.k{k}s{s}", x=x, want=F.avg_pool2d(d64(x)[None], k, s)[0].numpy(),
        params=np.array([C, H, W, k, s], np.int32))
for rows, dim, n, dt in [(50, 16, 7, "f32"), (30, 24, 5, "f16")]:
    table = f32(rows, dim)
    if dt == "f16":
        table = table.astype(np.float16)
    ids = rng.integers(0, rows, n).astype(np.int32)
    add("embedding", f"{rows}x{dim}.{dt}", table=table, ids=ids, want=table.astype(np.float64)[ids])
a, b = f32(3, 12), f32(5, 12)
add("concat_channels", "3+5x12", a=a, b=b, want=np.concatenate([a, b]))

# --- half precision conversions: every f16 and bf16 bit pattern (index = bits), and f32 -> f16 rounding
all16 = np.arange(65536, dtype=np.uint32).astype(np.uint16)
tensors["convert.f16.want"] = all16.view(np.float16).astype(np.float32)
tensors["convert.bf16.want"] = blob.from_bf16_bits(all16)
edge = np.array([0.0, -0.0, 65504.0, 65520.0, 65519.99, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, 6.09e-5,
                 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, np.inf, -np.inf, 1e6], np.float32)
x = np.concatenate([edge, (rng.standard_normal(4000) * np.exp(rng.uniform(-20, 12, 4000))).astype(np.float32)])
tensors["convert.f32_to_f16.x"] = x
with np.errstate(over="ignore"):                                  # 1e6 and 65520 round to inf, as intended
    tensors["convert.f32_to_f16.want"] = x.astype(np.float16).view(np.uint16).astype(np.int32)

# --- sinusoidal timestep embedding (diffusers get_timestep_embedding, in float32 as diffusers computes it):
# EDM's c_noise = ln(sigma)/4 range, an odd width, and a DDPM-style integer timestep (arguments up to 500,
# where float32 sin/cos implementations differ by a few ulp of the argument, hence its looser tolerance)
from diffusers.models.embeddings import get_timestep_embedding  # noqa: E402
for t, dim, flip, shift, tol in [(0.25 * np.log(80.0), 32, 1, 0.0, 1e-6), (-1.55, 7, 1, 0.0, 1e-6),
                                 (0.0, 16, 0, 1.0, 1e-6), (0.3, 64, 0, 1.0, 1e-6), (500.0, 320, 1, 0.0, 1e-4)]:
    emb = get_timestep_embedding(torch.tensor([t], dtype=torch.float32), dim, flip_sin_to_cos=bool(flip),
                                 downscale_freq_shift=shift)[0]
    add("timestep_embedding", f"t{t:.4g}.d{dim}" + (".flip" if flip else "") + f".shift{shift:g}",
        params=np.array([t, dim, flip, shift, tol], np.float64), want=emb.double().numpy())

# --- nearest resize to an explicit size (diffusers' Upsample2D with output_size, odd UNet inputs); drawn
# from a separate generator so the cases above keep their values.
rng_size = np.random.default_rng(99)
for C, H, W, H2, W2 in [(2, 3, 3, 5, 6), (3, 5, 6, 9, 11), (2, 7, 4, 13, 8), (1, 14, 9, 20, 5)]:
    x = rng_size.standard_normal((C, H, W)).astype(np.float32)
    add("upsample_nearest", f"C{C}.{H}x{W}to{H2}x{W2}", x=x,
        want=F.interpolate(d64(x)[None], size=(H2, W2), mode="nearest")[0].numpy(),
        params=np.array([C, H, W, H2, W2], np.int32))

meta = {f"cases.{op}": ",".join(names) for op, names in cases.items()}
meta["generator"] = "test/gen_ops.py, torch " + torch.__version__
path = os.path.join(ROOT, "test", "ref", "ops.bin")
blob.write_blob(path, tensors, meta, dtype_overrides={name: "bf16" for name in bf16_names})
print(f"wrote {path}: {len(tensors)} tensors, {sum(len(v) for v in cases.values())} cases")
