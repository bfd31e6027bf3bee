"""Acceptance of paint-with-words and style transfer on the default model (issue 7, item 3): runs ./ediff.

    .venv/bin/python test/accept_default.py [--model weights/ediff-tiny.bin] [--seeds 20] [--threads 2]

paint  "a red circle and a blue square" (and other prompts naming two coloured shapes): painting the
       first shape's words into the left half and the second's into the right half, and the other way
       round, must put each shape's centroid in its painted half in >= 80 % of the seeds (both layouts
       counted separately). The same prompts without --paint are the control (how often the layout
       happens by chance).
style  a reference image with a dark background (and a shape the prompt does not name) must turn the
       output's background dark in >= 80 % of the seeds, for prompts that do not mention the background;
       without --style-image is the control.
Objects are found as weights/eval/checker.py does (nearest named colour within 70, the largest
4-connected component, its centroid); the background is every pixel farther than 70 from every named
colour, dark when its mean luminance is below 110 (the training world's dark tones are 15-35, light
200-235). Exit status 0 when every criterion holds.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
           "yellow": (235, 200, 40), "purple": (140, 60, 180), "orange": (240, 130, 30)}
RADIUS, DARK = 70.0, 110.0
PAINT_PROMPTS = [("a red circle and a blue square", "red circle", "blue square"),
                 ("a green triangle and a yellow circle", "green triangle", "yellow circle"),
                 ("a purple square and an orange triangle", "purple square", "orange triangle")]
STYLE_PROMPTS = ["a red circle", "a blue square above a green triangle", "a yellow circle to the left of a purple square"]


def nearest_colour(img):
    palette = np.array(list(COLOURS.values()), np.float32)
    d = np.linalg.norm(img[:, :, None, :].astype(np.float32) - palette[None, None], axis=-1)
    return d.argmin(-1), d.min(-1)


def centroid_x(img, colour):
    """x of the centroid of the largest component of `colour` (as a fraction of the width), or None."""
    nearest, dist = nearest_colour(img)
    labels, n = ndimage.label((nearest == list(COLOURS).index(colour)) & (dist < RADIUS))
    if n == 0:
        return None
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    return (xs.mean() + 0.5) / img.shape[1]


def background_luminance(img):
    _, dist = nearest_colour(img)
    bg = img[dist >= RADIUS].astype(np.float32)
    return float((bg @ np.array([0.299, 0.587, 0.114], np.float32)).mean()) if len(bg) else float("nan")


def ediff(args, out, opt):
    cmd = [os.path.join(ROOT, "ediff"), "--model", opt.model, "-t", str(opt.threads), "-o", out] + args
    subprocess.run(cmd, check=True, cwd=ROOT)
    return np.asarray(Image.open(out).convert("RGB"))


def half_masks(tmp):
    """Left-half and right-half masks (white on black), at 64x64."""
    paths = {}
    for side in ("left", "right"):
        m = np.zeros((64, 64), np.uint8)
        if side == "left":
            m[:, :32] = 255
        else:
            m[:, 32:] = 255
        paths[side] = os.path.join(tmp, f"{side}.png")
        Image.fromarray(m).save(paths[side])
    return paths


def dark_reference(tmp):
    """A dark background (grey 25, slightly tinted) with an orange triangle the prompts never name."""
    img = np.full((64, 64, 3), (27, 24, 30), np.uint8)
    for y in range(20, 44):
        half = (y - 20) // 2
        img[y, 32 - half:32 + half + 1] = COLOURS["orange"]
    path = os.path.join(tmp, "dark.png")
    Image.fromarray(img).save(path)
    return path


def paint_test(opt, tmp):
    masks = half_masks(tmp)
    ok_all = True
    for prompt, first, second in PAINT_PROMPTS:
        c1, c2 = first.split()[0], second.split()[0]
        for layout in ((first, "left", second, "right"), (first, "right", second, "left")):
            hits = control = 0
            for seed in range(opt.seeds):
                out = os.path.join(tmp, "paint.png")
                img = ediff([prompt, "-s", str(seed), "--paint", f"{layout[0]}={masks[layout[1]]}",
                             "--paint", f"{layout[2]}={masks[layout[3]]}", "--paint-weight", str(opt.paint_weight)],
                            out, opt)
                plain = ediff([prompt, "-s", str(seed)], out, opt)
                for im, counter in ((img, "hits"), (plain, "control")):
                    x1, x2 = centroid_x(im, c1), centroid_x(im, c2)
                    good = x1 is not None and x2 is not None and (x1 < 0.5) == (layout[1] == "left") and \
                        (x2 < 0.5) == (layout[3] == "left")
                    if counter == "hits":
                        hits += good
                    else:
                        control += good
            ok = hits >= 0.8 * opt.seeds
            ok_all &= ok
            print(f"{'PASS' if ok else 'FAIL'}  paint '{prompt}': {layout[0]} {layout[1]}, {layout[2]} {layout[3]}: "
                  f"{hits}/{opt.seeds} seeds (without paint: {control}/{opt.seeds})")
    return ok_all


def style_test(opt, tmp):
    ref = dark_reference(tmp)
    ok_all = True
    for prompt in STYLE_PROMPTS:
        dark = control = 0
        for seed in range(opt.seeds):
            out = os.path.join(tmp, "style.png")
            dark += background_luminance(ediff([prompt, "-s", str(seed), "--style-image", ref], out, opt)) < DARK
            control += background_luminance(ediff([prompt, "-s", str(seed)], out, opt)) < DARK
        ok = dark >= 0.8 * opt.seeds
        ok_all &= ok
        print(f"{'PASS' if ok else 'FAIL'}  style '{prompt}': dark background in {dark}/{opt.seeds} seeds "
              f"(without the reference: {control}/{opt.seeds})")
    return ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="weights/ediff-tiny.bin")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paint-weight", type=float, default=0.4, help="ediff --paint-weight (its default 0.4)")
    ap.add_argument("--tests", default="paint,style")
    opt = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if "paint" in opt.tests:
            ok = paint_test(opt, tmp) and ok
        if "style" in opt.tests:
            ok = style_test(opt, tmp) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
