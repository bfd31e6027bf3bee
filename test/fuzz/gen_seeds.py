"""Seed inputs of the fuzz harnesses that need made-up ones (the others' seeds are real files):

  corpus/fuzz_blob/        small blobs that load as whole models: the toy pipeline test/ref/pipeline.bin
                           with its vocabularies cut (T5 45 ids: the tiny sentencepiece model rides
                           along as tokenizer.t5_spiece; CLIP 64 ids), as is (base, sr, base_single),
                           as base_single alone, and as base_single + sr; plus a plain tensor blob
  corpus/fuzz_cli/         command lines (arguments separated by NUL bytes), every flag at least once;
                           --from-png reads test/fuzz/params.png, a 1x1 PNG with a parameters text as
                           ediff writes it
  corpus/fuzz_paint_mask/  a 4-byte header (grid h, grid w, context rows, column pattern) + a mask PNG

Run from the repository root:  .venv/bin/python test/fuzz/gen_seeds.py
Deterministic: the same files every run. libFuzzer's -merge later adds what fuzzing finds.
"""
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, "weights")
from blob import read_blob, write_blob  # noqa: E402

CORPUS = "test/fuzz/corpus"


def blob_seeds():
    out = os.path.join(CORPUS, "fuzz_blob")
    os.makedirs(out, exist_ok=True)
    meta, tensors = read_blob("test/ref/pipeline.bin")
    spiece = np.frombuffer(open("test/ref/tokenizer_tiny_spiece.model", "rb").read(), dtype=np.uint8)
    small = dict(tensors)
    small["t5.shared.weight"] = tensors["t5.shared.weight"][:45]
    small["clip.text_model.embeddings.token_embedding.weight"] = \
        tensors["clip.text_model.embeddings.token_embedding.weight"][:64]
    small["tokenizer.t5_spiece"] = spiece
    small_meta = dict(meta, **{"t5.vocab_size": "45", "clip.text.vocab_size": "64", "clip.text.eos_token_id": "63",
                               "clip.text.bos_token_id": "62"})

    def write(name, stages, alternatives=None):
        keep = {k: v for k, v in small.items() if k.split(".")[0] in stages + ("t5", "clip", "tokenizer")}
        m = {k: v for k, v in small_meta.items() if k.split(".")[0] not in ("base", "sr", "base_single")
             or k.split(".")[0] in stages}
        m["stages"] = ",".join(s for s in stages if s != "base_single" or "base" not in stages)
        m.pop("stage_alternatives", None)
        if alternatives:
            m["stage_alternatives"] = alternatives
        write_blob(os.path.join(out, name), keep, m)

    write("pipeline_small.bin", ("base", "sr", "base_single"), "base_single:base")
    write("single.bin", ("base_single",))
    write("single_sr.bin", ("base_single", "sr"))
    shutil.copyfile("test/ref/convert_st.bin", os.path.join(out, "plain_tensors.bin"))


PARAMETERS = ("a red circle, left\nNegative prompt: blurry\nSteps: 2, Sampler: euler_a, CFG scale: 2, "
              "Sigma max: 50, S noise: 0.9, Eta: 0.5, Seed: 7, Model: toy-pipeline, Model hash: 85d33c2c, "
              "sr Steps: 2, sr Sampler: euler_a, sr CFG scale: 1.5, sr Sigma max: 50, sr S noise: 0.9, "
              "sr Eta: 0.5, Stages: base_single+sr, Style image: \"a, b.png\", "
              "Paint: circle=test/ref/pipeline_mask_left.png, Paint weight: 0.4, Dropped: T5, "
              "Noise: n.npy, Version: ediff 0.1.0")

CLI_SEEDS = [
    ["a cat"],
    ["-p", "a cat", "-n", "a dog", "-o", "out.png", "--batch-count", "2", "-s", "18446744073709551615"],
    ["a cat", "--model", "test/ref/pipeline.bin", "--steps", "3", "--steps", "sr=2", "--sampler", "euler_a",
     "--cfg-scale", "sr=1", "--sigma-min", "0.01", "--sigma-max", "50", "--rho", "5", "--s-churn", "1",
     "--s-noise", "1.01", "--eta", "0.5"],
    ["--stage", "base_single", "--no-sr", "x", "--noise", "n.npy", "--style-image", "s.png"],
    ["a red circle", "--paint", "circle=m.png", "--paint", "red circle=m2.png", "--paint-weight", "0.7", "--no-t5"],
    ["--no-clip-text", "-t", "2", "--dump", "d", "-v", "--", "-not-a-flag"],
    ["--from-png", "test/fuzz/params.png"],
    ["--from-png=test/fuzz/params.png", "--seed=-1", "--steps=base_single=4", "another prompt"],
    ["--help"],
    ["--version"],
    ["x", "--steps", "sr=0"],
    ["x", "--cfg-scale", "nan"],
    ["x", "--frobnicate"],
    [b"caf\xe9 (not UTF-8)", "--sampler", "ddpm", "--steps", "1000"],
]


def cli_seeds():
    from PIL import Image, PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", PARAMETERS)
    Image.new("RGB", (1, 1)).save("test/fuzz/params.png", pnginfo=info)
    out = os.path.join(CORPUS, "fuzz_cli")
    os.makedirs(out, exist_ok=True)
    for i, args in enumerate(CLI_SEEDS):
        with open(os.path.join(out, f"seed{i:02d}"), "wb") as f:
            f.write(b"\0".join(a if isinstance(a, bytes) else a.encode("utf-8") for a in args))


def paint_mask_seeds():
    """Header (grid 16x16, 21 context rows, every other column) + each mask PNG of the tests."""
    out = os.path.join(CORPUS, "fuzz_paint_mask")
    os.makedirs(out, exist_ok=True)
    masks = ["test/ref/pipeline_mask_left.png", "test/ref/pipeline_mask_right.png", "test/ref/enc_img_a_7x5.png",
             "test/ref/enc_img_a_17x23.png"]
    for i, path in enumerate(masks):
        with open(path, "rb") as f, open(os.path.join(out, f"seed{i}"), "wb") as o:
            o.write(bytes([15, 15 + i, 20, 0x55]) + f.read())


def main():
    blob_seeds()
    cli_seeds()
    paint_mask_seeds()


if __name__ == "__main__":
    main()
