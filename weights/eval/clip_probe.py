"""What the trained CLIP encodes, on fresh world images (not from the training set).

  style:     nearest-centroid accuracy of background tone / texture from clip_image_embed (centroids from
             half of the images, tested on the other half)
  retrieval: top-1 image->text and text->image accuracy among N (image, styled caption) pairs; a hit is any
             caption with the same semantic key (world.py)
  hard negatives: how often an image scores its caption above the caption's hard negative (same words,
             another scene: world.hard_negative); a bag-of-words text encoder gets about 50 %

    python weights/eval/clip_probe.py --blob weights/ediff-tiny.bin
    python weights/eval/clip_probe.py --run /work/ckpt/run3        # a training run's CLIP (RUN/clip.pt)
"""
import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "train"))
import ediffi  # noqa: E402
import world  # noqa: E402


@torch.no_grad()
def probe(encoders, n=1000, seed=7):
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng, allow_heldout=True) for _ in range(n)]
    caps, texts, negs = [], [], []
    for s in scenes:
        caption_rng = copy.deepcopy(rng)
        caps.append(world.caption(rng, s))
        style_rng = copy.deepcopy(rng)
        texts.append(world.clip_caption(rng, caps[-1][0], s["style"]))
        negs.append(world.clip_caption(style_rng, world.hard_negative(rng, caption_rng, s)[0], s["style"]))
    keys = [str((k, s["style"]["tone"], s["style"]["texture"])) for (_, k), s in zip(caps, scenes)]
    pixels = ediffi.normalize_clip_pixels(torch.from_numpy(np.stack([world.clip_pixels(world.render(s)) for s in scenes])))
    img = encoders.encode_image(pixels)
    _, txt = encoders.encode_clip_text(torch.tensor([encoders.clip_tokenizer(t) for t in texts]))
    _, neg = encoders.encode_clip_text(torch.tensor([encoders.clip_tokenizer(t) for t in negs]))
    out = {}
    half = n // 2
    for attr in ("tone", "texture"):
        labels = np.array([s["style"][attr] for s in scenes])
        classes = sorted(set(labels))
        centroids = torch.stack([img[:half][torch.from_numpy(labels[:half] == c)].mean(0) for c in classes])
        pred = np.array(classes)[torch.cdist(img[half:], centroids).argmin(1).numpy()]
        out[f"style {attr}"] = float((pred == labels[half:]).mean())
    sim = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    same = torch.tensor([[a == b for b in keys[:256]] for a in keys[:256]])
    s = sim[:256, :256]
    out["image->text top-1 (256)"] = float(same[torch.arange(256), s.argmax(1)].float().mean())
    out["text->image top-1 (256)"] = float(same[s.argmax(0), torch.arange(256)].float().mean())
    img, txt, neg = F.normalize(img, dim=-1), F.normalize(txt, dim=-1), F.normalize(neg, dim=-1)
    two = np.array([s["kind"] != "single" for s in scenes])
    wins = ((img * txt).sum(-1) > (img * neg).sum(-1)).numpy()
    out["caption over its hard negative (two objects)"] = float(wins[two].mean())
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blob", default=str(ediffi.REPO / "weights/ediff-tiny.bin"))
    ap.add_argument("--run", help="probe RUN/clip.pt instead of a blob")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.run:
        import train
        encoders = train.load_encoders(args.run, with_t5=False)
    else:
        encoders = ediffi.load_blob(args.blob).encoders
    for k, v in probe(encoders).items():
        print(f"{k}: {v:.3f}")
