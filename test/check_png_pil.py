"""Pillow reads the PNGs our writer made, pixel-exact, parameters text included.

    .venv/bin/python test/check_png_pil.py [DIR]        (default test/out/png, filled by `make test`)

For every NAME.png in DIR that has NAME.npy beside it (the pixels we wrote, [h, w, channels]) and
optionally NAME.txt (the "parameters" text), Pillow must: verify the file (chunk CRCs), decode it to
exactly those pixels in the matching mode (L, LA, RGB, RGBA), and return the same parameters text.
Prints one line per file and the counts; exits 1 on any mismatch or if there is nothing to check.
"""
import glob
import os
import sys

import numpy as np
from PIL import Image

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def check(png):
    want = np.load(png[:-4] + ".npy").astype(np.uint8)
    with Image.open(png) as im:
        im.verify()                                   # structure and CRCs
    with Image.open(png) as im:
        im.load()
        got = np.array(im)
        mode, text = im.mode, im.text.get("parameters")
    channels = want.shape[2]
    if mode != MODES[channels]:
        return f"mode {mode}, expected {MODES[channels]}"
    got = got.reshape(want.shape) if got.size == want.size else got
    if got.shape != want.shape or not np.array_equal(got, want):
        return f"pixels differ (shape {got.shape} vs {want.shape})"
    txt = png[:-4] + ".txt"
    if os.path.exists(txt):
        expected = open(txt, encoding="utf-8").read()
        if text != expected:
            return f"parameters differ: {text!r}"
    return None


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "png")
    files = sorted(p for p in glob.glob(os.path.join(folder, "*.png")) if os.path.exists(p[:-4] + ".npy"))
    bad = 0
    for png in files:
        try:
            problem = check(png)
        except Exception as e:                        # Pillow refusing the file is a failure too
            problem = f"Pillow error: {e}"
        bad += problem is not None
        print(f"{'FAIL' if problem else 'PASS'}  {os.path.basename(png):44s} {problem or 'pixel-exact, parameters identical'}")
    print(f"{len(files) - bad} of {len(files)} files written by ediff read pixel-exact by Pillow {Image.__version__ if hasattr(Image, '__version__') else ''}".rstrip())
    if not files:
        print(f"no PNG with a .npy beside it in {folder}: run `make test` first")
    return 1 if bad or not files else 0


if __name__ == "__main__":
    sys.exit(main())
