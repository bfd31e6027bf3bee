"""Reference-tooling test of `ediff --dump` and weights/crosscheck.py (docs/crosscheck.md). Standalone:

    .venv/bin/python test/test_crosscheck.py [--model BLOB] [--float32] [--keep DIR]

Run from the repository root after `make`. On a model blob (default: the random-weights toy pipeline
test/ref/pipeline.bin, f16; CFG in both stages, a negative prompt, a style image and paint-with-words
exercise every branch):
  npy        ./ediff --dump with a negative prompt, a style image and a painted word: every file run.json lists opens in
             numpy with the dtype and shape its name calls for (token ids int32 [1, T], per-call scalars
             float64 [1], the sampler's images float64 [1, 3, R, R], module outputs float32 with the batch
             dimension first, ...), and every .npy in the folder is listed
  clean      crosscheck.py exits 0: every dumped tensor within its tolerance of PyTorch (--tol 1e-4,
             float64 PyTorch unless --float32)
  perturbed  one weight changed in a copy of the blob (rewritten with weights/blob.py, so the CRC stays
             valid), ediff run on it and crosscheck.py on the original blob (an implementation with one wrong
             weight): exit 1, and the first divergent tensor is the first module that uses the weight, at the
             first call that runs it:
               - attn2.to_k of the cross-attention block of the expert serving step 0
                 -> STAGE/step00/call0/cond/S.K.unet....transformer_blocks.0.attn2
               - the same weight of expert 0 (low noise), --dump-steps all
                 -> the first call routed to expert 0 (read from the dump's expert.npy files)
               - t5.encoder.block.0 feed-forward wo -> prompt/t5.encoder.block.0
Each check prints PASS/FAIL and its numbers; the exit status is 1 if any fails.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
from blob import read_blob, write_blob  # noqa: E402

PROMPT = "a red circle and a blue square"
RESULTS = []


def check(ok, name, detail):
    print(f"{'PASS' if ok else 'FAIL'}  {name:<28} {detail}", flush=True)
    RESULTS.append(ok)
    return ok


def ediff(model, dump, *args):
    cmd = [os.path.join(ROOT, "ediff"), PROMPT, "-n", "blurry", "--style-image", "test/ref/pipeline_style.png",
           "--paint", "circle=test/ref/pipeline_mask_left.png", "--model", model, "--dump", dump, "-o", dump + ".png",
           "-t", "1", *args]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr}")
    with open(os.path.join(dump, "run.json")) as f:
        return json.load(f)


def crosscheck(model, dump, float32):
    """(exit status, rows) of weights/crosscheck.py."""
    out = dump + ".json"
    cmd = [sys.executable, os.path.join(ROOT, "weights", "crosscheck.py"), model, dump, "--json", out, "--tol", "1e-4"]
    r = subprocess.run(cmd + ([] if float32 else ["--double"]), cwd=ROOT, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    with open(out) as f:
        return r.returncode, json.load(f), r.stdout


# ---------------------------------------------------------------------------------------------------- npy

def expected(name, run, meta):
    """(dtype, shape) that the naming scheme (docs/crosscheck.md) gives NAME: shape None (or a None
    dimension) is not fixed by the name; every tensor but sigmas and paint maps has a batch of 1 first."""
    stages = {st["name"]: st for st in run["stages"]}
    top, leaf = name.split("/")[0], name.split("/")[-1]
    num = lambda key: int(meta[key])  # noqa: E731
    L5, E = run["t5_max_tokens"], num("clip.text.projection_dim")
    if leaf == "t5.input_ids":
        return np.int32, None
    if leaf == "clip.input_ids":
        return np.int32, (1, 77)
    if leaf in ("t5_tokens",):
        return np.float32, (1, L5, num("t5.d_model"))
    if leaf == "clip_tokens":
        return np.float32, (1, 77, num("clip.text.hidden_size"))
    if leaf in ("clip_text_embed", "clip_image_embed", "clip.text_projection", "clip.visual_projection"):
        return np.float32, (1, E)
    if leaf == "pixel_values":
        return np.float32, (1, 3, num("clip.vision.image_size"), num("clip.vision.image_size"))
    st = stages.get(top)
    if st is None:
        return np.float32, None
    R = st["resolution"]
    if leaf == "sigmas":
        return np.float64, (st["steps"] + 1,)
    if leaf == "expert":
        return np.int32, (1,)
    if leaf in ("sigma", "c_skip", "c_out", "c_in", "c_noise"):
        return np.float64, (1,)
    if leaf in ("x", "denoised", "sample", "noise", "aug_noise"):
        return np.float64, (1, 3, R, R)
    if leaf in ("out", "z_lr"):
        return np.float32, (1, 3, R, R)
    if leaf.endswith(".cond.context"):                 # rows: T5, CLIP, image, null (docs/model.md)
        return np.float32, (1, L5 + 77 + 2, None)
    if leaf.endswith(".cond.class_labels"):
        return np.float32, (1, 2 * E + st["aug_dim"])
    if leaf.startswith("paint."):
        return np.float32, None
    return np.float32, None


def test_npy(run, dump, meta):
    bad, counts = [], {}
    for name in run["tensors"]:
        a = np.load(os.path.join(dump, name + ".npy"))
        dtype, shape = expected(name, run, meta)
        counts[a.dtype.name] = counts.get(a.dtype.name, 0) + 1
        batch_first = name.endswith("/sigmas") or "/paint." in name or (a.ndim >= 1 and a.shape[0] == 1)
        fits = shape is None or (len(shape) == a.ndim and all(w is None or w == g for w, g in zip(shape, a.shape)))
        if a.dtype != dtype or not fits or not batch_first:
            want = list(shape) if shape else "[1, ...]"
            bad.append(f"{name}: {a.dtype} {list(a.shape)} (want {np.dtype(dtype)} {want})")
    files = {os.path.relpath(os.path.join(d, f), dump)[:-4]
             for d, _, fs in os.walk(dump) for f in fs if f.endswith(".npy")}
    unlisted = files - set(run["tensors"])
    for b in bad[:10]:
        print("      " + b)
    return check(not bad and not unlisted and len(files) == len(run["tensors"]), "npy",
                 f"{len(run['tensors'])} files open in numpy "
                 f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}), "
                 f"{len(bad)} with a wrong dtype/shape, {len(unlisted)} not in run.json")


# ---------------------------------------------------------------------------------------------------- cross-check

def first_divergent(rows):
    return next((r for r in rows if not r["ok"]), None)


def test_clean(model, dump, float32):
    rc, rows, _ = crosscheck(model, dump, float32)
    compared = [r for r in rows if r["abs"] is not None]
    worst = max(compared, key=lambda r: r["rel"])
    return check(rc == 0 and all(r["ok"] for r in rows), "clean",
                 f"exit {rc}: {len(compared)} tensors within tolerance of PyTorch "
                 f"({'float32' if float32 else 'float64'}), largest max-rel {worst['rel']:.2e} ({worst['name']})")


def perturbed(model, weight, workdir, tag):
    """A copy of the blob with one element of `weight` moved by more than the tensor's largest magnitude."""
    meta, tensors = read_blob(model)
    w = tensors[weight]
    flat = w.reshape(-1).astype(np.float32)
    flat[0] += 1.0 + float(np.abs(flat).max())
    tensors[weight] = flat.astype(w.dtype).reshape(w.shape)
    path = os.path.join(workdir, f"perturbed_{tag}.bin")
    write_blob(path, tensors, meta)
    return path


def test_perturbed(model, workdir, tag, weight, want, float32, *args):
    """ediff on the perturbed blob, crosscheck against the original: exit 1, first divergent = want(run, dump)."""
    blob = perturbed(model, weight, workdir, tag)
    dump = os.path.join(workdir, f"dump_{tag}")
    run = ediff(blob, dump, *args)
    rc, rows, out = crosscheck(model, dump, float32)
    first = first_divergent(rows)
    target = want(run, dump)
    ok = rc == 1 and first is not None and first["name"] == target
    detail = (f"{weight}[0] changed: exit {rc}, first divergent {first['name'] if first else None} "
              f"(max-abs {first['abs'] if first else 0:.2e}; want {target}), {sum(not r['ok'] for r in rows)} of "
              f"{len(rows)} tensors over tolerance")
    if not ok:
        print(out[-2000:])
    return check(ok, f"perturbed.{tag}", detail)


def cross_attention_weight(meta, stage, k):
    """attn2.to_k of the first cross-attention block in the UNet's down path (diffusers names)."""
    types = meta[f"{stage}.{k}.unet.down_block_types"].split(",")
    level = next(i for i, t in enumerate(types) if t.startswith("CrossAttn"))
    return f"{stage}.{k}.unet.down_blocks.{level}.attentions.0.transformer_blocks.0.attn2.to_k.weight"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="test/ref/pipeline.bin", help="the blob (default: the toy pipeline)")
    ap.add_argument("--float32", action="store_true", help="PyTorch in float32 (default float64)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = ap.parse_args()
    os.chdir(ROOT)
    workdir = args.keep or tempfile.mkdtemp(prefix="ediff_crosscheck_")
    os.makedirs(workdir, exist_ok=True)
    model = os.path.abspath(args.model)
    meta, _ = read_blob(model)
    stage = meta["stages"].split(",")[0]
    try:
        dump = os.path.join(workdir, "dump")
        run = ediff(model, dump)
        test_npy(run, dump, meta)
        test_clean(model, dump, args.float32)
        k = int(np.load(os.path.join(dump, f"{stage}/step00/call0/expert.npy"))[0])
        weight = cross_attention_weight(meta, stage, k)
        module = weight[:-len(".to_k.weight")]
        test_perturbed(model, workdir, "first_call", weight, lambda run, d: f"{stage}/step00/call0/cond/{module}",
                       args.float32)

        def first_call_of_expert0(run, d):
            call = next(n[:-len("/expert")] for n in run["tensors"] if n.startswith(stage + "/step") and
                        n.endswith("/expert") and np.load(os.path.join(d, n + ".npy"))[0] == 0)
            return f"{call}/cond/{cross_attention_weight(meta, stage, 0)[:-len('.to_k.weight')]}"
        test_perturbed(model, workdir, "expert0", cross_attention_weight(meta, stage, 0), first_call_of_expert0,
                       args.float32, "--dump-steps", "all")
        test_perturbed(model, workdir, "t5", "t5.encoder.block.0.layer.1.DenseReluDense.wo.weight",
                       lambda run, d: "prompt/t5.encoder.block.0", args.float32)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{sum(RESULTS)} passed, {len(RESULTS) - sum(RESULTS)} failed")
    sys.exit(0 if all(RESULTS) else 1)


if __name__ == "__main__":
    main()
