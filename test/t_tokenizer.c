/* test/t_tokenizer.c — the CLIP and T5 tokenizers against ids made by the original tools
 * (test/tokenizer_cases.tsv: shipped, OpenAI CLIP + sentencepiece 0.1.97; test/tokenizer_cases_extra.tsv:
 * test/gen_tokenizer_cases.py, OpenAI CLIP + sentencepiece 0.2.3), plus ill-formed UTF-8, a 10 MB
 * prompt, empty input, the model blob as data source, corrupted model files and the CLI. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Processor time, not wall time: the limit must hold on a machine shared with other jobs. */
static double seconds(void)
{
    return (double)clock() / CLOCKS_PER_SEC;
}

static void case_file(TestRun *T, const ClipTokenizer *clip, const T5Tokenizer *t5, const char *name,
                      const char *path, int expect)
{
    char err[EDIFF_ERR];
    int passed = 0, failed = 0;
    if (!selected(T, name)) return;
    if (tokenizer_check_cases(clip, t5, path, stdout, &passed, &failed, err)) {
        report(T, 0, name, "%s", err);
        return;
    }
    report(T, failed == 0 && passed >= expect, name, "%s: %d passed, %d failed (at least %d cases expected)",
           path, passed, failed, expect);
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

/* Ill-formed UTF-8 is replaced as Python's bytes.decode("utf-8", "replace") does (the expected
 * strings were printed by Python 3.11): one U+FFFD per maximal ill-formed subpart. */
static void invalid_utf8(TestRun *T, const ClipTokenizer *clip, const T5Tokenizer *t5)
{
    static const char *const pair[][2] = {
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xe2\x82", "\xef\xbf\xbd"},
        {"\xe2\x82x", "\xef\xbf\xbdx"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\x80\x80 x", "\xef\xbf\xbd\xef\xbf\xbd x"},
        {"\xf0\x9f\x98\x80\xff", "\xf0\x9f\x98\x80\xef\xbf\xbd"},
    };
    char err[EDIFF_ERR];
    size_t i;
    int ok = 1;
    if (!selected(T, "tokenizer.invalid_utf8")) return;
    for (i = 0; i < sizeof pair / sizeof pair[0]; i++) {
        int32_t a[CLIP_CONTEXT], b[CLIP_CONTEXT];
        Tokens x = {0}, y = {0};
        ok &= !clip_tokenize(clip, pair[i][0], strlen(pair[i][0]), a, err) &&
              !clip_tokenize(clip, pair[i][1], strlen(pair[i][1]), b, err) && same_ids(a, CLIP_CONTEXT, b, CLIP_CONTEXT);
        ok &= !t5_tokenize(t5, pair[i][0], strlen(pair[i][0]), 0, &x, err) &&
              !t5_tokenize(t5, pair[i][1], strlen(pair[i][1]), 0, &y, err) && same_ids(x.id, x.n, y.id, y.n);
        if (i == 1) ok &= a[1] == 39802 && a[2] == clip->eot && y.n == 1;  /* U+FFFD alone: its CLIP id; T5 maps it to a space */
        tokens_free(&x);
        tokens_free(&y);
    }
    report(T, ok, "tokenizer.invalid_utf8", "%d ill-formed byte strings tokenize as their U+FFFD replacements",
           (int)(sizeof pair / sizeof pair[0]));
}

/* A 10 MB prompt: truncated to the same ids as a short prefix of it, in well under a second of CPU. */
static void long_prompt(TestRun *T, const ClipTokenizer *clip, const T5Tokenizer *t5)
{
    static const char unit[] = "a breathtaking view of an ancient castle on a cliff above a stormy sea, ";
    size_t n = (size_t)10 << 20, u = sizeof unit - 1, prefix = 40 * u, i;
    char *s, err[EDIFF_ERR];
    int32_t a[CLIP_CONTEXT], b[CLIP_CONTEXT];
    Tokens x = {0}, y = {0};
    double t0, t1, t2;
    int ok;
    if (!selected(T, "tokenizer.10mb_prompt")) return;
    s = xmalloc(n);
    for (i = 0; i < n; i++) s[i] = unit[i % u];
    t0 = seconds();
    ok = !clip_tokenize(clip, s, n, a, err);
    t1 = seconds();
    ok &= !t5_tokenize(t5, s, n, 77, &x, err);
    t2 = seconds();
    ok &= !clip_tokenize(clip, s, prefix, b, err) && !t5_tokenize(t5, s, prefix, 77, &y, err);
    ok &= same_ids(a, CLIP_CONTEXT, b, CLIP_CONTEXT) && a[CLIP_CONTEXT - 1] == clip->eot && same_ids(x.id, x.n, y.id, y.n) &&
          x.n == 77 && x.id[76] == t5->eos_id;
    ok &= t1 - t0 < 1.0 && t2 - t1 < 1.0;
    report(T, ok, "tokenizer.10mb_prompt", "clip %.3f s, t5 (max 77) %.3f s CPU (limit 1 s each); ids = those of its first %zu bytes",
           t1 - t0, t2 - t1, prefix);
    tokens_free(&x);
    tokens_free(&y);
    free(s);
}

static void empty_input(TestRun *T, const ClipTokenizer *clip, const T5Tokenizer *t5)
{
    char err[EDIFF_ERR];
    int32_t a[CLIP_CONTEXT];
    Tokens x = {0}, y = {0};
    int ok, i;
    if (!selected(T, "tokenizer.empty")) return;
    ok = !clip_tokenize(clip, "", 0, a, err) && a[0] == 49406 && a[1] == 49407;
    for (i = 2; i < CLIP_CONTEXT; i++) ok &= a[i] == 0;
    ok &= !t5_tokenize(t5, "", 0, 0, &x, err) && x.n == 1 && x.id[0] == 1;
    ok &= !t5_tokenizer_encode(t5, " \t ", 3, -1, &y, err) && y.n == 0 && !clip_tokenizer_encode(clip, " \t ", 3, -1, &y, err) && y.n == 0;
    report(T, ok, "tokenizer.empty", "clip [49406 49407 0...], t5 [1]; whitespace only: no ids");
    tokens_free(&x);
    tokens_free(&y);
}

/* Paint-with-words: a phrase encoded alone is found at its place in the prompt's ids. */
static void phrase_positions(TestRun *T, const ClipTokenizer *clip, const T5Tokenizer *t5)
{
    static const char prompt[] = "a red apple on a wooden table", phrase[] = "wooden table";
    char err[EDIFF_ERR];
    Tokens p = {0}, q = {0}, r = {0}, s = {0};
    int ok, ic, it;
    if (!selected(T, "tokenizer.phrase_positions")) return;
    ok = !clip_tokenizer_encode(clip, prompt, strlen(prompt), -1, &p, err) && !clip_tokenizer_encode(clip, phrase, strlen(phrase), -1, &q, err) &&
         !t5_tokenizer_encode(t5, prompt, strlen(prompt), -1, &r, err) && !t5_tokenizer_encode(t5, phrase, strlen(phrase), -1, &s, err);
    ic = token_find(p.id, p.n, q.id, q.n, 0);
    it = token_find(r.id, r.n, s.id, s.n, 0);
    ok &= ic == 5 && q.n == 2 && it == r.n - s.n && it > 0 && token_find(p.id, p.n, q.id, q.n, ic + 1) == -1;
    report(T, ok, "tokenizer.phrase_positions", "\"%s\" in \"%s\": clip ids %d..%d, t5 ids %d..%d", phrase, prompt,
           ic, ic + q.n - 1, it, it + s.n - 1);
    tokens_free(&p);
    tokens_free(&q);
    tokens_free(&r);
    tokens_free(&s);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long len;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = xmalloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static void put64(unsigned char *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A blob (docs/blob.md) holding the two tokenizer files as u8 tensors, built here byte by byte. */
static unsigned char *tokenizer_blob(const unsigned char *merges, size_t nm, const unsigned char *spiece, size_t ns,
                                     const char *t5_name, size_t *size)
{
    const char *name[2];
    const unsigned char *data[2];
    size_t len[2], rec[2], off[2], table = 64, meta, end, k;
    unsigned char *b;
    uint32_t crc;
    name[0] = "tokenizer.clip_merges", name[1] = t5_name;
    data[0] = merges, data[1] = spiece, len[0] = nm, len[1] = ns;
    for (k = 0, end = table; k < 2; k++) rec[k] = (4 + 8 + 8 + 8 + strlen(name[k]) + 1 + 7) / 8 * 8, end += rec[k];
    meta = end;
    end = (meta + 6 + 63) / 64 * 64;                   /* metadata "k=tok\n", then aligned data */
    for (k = 0; k < 2; k++) off[k] = end, end = (end + len[k] + 63) / 64 * 64;
    b = xcalloc(end, 1);
    memcpy(b, "EDIFFBLB", 8);
    b[8] = 1;
    b[12] = 2;
    put64(b + 16, meta);
    put64(b + 24, 6);
    put64(b + 32, table);
    put64(b + 40, meta - table);
    put64(b + 48, end);
    memcpy(b + meta, "k=tok\n", 6);
    for (k = 0, table = 64; k < 2; table += rec[k], k++) {
        unsigned char *r = b + table;
        r[0] = (unsigned char)strlen(name[k]);
        r[2] = DT_U8;
        r[3] = 1;
        put64(r + 4, len[k]);
        put64(r + 12, off[k]);
        put64(r + 20, len[k]);
        memcpy(r + 28, name[k], strlen(name[k]));
        memcpy(b + off[k], data[k], len[k]);
    }
    crc = crc32_update(0, b, end);
    for (k = 0; k < 4; k++) b[56 + k] = (unsigned char)(crc >> (8 * k));
    *size = end;
    return b;
}

/* The tokenizers read from a model blob give the same ids; a blob without them is one clear error. */
static void from_blob(TestRun *T, const ClipTokenizer *clip_files, const T5Tokenizer *t5_files)
{
    static const char text[] = "An astronaut riding a horse on the moon, 4k";
    size_t nm = 0, ns = 0, size = 0;
    unsigned char *m = slurp("weights/vocab/clip_merges.txt", &nm), *s = slurp("weights/vocab/t5_spiece.model", &ns), *b;
    char err[EDIFF_ERR];
    ClipTokenizer clip;
    T5Tokenizer t5;
    Blob blob;
    int32_t a[CLIP_CONTEXT], c[CLIP_CONTEXT];
    Tokens x = {0}, y = {0};
    int ok;
    if (!selected(T, "tokenizer.from_blob")) {
        free(m);
        free(s);
        return;
    }
    if (!m || !s) {
        report(T, 0, "tokenizer.from_blob", "cannot read weights/vocab/");
        free(m);
        free(s);
        return;
    }
    b = tokenizer_blob(m, nm, s, ns, "tokenizer.t5_spiece", &size);
    ok = !blob_open_memory(&blob, b, size, "tok.bin", err) && !tokenizers_open(&clip, &t5, &blob, err);
    if (ok) {
        ok = !clip_tokenize(&clip, text, strlen(text), a, err) && !clip_tokenize(clip_files, text, strlen(text), c, err) &&
             same_ids(a, CLIP_CONTEXT, c, CLIP_CONTEXT) && !t5_tokenize(&t5, text, strlen(text), 0, &x, err) &&
             !t5_tokenize(t5_files, text, strlen(text), 0, &y, err) && same_ids(x.id, x.n, y.id, y.n);
        clip_tokenizer_free(&clip);
        t5_tokenizer_free(&t5);
        blob_close(&blob);
    }
    /* A blob without tokenizer.t5_spiece: one error line naming what is missing. */
    free(b);
    b = tokenizer_blob(m, nm, s, ns, "tokenizer.other", &size);
    ok &= !blob_open_memory(&blob, b, size, "tok.bin", err) && tokenizers_open(&clip, &t5, &blob, err) == -1 &&
          strstr(err, "tokenizer.t5_spiece") && !strchr(err, '\n');
    blob_close(&blob);
    report(T, ok, "tokenizer.from_blob", "u8 tensors tokenizer.clip_merges + tokenizer.t5_spiece give the file ids; missing: \"%s\"", err);
    tokens_free(&x);
    tokens_free(&y);
    free(b);
    free(m);
    free(s);
}

/* Corrupted model files: truncations and byte flips are an error or a working tokenizer, never a crash
 * (this suite runs under ASan/UBSan in `make sanitize`); a tokenizer that loads still encodes. */
static void corrupt_models(TestRun *T)
{
    size_t nm = 0, ns = 0, len, i;
    unsigned char *m = slurp("weights/vocab/clip_merges.txt", &nm), *s = slurp("weights/vocab/t5_spiece.model", &ns), *buf;
    char err[EDIFF_ERR];
    unsigned seed = 777;
    int tries = 0, errors = 0, loaded = 0, clean = 1;
    if (!selected(T, "tokenizer.corrupt_models") || !m || !s) {
        if (m && s) {} else if (selected(T, "tokenizer.corrupt_models")) report(T, 0, "tokenizer.corrupt_models", "cannot read weights/vocab/");
        free(m);
        free(s);
        return;
    }
    buf = xmalloc(ns > nm ? ns : nm);
    for (i = 0; i < 60; i++) {                     /* T5: truncations, then random flips of 1..8 bytes */
        T5Tokenizer t5;
        Tokens x = {0};
        int k;
        len = i < 20 ? ns * i / 20 : ns;
        memcpy(buf, s, len);
        for (k = 0; i >= 20 && k < 1 + (int)(i % 8); k++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % ns] ^= (unsigned char)(1 + (seed >> 3) % 255);
        }
        tries++;
        if (t5_tokenizer_init(&t5, buf, len, err)) {
            errors++;
            clean &= err[0] && !strchr(err, '\n');
            continue;
        }
        loaded++;
        t5_tokenizer_encode(&t5, "Hello wörld, ½ ｆｕｌｌ 😀", 30, -1, &x, err);
        tokens_free(&x);
        t5_tokenizer_free(&t5);
    }
    for (i = 0; i < 12; i++) {                     /* CLIP: truncations and flips */
        ClipTokenizer clip;
        int32_t ids[CLIP_CONTEXT];
        len = i < 6 ? nm * i / 6 : nm;
        memcpy(buf, m, len);
        if (i >= 6) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % nm] ^= (unsigned char)(1 + (seed >> 3) % 255);
        }
        tries++;
        if (clip_tokenizer_init(&clip, buf, len, err)) {
            errors++;
            clean &= err[0] && !strchr(err, '\n');
            continue;
        }
        loaded++;
        clip_tokenize(&clip, "hello world &amp; more", 22, ids, err);
        clip_tokenizer_free(&clip);
    }
    report(T, clean && errors >= 20, "tokenizer.corrupt_models", "%d corrupted files: %d one-line errors, %d loaded and encoded",
           tries, errors, loaded);
    free(buf);
    free(m);
    free(s);
}

/* A second, tiny model trained by test/gen_tokenizer_cases.py (its own vocabulary and charsmap rules). */
static void tiny_model(TestRun *T)
{
    size_t n = 0;
    unsigned char *m = slurp("test/ref/tokenizer_tiny_spiece.model", &n);
    T5Tokenizer t5;
    char err[EDIFF_ERR];
    if (!selected(T, "tokenizer.t5_tiny_model")) {
        free(m);
        return;
    }
    if (!m || t5_tokenizer_init(&t5, m, n, err)) {
        report(T, 0, "tokenizer.t5_tiny_model", "%s", m ? err : "cannot read test/ref/tokenizer_tiny_spiece.model");
        free(m);
        return;
    }
    case_file(T, NULL, &t5, "tokenizer.t5_tiny_model", "test/ref/tokenizer_tiny_cases.tsv", 18);
    t5_tokenizer_free(&t5);
    free(m);
}

static void cli(TestRun *T)
{
    char cmd[512], out[4096];
    int rc, bad_rc, ok;
    FILE *f;
    if (!selected(T, "tokenizer.cli")) return;
    snprintf(cmd, sizeof cmd, "%s tokenize --cases test/tokenizer_cases.tsv", T->ediff);
    rc = run_cmd(cmd, out, sizeof out);
    ok = rc == 0 && strcmp(out, "100 passed, 0 failed\n") == 0;
    out[strcspn(out, "\n")] = 0;
    report(T, ok, "tokenizer.cli", "ediff tokenize --cases test/tokenizer_cases.tsv: exit %d, \"%.40s\"", rc, out);
    /* A case with a wrong id must fail, naming the text and both id lists. */
    if ((f = fopen("test/out/bad_cases.tsv", "w"))) {
        fputs("# one good, one bad\nt5\thello\t21820 1\nt5\thello\t21820 2\n", f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd, "%s tokenize --cases test/out/bad_cases.tsv", T->ediff);
    bad_rc = run_cmd(cmd, out, sizeof out);
    report(T, bad_rc == 1 && strstr(out, "FAIL") && strstr(out, "hello") && strstr(out, "want: 21820 2") &&
               strstr(out, "got:  21820 1") && strstr(out, "1 passed, 1 failed"),
           "tokenizer.cli_failure", "a wrong case: exit %d, failure printed with both id lists", bad_rc);
    snprintf(cmd, sizeof cmd, "%s tokenize clip 'a photo of a corgi wearing sunglasses' && %s tokenize t5 'a photo of a corgi wearing sunglasses'",
             T->ediff, T->ediff);
    rc = run_cmd(cmd, out, sizeof out);
    report(T, rc == 0 && strncmp(out, "49406 320 1125 539 320 31320 3309 12906 49407 0 0 ", 50) == 0 &&
               strstr(out, "\n3 9 1202 13 3 9 4301 122 23 5119 22950 1\n"),
           "tokenizer.cli_ids", "ediff tokenize clip|t5 TEXT print the ids on one line");
}

void suite_tokenizer(TestRun *T)
{
    ClipTokenizer clip;
    T5Tokenizer t5;
    char err[EDIFF_ERR];
    if (T->filter && !strstr(T->filter, "tokenizer") && !selected(T, "tokenizer")) return;
    if (tokenizers_open(&clip, &t5, NULL, err)) {
        report(T, 0, "tokenizer.open", "%s", err);
        return;
    }
    case_file(T, &clip, &t5, "tokenizer.cases_shipped", "test/tokenizer_cases.tsv", 100);
    case_file(T, &clip, &t5, "tokenizer.cases_extra", "test/tokenizer_cases_extra.tsv", 300);
    invalid_utf8(T, &clip, &t5);
    empty_input(T, &clip, &t5);
    phrase_positions(T, &clip, &t5);
    long_prompt(T, &clip, &t5);
    from_blob(T, &clip, &t5);
    corrupt_models(T);
    tiny_model(T);
    cli(T);
    clip_tokenizer_free(&clip);
    t5_tokenizer_free(&t5);
}
