"""Reference PNGs for the PNG suite (test/t_png.c). Writes test/png/*.png, test/png/bad/*.png and
test/ref/png.bin.

    .venv/bin/python test/gen_png.py

Every colour type and bit depth of the PNG specification (grey 1/2/4/8/16, RGB 8/16, palette 1/2/4/8
with and without tRNS, grey+alpha 8/16, RGBA 8/16, grey and RGB with tRNS colour keys), each plain
and Adam7-interlaced, at odd sizes. Pillow writes every plain file it can; the others (2/4-bit grey
with tRNS aside, Pillow writes no 16-bit RGB/RGBA/LA and nothing interlaced) come from the small
writer below (zlib + struct), which also varies what readers must handle: every filter type, stored /
fixed-Huffman / dynamic deflate blocks, IDAT split into tiny and empty chunks.

The reference pixels are always Pillow's decoding, `Image.open(f).convert("RGBA")`, except where
Pillow departs from the PNG specification; then the spec's value is used and the case says why:
  * 16-bit grey: Pillow's I;16 -> RGBA conversion clips (any value >= 255 becomes white); we keep the
    high byte, as Pillow itself does for 16-bit RGB, RGBA and grey+alpha. Reference: Pillow's exact
    I;16 decoding >> 8.
  * tRNS in 2/4-bit grey: Pillow compares the raw key with the scaled samples (never matches);
    reference alpha: Pillow's decoded grey == key scaled the same way.
  * tRNS in 16-bit grey / RGB: the key is a 16-bit sample value. Grey: compared with Pillow's exact
    I;16 decoding. RGB: Pillow decodes only the high bytes, so alpha comes from the samples this script
    wrote (the file's content); the RGB still comes from Pillow.
Each reference is also checked against an independent numpy model of the specification built from
the samples, so a wrong reference cannot slip in.
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "weights"))
import blob  # noqa: E402

PNG_DIR = os.path.join(ROOT, "test", "png")
BAD_DIR = os.path.join(PNG_DIR, "bad")
rng = np.random.default_rng(2024)
tensors, meta, cases = {}, {}, []

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_row(samples, depth):
    """One row of samples (1-D) as bytes: big-endian 16-bit, or packed MSB-first below 8 bits."""
    if depth == 16:
        return samples.astype(">u2").tobytes()
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // depth
    pad = (-len(samples)) % per
    s = np.concatenate([samples, np.zeros(pad, samples.dtype)]).reshape(-1, per).astype(np.uint16)
    out = np.zeros(len(s), np.uint16)
    for k in range(per):
        out |= s[:, k] << (8 - depth * (k + 1))
    return out.astype(np.uint8).tobytes()


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filter_row(kind, row, prior, bpp):
    out = bytearray(len(row))
    for i in range(len(row)):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i] if prior is not None else 0
        c = prior[i - bpp] if prior is not None and i >= bpp else 0
        pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][kind]
        out[i] = (row[i] - pred) & 255
    return bytes([kind]) + bytes(out)


def python_png(samples, depth, color, interlace, extra=b"", zmode=0, first_filter=0):
    """A PNG of `samples` [h, w, channels] written here: every filter type in turn (one per row), and
    deflate as zmode says: 0 default, 1 stored blocks, 2 fixed Huffman, 3 best + IDAT in tiny chunks."""
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw, k = b"", first_filter
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        prior = None
        for r in range(sub.shape[0]):
            row = pack_row(sub[r].reshape(-1), depth)
            raw += filter_row(k % 5, row, prior, bpp)
            prior, k = row, k + 1
    if zmode == 1:
        data = zlib.compress(raw, 0)
    elif zmode == 2:
        c = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_FIXED)
        data = c.compress(raw) + c.flush()
    else:
        data = zlib.compress(raw, 9 if zmode == 3 else 6)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace)
    if zmode == 3:          # IDAT split into 1..7-byte chunks, with an empty one in the middle
        idat, pos, n = b"", 0, 1
        while pos < len(data):
            idat += chunk(b"IDAT", data[pos:pos + n])
            if pos == 0:
                idat += chunk(b"IDAT", b"")
            pos, n = pos + n, n % 7 + 1
    else:
        idat = chunk(b"IDAT", data)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + idat + chunk(b"IEND", b"")


def spec_rgba(samples, depth, color, palette=None, alpha=None, key=None):
    """The PNG specification's 8-bit RGBA of `samples` (the model every reference is checked against):
    low depths scaled exactly, 16-bit by the high byte, tRNS applied."""
    s = samples.astype(np.int64)
    to8 = (lambda v: v >> 8) if depth == 16 else (lambda v: v * 255 // ((1 << depth) - 1))
    h, w = s.shape[:2]
    out = np.full((h, w, 4), 255, np.int64)
    if color == 3:
        pal = np.array(palette, np.int64).reshape(-1, 3)
        a = np.full(len(pal), 255, np.int64)
        if alpha is not None:
            a[:len(alpha)] = list(alpha)
        out[..., :3] = pal[s[..., 0]]
        out[..., 3] = a[s[..., 0]]
        return out.astype(np.uint8)
    grey = color in (0, 4)
    out[..., :3] = to8(s[..., :1]) if grey else to8(s[..., :3])
    if color in (4, 6):
        out[..., 3] = to8(s[..., -1])
    if key is not None:
        hit = np.all(s[..., :len(key)] == np.array(key), axis=-1)
        out[..., 3] = np.where(hit, 0, 255)
    return out.astype(np.uint8)


def pillow_image(samples, depth, color, palette):
    """The same samples as a Pillow image, for the plain files Pillow can write (else None)."""
    s = samples
    if color == 0 and depth == 1:
        return Image.fromarray((s[..., 0] * 255).astype(np.uint8)).convert("1", dither=Image.Dither.NONE)
    if color == 0 and depth in (2, 4, 8):
        return Image.fromarray((s[..., 0] * (255 // ((1 << depth) - 1))).astype(np.uint8))
    if color == 0 and depth == 16:
        return Image.fromarray(s[..., 0].astype(np.uint16))
    if color == 3:
        im = Image.fromarray(s[..., 0].astype(np.uint8), "P")
        im.putpalette(list(palette))
        return im
    if depth == 8 and color in (2, 4, 6):
        return Image.fromarray(s.astype(np.uint8), {2: "RGB", 4: "LA", 6: "RGBA"}[color])
    return None


def random_samples(h, w, ch, depth, n_values):
    top = n_values if n_values else 1 << depth
    s = rng.integers(0, top, (h, w, ch), dtype=np.int64)
    if depth == 16 and h * w > 1:          # include the extremes and a high-byte/low-byte mix
        flat = s.reshape(-1, ch)
        flat[0], flat[-1] = 0, 65535
    return s


def add_case(name, data, ref, writer, note):
    path = os.path.join(PNG_DIR, name + ".png")
    with open(path, "wb") as f:
        f.write(data)
    tensors[f"png.{name}.rgba"] = ref
    meta[f"writer.{name}"] = writer
    meta[f"note.{name}"] = note
    cases.append(name)


def reference(data, samples, depth, color, palette, alpha, key):
    """Pillow's decoding, as RGBA, with the spec's values where Pillow departs from it (see above)."""
    im = Image.open(io.BytesIO(data))
    im.load()
    ref = np.array(im.convert("RGBA"))
    note = "Pillow convert('RGBA')"
    if color == 0 and depth == 16:
        exact = np.array(im).astype(np.int64)                  # Pillow's I;16 decoding, exact
        assert (exact == samples[..., 0]).all()
        ref[..., :3] = (exact >> 8)[..., None]
        ref[..., 3] = 255 if key is None else np.where(exact == key[0], 0, 255)
        note = "Pillow I;16 decoding >> 8 (its RGBA conversion clips)" + (", tRNS on the 16-bit values" if key else "")
    elif color == 0 and depth in (2, 4) and key is not None:
        grey = np.array(im).astype(np.int64)
        ref[..., 3] = np.where(grey == key[0] * (255 // ((1 << depth) - 1)), 0, 255)
        note = "Pillow convert('RGBA'), alpha per spec (Pillow misses tRNS at 2/4 bits)"
    elif color == 2 and depth == 16 and key is not None:
        ref[..., 3] = np.where(np.all(samples == np.array(key), axis=-1), 0, 255)
        note = "Pillow convert('RGBA') RGB, alpha per spec from the written samples (Pillow decodes 8 bits)"
    want = spec_rgba(samples, depth, color, palette, alpha, key)
    assert ref.shape == want.shape and (ref == want).all(), "reference disagrees with the specification"
    return ref.astype(np.uint8), note


# --- every colour type / bit depth / tRNS variant -------------------------------------------------
COMBOS = [(0, d, None) for d in (1, 2, 4, 8, 16)] + [(2, 8, None), (2, 16, None)]
COMBOS += [(3, d, t) for d in (1, 2, 4, 8) for t in (None, "trns")]
COMBOS += [(4, 8, None), (4, 16, None), (6, 8, None), (6, 16, None)]
COMBOS += [(0, d, "key") for d in (1, 2, 4, 8, 16)] + [(2, 8, "key"), (2, 16, "key")]
SMALL = [(1, 1), (3, 5), (5, 3), (2, 9), (1, 7)]
LARGER = [(17, 9), (33, 7), (13, 11), (41, 23), (9, 17), (70, 3)]
NAMES = {0: "grey", 2: "rgb", 3: "pal", 4: "greya", 6: "rgba"}

for ci, (color, depth, variant) in enumerate(COMBOS):
    ch = CHANNELS[color]
    for si, (w, h) in enumerate([SMALL[ci % len(SMALL)], LARGER[ci % len(LARGER)]]):
        palette = alpha = key = None
        n_values = 0
        extra = b""
        if color == 3:
            n_colors = max(1, (1 << depth) - (ci % 2))             # full palettes and one short
            n_colors = min(n_colors, 200 if depth == 8 else n_colors)
            palette = [int(v) for v in rng.integers(0, 256, 3 * n_colors)]
            n_values = n_colors
            if variant == "trns":
                alpha = bytes(int(v) for v in rng.integers(0, 256, max(1, n_colors - 1)))
        samples = random_samples(h, w, ch, depth, n_values)
        if variant == "key":
            key = [int(v) for v in samples.reshape(-1, ch)[len(samples.reshape(-1, ch)) // 2]]
            flat = samples.reshape(-1, ch)
            flat[rng.random(len(flat)) < 0.25] = key                # a quarter of the pixels are the key
            if depth == 16 and len(flat) > 2:                      # near misses: same high bytes
                flat[0] = key
                flat[0, -1] ^= 1
        if palette is not None:
            extra += chunk(b"PLTE", bytes(palette))
            if alpha is not None:
                extra += chunk(b"tRNS", alpha)
        if key is not None:
            extra += chunk(b"tRNS", b"".join(struct.pack(">H", v) for v in key))
        base = f"{NAMES[color]}{depth}" + {"trns": "_trns", "key": "_key", None: ""}[variant] + f".{w}x{h}"
        for interlace in (0, 1):
            name = base + (".adam7" if interlace else "")
            pim = None if interlace else pillow_image(samples, depth, color, palette)
            if pim is not None:
                f = io.BytesIO()
                opts = {"bits": depth} if color == 0 and depth in (2, 4) else {}
                if alpha is not None:
                    opts["transparency"] = alpha
                if key is not None:
                    opts["transparency"] = key[0] if color == 0 else tuple(key)
                if si == 1:
                    opts["compress_level"] = 0 if ci % 3 == 0 else 9   # stored blocks, or Pillow's best
                pim.save(f, "PNG", **opts)
                data, writer = f.getvalue(), "pillow"
                hdr = struct.unpack(">IIBB", data[16:26])
                assert hdr == (w, h, depth, color), f"Pillow wrote {hdr} for {name}"
            else:
                zmode = (ci + si + interlace) % 4
                data, writer = python_png(samples, depth, color, interlace, extra, zmode, ci), f"python zmode {zmode}"
            ref, note = reference(data, samples, depth, color, palette, alpha, key)
            add_case(name, data, ref, writer, note)

# --- larger Pillow-written images: decoding at size, and our compression against Pillow's ----------
def photo(h, w):
    """A smooth synthetic photograph: gradients, soft blobs, edges and a little sensor noise."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(6 * x + 2 * y), 0.4 + 0.3 * np.cos(5 * y - 3 * x), 0.3 + 0.5 * x * y], -1)
    for _ in range(6):
        cx, cy, r = rng.random(), rng.random(), 0.05 + 0.2 * rng.random()
        img += (rng.random(3) - 0.5) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r ** 2)[..., None]
    img[(x > 0.6) & (y < 0.3)] *= 0.6
    img = img * 255 + rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


yy, xx = np.mgrid[0:128, 0:160]
SIZE_IMAGES = {
    "photo": Image.fromarray(photo(144, 192)),
    "gradient": Image.fromarray(np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)),
    "mask": Image.fromarray((((xx - 60) ** 2 + (yy - 70) ** 2 < 40 ** 2) | ((xx > 100) & (yy > 20) & (yy < 60))).astype(np.uint8) * 255),
    "noise": Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)),
}
for name, im in SIZE_IMAGES.items():
    f = io.BytesIO()
    im.save(f, "PNG")                                           # Pillow's defaults (zlib level 6)
    data = f.getvalue()
    g = io.BytesIO()
    im.save(g, "PNG", optimize=True)                            # and its best (level 9)
    with open(os.path.join(PNG_DIR, f"size_{name}.png"), "wb") as out:
        out.write(data)
    ref = np.array(Image.open(io.BytesIO(data))).reshape(im.size[1], im.size[0], -1)   # grey or RGB
    tensors[f"size.{name}.pixels"] = ref
    meta[f"size.{name}.channels"] = len(im.getbands())
    meta[f"size.{name}.pillow"] = len(data)
    meta[f"size.{name}.pillow_optimize"] = len(g.getvalue())

# --- the "parameters" text as other writers store it: zTXt, compressed iTXt, Latin-1 tEXt -----------
from PIL.PngImagePlugin import PngInfo  # noqa: E402

PARAMS = ("a watercolor fox in a snowy forest\nNegative prompt: blurry, text\n"
          "Steps: 32, Sampler: heun, CFG scale: 7.5, Seed: 1234, Model: ediff-small, Model hash: 9f86d081")
TEXTS = {"text_ztxt": ("ztxt", PARAMS), "text_itxt_zip": ("itxt_zip", PARAMS + ", caf\u00e9 \u6771\u4eac"),
         "text_latin1": ("latin1", "Steps: 8, Sampler: euler, na\u00efve \u00bd")}
for name, (kind, value) in TEXTS.items():
    info = PngInfo()
    info.add_text("Comment", "before the parameters")
    if kind == "ztxt":
        info.add_text("parameters", value, zip=True)
    elif kind == "itxt_zip":
        info.add_itxt("parameters", value, lang="en", tkey="Parameter", zip=True)
    else:
        info.add_text("parameters", value)              # Latin-1 encodable: Pillow writes tEXt
    f = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).save(f, "PNG", pnginfo=info)
    data = f.getvalue()
    assert {"ztxt": b"zTXt", "itxt_zip": b"iTXt", "latin1": b"tEXt"}[kind] in data
    with open(os.path.join(PNG_DIR, name + ".png"), "wb") as out:
        out.write(data)
    tensors[f"text.{name}.value"] = np.frombuffer(value.encode("utf-8"), np.uint8)
    tensors[f"text.{name}.rgba"] = np.array(Image.open(io.BytesIO(data)).convert("RGBA"))

# --- a few broken files, made by hand (the C suite derives hundreds more at run time) --------------
good = python_png(random_samples(6, 5, 3, 8, 0), 8, 2, 0)
grey = random_samples(4, 4, 1, 8, 0)


def with_ihdr(w, h, depth=8, color=2, rest=b""):
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)) + rest


raw_grey = b"".join(b"\0" + bytes(r) for r in grey[..., 0].astype(np.uint8))
z = zlib.compress(raw_grey)
BAD = {
    "huge_100000x100000": (with_ihdr(100000, 100000, rest=chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")),
                           "limit is 16384 pixels per side"),
    "bomb_16384x4096": (with_ihdr(16384, 4096, 8, 6, chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")),
                        "image data too short"),
    "truncated_in_idat": (good[:len(good) - 30], "truncated"),
    "crc_flip_ihdr": (good[:20] + bytes([good[20] ^ 4]) + good[21:], "CRC mismatch in chunk 'IHDR'"),
    "bad_adler": (with_ihdr(4, 4, 8, 0, chunk(b"IDAT", z[:-1] + bytes([z[-1] ^ 1])) + chunk(b"IEND", b"")), "Adler-32 mismatch"),
    "bad_filter_type": (with_ihdr(4, 4, 8, 0, chunk(b"IDAT", zlib.compress(b"\7" + raw_grey[1:])) + chunk(b"IEND", b"")),
                        "filter type 7"),
    "palette_index": (with_ihdr(2, 1, 8, 3, chunk(b"PLTE", b"\1\2\3\4\5\6") + chunk(b"IDAT", zlib.compress(b"\0\1\2")) + chunk(b"IEND", b"")),
                      "palette index 2 out of range"),
    "zlib_trailing": (with_ihdr(4, 4, 8, 0, chunk(b"IDAT", z + b"\0\0") + chunk(b"IEND", b"")), "follow its end"),
    "length_overflow": (good[:33] + b"\xff\xff\xff\xf0IDAT" + good[41:], "exceeds 2^31-1"),
    "not_png": (b"\xff\xd8\xff\xe0\0\x10JFIF\0" + bytes(40), "bad signature"),
}
os.makedirs(BAD_DIR, exist_ok=True)
for name, (data, expect) in BAD.items():
    with open(os.path.join(BAD_DIR, name + ".png"), "wb") as f:
        f.write(data)
    meta[f"bad.{name}"] = expect
    try:                                         # Pillow must not accept them either (as a sanity check)
        Image.open(io.BytesIO(data)).convert("RGBA")
        accepted = True
    except Exception:
        accepted = False
    print(f"bad/{name}.png: {len(data)} bytes, Pillow {'decodes it' if accepted else 'refuses it'}")

meta["cases"] = ",".join(cases)
meta["bad_files"] = ",".join(BAD)
meta["sizes"] = ",".join(SIZE_IMAGES)
meta["texts"] = ",".join(TEXTS)
blob.write_blob(os.path.join(ROOT, "test", "ref", "png.bin"), tensors, meta)
pillow = sum(meta[f"writer.{n}"] == "pillow" for n in cases)
print(f"{len(cases)} reference PNGs ({pillow} written by Pillow, {len(cases) - pillow} by this script), "
      f"{sum(not meta[f'note.{n}'].startswith('Pillow convert') or 'alpha per spec' in meta[f'note.{n}'] for n in cases)} "
      f"with spec values where Pillow departs; {len(BAD)} broken files")
