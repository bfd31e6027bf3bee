"""The procedural world ediff-tiny is trained on: one or two coloured shapes on a styled background.

Scenes are rendered at 64x64 (anti-aliased by 4x4 supersampling); the base stage sees the exact 2x2 mean
downsample to 32x32. Diffusion captions name colour, shape, (sometimes) size and the relation of two
objects; they never mention the style (background tone light/dark, texture plain/striped), which only the
CLIP image embedding carries. CLIP captions append the style. Some colour-shape-relation configurations are
held out of the dataset entirely (HELDOUT).

    python weights/train/world.py --out /work/ckpt/run/data --n 200000 --seed 0     # writes the dataset
"""
import argparse
import copy
import json
import math
import os
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ediffi import CLIP_CONTEXT, T5_MAX_TOKENS, ClipTokenizer, T5Tokenizer  # noqa: E402

RES = 64
SUPERSAMPLE = 4
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
           "yellow": (235, 200, 40), "purple": (140, 60, 180), "orange": (240, 130, 30)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": (12.0, 16.0), "large": (22.0, 26.0)}          # object extent (px at 64x64)
RELATIONS = {"above": ("above", "on top of", "over"),
             "below": ("below", "under", "beneath", "underneath"),
             "left": ("to the left of", "left of", "on the left of"),
             "right": ("to the right of", "right of", "on the right of")}
INVERSE = {"above": "below", "below": "above", "left": "right", "right": "left"}
AXIS = {"above": "vertical", "below": "vertical", "left": "horizontal", "right": "horizontal"}
TONES = {"light": (200.0, 235.0, -30.0), "dark": (15.0, 35.0, 22.0)}   # base grey range, stripe offset
TINT = 6.0                                                              # per-channel tint of the background
TEXTURES = ("plain", "striped")
TONE_WORDS = {"light": ("light", "bright", "pale"), "dark": ("dark", "black", "deep dark")}
KIND_P = {"single": 0.2, "relation": 0.65, "and": 0.15}
MARGIN = 2.0          # objects stay this far inside the canvas
GAP = 2.0             # minimum gap between the bounding boxes of two objects
OBJECTS = [(c, s) for c in COLOURS for s in SHAPES]


def _all_configurations():
    """Canonical two-object layouts: (first, axis, second); first = top (vertical) or left (horizontal)."""
    return [(a, axis, b) for a in OBJECTS for b in OBJECTS if a[0] != b[0] for axis in ("vertical", "horizontal")]


def _heldout(n=36, seed=1234):
    configs = _all_configurations()
    idx = np.random.default_rng(seed).choice(len(configs), size=n, replace=False)
    return sorted(configs[i] for i in idx)


HELDOUT = _heldout()
HELDOUT_SET = set(HELDOUT)


def _check_background_palette():
    """No background colour (the whole per-channel box it is drawn from) lies within 100 of a named colour."""
    for lo, hi, stripe in TONES.values():
        box_lo, box_hi = lo - TINT + min(stripe, 0), hi + TINT + max(stripe, 0)
        for rgb in COLOURS.values():
            nearest = np.clip(rgb, box_lo, box_hi)
            assert np.linalg.norm(nearest - np.array(rgb)) > 100, (lo, hi, rgb)


_check_background_palette()


def configuration(scene):
    """The canonical layout (first, axis, second) that a two-object scene shows, from its object centres."""
    a, b = scene["objects"]
    dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
    key = lambda o: (o["colour"], o["shape"])
    if abs(dy) >= abs(dx):
        return (key(a), "vertical", key(b)) if dy > 0 else (key(b), "vertical", key(a))
    return (key(a), "horizontal", key(b)) if dx > 0 else (key(b), "horizontal", key(a))


# ---------------------------------------------------------------------------------------------------
# Scene sampling


def _place_single(rng, extent):
    lo, hi = MARGIN + extent / 2, RES - MARGIN - extent / 2
    return rng.uniform(lo, hi), rng.uniform(lo, hi)


def _place_relation(rng, e0, e1, relation):
    """Centres of object 0 REL object 1: main-axis separation clears both boxes, orthogonal offset <= half of it."""
    while True:
        p0, p1 = _place_single(rng, e0), _place_single(rng, e1)
        d = {"above": p1[1] - p0[1], "below": p0[1] - p1[1], "left": p1[0] - p0[0], "right": p0[0] - p1[0]}[relation]
        orth = (p1[0] - p0[0]) if AXIS[relation] == "vertical" else (p1[1] - p0[1])
        if d >= (e0 + e1) / 2 + GAP and abs(orth) <= 0.5 * d:
            return p0, p1


def _place_pair(rng, e0, e1):
    """Two centres anywhere with non-overlapping boxes ("and" scenes)."""
    while True:
        p0, p1 = _place_single(rng, e0), _place_single(rng, e1)
        if max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1])) >= (e0 + e1) / 2 + GAP:
            return p0, p1


def _object(rng, colour, shape):
    size = rng.choice(list(SIZES))
    return dict(colour=colour, shape=shape, size=size, extent=float(rng.uniform(*SIZES[size])))


def sample_scene(rng, kind=None, objects=None, relation=None, allow_heldout=False):
    """A random scene; kind / objects [(colour, shape)] / relation may be fixed by the caller."""
    kind = kind or rng.choice(list(KIND_P), p=list(KIND_P.values()))
    n = 1 if kind == "single" else 2
    while True:
        if objects is None:
            first = OBJECTS[rng.integers(len(OBJECTS))]
            others = [o for o in OBJECTS if o[0] != first[0]]
            picks = [first] if n == 1 else [first, others[rng.integers(len(others))]]
        else:
            picks = objects
        objs = [_object(rng, colour, shape) for colour, shape in picks]
        rel = None
        if kind == "single":
            objs[0]["cx"], objs[0]["cy"] = _place_single(rng, objs[0]["extent"])
        elif kind == "relation":
            rel = relation or rng.choice(list(RELATIONS))
            p0, p1 = _place_relation(rng, objs[0]["extent"], objs[1]["extent"], rel)
            (objs[0]["cx"], objs[0]["cy"]), (objs[1]["cx"], objs[1]["cy"]) = p0, p1
        else:
            p0, p1 = _place_pair(rng, objs[0]["extent"], objs[1]["extent"])
            (objs[0]["cx"], objs[0]["cy"]), (objs[1]["cx"], objs[1]["cy"]) = p0, p1
        for o in objs:
            o["cx"], o["cy"] = float(o["cx"]), float(o["cy"])
        scene = dict(kind=kind, objects=objs, relation=rel, style=_sample_style(rng))
        if n == 1 or allow_heldout or configuration(scene) not in HELDOUT_SET:
            return scene


def _sample_style(rng):
    tone = rng.choice(list(TONES))
    lo, hi, _ = TONES[tone]
    base = rng.uniform(lo, hi) + rng.uniform(-TINT, TINT, size=3)
    texture = rng.choice(TEXTURES)
    return dict(tone=str(tone), texture=str(texture), bg=[float(v) for v in base],
                period=float(rng.choice([8.0, 12.0, 16.0])), angle=float(rng.choice([0, 45, 90, 135])),
                phase=float(rng.uniform(0, 1)))


# ---------------------------------------------------------------------------------------------------
# Rendering


def _subpixels(lo, hi):
    """Subpixel centres (64-px units) of pixels lo..hi-1 along one axis."""
    return (np.arange(lo * SUPERSAMPLE, hi * SUPERSAMPLE, dtype=np.float32) + 0.5) / SUPERSAMPLE


def shape_mask(shape, cx, cy, extent, x, y):
    """Inside test of an axis-aligned circle / square / upward isosceles triangle (base = height = extent)."""
    h = extent / 2
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= h * h
    if shape == "square":
        return (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    top = cy - h
    return (y <= cy + h) & (y >= top) & (np.abs(x - cx) <= (y - top) / 2)


def _box_mean(sub):
    """Average SUPERSAMPLE x SUPERSAMPLE subpixel blocks."""
    rows = sum(sub[i::SUPERSAMPLE] for i in range(SUPERSAMPLE))
    return sum(rows[:, i::SUPERSAMPLE] for i in range(SUPERSAMPLE)) / SUPERSAMPLE ** 2


def render(scene):
    """uint8 [64, 64, 3]: background, then the objects, each pixel the mean of its 4x4 subpixels."""
    st = scene["style"]
    base = np.array(st["bg"], np.float32)
    xs, ys = np.meshgrid(_subpixels(0, RES), _subpixels(0, RES))
    background = np.broadcast_to(base, (RES * SUPERSAMPLE, RES * SUPERSAMPLE, 3))
    img = np.broadcast_to(base, (RES, RES, 3)).copy()
    if st["texture"] == "striped":
        a = math.radians(st["angle"])
        u = (xs * math.cos(a) + ys * math.sin(a)) / st["period"] + st["phase"]
        background = base + TONES[st["tone"]][2] * ((u - np.floor(u)) < 0.5)[..., None].astype(np.float32)
        img = _box_mean(background)
    for o in scene["objects"]:
        h = o["extent"] / 2 + 1
        x0, x1 = max(0, int(o["cx"] - h)), min(RES, int(math.ceil(o["cx"] + h)))
        y0, y1 = max(0, int(o["cy"] - h)), min(RES, int(math.ceil(o["cy"] + h)))
        win = (slice(y0 * SUPERSAMPLE, y1 * SUPERSAMPLE), slice(x0 * SUPERSAMPLE, x1 * SUPERSAMPLE))
        mask = shape_mask(o["shape"], o["cx"], o["cy"], o["extent"], xs[win], ys[win])
        sub = np.where(mask[..., None], np.array(COLOURS[o["colour"]], np.float32), background[win])
        img[y0:y1, x0:x1] = _box_mean(sub)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def downsample(img64):
    """The base stage's 32x32 image: exact 2x2 mean (float)."""
    return img64.reshape(RES // 2, 2, RES // 2, 2, 3).astype(np.float32).mean(axis=(1, 3))


def clip_pixels(img64, size=32):
    """CLIP preprocessing before normalisation: shorter side to `size` with PIL bicubic (square: no crop)."""
    return np.asarray(Image.fromarray(img64).resize((size, size), Image.BICUBIC))


# ---------------------------------------------------------------------------------------------------
# Captions


def _article(rng, next_word):
    art = rng.choice(["a", "a", "one", "the", ""])
    if art == "a" and next_word[0] in "aeiou":
        art = "an"
    return art


def object_phrase(rng, obj, mention_size):
    words = ([obj["size"]] if mention_size else []) + [obj["colour"], obj["shape"]]
    art = _article(rng, words[0])
    return " ".join(([art] if art else []) + words)


def caption(rng, scene):
    """Diffusion caption (never mentions the style) and its semantic key (what the text pins down)."""
    objs = scene["objects"]
    sized = [bool(rng.random() < 0.4) for _ in objs]
    describe = lambda i: object_phrase(rng, objs[i], sized[i])
    ident = lambda i: (objs[i]["colour"], objs[i]["shape"], objs[i]["size"] if sized[i] else "")
    if scene["kind"] == "single":
        text = describe(0) if rng.random() < 0.8 else "there is " + describe(0)
        return text, ("single", ident(0))
    if scene["kind"] == "and":
        order = [0, 1] if rng.random() < 0.5 else [1, 0]
        return f"{describe(order[0])} and {describe(order[1])}", ("and",) + tuple(sorted([ident(0), ident(1)]))
    rel, first, second = scene["relation"], 0, 1
    if rng.random() < 0.5:                       # describe from the other object: "B below A"
        rel, first, second = INVERSE[rel], 1, 0
    phrase = rng.choice(RELATIONS[rel])
    a, b = describe(first), describe(second)
    template = rng.choice(["{a} {r} {b}", "{a} {r} {b}", "{a} is {r} {b}", "{r} {b} there is {a}", "{r} {b} is {a}"])
    top_left, other = (second, first) if rel in ("below", "right") else (first, second)
    key = ("relation", ident(top_left), AXIS[rel], ident(other))     # canonical: "A above B" == "B below A"
    return template.format(a=a, r=phrase, b=b), key


def hard_negative(rng, caption_rng, scene):
    """A caption with (nearly) the same words as `caption(rng, scene)` that means another scene, and its key:
    the two objects' colours or shapes exchanged, or (relations) the two objects exchanged around the same
    relation word. A bag-of-words text encoder cannot tell it from the true caption (NegCLIP's hard
    negatives, Yuksekgonul et al. 2023). `caption_rng` must be in the state `caption` was called with, so
    the articles, sizes, paraphrase and word order are drawn the same; `rng` picks the edit. When the edit
    does not change the meaning (a single object; "and" of two equal shapes), one colour is replaced."""
    objs = [dict(o) for o in scene["objects"]]
    choices = ["colours"] + (["shapes"] if objs[-1]["shape"] != objs[0]["shape"] else [])
    choices += ["objects"] if scene["kind"] == "relation" else []
    what = choices[int(rng.integers(len(choices)))]
    if what == "objects":
        objs = objs[::-1]
    elif len(objs) == 2:
        field = "colour" if what == "colours" else "shape"
        objs[0][field], objs[1][field] = objs[1][field], objs[0][field]
    _, key = caption(copy.deepcopy(caption_rng), scene)
    text, neg_key = caption(copy.deepcopy(caption_rng), dict(scene, objects=objs))
    if neg_key == key:
        unused = [c for c in COLOURS if all(o["colour"] != c for o in objs)]
        objs[0]["colour"] = unused[int(rng.integers(len(unused)))]
        text, neg_key = caption(caption_rng, dict(scene, objects=objs))
    return text, neg_key


def canonical(key):
    """What a caption means, in one fixed wording (the T5 phase's target): objects as "[size] colour shape",
    a relation always as "TOP above BOTTOM" or "LEFT left of RIGHT", "and" pairs in sorted order.
    "under one small green circle there is the large red triangle" -> "small green circle above large red triangle"."""
    name = lambda ident: " ".join(w for w in (ident[2], ident[0], ident[1]) if w)
    if key[0] == "single":
        return name(key[1])
    if key[0] == "and":
        return f"{name(key[1])} and {name(key[2])}"
    return f"{name(key[1])} {'above' if key[2] == 'vertical' else 'left of'} {name(key[3])}"


def clip_caption(rng, text, style):
    """CLIP caption: the diffusion caption plus the style, as real alt-texts describe appearance."""
    tone = rng.choice(TONE_WORDS[style["tone"]])
    bg = f"{tone} {style['texture']} background"
    return rng.choice([f"{text}, {bg}", f"{text} on a {bg}", f"{bg}: {text}"])


# ---------------------------------------------------------------------------------------------------
# Dataset


def _chunk(args):
    seed, chunk, n = args
    rng = np.random.default_rng([seed, chunk])
    t5, clip = T5Tokenizer(), ClipTokenizer()
    images = np.empty((n, RES, RES, 3), np.uint8)
    clip32 = np.empty((n, 32, 32, 3), np.uint8)
    t5_ids = np.zeros((n, T5_MAX_TOKENS), np.int32)
    clip_ids = np.zeros((n, CLIP_CONTEXT), np.int32)
    clip_style_ids = np.zeros((n, CLIP_CONTEXT), np.int32)
    clip_neg_ids = np.zeros((n, CLIP_CONTEXT), np.int32)
    t5_neg_ids = np.zeros((n, T5_MAX_TOKENS), np.int32)
    records = []
    for i in range(n):
        scene = sample_scene(rng)
        caption_rng = copy.deepcopy(rng)
        text, key = caption(rng, scene)
        style_rng = copy.deepcopy(rng)
        ctext = clip_caption(rng, text, scene["style"])
        neg_text, neg_key = hard_negative(rng, caption_rng, scene)
        neg_ctext = clip_caption(style_rng, neg_text, scene["style"])
        images[i] = render(scene)
        clip32[i] = clip_pixels(images[i])
        ids = t5(text)
        t5_ids[i, :len(ids)] = ids
        clip_ids[i] = clip(text)
        clip_style_ids[i] = clip(ctext)
        clip_neg_ids[i] = clip(neg_ctext)
        ids = t5(neg_text)
        t5_neg_ids[i, :len(ids)] = ids
        style = [scene["style"]["tone"], scene["style"]["texture"]]
        records.append(dict(scene, caption=text, clip_caption=ctext, clip_negative=neg_ctext,
                            key=json.dumps([key] + style), neg_key=json.dumps([neg_key] + style),
                            content=json.dumps(key), neg_content=json.dumps(neg_key)))
    return images, clip32, t5_ids, clip_ids, clip_style_ids, clip_neg_ids, t5_neg_ids, records


ARRAYS = {"images64": ((RES, RES, 3), np.uint8), "clip32": ((32, 32, 3), np.uint8),
          "t5_ids": ((T5_MAX_TOKENS,), np.int32), "clip_ids": ((CLIP_CONTEXT,), np.int32),
          "clip_style_ids": ((CLIP_CONTEXT,), np.int32), "clip_neg_ids": ((CLIP_CONTEXT,), np.int32),
          "t5_neg_ids": ((T5_MAX_TOKENS,), np.int32)}


def open_dataset(root, mode="r"):
    """Memory-mapped arrays + scene records of a generated dataset."""
    root = Path(root)
    meta = json.loads((root / "meta.json").read_text())
    arrays = {name: np.memmap(root / f"{name}.bin", dtype=dt, mode=mode, shape=(meta["n"],) + shape)
              for name, (shape, dt) in ARRAYS.items()}
    return meta, arrays


def load_records(root):
    with open(Path(root) / "scenes.jsonl") as f:
        return [json.loads(line) for line in f]


def generate_dataset(root, n, seed, chunk=2000, workers=2):
    root = Path(root)
    if (root / "meta.json").exists() and json.loads((root / "meta.json").read_text()).get("complete"):
        return
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps(dict(n=n, seed=seed, complete=False)))
    _, arrays = open_dataset(root, mode="w+")
    jobs = [(seed, c, min(chunk, n - c * chunk)) for c in range((n + chunk - 1) // chunk)]
    with Pool(workers) as pool, open(root / "scenes.jsonl", "w") as f:
        for (_, c, m), result in zip(jobs, pool.imap(_chunk, jobs)):
            for (name, arr), part in zip(arrays.items(), result[:-1]):
                arr[c * chunk:c * chunk + m] = part
            for r in result[-1]:
                f.write(json.dumps(r) + "\n")
            print(f"world: {c * chunk + m}/{n}", flush=True)
    for arr in arrays.values():
        arr.flush()
    (root / "meta.json").write_text(json.dumps(dict(n=n, seed=seed, complete=True, heldout=HELDOUT)))


# ---------------------------------------------------------------------------------------------------
# Evaluation prompts


def spec(scene, key):
    """What a caption asks for: objects [(colour, shape, size named or '')] and the relation of object 0 to 1."""
    named = {}
    for ident in key[1:]:
        if isinstance(ident, tuple):
            named[ident[0]] = ident[2]
    return dict(objects=[(o["colour"], o["shape"], named[o["colour"]]) for o in scene["objects"]],
                relation=scene["relation"])


def eval_prompts(split, n, seed):
    """[(prompt, spec)]. split 'train': fresh draws of training combinations (single 20 %, relation 70 %,
    'and' 10 %); 'heldout': relation prompts whose configuration is in HELDOUT (cycled in order)."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    out = []
    for i in range(n):
        if split == "train":
            kind = "single" if i % 10 < 2 else "and" if i % 10 == 2 else "relation"
            scene = sample_scene(rng, kind=kind)
        else:
            first, axis, second = HELDOUT[i % len(HELDOUT)]
            rel = "above" if axis == "vertical" else "left"
            scene = sample_scene(rng, kind="relation", objects=[first, second], relation=rel, allow_heldout=True)
        text, key = caption(rng, scene)
        out.append((text, spec(scene, key)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    args = ap.parse_args()
    generate_dataset(args.out, args.n, args.seed, workers=args.workers)


if __name__ == "__main__":
    main()
