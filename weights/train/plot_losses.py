"""Draw the training loss curves of a run (RUN/log/*.csv) as one PNG, with PIL only.

    python weights/train/plot_losses.py --run /work/ckpt/run3 --out docs/training_losses.png
"""
import argparse
import csv
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PANELS = [("CLIP contrastive loss", ["clip"]),
          ("base stage: EDM loss (x: samples since start of base)", ["base", "single", "expert0", "expert1"]),
          ("super-resolution: EDM loss", ["sr"])]
COLOURS = {"clip": (40, 80, 220), "base": (30, 30, 30), "single": (220, 40, 40), "expert0": (40, 170, 60),
           "expert1": (240, 130, 30), "sr": (140, 60, 180)}
LABELS = {"clip": "CLIP", "base": "shared base (+T5)", "single": "single-model control",
          "expert0": "expert 0 (sigma < median)", "expert1": "expert 1 (sigma >= median)", "sr": "SR 32->64"}
W, H, PAD = 560, 380, 60


def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [int(r["samples"]) for r in rows], [float(r["loss"]) for r in rows]


def smooth(ys, k=5):
    return [sum(ys[max(0, i - k + 1):i + 1]) / len(ys[max(0, i - k + 1):i + 1]) for i in range(len(ys))]


def panel(title, curves, font):
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    xs = [x for c in curves.values() for x in c[0]]
    ys = [y for c in curves.values() for y in c[1]]
    x0, x1 = 0, max(xs)
    y0, y1 = math.log10(min(ys)), math.log10(max(ys))
    y0, y1 = math.floor(y0 * 4) / 4, math.ceil(y1 * 4) / 4 + 1e-9
    px = lambda x: PAD + (x - x0) / (x1 - x0) * (W - 1.5 * PAD)
    py = lambda y: H - PAD - (math.log10(y) - y0) / (y1 - y0) * (H - 1.6 * PAD)
    d.rectangle([PAD, 0.6 * PAD, W - PAD / 2, H - PAD], outline="black")
    d.text((PAD, 10), title, fill="black", font=font)
    for e in range(int(math.floor(y0 * 4)), int(math.ceil(y1 * 4)) + 1):
        v = 10 ** (e / 4)
        if y0 <= e / 4 <= y1:
            d.line([PAD - 4, py(v), PAD, py(v)], fill="black")
            d.text((4, py(v) - 6), f"{v:.3g}", fill="black", font=font)
    for i in range(5):
        x = x0 + (x1 - x0) * i / 4
        d.line([px(x), H - PAD, px(x), H - PAD + 4], fill="black")
        d.text((px(x) - 15, H - PAD + 8), f"{x / 1000:.0f}k", fill="black", font=font)
    d.text((W / 2 - 30, H - 22), "training samples", fill="black", font=font)
    for j, (name, (cx, cy)) in enumerate(curves.items()):
        pts = [(px(x), py(y)) for x, y in zip(cx, smooth(cy))]
        d.line(pts, fill=COLOURS[name], width=2)
        d.text((W - 250, 0.6 * PAD + 8 + 14 * j), LABELS[name], fill=COLOURS[name], font=font)
    return img


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    font = ImageFont.load_default()
    log = Path(args.run) / "log"
    base_end = read(log / "base.csv")[0][-1] if (log / "base.csv").exists() else 0
    panels = []
    for title, names in PANELS:
        curves = {}
        for n in names:
            if (log / f"{n}.csv").exists():
                x, y = read(log / f"{n}.csv")
                if x:
                    offset = base_end if n in ("single", "expert0", "expert1") else 0
                    curves[n] = ([v + offset for v in x], y)
        if curves:
            panels.append(panel(title, curves, font))
    out = Image.new("RGB", (W * len(panels), H), "white")
    for i, p in enumerate(panels):
        out.paste(p, (i * W, 0))
    out.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
