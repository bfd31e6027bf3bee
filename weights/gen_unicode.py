"""Generate unicode_data.c: the Unicode and HTML tables the CLIP tokenizer's text clean-up and
pre-tokenisation need, taken from Python's own data (the interpreter that OpenAI's SimpleTokenizer
runs on), so the C reproduces `str.lower`, `str.strip`, `html.unescape` and the `regex` pattern
classes exactly for that Unicode version.

    /work/.venv/bin/python weights/gen_unicode.py        # writes unicode_data.c (repository root)

Python 3.11's unicodedata is Unicode 14.0.0, the version the reference cases were made with.
Everything below is read from Python (unicodedata, str methods, html.entities, html's charref tables)
except White_Space (the set the `regex` module's `\\s` uses), which Python does not expose: it is
listed here from Unicode's PropList.txt and checked against `regex` when that module is installed.
When `regex` is installed the script also checks every derived pattern class against it, code point
by code point, for every code point assigned in this Unicode version.
"""
import html
import html.entities
import os
import sys
import unicodedata

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unicode_data.c")
MAXCP = 0x110000

# PropList.txt, White_Space (unchanged since Unicode 6.3).
WHITE_SPACE = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
               0x2028, 0x2029, 0x202F, 0x205F, 0x3000}

# Flag bits; keep in sync with the UNI_* enum in ediff.h.
F_L, F_N, F_O, F_RE_SPACE, F_PY_SPACE, F_CASED, F_CASE_IGNORABLE = 1, 2, 4, 8, 16, 32, 64


def case_variants(c):
    """Single-character case relatives of c (what a case-insensitive regex may equate with it)."""
    v = {c}
    for _ in range(2):
        for x in list(v):
            for f in (str.lower, str.upper, str.casefold, str.title):
                r = f(x)
                if len(r) == 1:
                    v.add(r)
    return v


def is_l(c):
    return unicodedata.category(c)[0] == "L"


def is_n(c):
    return unicodedata.category(c)[0] == "N"


def sigma_class(c):
    """CPython's str.lower() picks final sigma from two properties of the neighbours (Cased,
    Case_Ignorable). Read them back from str.lower itself: 'ς' comes out exactly when the rule holds."""
    cased_not_ignorable = (c + "\u03a3").lower()[-1] == "\u03c2"
    ignorable_or_cased = ("A" + c + "\u03a3").lower()[-1] == "\u03c2"
    if cased_not_ignorable:
        return F_CASED
    if ignorable_or_cased:
        return F_CASE_IGNORABLE
    return 0


def flags_of(cp):
    c = chr(cp)
    f = 0
    if is_l(c):
        f |= F_L
    if is_n(c):
        f |= F_N
    # [^\s\p{L}\p{N}] under IGNORECASE: no case relative of c is a space, letter or number.
    if not any(is_l(v) or is_n(v) or ord(v) in WHITE_SPACE for v in case_variants(c)):
        f |= F_O
    if cp in WHITE_SPACE:
        f |= F_RE_SPACE
    if c.isspace():
        f |= F_PY_SPACE
    f |= sigma_class(c)
    return f


def check_against_regex(flags):
    try:
        import regex
    except ImportError:
        print("regex not installed: pattern classes not cross-checked", file=sys.stderr)
        return
    pl = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    pn = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    po = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    ps = regex.compile(r"\s")
    bad = []
    for cp in range(MAXCP):
        c = chr(cp)
        if unicodedata.category(c) in ("Cn", "Cs"):
            continue  # unassigned here; a newer regex may know them
        f = flags[cp]
        got = (bool(pl.match(c)), bool(pn.match(c)), bool(po.match(c)), bool(ps.match(c)))
        want = (bool(f & F_L), bool(f & F_N), bool(f & F_O), bool(f & F_RE_SPACE))
        if got != want:
            bad.append((hex(cp), got, want))
    if bad:
        sys.exit("pattern classes disagree with regex %s: %s" % (regex.__version__, bad[:20]))
    print("pattern classes agree with regex %s on every assigned code point" % regex.__version__)


def lower_tables():
    """Single code point mappings as runs (first, last, stride, delta); longer results separately."""
    single, multi = [], []
    for cp in range(MAXCP):
        lo = chr(cp).lower()
        if cp == 0x3A3:
            continue  # capital sigma: contextual, handled in tokenizer.c (CPython's final-sigma rule)
        if len(lo) == 1 and ord(lo) != cp:
            single.append((cp, ord(lo) - cp))
        elif len(lo) > 1:
            multi.append((cp, [ord(x) for x in lo]))
    runs = []
    i = 0
    while i < len(single):
        cp, d = single[i]
        best = (cp, cp, 1, d, i + 1)
        for stride in (1, 2):
            j, last = i + 1, cp
            while j < len(single) and single[j][0] == last + stride and single[j][1] == d:
                last, j = single[j][0], j + 1
            if j > best[4]:
                best = (cp, last, stride, d, j)
        runs.append(best[:4])
        i = best[4]
    # Sanity: the runs reproduce str.lower for every code point (stride-2 runs skip the odd ones).
    table = {}
    for first, last, stride, d in runs:
        for c in range(first, last + 1, stride):
            table[c] = c + d
    assert table == {c: c + d for c, d in single}
    return runs, multi


def ascii_folds():
    """Code points that survive lower-casing yet match an ASCII letter of the pattern under
    IGNORECASE (U+017F LONG S matches 's'): they let "'ſ" match the contraction "'s"."""
    letters = set("startoftextendoftext" + "strevmld")
    out = []
    for cp in range(0x80, MAXCP):
        c = chr(cp)
        if c.lower() != c:
            continue
        rel = [v for v in case_variants(c) if v.isascii() and v.isalpha()]
        if rel and rel[0].lower() in letters:
            out.append((cp, rel[0].lower()))
    try:
        import regex
        for letter in sorted(letters):
            got = sorted(cp for cp in range(0x80, MAXCP) if chr(cp).lower() == chr(cp)
                         and regex.fullmatch(letter, chr(cp), regex.IGNORECASE))
            want = sorted(cp for cp, l in out if l == letter)
            assert got == want, (letter, got, want)
    except ImportError:
        pass
    return out


def c_string(b):
    """A C string literal for bytes b (octal escapes for everything outside printable ASCII)."""
    s = []
    for x in b:
        if 0x20 <= x < 0x7F and chr(x) not in '"\\?':
            s.append(chr(x))
        else:
            s.append("\\%03o" % x)
    return '"' + "".join(s) + '"'


def main():
    flags = [flags_of(cp) for cp in range(MAXCP)]
    check_against_regex(flags)
    runs, multi = lower_tables()
    assert all(chr(c).lower() == (chr(c + 32) if "A" <= chr(c) <= "Z" else chr(c)) for c in range(0x80))
    assert multi == [(0x130, [0x69, 0x307])], multi
    folds = ascii_folds()
    ents = sorted((k.encode(), v.encode()) for k, v in html.entities.html5.items())
    # tokenizer.c relies on these: html.unescape never lengthens a string (in code points), and the
    # names that match without ';' (the only ones a longest-prefix match can find) give one code point.
    assert all(len(v) <= 1 + len(k) for k, v in html.entities.html5.items())
    assert all(len(v) == 1 for k, v in html.entities.html5.items() if not k.endswith(";"))
    remap = html._invalid_charrefs
    invalid = sorted(html._invalid_codepoints)

    o = []
    w = o.append
    w("/* unicode_data.c — GENERATED by weights/gen_unicode.py; do not edit.\n")
    w(" * Source: Python %s, unicodedata %s (Unicode %s), html.entities.html5 (%d names).\n"
      % (sys.version.split()[0], unicodedata.unidata_version, unicodedata.unidata_version, len(ents)))
    w(" * What CLIP's text clean-up and pre-tokenisation need (docs/tokenizers.md): per code point\n"
      " * classes of the `regex` pattern and of str.strip/str.lower, str.lower's mapping, and\n"
      " * html.unescape's tables. */\n")
    w('#include "ediff.h"\n\n')
    # Two-stage table: the flags of code point cp are block[index[cp >> 8]][cp & 255].
    blocks, index = {}, []
    for b in range(MAXCP >> 8):
        index.append(blocks.setdefault(tuple(flags[b << 8:(b + 1) << 8]), len(blocks)))
    assert len(blocks) <= 256
    w("/* Code point classes (UNI_* flags), two-stage: flags(cp) = class_block[class_index[cp >> 8]][cp & 255]. */\n")
    w("static const uint8_t class_index[%d] = {\n" % len(index))
    for i in range(0, len(index), 32):
        w("    " + ",".join(str(x) for x in index[i:i + 32]) + ",\n")
    w("};\nstatic const uint8_t class_block[%d][256] = {\n" % len(blocks))
    for blk in sorted(blocks, key=blocks.get):
        w("    {" + ",".join(str(x) for x in blk) + "},\n")
    w("};\n\n")
    w("unsigned uni_flags(uint32_t cp)\n{\n"
      "    return cp < 0x110000 ? class_block[class_index[cp >> 8]][cp & 255] : 0;\n}\n\n")
    w("/* str.lower, one code point to one: cp in [first, last] stepping by stride maps to cp + delta. */\n")
    w("static const struct { uint32_t first, last; int32_t delta; uint8_t stride; } lower_run[%d] = {\n"
      % len(runs))
    for first, last, stride, d in runs:
        w("    {0x%x, 0x%x, %d, %d},\n" % (first, last, d, stride))
    w("};\n\n")
    w("int uni_lower(uint32_t cp, uint32_t out[3])\n{\n"
      "    size_t lo = 0, hi = sizeof lower_run / sizeof lower_run[0];\n"
      "    if (cp < 0x80) {                            /* ASCII */\n"
      "        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;\n        return 1;\n    }\n"
      "    if (cp == 0x130) {                          /* the one multi-character mapping */\n"
      "        out[0] = 0x69;\n        out[1] = 0x307;\n        return 2;\n    }\n"
      "    while (lo < hi) {                           /* first run with last >= cp */\n"
      "        size_t mid = lo + (hi - lo) / 2;\n"
      "        if (lower_run[mid].last < cp) lo = mid + 1; else hi = mid;\n"
      "    }\n"
      "    out[0] = cp;\n"
      "    if (lo < sizeof lower_run / sizeof lower_run[0] && cp >= lower_run[lo].first &&\n"
      "        (cp - lower_run[lo].first) % lower_run[lo].stride == 0)\n"
      "        out[0] = (uint32_t)((int32_t)cp + lower_run[lo].delta);\n"
      "    return 1;\n}\n\n")
    w("/* Lower-case code points that the pattern's IGNORECASE equates with an ASCII letter. */\n")
    w("int uni_ascii_fold(uint32_t cp)\n{\n")
    for cp, letter in folds:
        w("    if (cp == 0x%x) return '%s';\n" % (cp, letter))
    w("    return cp < 0x80 ? (int)cp : 0;\n}\n\n")
    w("/* HTML5 named character references, sorted by name (bytes); the value is UTF-8. */\n")
    w("static const struct { const char *name, *value; } entity[%d] = {\n" % len(ents))
    for k, v in ents:
        w("    {%s, %s},\n" % (c_string(k), c_string(v)))
    w("};\n\n")
    w("const char *html_entity(const char *name, size_t len)\n{\n"
      "    size_t lo = 0, hi = sizeof entity / sizeof entity[0];\n"
      "    while (lo < hi) {\n"
      "        size_t mid = lo + (hi - lo) / 2, k;\n"
      "        const unsigned char *e = (const unsigned char *)entity[mid].name;\n"
      "        int cmp = 0;\n"
      "        for (k = 0; k < len && e[k] && !cmp; k++) cmp = e[k] - (unsigned char)name[k];\n"
      "        if (!cmp) cmp = e[k] ? 1 : (k < len ? -1 : 0);\n"
      "        if (!cmp) return entity[mid].value;\n"
      "        if (cmp < 0) lo = mid + 1; else hi = mid;\n"
      "    }\n"
      "    return NULL;\n}\n\n")
    w("/* html.unescape's numeric references: Windows-1252 remap of &#0; &#13; &#128;..&#159;. */\n")
    w("int html_charref_remap(uint32_t num, uint32_t *cp)\n{\n    switch (num) {\n")
    for k in sorted(remap):
        assert len(remap[k]) == 1
        w("    case 0x%x: *cp = 0x%x; return 1;\n" % (k, ord(remap[k])))
    w("    default: return 0;\n    }\n}\n\n")
    w("/* Code points html.unescape drops when a numeric reference names them. */\n")
    w("static const uint32_t charref_dropped[%d] = {\n" % len(invalid))
    for i in range(0, len(invalid), 10):
        w("    " + ", ".join("0x%x" % s for s in invalid[i:i + 10]) + ",\n")
    w("};\n\n")
    w("int html_charref_dropped(uint32_t cp)\n{\n"
      "    size_t lo = 0, hi = sizeof charref_dropped / sizeof charref_dropped[0];\n"
      "    while (lo < hi) {\n"
      "        size_t mid = lo + (hi - lo) / 2;\n"
      "        if (charref_dropped[mid] == cp) return 1;\n"
      "        if (charref_dropped[mid] < cp) lo = mid + 1; else hi = mid;\n"
      "    }\n"
      "    return 0;\n}\n")
    with open(OUT, "w") as f:
        f.write("".join(o))
    print("wrote %s: %d class blocks, %d lower-case runs, %d entities, folds %s"
          % (os.path.normpath(OUT), len(blocks), len(runs), len(ents), folds))


if __name__ == "__main__":
    main()
