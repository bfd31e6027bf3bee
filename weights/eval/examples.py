"""A 4x4 grid of ediff's outputs (the C program, the blob's default cascade and sampling settings, seeds 0-15)
with their prompts: docs/examples.png.

    make && python weights/eval/examples.py --blob weights/ediff-tiny.bin --out docs/examples.png
"""
import argparse
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[2]

PROMPTS = [
    "a red circle above a blue square", "a small green triangle to the left of a large yellow circle",
    "a blue square below an orange circle", "a purple triangle", "an orange square on top of a green circle",
    "a yellow triangle to the right of a red square", "a large blue circle", "a green square under a purple circle",
    "a red circle and a blue square", "a small orange triangle", "the yellow square left of the purple triangle",
    "a large red triangle beneath a small green square", "one blue triangle right of one orange circle",
    "a purple square", "a green circle over a yellow triangle", "to the left of a red triangle there is a blue circle",
]
SCALE, CAPTION_H = 3, 44


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--blob", default=str(REPO / "weights/ediff-tiny.bin"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--ediff", default=str(REPO / "ediff"))
    ap.add_argument("--seed", type=int, default=0, help="prompt i uses seed SEED + i")
    ap.add_argument("--args", default="", help="more ediff arguments, e.g. '--stage base_single'")
    args = ap.parse_args()
    images = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, prompt in enumerate(PROMPTS):
            png = f"{tmp}/{i}.png"
            subprocess.run([args.ediff, prompt, "--model", args.blob, "-s", str(args.seed + i), "-o", png,
                            *args.args.split()], check=True)
            images.append(np.asarray(Image.open(png).convert("RGB")))
    images = np.stack(images)
    size = images.shape[1] * SCALE
    sheet = Image.new("RGB", (4 * size, 4 * (size + CAPTION_H)), "white")
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for i, (img, prompt) in enumerate(zip(images, PROMPTS)):
        x, y = (i % 4) * size, (i // 4) * (size + CAPTION_H)
        sheet.paste(Image.fromarray(img).resize((size, size), Image.NEAREST), (x, y))
        draw.multiline_text((x + 4, y + size + 3), "\n".join(textwrap.wrap(prompt, 30)), fill="black", font=font)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
