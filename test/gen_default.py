"""References of the default model (weights/ediff-tiny.bin) for the CLI suite (test/t_cli.c, cli.default.*).

    make && .venv/bin/python test/gen_default.py

For each case, ./ediff runs with --dump (the initial and augmentation noise it draws are inputs the
PyTorch run reuses: the noise itself is checked against a numpy Philox in cli.pipeline), then
weights/crosscheck.py reruns the same invocation in float64 with transformers, diffusers and k-diffusion
on the same blob. What it computed for the encoders' outputs and each stage's output is written to
test/ref/default_ref.bin, in the format of test/ref/pipeline_ref.bin, with the metadata `model`: the
blob the suite runs. Regenerate whenever weights/ediff-tiny.bin changes.
"""
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402
import crosscheck  # noqa: E402

MODEL = "weights/ediff-tiny.bin"
# name -> ediff arguments: the README's command (Heun, guidance in both stages), and the ensemble's
# single-model control with a negative prompt and paint-with-words.
CASES = {
    "default": ("a red circle above a blue square", "-s 1"),
    "single": ("a green triangle and a yellow circle",
               "-s 2 -n 'a red square' --stage base_single --paint triangle=test/ref/pipeline_mask_left.png"),
}
KEEP = ("prompt/t5_tokens", "prompt/clip_tokens", "prompt/clip_text_embed", "base/out", "base_single/out", "sr/out")


def main():
    tensors = {}
    for name, (prompt, rest) in CASES.items():
        args = shlex.quote(prompt) + " " + rest
        with tempfile.TemporaryDirectory() as d:
            cmd = ["./ediff", *shlex.split(args), "--model", MODEL, "-t", "1", "--dump", d, "-o", d + "/out.png"]
            subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            values = {}
            _, rows = crosscheck.crosscheck(os.path.join(ROOT, MODEL), d, tol=1e-4, double=True, keep=values)
            bad = [r["name"] for r in rows if not r["ok"]]
            worst = max((r for r in rows if r["abs"] is not None), key=lambda r: r["abs"])
            print(f"{name}: {len(rows)} tensors, largest max-abs {worst['abs']:.2e} ({worst['name']}), "
                  f"{len(bad)} over 1e-4{': ' + ', '.join(bad) if bad else ''}")
            for key in KEEP:
                if key in values:
                    tensors[f"{name}.{key}"] = values[key].astype(np.float32)
                    print(f"  {key} {list(values[key].shape)}")
    meta = {"cases": ",".join(CASES), "model": MODEL,
            "generator": "test/gen_default.py (weights/crosscheck.py in float64)"}
    for n, (prompt, rest) in CASES.items():
        meta[f"{n}.args"] = shlex.quote(prompt) + " " + rest
        meta[f"{n}.prompt"] = prompt
    out = os.path.join(ROOT, "test", "ref", "default_ref.bin")
    blob.write_blob(out, tensors, meta)
    print(f"wrote test/ref/default_ref.bin: {os.path.getsize(out) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
