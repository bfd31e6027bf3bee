"""Alignment checker: does an image show exactly the objects, shapes and relation its prompt names?

Each pixel takes the nearest named colour within COLOUR_RADIUS (background colours are > 100 away from all of
them, world.py); per colour the largest 4-connected component is that colour's object. Its shape is the
template (ellipse / rectangle / upward triangle fitted to the component's bounding box) with the highest IoU;
its position is the component's centroid. Scores:
  colour   every named colour has one object (>= MIN_AREA px), no other colour has one, no colour has two
  shape    every named object has the named shape
  relation "A REL B": the centroid offset along REL's axis has the right sign and exceeds the offset across it
  all      colour and shape and relation
    python weights/eval/checker.py --validate 2000     # accuracy on ground-truth world images
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
import world  # noqa: E402

COLOUR_RADIUS = 70.0
MIN_AREA_64 = 30          # object pixels at 64x64 (a small object has >= 72)
MIN_IOU = 0.5
LARGE_EXTENT_64 = 19.0    # small extents are 12-16 px, large 22-26 px
PALETTE = np.array(list(world.COLOURS.values()), np.float32)
NAMES = list(world.COLOURS)


def _template(shape, x0, y0, x1, y1, xs, ys):
    cx, cy, w, h = (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2, x1 - x0 + 1, y1 - y0 + 1
    if shape == "circle":
        return ((xs - cx) / (w / 2)) ** 2 + ((ys - cy) / (h / 2)) ** 2 <= 1
    if shape == "square":
        return np.ones_like(xs, bool)
    return np.abs(xs - cx) <= (ys - y0) / h * w / 2     # apex at the top, base at the bottom


def classify_shape(mask):
    """(shape, iou) of a boolean component mask."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    box = mask[y0:y1 + 1, x0:x1 + 1]
    gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1] + 0.5
    best = max(((np.logical_and(box, t).sum() / np.logical_or(box, t).sum(), s)
                for s in world.SHAPES for t in [_template(s, x0, y0, x1, y1, gx, gy)]))
    return best[1], float(best[0])


def find_objects(img):
    """colour -> list of components (area, centroid (x, y), shape, iou, extent), largest first; img uint8 [H,W,3]."""
    scale = (img.shape[0] / 64) ** 2
    d = np.linalg.norm(img[:, :, None, :].astype(np.float32) - PALETTE[None, None], axis=-1)
    nearest, dist = d.argmin(-1), d.min(-1)
    found = {}
    for k, name in enumerate(NAMES):
        labels, n = ndimage.label((nearest == k) & (dist < COLOUR_RADIUS))
        comps = []
        for i in range(1, n + 1):
            mask = labels == i
            area = int(mask.sum())
            if area < MIN_AREA_64 * scale:
                continue
            ys, xs = np.nonzero(mask)
            shape, iou = classify_shape(mask)
            extent = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) * 64 / img.shape[0]
            comps.append(dict(area=area, centroid=(xs.mean() + 0.5, ys.mean() + 0.5), shape=shape, iou=iou,
                              extent=float(extent)))
        if comps:
            found[name] = sorted(comps, key=lambda c: -c["area"])
    return found


def relation_holds(a, b, relation):
    """a REL b from centroids: main-axis offset has the right sign and dominates the orthogonal one."""
    dx, dy = b["centroid"][0] - a["centroid"][0], b["centroid"][1] - a["centroid"][1]
    main = {"above": dy, "below": -dy, "left": dx, "right": -dx}[relation]
    orth = dx if relation in ("above", "below") else dy
    return main > 0 and abs(main) > abs(orth)


def score(img, spec):
    """spec: dict(objects=[(colour, shape, size or '')], relation=None|'above'|...) -> dict of booleans."""
    found = find_objects(img)
    named = [o[0] for o in spec["objects"]]
    colour = all(len(found.get(c, [])) == 1 for c in named) and all(c in named for c in found)
    shape = all(c in found and found[c][0]["shape"] == s and found[c][0]["iou"] >= MIN_IOU
                for c, s, _ in spec["objects"])
    relation = True
    if spec["relation"]:
        a, b = [found.get(o[0], [None])[0] for o in spec["objects"]]
        relation = a is not None and b is not None and relation_holds(a, b, spec["relation"])
    sized = [(c, z) for c, _, z in spec["objects"] if z]
    size = all(c in found and (found[c][0]["extent"] >= LARGE_EXTENT_64) == (z == "large") for c, z in sized)
    return dict(colour=colour, shape=shape, relation=relation, all=colour and shape and relation,
                size=size if sized else None)


def validate(n, seed=0):
    """Checker accuracy on ground-truth world images (64x64 and the 32x32 base-stage downsample)."""
    rng = np.random.default_rng(seed)
    totals = {}
    for i in range(n):
        scene = world.sample_scene(rng, allow_heldout=True)
        text, key = world.caption(rng, scene)
        spec = world.spec(scene, key)
        img = world.render(scene)
        for res, im in ((64, img), (32, np.round(world.downsample(img)).astype(np.uint8))):
            s = score(im, spec)
            for k, v in s.items():
                if v is not None:
                    t = totals.setdefault((res, k), [0, 0])
                    t[0] += v
                    t[1] += 1
            if not s["all"] and res == 64:
                print("miss:", text, s, {c: [(o["shape"], round(o["iou"], 2)) for o in v]
                                         for c, v in find_objects(im).items()})
    for (res, k), (ok, tot) in sorted(totals.items()):
        print(f"{res}x{res} {k:9s} {ok / tot:.4f}  ({ok}/{tot})")
    return totals


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--validate", type=int, default=2000)
    validate(ap.parse_args().validate)
