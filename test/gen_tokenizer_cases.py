"""Write test/tokenizer_cases_extra.tsv: tokenizer reference cases made with the ORIGINAL tools, in
exactly the format of test/tokenizer_cases.tsv (the shipped cases; see its header).

    pip install --no-deps openai-clip==1.0.1     # OpenAI's clip package (its simple_tokenizer.py)
    /work/.venv/bin/python test/gen_tokenizer_cases.py                 # write the extra cases
    PY test/gen_tokenizer_cases.py --verify FILE.tsv...                # recompute a case file's ids
    /work/.venv/bin/python test/gen_tokenizer_cases.py --random N SEED OUT.tsv   # random texts
    ./ediff tokenize --cases OUT.tsv                                   # and check the C on them

--verify runs under any Python with `regex` and `sentencepiece` (the clip package is found in the
venv); after writing, the script runs it with Debian's /usr/bin/python3 when that has
python3-sentencepiece 0.1.97 and python3-regex 2022.10.31 (apt-get install python3-sentencepiece
python3-regex): the very stack the shipped cases were made with, Python 3.11.2.

CLIP: OpenAI CLIP's SimpleTokenizer, from PyPI openai-clip 1.0.1, whose clip/simple_tokenizer.py is
byte-identical to openai/CLIP at commit d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 (sha256 checked
below), loaded standalone (the package __init__ imports torch and torchvision), with ftfy replaced
by a stub whose fix_text returns its input unchanged, exactly as the shipped cases were made, and
with the package's own bpe_simple_vocab_16e6.txt.gz (sha256 checked). open_clip's tokenizer is not
used: it names its special tokens <start_of_text>/<end_of_text>, so a literal <|endoftext|> differs.
T5: PyPI sentencepiece with weights/vocab/t5_spiece.model. Before writing anything the script checks
that these tools reproduce every case of the shipped file (CLIP cases and the sentencepiece 0.1.97
T5 cases), that weights/vocab/clip_merges.txt is the first 48,895 lines of the vocabulary file,
and that every character of every new text is assigned in this Python's Unicode version (so the
`regex` module's own, possibly newer, Unicode tables cannot change a result).
"""
import gzip
import hashlib
import importlib.util
import os
import random
import subprocess
import sys
import types
import unicodedata

import regex
import sentencepiece

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHIPPED = os.path.join(ROOT, "test", "tokenizer_cases.tsv")
OUT = os.path.join(ROOT, "test", "tokenizer_cases_extra.tsv")
SPIECE = os.path.join(ROOT, "weights", "vocab", "t5_spiece.model")
MERGES = os.path.join(ROOT, "weights", "vocab", "clip_merges.txt")
SIMPLE_TOKENIZER_SHA256 = "d1b09f10ed3d1e2c343619cb98cbfacb92363dd8607526a43aa7fe2d60d15bad"
VOCAB_GZ_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
MERGES_SHA256 = "685491abbdad36159d094ecdc23bebc0dd53f8d1df35c4d74ef6036db2ba7572"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


VENV_CLIP = os.path.join(ROOT, "..", ".venv", "lib", "python3.11", "site-packages", "clip")


def clip_package():
    spec = importlib.util.find_spec("clip")
    if spec is not None:
        return spec.submodule_search_locations[0]
    for pkg in (VENV_CLIP, "/work/.venv/lib/python3.11/site-packages/clip"):
        if os.path.exists(os.path.join(pkg, "simple_tokenizer.py")):
            return pkg
    sys.exit("openai-clip is not installed: pip install --no-deps openai-clip==1.0.1")


def load_simple_tokenizer():
    pkg = clip_package()
    path = os.path.join(pkg, "simple_tokenizer.py")
    vocab = os.path.join(pkg, "bpe_simple_vocab_16e6.txt.gz")
    assert sha256(path) == SIMPLE_TOKENIZER_SHA256, "unexpected simple_tokenizer.py"
    assert sha256(vocab) == VOCAB_GZ_SHA256, "unexpected bpe_simple_vocab_16e6.txt.gz"
    ftfy_stub = types.ModuleType("ftfy")
    ftfy_stub.fix_text = lambda text: text                  # ftfy as the identity (see header)
    saved = sys.modules.get("ftfy")
    sys.modules["ftfy"] = ftfy_stub
    mod_spec = importlib.util.spec_from_file_location("simple_tokenizer", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    if saved is not None:
        sys.modules["ftfy"] = saved
    else:
        del sys.modules["ftfy"]
    lines = gzip.open(vocab).read().split(b"\n")
    with open(MERGES, "rb") as f:
        assert f.read() == b"\n".join(lines[:48895]) + b"\n", "clip_merges.txt is not the vocab's first 48,895 lines"
    assert sha256(MERGES) == MERGES_SHA256
    return mod.SimpleTokenizer(bpe_path=vocab)


def clip_ids(tok, text):
    """clip.tokenize(text, context_length=77, truncate=True)[0] without torch."""
    raw = tok.encode(text)
    ids = [tok.encoder["<|startoftext|>"]] + raw + [tok.encoder["<|endoftext|>"]]
    if len(ids) > 77:
        ids = ids[:77]
        ids[-1] = tok.encoder["<|endoftext|>"]
    return ids + [0] * (77 - len(ids)), raw


def escape(s):
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == "\t":
            out.append("\\t")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\x%02x" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def unescape(s):
    out, i = [], 0
    while i < len(s):
        if s[i] != "\\":
            out.append(s[i])
            i += 1
            continue
        e = s[i + 1]
        if e == "x":
            out.append(chr(int(s[i + 2:i + 4], 16)))
            i += 4
            continue
        out.append({"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}[e])
        i += 2
    return "".join(out)


def verify(tok, sp, path):
    """Recompute every case of a case file with this interpreter's tools; returns (agree, differ)."""
    agree, differ = 0, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip("\n"):
                continue
            kind, text, ids = line.rstrip("\n").split("\t")
            text = unescape(text)
            got = clip_ids(tok, text)[0] if kind == "clip" else sp.encode(text) + [1]
            if got == [int(x) for x in ids.split()]:
                agree += 1
            else:
                differ += 1
                print("differs: %s %r" % (kind, text))
    print("%s: %d agree, %d differ (Python %s, regex %s, sentencepiece %s)" % (os.path.relpath(path, ROOT), agree, differ,
          sys.version.split()[0], regex.__version__, sentencepiece.__version__))
    return agree, differ


def verify_with_debian_stack():
    """The shipped cases' own stack, when this machine has it: Debian's Python with its regex and
    sentencepiece packages."""
    py = "/usr/bin/python3"
    probe = "import sentencepiece, regex; assert sentencepiece.__version__ == '0.1.97'"
    if not os.path.exists(py) or subprocess.run([py, "-c", probe], capture_output=True).returncode:
        print("Debian python3-sentencepiece 0.1.97 not installed: skipped the check with it")
        return
    subprocess.run([py, os.path.abspath(__file__), "--verify", SHIPPED, OUT], check=True)


def texts():
    t = []
    # Non-Latin scripts.
    t += ["مرحبا كيف حالك اليوم", "שלום עולם, מה שלומך", "नमस्ते दुनिया, आप कैसे हैं", "สวัสดีชาวโลก", "வணக்கம் உலகம்",
          "გამარჯობა მსოფლიო", "Բարեւ աշխարհ", "ሰላም ልዑል", "សួស្តី​ពិភពលោក", "བཀྲ་ཤིས་བདེ་ལེགས།", "ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ",
          "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ", "汉字和漢字混合", "カタカナとひらがなと漢字", "ㅎㅏㄴㄱㅡㄹ 자모", "Ўзбек тілі і Україна",
          "ΟΔΟΣ ΣΑΣ Σ aΣ Σ. ΑΣ΄Α", "ὈΔΥΣΣΕΎΣ", "İstanbul İİ DİYARBAKIR ı", "Ǆemal ǅemal ǆemal", "ΜΆΪΟΣ ΣΊΣΥΦΟΣ"]
    # Emoji, ZWJ sequences, flags, keycaps, variation selectors, skin tones.
    t += ["👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇫🇷🇩🇪🇯🇵", "1️⃣ 2️⃣ #️⃣", "👍🏽 thumbs 👍🏿", "❤️ vs ❤",
          "🐶🐱🐭🐹🐰", "a😀b😀😀c", "👩‍💻 coding at night 🌙✨", "🧑🏾‍🚀 astronaut", "☕️ coffee ☕"]
    # Combining marks, normalisation forms.
    t += ["e\u0301 vs \u00e9", "Zalgo: Z\u0351\u036b\u0343a\u0367l\u0342g\u0310o\u0306", "\u1100\u1161\u11a8 decomposed hangul",
          "a\u0308o\u0308u\u0308", "\u03b1\u0345 \u1fb3 \u1fbc \u0345alone", "n\u0303o\u0303", "i\u0307\u0301"]
    # Full-width and half-width forms, ligatures, compatibility characters.
    t += ["ＡＢＣ　ＤＥＦ　１２３！", "ｈｅｌｌｏ　ｗｏｒｌｄ", "ｱｲｳｴｵ ﾊﾝｶｸ", "ﬁne ﬂower ﬀ ﬃ ﬄ ﬅ ﬆ", "Œuvre Ĳssel æther",
          "㎏ ㎞ ℃ ℉ № ™ ℠", "ℌ𝔢𝔩𝔩𝔬 𝐁𝐨𝐥𝐝 𝟏𝟐𝟑", "ﷺ ﷽", "x² y³ H₂O", "Ⅻ ⅻ Ⅳ"]
    # Digits.
    t += ["٠١٢٣٤٥٦٧٨٩ arabic-indic", "०१२३४५६७८९", "½ ¼ ¾ ⅓ ⅞", "①②③ ⑴ ⒈", "3.14159265358979323846",
          "1,000,000 and 1.000.000", "0x1F 0b1010 1e-9", "２０２３年１２月", "๑๒๓ thai digits", "𝟘𝟙𝟚"]
    # HTML entities (html.unescape twice).
    t += ["&amp; &lt;tag&gt; &quot;q&quot; &#39;s &#x27;t", "&amp;lt; double &amp;amp;", "&nbsp;nbsp&nbsp;", "&copy 2024 &reg",
          "&#8364; &#128; &#150; &#x80; &#159;", "&#0; &#13; &#1; &#11; &#x110000; &#xD800;", "&ampx &notit; &notin; &ampamp",
          "&#65&#66 &#x41&#X42;", "&# &#x; &; & alone &&", "&" + "a" * 40 + ";", "&NotNestedGreaterGreater; &nGt; &acE;",
          "&lt;|endoftext|&gt; entity special", "&AMP; &AMP &Amp;", "&#0000000065; &#99999999999999999999;",
          "&frac12;&frac34 &sup2", "&#x1F600; &#128512;", "&lt;&lt;&gt;&gt;", "a&b c&d;e"]
    # Odd whitespace.
    t += ["tab\there\tand\nnewline\r\nwindows", "vt\x0bff\x0cfs\x1cgs\x1drs\x1eus\x1fend", "\x1c\x1dleading seps\x1e",
          "nel\x85nbsp\u00a0ogham\u1680end", "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200aspaces",
          "line\u2028para\u2029narrow\u202fmath\u205fideo\u3000end", "zero\u200bwidth\u200cjoiner\u200dbom\ufeffend",
          "mongolian\u180evowel", "  \t\n  padded  \t\n  ", "a\u3000\u3000b"]
    # Very long words.
    t += ["a" * 300, "supercalifragilisticexpialidocious" * 12, "x" + "yz" * 150, "抽象的な長い単語" * 40,
          "1234567890" * 30, "!?" * 150, "😀" * 100, "pneumonoultramicroscopicsilicovolcanoconiosis",
          "".join(chr(0x61 + (i * 7) % 26) for i in range(500))]
    # Contractions and quotes.
    t += ["I'LL BE THERE, Y'ALL", "don't won't can't shan't", "'s 't 're 've 'm 'll 'd", "''s '''", "o'clock ma'am",
          "they'd've", "don’t curly ’s", "'ſ and 'Ś", "it's 'S'", "rock'n'roll'll"]
    # Special tokens and their look-alikes.
    t += ["<|startoftext|>", "<|ENDOFTEXT|> upper", "a<|endoftext|>b", "!<|endoftext|>", "<|endoftext|><|endoftext|>",
          "<|endoftext", "<|ſtartoftext|>", "</s> <pad> <unk> literal", "<|startoftext|>hello<|endoftext|>"]
    # Control characters, replacement character, sentencepiece's meta symbol.
    t += ["\x00", "a\x00b", "\x7f\x01\x02", "\x1b[31mred\x1b[0m", "\ufffd replacement", "▁ meta ▁▁ symbol", "a▁b"]
    # Empty and near-empty input.
    t += ["", "   ", "\t\n", "&nbsp;", "\u200b", "\u0345", ".", "'"]
    # Boundaries of CLIP's 77-token window.
    t += [" ".join(["cat"] * k) for k in (74, 75, 76, 77, 80)]
    t += ["a photo of " + "very " * 90 + "big dog"]
    # Seeded random mixtures of all of the above.
    pool = ("abcxyzABC çéßñ ΣσςΑ İı ſ 日本語 한국 ab12 ٣४ ½² ①Ⅻ ﬁ ＡＢ １ 😀👍🏽‍ \u0301\u0345 & ; # &amp &lt; &#39; "
            "' 's 'll <|endoftext|> \t\n\x0b\x1c\u00a0\u2028\u3000 ▁ . , ! ? - \x00")
    rng = random.Random(20240601)
    for _ in range(40):
        t.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 60))))
    return t


def random_texts(n, seed):
    """Differential testing: random mixtures of assigned code points, entity fragments, contractions,
    special tokens, odd whitespace and digits (not committed; check the C with --cases)."""
    rng = random.Random(seed)
    assigned = [cp for cp in range(0x110000) if unicodedata.category(chr(cp)) not in ("Cn", "Cs")]
    frag = ["&amp;", "&lt", "&#", "&#x", ";", "&", "#", "'", "'s", "'ll", "<|endoftext|>", "<|startoftext|>", " ", "  ",
            "\t", "\n", "\u03a3", "\u03c2", "\u0130", "\u017f", "\u0345", "\u0301", "\x1c", "\u3000", "\u2581",
            "&nbsp;", "&#128;", "&#x1F600;", "&notin", "0", "9", "abc", "DEF"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 40)):
            r = rng.random()
            if r < 0.3:
                parts.append(chr(rng.choice(assigned)))
            elif r < 0.55:
                parts.append(rng.choice(frag))
            elif r < 0.8:
                parts.append(chr(rng.randint(0x20, 0x7E)))
            elif r < 0.9:
                parts.append(chr(rng.randint(0x80, 0x2FFF)))
            else:
                parts.append(str(rng.randint(0, 99999)))
        out.append("".join(c for c in "".join(parts) if unicodedata.category(c) not in ("Cn", "Cs")))
    return out


def case_lines(tok, sp, cases):
    lines = []
    for text in cases:
        ids, raw = clip_ids(tok, text)
        lines.append("clip\t%s\t%s" % (escape(text), " ".join(map(str, ids))))
        lines.append("#clip_raw\t%s" % " ".join(map(str, raw)))
        lines.append("t5\t%s\t%s" % (escape(text), " ".join(map(str, sp.encode(text) + [1]))))
        lines.append("#t5_pieces\t%s" % " ".join(escape(p) for p in sp.encode_as_pieces(text)))
    return lines


TINY_MODEL = os.path.join(ROOT, "test", "ref", "tokenizer_tiny_spiece.model")
TINY_CASES = os.path.join(ROOT, "test", "ref", "tokenizer_tiny_cases.tsv")


def tiny_model():
    """A second sentencepiece model, trained here: 45 pieces and a charsmap compiled from a few rules
    of our own, so the C is checked on a model and a normalizer it was not written against."""
    import tempfile
    rng = random.Random(1)
    words = "the quick brown fox jumps over a lazy dog photo of corgi sunglasses castle cliff sea".split()
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "train.txt"), "w") as f:
            for _ in range(2000):
                f.write(" ".join(rng.choice(words) for _ in range(8)) + "\n")
        with open(os.path.join(d, "rules.tsv"), "w") as f:   # source code points TAB target code points
            f.write("FF41\t61\nFF21\t61\nFB01\t66 69\nBD\t31 2F 32\n2581\t20\n3000\t20\n9\t20\n1\t\n")
        sentencepiece.SentencePieceTrainer.train(
            input=os.path.join(d, "train.txt"), model_prefix=os.path.join(d, "tiny"), vocab_size=45, model_type="unigram",
            normalization_rule_tsv=os.path.join(d, "rules.tsv"), unk_id=2, eos_id=1, pad_id=0, bos_id=-1, minloglevel=2,
            num_threads=1)
        with open(os.path.join(d, "tiny.model"), "rb") as f:
            model = f.read()
    with open(TINY_MODEL, "wb") as f:
        f.write(model)
    sp = sentencepiece.SentencePieceProcessor(model_file=TINY_MODEL)
    texts_ = ["the quick brown fox", "the \uff51uick \ufb01sh", "\uff41\u00bd\tb", "zzz photo", "  x\x01y  ", "\uff21\uff42 the",
              "", " ", "\u2581the\u3000sea", "corgi\t\tcliff", "\U0001f600\U0001f600 dog", "\ufb01\ufb01\ufb01", "1\x01\x01 2",
              "photophotophoto", "a b c d e f g", "\u00bd\u00bd", "\ufffd", "sunglasses castle"]
    with open(TINY_CASES, "w", encoding="utf-8", newline="\n") as f:
        f.write("# T5-kind cases for test/ref/tokenizer_tiny_spiece.model (a 45-piece unigram model with its own charsmap,\n"
                "# trained by test/gen_tokenizer_cases.py), ids from sentencepiece %s; format of test/tokenizer_cases.tsv.\n"
                % sentencepiece.__version__)
        for t in texts_:
            f.write("t5\t%s\t%s\n" % (escape(t), " ".join(map(str, sp.encode(t) + [1]))))
    print("wrote %s (%d bytes) and %s" % (os.path.relpath(TINY_MODEL, ROOT), len(model), os.path.relpath(TINY_CASES, ROOT)))


def main():
    tok = load_simple_tokenizer()
    sp = sentencepiece.SentencePieceProcessor(model_file=SPIECE)
    if sys.argv[1:2] == ["--verify"]:
        sys.exit(1 if any(verify(tok, sp, path)[1] for path in sys.argv[2:]) else 0)
    if sys.argv[1:2] == ["--random"]:
        n, seed, path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(case_lines(tok, sp, random_texts(n, seed))) + "\n")
        print("wrote %s: %d random texts" % (path, n))
        return
    assert verify(tok, sp, SHIPPED)[1] == 0, "these tools do not reproduce the shipped cases"
    cases = texts()
    assert len(set(cases)) == len(cases), "duplicate texts"
    for text in cases:
        for c in text:
            assert unicodedata.category(c) != "Cn", "U+%04X is unassigned in Unicode %s" % (ord(c), unicodedata.unidata_version)
    lines = case_lines(tok, sp, cases)
    header = [
        "# Set: EXTRA (%d texts, %d case lines), written by test/gen_tokenizer_cases.py" % (len(cases), 2 * len(cases)),
    ]
    with open(SHIPPED, encoding="utf-8") as f:
        shipped_header = [l.rstrip("\n") for l in f if l.startswith("#")]
    # The format description of the shipped file (everything up to its own "# Sources:" lines).
    fmt = []
    for l in shipped_header[1:]:
        if l.startswith("# Sources:"):
            break
        fmt.append(l)
    header += fmt
    header += [
        "# Sources: CLIP = PyPI openai-clip 1.0.1, whose clip/simple_tokenizer.py is byte-identical to openai/CLIP commit "
        "d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 (MIT), with its vocab bpe_simple_vocab_16e6.txt.gz sha256 %s;" % VOCAB_GZ_SHA256,
        "#   run with ftfy replaced by a stub whose fix_text returns its input unchanged (real ftfy changes some cases, e.g. full-width, ligatures, curly quotes);",
        "#   regex %s, Python %s str.lower (unicodedata %s), html.unescape applied twice as in simple_tokenizer; every character is assigned in Unicode %s."
        % (regex.__version__, sys.version.split()[0], unicodedata.unidata_version, unicodedata.unidata_version),
        "#   T5 = sentencepiece %s (PyPI; reproduces every T5 case of test/tokenizer_cases.tsv, made with 0.1.97), real T5 model spiece.model sha256 %s."
        % (sentencepiece.__version__, sha256(SPIECE)),
    ]
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(header + lines) + "\n")
    print("wrote %s: %d texts, %d case lines" % (os.path.relpath(OUT, ROOT), len(cases), 2 * len(cases)))
    tiny_model()
    verify_with_debian_stack()


if __name__ == "__main__":
    main()
