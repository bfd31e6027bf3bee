/* tokenizer.c — the CLIP and T5 text tokenizers, bit-exact with the original tools
 * (docs/tokenizers.md; /work/shared/docs/encoders.md sections 4 and 5):
 *   CLIP: OpenAI CLIP clip/simple_tokenizer.py + clip.tokenize(truncate=True), ftfy as the identity;
 *   T5:   sentencepiece unigram EncodeAsIds (normalizer.cc, unigram_model.cc EncodeOptimized) + </s>.
 * Both start by making the bytes valid UTF-8 the way Python's bytes.decode("utf-8", "replace") does.
 * Everything runs in time linear in the prompt and stops once the ids asked for exist. */
#include "ediff.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT (1u << 30)    /* prompts up to 1 GiB: offsets in the cleaned text (under 2x longer) fit int32 */

/* ------------------------------------------------------------------ ids, maps ------------------- */

void tokens_free(Tokens *t)
{
    free(t->id);
    t->id = NULL;
    t->n = t->cap = 0;
}

static void tokens_push(Tokens *t, int32_t id)
{
    if (t->n == t->cap) {
        int32_t *p;
        if (t->cap >= (1 << 30)) {
            fprintf(stderr, "ediff: too many token ids\n");
            exit(1);
        }
        t->cap = t->cap ? 2 * t->cap : 64;
        p = realloc(t->id, (size_t)t->cap * sizeof *p);
        if (!p) {
            fprintf(stderr, "ediff: out of memory\n");
            exit(1);
        }
        t->id = p;
    }
    t->id[t->n++] = id;
}

int token_find(const int32_t *seq, int n, const int32_t *sub, int m, int from)
{
    int i;
    if (m <= 0 || from < 0) return -1;
    for (i = from; i + m <= n; i++)
        if (memcmp(seq + i, sub, (size_t)m * sizeof *sub) == 0) return i;
    return -1;
}

static void idmap_init(IdMap *m, size_t entries)
{
    size_t i;
    m->cap = 16;
    while (m->cap < 2 * entries) m->cap *= 2;
    m->key = xmalloc(m->cap * sizeof *m->key);
    m->val = xmalloc(m->cap * sizeof *m->val);
    for (i = 0; i < m->cap; i++) m->val[i] = -1;
}

static void idmap_free(IdMap *m)
{
    free(m->key);
    free(m->val);
    m->key = NULL;
    m->val = NULL;
    m->cap = 0;
}

static size_t idmap_slot(const IdMap *m, uint64_t key)
{
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->cap - 1);
    while (m->val[i] >= 0 && m->key[i] != key) i = (i + 1) & (m->cap - 1);
    return i;
}

static int32_t idmap_get(const IdMap *m, uint64_t key)
{
    return m->cap ? m->val[idmap_slot(m, key)] : -1;
}

/* Insert key -> val unless present; returns the value now stored. The map was sized for all keys. */
static int32_t idmap_add(IdMap *m, uint64_t key, int32_t val)
{
    size_t i = idmap_slot(m, key);
    if (m->val[i] < 0) {
        m->key[i] = key;
        m->val[i] = val;
    }
    return m->val[i];
}

/* A byte trie over an IdMap of edges (node << 8 | byte) -> child; node 0 is the root. */
typedef struct {
    IdMap    edge;
    int32_t *value;      /* per node: the id of the string ending there, or -1 */
    int32_t  n_nodes;
} Trie;

static void trie_init(Trie *t, size_t max_bytes)
{
    idmap_init(&t->edge, max_bytes);
    t->value = xmalloc((max_bytes + 1) * sizeof *t->value);
    t->value[0] = -1;
    t->n_nodes = 1;
}

/* Add s -> id; returns the id already stored for s, or id. */
static int32_t trie_add(Trie *t, const uint8_t *s, size_t n, int32_t id)
{
    int32_t node = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        int32_t child = idmap_add(&t->edge, (uint64_t)node << 8 | s[i], t->n_nodes);
        if (child == t->n_nodes) t->value[t->n_nodes++] = -1;
        node = child;
    }
    if (t->value[node] < 0) t->value[node] = id;
    return t->value[node];
}

static int32_t trie_find(const Trie *t, const uint8_t *s, size_t n)
{
    int32_t node = 0;
    size_t i;
    for (i = 0; i < n && node >= 0; i++) node = idmap_get(&t->edge, (uint64_t)node << 8 | s[i]);
    return node >= 0 ? t->value[node] : -1;
}

/* ------------------------------------------------------------------ UTF-8 ---------------------- */

/* One code point of s[0..n), n >= 1: its length, or for ill-formed input the length of the maximal
 * subpart (Unicode 3.9, what Python's "replace" error handler consumes) with *cp = U+FFFD. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint32_t c, lo = 0x80, hi = 0xBF;
    size_t need, i;
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) need = 1, c = b & 0x1Fu;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, c = b & 0x0Fu, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) need = 3, c = b & 0x07u, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else {
        *cp = 0xFFFD;
        return 1;
    }
    for (i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *cp = 0xFFFD;
            return i;
        }
        c = c << 6 | (s[i] & 0x3Fu);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = c;
    return need + 1;
}

static size_t utf8_put(uint32_t c, uint8_t *o)
{
    if (c < 0x80) return o[0] = (uint8_t)c, 1;
    if (c < 0x800) return o[0] = (uint8_t)(0xC0 | c >> 6), o[1] = (uint8_t)(0x80 | (c & 0x3F)), 2;
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | c >> 12);
        o[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | c >> 18);
    o[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* The text as code points (malloc'd, room for 2 * len + 1: str.lower may double it). */
static uint32_t *decode_utf8(const uint8_t *s, size_t len, size_t *count)
{
    uint32_t *cp = xmalloc((2 * len + 1) * sizeof *cp);
    size_t i = 0, n = 0;
    while (i < len) i += utf8_next(s + i, len - i, &cp[n++]);
    *count = n;
    return cp;
}

/* The text as valid UTF-8: s itself when it is, else a malloc'd copy with U+FFFD replacements. */
static const uint8_t *valid_utf8(const uint8_t *s, size_t len, size_t *out_len, uint8_t **owned)
{
    size_t i = 0, n = 0, k;
    uint32_t c;
    uint8_t *o;
    *owned = NULL;
    *out_len = len;
    while (i < len) {
        k = utf8_next(s + i, len - i, &c);
        if (c == 0xFFFD && !(k == 3 && s[i] == 0xEF)) break; /* a real U+FFFD is EF BF BD */
        i += k;
    }
    if (i == len) return s;
    o = *owned = xmalloc(3 * len + 1);                        /* one byte can become EF BF BD */
    for (i = 0; i < len; i += k) {
        k = utf8_next(s + i, len - i, &c);
        n += utf8_put(c, o + n);
    }
    *out_len = n;
    return o;
}

/* ------------------------------------------------------------------ CLIP: text clean-up -------- */

static int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static int hex_value(uint32_t c)
{
    return is_digit(c) ? (int)(c - '0') : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10) : -1;
}

/* HTML5 entity lookup of code points s[0..n): NULL unless all ASCII and a known name. */
static const char *entity_of(const uint32_t *s, size_t n)
{
    char name[40];
    size_t i;
    if (n >= sizeof name) return NULL;
    for (i = 0; i < n; i++) {
        if (s[i] >= 0x80) return NULL;
        name[i] = (char)s[i];
    }
    return html_entity(name, n);
}

static size_t put_utf8_string(const char *v, uint32_t *out)
{
    size_t n = 0, i = 0, len = strlen(v);
    while (i < len) i += utf8_next((const uint8_t *)v + i, len - i, &out[n++]);
    return n;
}

/* The value of the numeric reference &#num; (Python's html._replace_charref); 0 or 1 code points. */
static size_t charref(uint32_t num, uint32_t *out)
{
    if (html_charref_remap(num, out)) return 1;
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return out[0] = 0xFFFD, 1;
    if (html_charref_dropped(num)) return 0;
    return out[0] = num, 1;
}

/* html.unescape (CPython Lib/html/__init__.py): every match of
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * is replaced by its character reference; a named one not in the table falls back to its longest
 * prefix of at least 2 characters that is. Never lengthens the text (checked by gen_unicode.py). */
static size_t html_unescape(const uint32_t *s, size_t n, uint32_t *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        size_t j = i + 1, k, end;
        if (s[i] != '&') {
            out[o++] = s[i++];
            continue;
        }
        if (j < n && s[j] == '#') {
            int hex = j + 2 < n && (s[j + 1] == 'x' || s[j + 1] == 'X') && hex_value(s[j + 2]) >= 0;
            uint32_t num = 0;
            if (!hex && !(j + 1 < n && is_digit(s[j + 1]))) {
                out[o++] = s[i++];                           /* "&#" without digits: no match */
                continue;
            }
            for (k = j + (hex ? 2 : 1); k < n && (hex ? hex_value(s[k]) >= 0 : is_digit(s[k])); k++)
                if (num <= 0x10FFFF) num = num * (hex ? 16 : 10) + (uint32_t)(hex ? hex_value(s[k]) : (int)(s[k] - '0'));
            if (k < n && s[k] == ';') k++;
            o += charref(num, out + o);
            i = k;
            continue;
        }
        for (k = j; k < n && k - j < 32; k++) {
            uint32_t c = s[k];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';') break;
        }
        if (k == j) {
            out[o++] = s[i++];
            continue;
        }
        end = k < n && s[k] == ';' ? k + 1 : k;
        {
            const char *v = entity_of(s + j, end - j);
            size_t x;
            if (v) {
                o += put_utf8_string(v, out + o);
            } else {
                for (x = end - j - 1; x >= 2; x--)
                    if ((v = entity_of(s + j, x))) break;
                if (v) {
                    o += put_utf8_string(v, out + o);
                    memmove(out + o, s + j + x, (end - j - x) * sizeof *out);
                    o += end - j - x;
                } else {
                    memmove(out + o, s + i, (end - i) * sizeof *out);
                    o += end - i;
                }
            }
        }
        i = end;
    }
    return o;
}

/* str.strip(): the range [*start, return) of s without leading/trailing str.isspace() characters. */
static size_t strip_py(const uint32_t *s, size_t n, size_t *start)
{
    size_t a = 0;
    while (a < n && (uni_flags(s[a]) & UNI_PY_SPACE)) a++;
    while (n > a && (uni_flags(s[n - 1]) & UNI_PY_SPACE)) n--;
    *start = a;
    return n;
}

/* regex.sub(r'\s+', ' ', s) in place (\s = White_Space); returns the new length. */
static size_t collapse_spaces(uint32_t *s, size_t n)
{
    size_t i = 0, o = 0;
    while (i < n) {
        if (uni_flags(s[i]) & UNI_RE_SPACE) {
            while (i < n && (uni_flags(s[i]) & UNI_RE_SPACE)) i++;
            s[o++] = ' ';
        } else {
            s[o++] = s[i++];
        }
    }
    return o;
}

/* CPython's final-sigma rule for U+03A3 at s[i]: preceded by a cased letter and not followed by
 * one, case-ignorable characters skipped both ways (Objects/unicodeobject.c handle_capital_sigma). */
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    unsigned f = 0;
    while (j > 0 && ((f = uni_flags(s[j - 1])) & UNI_CASE_IGNORABLE)) j--;
    if (j == 0 || !(f & UNI_CASED)) return 0x3C3;
    for (j = i + 1; j < n && (uni_flags(s[j]) & UNI_CASE_IGNORABLE); j++) {}
    return j == n || !(uni_flags(s[j]) & UNI_CASED) ? 0x3C2 : 0x3C3;
}

/* str.lower() (full mapping, final sigma); out has room for 2n. */
static size_t lower_py(const uint32_t *s, size_t n, uint32_t *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        if (s[i] == 0x3A3) out[o++] = lower_sigma(s, n, i);
        else o += (size_t)uni_lower(s[i], out + o);
    }
    return o;
}

/* The whole clean-up: whitespace_clean(basic_clean(text)).lower() with ftfy.fix_text = identity.
 * s holds n code points and has room for 2n; the cleaned text replaces them, its length returned. */
static size_t clip_clean(uint32_t *s, size_t n)
{
    uint32_t *tmp = xmalloc((2 * n + 1) * sizeof *tmp);
    size_t a, b, c;
    n = html_unescape(s, n, tmp);
    n = html_unescape(tmp, n, s);
    b = strip_py(s, n, &a);                           /* basic_clean's strip */
    n = collapse_spaces(s + a, b - a);
    b = strip_py(s + a, n, &c);                       /* whitespace_clean's strip */
    n = lower_py(s + a + c, b - c, tmp);
    memcpy(s, tmp, n * sizeof *s);
    free(tmp);
    return n;
}

/* ------------------------------------------------------------------ CLIP: pre-tokenisation ----- */

/* Length of the literal `lit` matched case-insensitively at s[i..n), or 0. */
static size_t match_literal(const uint32_t *s, size_t n, size_t i, const char *lit)
{
    size_t k;
    for (k = 0; lit[k]; k++)
        if (i + k >= n || uni_ascii_fold(s[i + k]) != lit[k]) return 0;
    return k;
}

/* The next match of SimpleTokenizer's pattern (regex module, IGNORECASE) at or after *pos:
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * Sets *pos to its start and returns its length; 0 at the end. */
static size_t next_pretoken(const uint32_t *s, size_t n, size_t *pos)
{
    static const char *const literal[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    size_t i, k, m;
    for (i = *pos; i < n; i++) {
        unsigned f = uni_flags(s[i]);
        *pos = i;
        for (k = 0; k < sizeof literal / sizeof literal[0]; k++)
            if ((m = match_literal(s, n, i, literal[k]))) return m;
        if (f & UNI_L) {
            for (m = 1; i + m < n && (uni_flags(s[i + m]) & UNI_L); m++) {}
            return m;
        }
        if (f & UNI_N) return 1;
        if (f & UNI_O) {
            for (m = 1; i + m < n && (uni_flags(s[i + m]) & UNI_O); m++) {}
            return m;
        }
        /* whitespace, or U+0345 (matched by no alternative): skipped, as findall does */
    }
    *pos = n;
    return 0;
}

/* ------------------------------------------------------------------ CLIP: BPE ------------------ */

/* SimpleTokenizer.bpe repeatedly merges every occurrence (left to right) of the adjacent pair with
 * the lowest merge rank. Here the symbols of a word form a linked list, and every node that starts
 * a ranked pair sits in the bucket of that rank; a two-level bitmap finds the lowest non-empty
 * bucket. A merge only creates pairs containing its result, which a valid merge list ranks later,
 * so each bucket is emptied once, in rank order: linear time in the word, however long. */
typedef struct {
    int32_t sym, prev, next;   /* sym -1: merged into its left neighbour */
    int32_t rank;              /* bucket this node is filed under, -1 if none */
    int32_t bprev, bnext;      /* neighbours in that bucket */
} BpeNode;

typedef struct {
    BpeNode  *node;
    int32_t  *batch;
    size_t    cap;
    int32_t  *head;            /* [n_merges] first node of each non-empty bucket */
    uint64_t *bits, *summary;  /* bit r: bucket r non-empty; summary bit w: bits[w] != 0 */
    int       n_words, n_summary;
} BpeWork;

static void bpe_work_init(BpeWork *w, int n_merges)
{
    memset(w, 0, sizeof *w);
    w->n_words = (n_merges + 63) / 64;
    w->n_summary = (w->n_words + 63) / 64;
    w->head = xmalloc((size_t)n_merges * sizeof *w->head);   /* read only where the bit is set */
    w->bits = xcalloc((size_t)w->n_words, sizeof *w->bits);
    w->summary = xcalloc((size_t)w->n_summary, sizeof *w->summary);
}

static void bpe_work_free(BpeWork *w)
{
    free(w->node);
    free(w->batch);
    free(w->head);
    free(w->bits);
    free(w->summary);
}

static int lowest_bit(uint64_t x)   /* x != 0 */
{
    int n = 0;
    while (!(x & 0xFF)) x >>= 8, n += 8;
    while (!(x & 1)) x >>= 1, n++;
    return n;
}

static int bucket_lowest(const BpeWork *w)
{
    int s;
    for (s = 0; s < w->n_summary; s++)
        if (w->summary[s]) {
            int word = s * 64 + lowest_bit(w->summary[s]);
            return word * 64 + lowest_bit(w->bits[word]);
        }
    return -1;
}

static void bucket_remove(BpeWork *w, int32_t i)
{
    BpeNode *nd = &w->node[i];
    int r = nd->rank;
    if (r < 0) return;
    if (nd->bprev >= 0) w->node[nd->bprev].bnext = nd->bnext;
    else w->head[r] = nd->bnext;
    if (nd->bnext >= 0) w->node[nd->bnext].bprev = nd->bprev;
    if (w->head[r] < 0 && !(w->bits[r >> 6] &= ~(1ull << (r & 63))))
        w->summary[r >> 12] &= ~(1ull << (r >> 6 & 63));
    nd->rank = -1;
}

/* File node i under the rank of the pair it now starts (or nowhere). */
static void bucket_refile(const ClipTokenizer *t, BpeWork *w, int32_t i)
{
    BpeNode *nd = &w->node[i];
    int32_t r = nd->next < 0 ? -1
              : idmap_get(&t->pair_rank, (uint64_t)(uint32_t)nd->sym << 32 | (uint32_t)w->node[nd->next].sym);
    bucket_remove(w, i);
    if (r < 0) return;
    nd->rank = r;
    nd->bprev = -1;
    nd->bnext = w->bits[r >> 6] >> (r & 63) & 1 ? w->head[r] : -1;
    if (nd->bnext >= 0) w->node[nd->bnext].bprev = i;
    w->head[r] = i;
    w->bits[r >> 6] |= 1ull << (r & 63);
    w->summary[r >> 12] |= 1ull << (r >> 6 & 63);
}

/* Does node i start the pair (a, b) now? */
static int starts_pair(const BpeWork *w, int32_t i, int32_t a, int32_t b)
{
    const BpeNode *nd = &w->node[i];
    return nd->sym == a && nd->next >= 0 && w->node[nd->next].sym == b;
}

/* Merge node i with its right neighbour by merge rank r. */
static void merge_at(const ClipTokenizer *t, BpeWork *w, int32_t i, int32_t r)
{
    BpeNode *nd = w->node;
    int32_t j = nd[i].next;
    bucket_remove(w, j);
    nd[i].sym = 512 + r;
    nd[i].next = nd[j].next;
    if (nd[j].next >= 0) nd[nd[j].next].prev = i;
    nd[j].sym = -1;
    bucket_refile(t, w, i);
    if (nd[i].prev >= 0) bucket_refile(t, w, nd[i].prev);
}

/* All occurrences of merge r, as one left-to-right sweep of SimpleTokenizer.bpe would merge them. */
static void merge_bucket(const ClipTokenizer *t, BpeWork *w, int32_t r)
{
    int32_t a = t->merge[2 * r], b = t->merge[2 * r + 1], i;
    size_t k = 0, x;
    for (i = w->head[r]; i >= 0; i = w->node[i].bnext) w->batch[k++] = i;
    for (x = 0; x < k; x++) w->node[w->batch[x]].rank = -1;
    if (!(w->bits[r >> 6] &= ~(1ull << (r & 63)))) w->summary[r >> 12] &= ~(1ull << (r >> 6 & 63));
    while (k > 0) {                     /* in filing order, mostly left to right: runs start at their head */
        i = w->batch[--k];
        if (!starts_pair(w, i, a, b)) continue;               /* changed since it was filed */
        if (a != b) {                                        /* occurrences cannot overlap */
            merge_at(t, w, i, r);
            continue;
        }
        /* (a, a): a run of a's pairs up from its first element, as the sweep does */
        while (w->node[i].prev >= 0 && w->node[w->node[i].prev].sym == a) i = w->node[i].prev;
        for (; i >= 0 && starts_pair(w, i, a, a); i = w->node[i].next) merge_at(t, w, i, r);
    }
}

/* BPE of one pre-token's UTF-8 bytes; its ids are appended to out (at most up to max_ids). */
static void bpe_word(const ClipTokenizer *t, BpeWork *w, const uint8_t *b, size_t n, int max_ids, Tokens *out)
{
    size_t i;
    int32_t r, k;
    if (n > w->cap) {
        free(w->node);
        free(w->batch);
        w->cap = n;
        w->node = xmalloc(n * sizeof *w->node);
        w->batch = xmalloc(n * sizeof *w->batch);
    }
    for (i = 0; i < n; i++) {
        BpeNode *nd = &w->node[i];
        nd->sym = t->byte_sym[b[i]] + (i == n - 1 ? 256 : 0);   /* the last symbol carries </w> */
        nd->prev = (int32_t)i - 1;
        nd->next = i + 1 < n ? (int32_t)i + 1 : -1;
        nd->rank = -1;
    }
    for (i = 0; i + 1 < n; i++) bucket_refile(t, w, (int32_t)i);
    while ((r = bucket_lowest(w)) >= 0) merge_bucket(t, w, r);
    for (k = 0; k >= 0 && (max_ids < 0 || out->n < max_ids); k = w->node[k].next) tokens_push(out, w->node[k].sym);
}

int clip_tokenizer_encode(const ClipTokenizer *t, const char *text, size_t len, int max_ids, Tokens *out, char err[EDIFF_ERR])
{
    size_t n, pos = 0, m, k, nb;
    uint32_t *s;
    uint8_t *bytes;
    BpeWork w;
    if (len > MAX_TEXT) return errorf(err, "clip: prompt of %zu bytes is too long (1 GiB at most)", len);
    s = decode_utf8((const uint8_t *)text, len, &n);
    n = clip_clean(s, n);
    bytes = xmalloc(4 * n + 1);
    bpe_work_init(&w, t->n_merges);
    while ((max_ids < 0 || out->n < max_ids) && (m = next_pretoken(s, n, &pos))) {
        for (nb = 0, k = 0; k < m; k++) nb += utf8_put(s[pos + k], bytes + nb);
        if (nb == 15 && memcmp(bytes, "<|startoftext|>", 15) == 0) tokens_push(out, t->sot);
        else if (nb == 13 && memcmp(bytes, "<|endoftext|>", 13) == 0) tokens_push(out, t->eot);
        else bpe_word(t, &w, bytes, nb, max_ids, out);
        pos += m;
    }
    bpe_work_free(&w);
    free(bytes);
    free(s);
    return 0;
}

int clip_tokenize(const ClipTokenizer *t, const char *text, size_t len, int32_t ids[CLIP_CONTEXT], char err[EDIFF_ERR])
{
    Tokens tok = {0};
    int i;
    if (clip_tokenizer_encode(t, text, len, CLIP_CONTEXT - 2, &tok, err)) return -1;
    ids[0] = t->sot;
    for (i = 0; i < tok.n; i++) ids[1 + i] = tok.id[i];
    ids[1 + tok.n] = t->eot;
    for (i = tok.n + 2; i < CLIP_CONTEXT; i++) ids[i] = 0;
    tokens_free(&tok);
    return 0;
}

/* ------------------------------------------------------------------ CLIP: the merge list ------- */

/* bytes_to_unicode(): the 188 printable bytes map to themselves, the other 68 (in order) to
 * U+0100..U+0143; the table order (printable first) gives ids 0..255. */
static int printable_byte(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

static void bytes_to_unicode(uint32_t ch[256], uint8_t byte_sym[256])
{
    int b, id = 0, extra = 0;
    for (b = 0; b < 256; b++)
        if (printable_byte(b)) ch[id] = (uint32_t)b, byte_sym[b] = (uint8_t)id++;
    for (b = 0; b < 256; b++)
        if (!printable_byte(b)) ch[id] = 256u + (uint32_t)extra++, byte_sym[b] = (uint8_t)id++;
}

#define CLIP_MERGES 48894   /* 49152 - 256 - 2: the merges SimpleTokenizer uses */

int clip_tokenizer_init(ClipTokenizer *t, const uint8_t *text, size_t n, char err[EDIFF_ERR])
{
    uint32_t ch[256];
    uint8_t sym[16], *joined;
    Trie vocab;
    size_t pos, line_end;
    int32_t id, r = 0, line = 1;
    memset(t, 0, sizeof *t);
    bytes_to_unicode(ch, t->byte_sym);
    for (pos = 0; pos < n && text[pos] != '\n'; pos++) {}
    if (pos >= n) return errorf(err, "clip merges: no header line");
    pos++;
    for (line_end = pos; line_end < n && line < 1 + CLIP_MERGES; line_end++) line += text[line_end] == '\n';
    line = 1;
    /* Every symbol string -> id: the 256 characters, the same with </w>, then each merge result. */
    trie_init(&vocab, 512 * 6 + (line_end - pos));
    for (id = 0; id < 512; id++) {
        size_t k = utf8_put(ch[id & 255], sym);
        if (id >= 256) memcpy(sym + k, "</w>", 4), k += 4;
        trie_add(&vocab, sym, k, id);
    }
    t->merge = xmalloc(2 * CLIP_MERGES * sizeof *t->merge);
    idmap_init(&t->pair_rank, CLIP_MERGES);
    joined = xmalloc(line_end - pos + 1);
    for (; r < CLIP_MERGES; r++, pos = line_end + 1) {
        size_t sp;
        int32_t a, b;
        line++;
        for (line_end = pos; line_end < n && text[line_end] != '\n'; line_end++) {}
        if (pos >= n) {
            errorf(err, "clip merges: %d merges, expected %d", (int)r, CLIP_MERGES);
            goto bad;
        }
        for (sp = pos; sp < line_end && text[sp] != ' '; sp++) {}
        if (sp == pos || sp + 1 >= line_end || memchr(text + sp + 1, ' ', line_end - sp - 1) || text[line_end - 1] == '\r') {
            errorf(err, "clip merges: line %d is not \"left right\"", (int)line);
            goto bad;
        }
        a = trie_find(&vocab, text + pos, sp - pos);
        b = trie_find(&vocab, text + sp + 1, line_end - sp - 1);
        if (a < 0 || b < 0) {
            errorf(err, "clip merges: line %d uses a symbol no earlier line made", (int)line);
            goto bad;
        }
        if (idmap_add(&t->pair_rank, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, r) != r) {
            errorf(err, "clip merges: line %d repeats an earlier merge", (int)line);
            goto bad;
        }
        memcpy(joined, text + pos, sp - pos);               /* the result's string: left + right */
        memcpy(joined + (sp - pos), text + sp + 1, line_end - sp - 1);
        if (trie_add(&vocab, joined, line_end - pos - 1, 512 + r) != 512 + r) {
            errorf(err, "clip merges: line %d makes a symbol that already exists", (int)line);
            goto bad;
        }
        t->merge[2 * r] = a;
        t->merge[2 * r + 1] = b;
    }
    idmap_free(&vocab.edge);
    free(vocab.value);
    free(joined);
    t->n_merges = CLIP_MERGES;
    t->sot = 512 + CLIP_MERGES;
    t->eot = t->sot + 1;
    return 0;
bad:
    idmap_free(&vocab.edge);
    free(vocab.value);
    free(joined);
    clip_tokenizer_free(t);
    return -1;
}

void clip_tokenizer_free(ClipTokenizer *t)
{
    free(t->merge);
    idmap_free(&t->pair_rank);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------ T5: spiece.model ----------- */

/* Protocol buffers wire format: just enough to walk a message and skip what we do not read. */
typedef struct {
    const uint8_t *p, *end;
} PbReader;

typedef struct {
    uint32_t       field;
    int            wire;       /* 0 varint, 1 fixed64, 2 bytes/message, 5 fixed32 */
    uint64_t       v;          /* wire 0 */
    const uint8_t *data;       /* wires 1, 2, 5 */
    size_t         len;
} PbField;

static int pb_varint(PbReader *r, uint64_t *v)
{
    int shift;
    *v = 0;
    for (shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* The next field: 1, 0 at the end of the message, -1 if malformed. */
static int pb_next(PbReader *r, PbField *f)
{
    uint64_t key;
    size_t fixed;
    f->v = 0;
    f->data = NULL;
    f->len = 0;
    if (r->p == r->end) return 0;
    if (pb_varint(r, &key) || key >> 32 || (key >> 3) == 0) return -1;
    f->field = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->wire == 0) return pb_varint(r, &f->v) ? -1 : 1;
    if (f->wire == 2) {
        if (pb_varint(r, &f->v) || f->v > (uint64_t)(r->end - r->p)) return -1;
        fixed = (size_t)f->v;
    } else if (f->wire == 1 || f->wire == 5) {
        fixed = f->wire == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < fixed) return -1;
    } else {
        return -1;                              /* groups (3, 4) and 6, 7 do not occur */
    }
    f->data = r->p;
    f->len = fixed;
    r->p += fixed;
    return 1;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_USER_DEFINED = 4, SP_UNUSED = 5, SP_BYTE = 6 };

/* One SentencePiece message: piece (1), score (2, float), type (3). */
static int parse_piece(const PbField *m, const uint8_t **piece, size_t *len, float *score, int *type)
{
    PbReader r = {m->data, m->data + m->len};
    PbField f;
    int got;
    *piece = NULL;
    *len = 0;
    *score = 0;
    *type = SP_NORMAL;
    while ((got = pb_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wire == 2) *piece = f.data, *len = f.len;
        else if (f.field == 2 && f.wire == 5) {
            uint32_t bits = le32(f.data);
            memcpy(score, &bits, sizeof *score);
        } else if (f.field == 3 && f.wire == 0) *type = (int)f.v;
        else if (f.field <= 3) return -1;
    }
    return got;
}

/* The precompiled charsmap: [uint32 trie bytes][darts-clone units][NUL-terminated strings]. */
static int load_charsmap(T5Tokenizer *t, const uint8_t *p, size_t n, char err[EDIFF_ERR])
{
    size_t trie_bytes, i;
    if (n == 0) return 0;                          /* no normalisation rules */
    if (n < 4 || (trie_bytes = le32(p)) % 4 || trie_bytes < 4 || trie_bytes >= n - 4 || p[n - 1])
        return errorf(err, "t5 spiece: malformed precompiled_charsmap");
    t->n_units = trie_bytes / 4;
    t->unit = xmalloc(t->n_units * sizeof *t->unit);
    for (i = 0; i < t->n_units; i++) t->unit[i] = le32(p + 4 + 4 * i);
    t->pool_len = n - 4 - trie_bytes;
    t->pool = xmalloc(t->pool_len);
    memcpy(t->pool, p + 4 + trie_bytes, t->pool_len);
    return 0;
}

static int parse_normalizer(T5Tokenizer *t, const PbField *m, char err[EDIFF_ERR])
{
    PbReader r = {m->data, m->data + m->len};
    PbField f;
    int got;
    while ((got = pb_next(&r, &f)) > 0) {
        if (f.field == 2 && f.wire == 2) {
            free(t->unit);
            free(t->pool);
            t->unit = NULL;
            t->pool = NULL;
            t->n_units = t->pool_len = 0;
            if (load_charsmap(t, f.data, f.len, err)) return -1;
        } else if (f.field >= 3 && f.field <= 5 && f.wire == 0) {
            int on = f.v != 0;
            if (f.field == 3) t->add_dummy_prefix = on;
            else if (f.field == 4) t->remove_extra_whitespaces = on;
            else t->escape_whitespaces = on;
        } else if (f.field <= 5 && f.field != 1) {
            got = -1;
            break;
        }
    }
    return got < 0 ? errorf(err, "t5 spiece: malformed normalizer_spec") : 0;
}

/* trainer_spec: only what changes encoding. */
static int parse_trainer(T5Tokenizer *t, const PbField *m, char err[EDIFF_ERR])
{
    PbReader r = {m->data, m->data + m->len};
    PbField f;
    int got;
    while ((got = pb_next(&r, &f)) > 0) {
        if (f.wire != 0) continue;
        if (f.field == 3 && f.v != 1) return errorf(err, "t5 spiece: model_type %d is not unigram", (int)f.v);
        if (f.field == 24 && f.v) return errorf(err, "t5 spiece: treat_whitespace_as_suffix is not supported");
        if (f.field == 35 && f.v) return errorf(err, "t5 spiece: byte_fallback is not supported");
        if (f.field == 42) t->eos_id = (int)(int32_t)(uint32_t)f.v;   /* int32, may be -1 */
    }
    return got < 0 ? errorf(err, "t5 spiece: malformed trainer_spec") : 0;
}

int t5_tokenizer_init(T5Tokenizer *t, const uint8_t *data, size_t n, char err[EDIFF_ERR])
{
    PbReader r = {data, data + n};
    PbField f;
    Trie vocab;
    size_t piece_bytes = 0;
    float min_score = FLT_MAX;
    int got, id = 0, n_unk = 0;
    memset(t, 0, sizeof *t);
    t->unk_id = -1;
    t->eos_id = 2;                                   /* proto2 defaults */
    t->add_dummy_prefix = t->remove_extra_whitespaces = t->escape_whitespaces = 1;
    /* First pass: the specs and the number of pieces. */
    while ((got = pb_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wire == 2) t->n_pieces++, piece_bytes += f.len;
        else if (f.field == 2 && f.wire == 2) got = parse_trainer(t, &f, err) ? -2 : 1;
        else if (f.field == 3 && f.wire == 2) got = parse_normalizer(t, &f, err) ? -2 : 1;
        else if (f.field <= 3) got = -1;
        if (got < 0) break;
    }
    if (got == -1) errorf(err, "t5 spiece: not a sentencepiece model (malformed protobuf)");
    if (got >= 0 && (t->n_pieces == 0 || t->n_pieces > (1 << 24)))
        got = -1, errorf(err, "t5 spiece: %d pieces", t->n_pieces);
    if (got < 0) {
        t5_tokenizer_free(t);
        return -1;
    }
    /* Second pass: the pieces; NORMAL and UNUSED ones go into the vocabulary trie. */
    t->score = xmalloc((size_t)t->n_pieces * sizeof *t->score);
    t->type = xmalloc((size_t)t->n_pieces);
    trie_init(&vocab, piece_bytes);
    r.p = data;
    while (pb_next(&r, &f) > 0) {
        const uint8_t *piece;
        size_t len;
        int type;
        if (f.field != 1) continue;
        if (parse_piece(&f, &piece, &len, &t->score[id], &type) < 0 || !piece || !len) {
            errorf(err, "t5 spiece: piece %d is malformed or empty", id);
            goto bad;
        }
        if (type < SP_NORMAL || type > SP_BYTE || type == SP_USER_DEFINED || type == SP_BYTE) {
            errorf(err, "t5 spiece: piece %d has type %d (user-defined and byte pieces are not supported)", id, type);
            goto bad;
        }
        t->type[id] = (uint8_t)type;
        if (type == SP_UNKNOWN) t->unk_id = id, n_unk++;
        if (type == SP_NORMAL || type == SP_UNUSED) {
            if (trie_add(&vocab, piece, len, id) != id) {
                errorf(err, "t5 spiece: piece %d is defined twice", id);
                goto bad;
            }
        }
        if (type == SP_NORMAL) {
            if (!(t->score[id] >= -FLT_MAX && t->score[id] <= FLT_MAX)) {
                errorf(err, "t5 spiece: piece %d has a non-finite score", id);
                goto bad;
            }
            if (t->score[id] < min_score) min_score = t->score[id];
        }
        id++;
    }
    if (n_unk != 1 || min_score == FLT_MAX || t->eos_id < 0 || t->eos_id >= t->n_pieces || t->type[t->eos_id] != SP_CONTROL) {
        errorf(err, "t5 spiece: needs one <unk>, a normal piece and a control piece as eos (%d <unk>, eos id %d)", n_unk, t->eos_id);
        goto bad;
    }
    t->unk_score = min_score - 10.0f;                /* unigram_model.cc kUnkPenalty */
    t->edge = vocab.edge;
    t->node_piece = vocab.value;
    return 0;
bad:
    idmap_free(&vocab.edge);
    free(vocab.value);
    t5_tokenizer_free(t);
    return -1;
}

void t5_tokenizer_free(T5Tokenizer *t)
{
    free(t->score);
    free(t->type);
    idmap_free(&t->edge);
    free(t->node_piece);
    free(t->unit);
    free(t->pool);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------ T5: normalisation ---------- */

typedef struct {
    uint8_t *p;
    size_t   n, cap;
} Bytes;

static void bytes_put(Bytes *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        uint8_t *p;
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 256;
        p = realloc(b->p, b->cap);
        if (!p) {
            fprintf(stderr, "ediff: out of memory\n");
            exit(1);
        }
        b->p = p;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

/* darts-clone unit fields (darts.h). */
static int      unit_has_leaf(uint32_t u) { return (int)(u >> 8 & 1); }
static uint32_t unit_label(uint32_t u) { return u & 0x800000FFu; }
static size_t   unit_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & 0x200) >> 6); }

/* Normalizer::NormalizePrefix: the longest charsmap rule matching at s (among the first 32 matches
 * of the common-prefix search, as sentencepiece collects them), else one character unchanged.
 * Returns the bytes consumed; *out, *out_len the replacement. s[0..n) is valid UTF-8, n >= 1. */
static size_t normalize_prefix(const T5Tokenizer *t, const uint8_t *s, size_t n, const char **out, size_t *out_len)
{
    size_t longest = 0, value = 0, i, pos;
    int found = 0;
    uint32_t cp;
    if (t->n_units) {
        pos = unit_offset(t->unit[0]);
        for (i = 0; i < n; i++) {
            uint32_t u;
            pos ^= s[i];
            if (pos >= t->n_units || unit_label(u = t->unit[pos]) != s[i]) break;
            pos ^= unit_offset(u);
            if (unit_has_leaf(u) && found++ < 32 && pos < t->n_units) {
                uint32_t v = t->unit[pos];
                if (v >> 31 && (v & 0x7FFFFFFFu) < t->pool_len) longest = i + 1, value = v & 0x7FFFFFFFu;
            }
        }
    }
    if (longest) {
        *out = t->pool + value;
        *out_len = strlen(*out);                      /* the pool ends with NUL (checked at load) */
        return longest;
    }
    *out_len = utf8_next(s, n, &cp);
    if (cp == 0xFFFD && !(*out_len == 3 && s[0] == 0xEF)) {   /* ill-formed: U+FFFD for one byte */
        *out = "\xef\xbf\xbd";
        *out_len = 3;
        return 1;
    }
    *out = (const char *)s;
    return *out_len;
}

/* Normalizer::Normalize: charsmap rules, extra whitespace removed, dummy prefix, ' ' -> U+2581. */
static void t5_normalize(const T5Tokenizer *t, const uint8_t *s, size_t n, Bytes *o)
{
    static const char space[] = "\xe2\x96\x81";
    const char *sp = t->escape_whitespaces ? space : " ";
    size_t sp_len = strlen(sp), c, len, k;
    const char *r;
    int prev_space;
    o->n = 0;
    while (t->remove_extra_whitespaces && n > 0) {      /* leading whitespace */
        c = normalize_prefix(t, s, n, &r, &len);
        if (len != 1 || r[0] != ' ') break;
        s += c, n -= c;
    }
    if (n == 0) return;
    if (t->add_dummy_prefix) bytes_put(o, sp, sp_len);
    prev_space = t->remove_extra_whitespaces;
    while (n > 0) {
        c = normalize_prefix(t, s, n, &r, &len);
        while (prev_space && len > 0 && r[0] == ' ') r++, len--;
        if (len > 0) {
            for (k = 0; k < len; k++) {
                if (r[k] == ' ') bytes_put(o, sp, sp_len);
                else bytes_put(o, r + k, 1);
            }
            prev_space = r[len - 1] == ' ';
        }
        s += c, n -= c;
        if (!t->remove_extra_whitespaces) prev_space = 0;
    }
    while (t->remove_extra_whitespaces && o->n >= sp_len && memcmp(o->p + o->n - sp_len, sp, sp_len) == 0) o->n -= sp_len;
}

/* ------------------------------------------------------------------ T5: unigram Viterbi -------- */

typedef struct {
    float   score;    /* best path score ending here */
    int32_t from;     /* its last piece starts here (absolute byte offset); -1: not reached yet */
    int32_t id;
} BestEnd;

typedef struct {
    BestEnd *best;    /* indexed by offset - window start */
    int32_t *path;
    size_t   cap;
} Lattice;

static void lattice_reserve(Lattice *l, size_t need)
{
    size_t old = l->cap, i;
    BestEnd *b;
    int32_t *p;
    if (need <= l->cap) return;
    while (l->cap < need) l->cap = l->cap ? 2 * l->cap : 256;
    b = realloc(l->best, l->cap * sizeof *b);
    p = realloc(l->path, l->cap * sizeof *p);
    if (!b || !p) {
        fprintf(stderr, "ediff: out of memory\n");
        exit(1);
    }
    l->best = b;
    l->path = p;
    for (i = old; i < l->cap; i++) l->best[i].from = -1;
}

/* Emit the best path over [w, e) (sentencepiece's backtrack), merging runs of <unk> into one id as
 * PopulateSentencePieceText does; returns 1 once max_ids ids exist. */
static int emit_path(const T5Tokenizer *t, Lattice *l, size_t w, size_t e, int *prev_unk, int max_ids, Tokens *out)
{
    size_t k = 0, pos = e;
    while (pos > w) {
        const BestEnd *b = &l->best[pos - w];
        l->path[k++] = b->id;
        pos = (size_t)b->from;
    }
    while (k > 0) {
        int32_t id = l->path[--k];
        if (max_ids >= 0 && out->n >= max_ids) return 1;
        if (!(id == t->unk_id && *prev_unk)) tokens_push(out, id);
        *prev_unk = id == t->unk_id;
    }
    return max_ids >= 0 && out->n >= max_ids;
}

/* Model::EncodeOptimized over the normalised bytes s[0..n): for each character start, every vocabulary
 * piece starting there relaxes the best path ending at its end (score in double, stored as float, a
 * strictly greater candidate wins); a character no single piece covers gets an <unk> edge with
 * unk_score. A position no edge crosses splits the lattice: the best path to it is final, so it is
 * emitted and the window restarts there (same scores, same floats, bounded memory, early stop). */
static void t5_viterbi(const T5Tokenizer *t, const uint8_t *s, size_t n, int max_ids, Tokens *out)
{
    Lattice l = {NULL, NULL, 0};
    size_t w = 0, reach = 0, st = 0, k, i;
    int prev_unk = 0;
    lattice_reserve(&l, 64);
    l.best[0].score = 0;
    l.best[0].from = 0;
    while (st < n) {
        float base;
        size_t mb = (size_t)"\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[s[st] >> 4];   /* util.h OneCharLen */
        int32_t node = 0;
        int single = 0;
        if (st > w && reach <= st) {                     /* a cut: emit, restart the window here */
            if (emit_path(t, &l, w, st, &prev_unk, max_ids, out)) break;
            l.best[0] = l.best[st - w];
            for (i = 1; i <= st - w; i++) l.best[i].from = -1;
            w = st;
        }
        if (mb > n - st) mb = n - st;
        base = l.best[st - w].score;
        for (k = st; k < n; k++) {
            int32_t id;
            if ((node = idmap_get(&t->edge, (uint64_t)node << 8 | s[k])) < 0) break;
            if ((id = t->node_piece[node]) < 0 || t->type[id] == SP_UNUSED) continue;
            lattice_reserve(&l, k + 2 - w);
            {
                BestEnd *b = &l.best[k + 1 - w];
                double cand = (double)t->score[id] + (double)base;
                if (b->from < 0 || cand > (double)b->score) b->score = (float)cand, b->from = (int32_t)st, b->id = id;
            }
            if (k + 1 - st == mb) single = 1;
            if (k + 1 > reach) reach = k + 1;
        }
        if (!single) {
            BestEnd *b;
            float cand = t->unk_score + base;
            lattice_reserve(&l, st + mb + 1 - w);
            b = &l.best[st + mb - w];
            if (b->from < 0 || cand > b->score) b->score = cand, b->from = (int32_t)st, b->id = t->unk_id;
            if (st + mb > reach) reach = st + mb;
        }
        st += mb;
    }
    if (st >= n && n > w) emit_path(t, &l, w, n, &prev_unk, max_ids, out);
    free(l.best);
    free(l.path);
}

int t5_tokenizer_encode(const T5Tokenizer *t, const char *text, size_t len, int max_ids, Tokens *out, char err[EDIFF_ERR])
{
    uint8_t *owned;
    size_t n;
    const uint8_t *s;
    Bytes norm = {NULL, 0, 0};
    if (len > MAX_TEXT) return errorf(err, "t5: prompt of %zu bytes is too long (1 GiB at most)", len);
    s = valid_utf8((const uint8_t *)text, len, &n, &owned);
    t5_normalize(t, s, n, &norm);
    free(owned);
    if (norm.n > MAX_TEXT) {
        free(norm.p);
        return errorf(err, "t5: prompt is too long after normalisation");
    }
    if (max_ids != 0) t5_viterbi(t, norm.p, norm.n, max_ids, out);
    free(norm.p);
    return 0;
}

int t5_tokenize(const T5Tokenizer *t, const char *text, size_t len, int max_len, Tokens *out, char err[EDIFF_ERR])
{
    if (t5_tokenizer_encode(t, text, len, max_len > 0 ? max_len - 1 : -1, out, err)) return -1;
    tokens_push(out, t->eos_id);
    return 0;
}

/* ------------------------------------------------------------------ data files, test cases ----- */

static uint8_t *read_whole_file(const char *path, size_t *n, char err[EDIFF_ERR])
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;
    if (!f) return errorf(err, "cannot open %s", path), NULL;
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || len > (1L << 30) || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return errorf(err, "cannot read %s", path), NULL;
    }
    buf = xmalloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    if (*n != (size_t)len) {
        free(buf);
        return errorf(err, "cannot read %s", path), NULL;
    }
    buf[len] = 0;
    return buf;
}

/* The bytes of one tokenizer file: a u8 tensor of the blob, or a file under weights/vocab/. */
static const uint8_t *tokenizer_bytes(const Blob *blob, const char *tensor, const char *path, size_t *n,
                                      uint8_t **owned, char err[EDIFF_ERR])
{
    const Tensor *x;
    *owned = NULL;
    if (!blob) return *owned = read_whole_file(path, n, err);
    x = blob_get(blob, tensor);
    if (!x || x->dtype != DT_U8 || x->rank != 1) return errorf(err, "%s: no u8 tensor %s", blob->path, tensor), NULL;
    *n = (size_t)x->numel;
    return x->data;
}

int tokenizers_open(ClipTokenizer *clip, T5Tokenizer *t5, const Blob *blob, char err[EDIFF_ERR])
{
    const uint8_t *p;
    uint8_t *owned;
    size_t n;
    int rc;
    if (clip) {
        if (!(p = tokenizer_bytes(blob, "tokenizer.clip_merges", "weights/vocab/clip_merges.txt", &n, &owned, err))) return -1;
        rc = clip_tokenizer_init(clip, p, n, err);
        free(owned);
        if (rc) return -1;
    }
    if (t5) {
        if (!(p = tokenizer_bytes(blob, "tokenizer.t5_spiece", "weights/vocab/t5_spiece.model", &n, &owned, err)) ||
            (rc = t5_tokenizer_init(t5, p, n, err), free(owned), rc)) {
            if (clip) clip_tokenizer_free(clip);
            return -1;
        }
    }
    return 0;
}

/* A case file's TEXT field: \\ \t \n \r \xHH escapes. Returns the length, -1 if malformed. */
static long unescape_case(const char *s, size_t n, char *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        if (++i >= n) return -1;
        if (s[i] == '\\') out[o++] = '\\';
        else if (s[i] == 't') out[o++] = '\t';
        else if (s[i] == 'n') out[o++] = '\n';
        else if (s[i] == 'r') out[o++] = '\r';
        else if (s[i] == 'x' && i + 2 < n && (hi = hex_value((unsigned char)s[i + 1])) >= 0 && (lo = hex_value((unsigned char)s[i + 2])) >= 0)
            out[o++] = (char)(hi * 16 + lo), i += 2;
        else return -1;
    }
    return (long)o;
}

static void print_ids(FILE *f, const char *label, const int32_t *id, int n)
{
    int i;
    fprintf(f, "  %s", label);
    for (i = 0; i < n; i++) fprintf(f, "%s%d", i ? " " : "", (int)id[i]);
    fputc('\n', f);
}

int tokenizer_check_cases(const ClipTokenizer *clip, const T5Tokenizer *t5, const char *path, FILE *log,
                          int *passed, int *failed, char err[EDIFF_ERR])
{
    size_t n, pos, end;
    uint8_t *file = read_whole_file(path, &n, err);
    char *text;
    int line = 0, rc = 0;
    if (!file) return -1;
    text = xmalloc(n + 1);
    for (pos = 0; pos < n && !rc; pos = end + 1) {
        const char *s = (const char *)file + pos, *tab1, *tab2;
        Tokens want = {0}, got = {0};
        long len;
        int is_clip, ok;
        line++;
        for (end = pos; end < n && file[end] != '\n'; end++) {}
        if (end == pos || s[0] == '#') continue;
        tab1 = memchr(s, '\t', end - pos);
        tab2 = tab1 ? memchr(tab1 + 1, '\t', (size_t)((const char *)file + end - tab1 - 1)) : NULL;
        is_clip = tab1 && tab1 - s == 4 && memcmp(s, "clip", 4) == 0;
        if (!tab2 || memchr(tab2 + 1, '\t', (size_t)((const char *)file + end - tab2 - 1)) ||
            !(is_clip || (tab1 - s == 2 && memcmp(s, "t5", 2) == 0)) ||
            (len = unescape_case(tab1 + 1, (size_t)(tab2 - tab1 - 1), text)) < 0) {
            rc = errorf(err, "%s:%d: not KIND<TAB>TEXT<TAB>IDS", path, line);
            break;
        }
        {
            const char *p = tab2 + 1, *e = (const char *)file + end;
            while (p < e) {
                long v = 0;
                if (*p < '0' || *p > '9') break;
                while (p < e && *p >= '0' && *p <= '9' && v < (1L << 30)) v = 10 * v + (*p++ - '0');
                tokens_push(&want, (int32_t)v);
                if (p < e && *p == ' ') p++;
                else break;
            }
            if (p != e) {
                tokens_free(&want);
                rc = errorf(err, "%s:%d: bad IDS field", path, line);
                break;
            }
        }
        if (is_clip) {
            int32_t ids[CLIP_CONTEXT];
            if (!clip || clip_tokenize(clip, text, (size_t)len, ids, err)) rc = -1;
            else for (ok = 0; ok < CLIP_CONTEXT; ok++) tokens_push(&got, ids[ok]);
        } else if (!t5 || t5_tokenize(t5, text, (size_t)len, 0, &got, err)) {
            rc = -1;
        }
        if (rc) {
            if (!(is_clip ? (const void *)clip : (const void *)t5)) errorf(err, "%s:%d: no %s tokenizer", path, line, is_clip ? "clip" : "t5");
        } else {
            ok = got.n == want.n && memcmp(got.id, want.id, (size_t)got.n * sizeof *got.id) == 0;
            if (ok) ++*passed;
            else {
                ++*failed;
                if (log) {
                    fprintf(log, "FAIL %s:%d %s: %.*s\n", path, line, is_clip ? "clip" : "t5", (int)(tab2 - tab1 - 1), tab1 + 1);
                    print_ids(log, "want: ", want.id, want.n);
                    print_ids(log, "got:  ", got.id, got.n);
                }
            }
        }
        tokens_free(&want);
        tokens_free(&got);
    }
    free(text);
    free(file);
    return rc;
}
