/* png.c — PNG images written and read by our own code: the zlib format (RFC 1950) around deflate
 * (RFC 1951), Adler-32, CRC-32 (blob.c's), scanline filters and Adam7 interlacing (PNG specification,
 * third edition, W3C 2025 / ISO 15948). Its own file because it is a self-contained codec and a trust
 * boundary: every length, code and checksum of an untrusted file is validated before use, and bad
 * input gives one error line, never a crash or a read out of bounds. Decisions: docs/png.md.
 *
 *   reading  chunks (each CRC-checked, order checked) -> the IDAT bytes -> inflate into a buffer of
 *            exactly the size the header implies -> unfilter each pass -> every colour type and bit
 *            depth expanded to 8-bit RGBA (palette and tRNS applied, 16-bit samples by their high byte)
 *   writing  rows filtered (least sum of |byte|) -> LZ77 (hash chains, lazy matching) -> Huffman
 *            blocks (dynamic, fixed or stored, whichever is smallest) -> chunks -> a temporary file in
 *            the same directory, renamed into place only when complete
 */
#include "ediff.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#define HAVE_POSIX_IO 1
#endif

#define PNG_MAX_FILE   (1u << 30)    /* bytes of a file png_read will load */
#define DEFLATE_RATIO  1032          /* the most bytes one compressed byte can inflate to (RFC 1951) */

static int fail(char err[EDIFF_ERR], const char *label, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, EDIFF_ERR, "%s: ", label);
    va_start(ap, fmt);
    if (n >= 0 && n < EDIFF_ERR) vsnprintf(err + n, EDIFF_ERR - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* ------------------------------------------------------------------ Adler-32 ---------------------- */

/* Adler-32 of RFC 1950 §8.2: two sums mod 65521, reduced every 5552 bytes (the most that cannot
 * overflow 32 bits). Start with 1. */
uint32_t adler32_update(uint32_t adler, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t a = adler & 0xffff, b = adler >> 16;
    while (n) {
        size_t k = n < 5552 ? n : 5552;
        n -= k;
        while (k--) { a += *p++; b += a; }
        a %= 65521;
        b %= 65521;
    }
    return b << 16 | a;
}

/* ------------------------------------------------------------------ deflate tables ---------------- */

/* RFC 1951 §3.2.5: length symbols 257..285 and distance symbols 0..29, base value and extra bits. */
static const uint16_t LEN_BASE[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43,
                                      51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
static const uint8_t LEN_EXTRA[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
static const uint16_t DIST_BASE[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385,
                                       513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
static const uint8_t DIST_EXTRA[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9,
                                       10, 10, 11, 11, 12, 12, 13, 13};
/* §3.2.7: the order in which code-length code lengths are sent. */
static const uint8_t CL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

/* The fixed Huffman code of §3.2.6: literal/length code lengths (288) and distance lengths (32). */
static void fixed_lengths(uint8_t lit[288], uint8_t dist[32])
{
    int i;
    for (i = 0; i < 288; i++) lit[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    for (i = 0; i < 32; i++) dist[i] = 5;
}

static unsigned reverse_bits(unsigned code, int len)
{
    unsigned r = 0;
    while (len--) { r = r << 1 | (code & 1); code >>= 1; }
    return r;
}

/* ------------------------------------------------------------------ inflate ----------------------- */

#define FAST_BITS 9

/* A canonical Huffman code (§3.2.2) for decoding: codes of up to FAST_BITS bits are found with one
 * table lookup on the next input bits; longer ones canonically, bit by bit. */
typedef struct {
    uint16_t count[16];               /* number of codes of each length */
    uint16_t symbol[288];             /* symbols ordered by code */
    uint16_t fast[1 << FAST_BITS];    /* next bits (LSB first) -> length << 9 | symbol; 0: longer or invalid */
} Huffman;

enum { CODE_LENGTHS, LITLEN, DISTANCES };
enum { HUFF_OK = 0, HUFF_OVERSUBSCRIBED = -1, HUFF_INCOMPLETE = -2 };

/* Build the decoding tables from code lengths. A set that over-subscribes the code space is refused;
 * an incomplete one is accepted only where zlib accepts it: a single code of length 1 (literal/length
 * and distance codes), or no code at all (distances of a block that has none). */
static int huffman_build(Huffman *h, const uint8_t *lengths, int n, int kind)
{
    int offset[16], left = 1, len, i, k, used;
    unsigned code = 0;
    memset(h->count, 0, sizeof h->count);
    for (i = 0; i < n; i++) h->count[lengths[i]]++;
    used = n - h->count[0];
    for (len = 1; len < 16; len++) {
        left = left * 2 - h->count[len];
        if (left < 0) return HUFF_OVERSUBSCRIBED;
    }
    if (left > 0 && !(kind != CODE_LENGTHS && used == 1 && h->count[1] == 1) && !(kind == DISTANCES && used == 0))
        return HUFF_INCOMPLETE;
    offset[1] = 0;
    for (len = 1; len < 15; len++) offset[len + 1] = offset[len] + h->count[len];
    for (i = 0; i < n; i++)
        if (lengths[i]) h->symbol[offset[lengths[i]]++] = (uint16_t)i;
    memset(h->fast, 0, sizeof h->fast);
    for (len = 1, k = 0; len <= FAST_BITS; len++, code <<= 1)
        for (i = 0; i < h->count[len]; i++, k++, code++) {
            unsigned j;
            for (j = reverse_bits(code, len); j < (1u << FAST_BITS); j += 1u << len)
                h->fast[j] = (uint16_t)(len << 9 | h->symbol[k]);
        }
    return HUFF_OK;
}

/* Decoder state: input bits are consumed least significant first (§3.1.1). Reading past the end feeds
 * zero bytes and counts them in `pad`, so a peek near the end is harmless and a real overrun is caught
 * by `overrun()`. Output goes into a buffer of fixed capacity. */
typedef struct {
    const uint8_t *in;
    size_t         n, pos, pad;
    uint32_t       bits;
    int            nbits;
    uint8_t       *out;
    size_t         cap, len;
    size_t         window;      /* largest distance the zlib header allows */
    Huffman        fixed_lit, fixed_dist;   /* the fixed code, built at its first use */
    int            have_fixed;
    const char    *label;
    char          *err;
} Inflate;

static void need_bits(Inflate *s, int n)
{
    while (s->nbits < n) {
        uint32_t byte = 0;
        if (s->pos < s->n) byte = s->in[s->pos++];
        else s->pad++;
        s->bits |= byte << s->nbits;
        s->nbits += 8;
    }
}

static void drop_bits(Inflate *s, int n) { s->bits >>= n; s->nbits -= n; }

static unsigned get_bits(Inflate *s, int n)
{
    unsigned v;
    need_bits(s, n);
    v = s->bits & ((1u << n) - 1);
    drop_bits(s, n);
    return v;
}

/* True once bits beyond the end of the input have been consumed. */
static int overrun(const Inflate *s) { return s->pad * 8 > (size_t)s->nbits; }

static int truncated(Inflate *s) { return fail(s->err, s->label, "zlib stream is truncated (%zu bytes)", s->n); }

/* One symbol; -1 for a bit pattern that is no code of an incomplete set. */
static int decode_symbol(Inflate *s, const Huffman *h)
{
    int code = 0, first = 0, index = 0, len;
    unsigned e;
    need_bits(s, FAST_BITS);
    e = h->fast[s->bits & ((1u << FAST_BITS) - 1)];
    if (e) {
        drop_bits(s, (int)(e >> 9));
        return (int)(e & 511);
    }
    for (len = 1; len < 16; len++) {        /* canonical decoding: codes of each length are consecutive */
        code |= (int)get_bits(s, 1);
        if (code - first < h->count[len]) return h->symbol[index + code - first];
        index += h->count[len];
        first = (first + h->count[len]) << 1;
        code <<= 1;
    }
    return -1;
}

/* §3.2.4: a stored block — LEN, its complement NLEN, then LEN raw bytes from the next byte boundary. */
static int inflate_stored(Inflate *s)
{
    unsigned len, nlen;
    drop_bits(s, s->nbits & 7);
    len = get_bits(s, 16);
    nlen = get_bits(s, 16);
    if (overrun(s)) return truncated(s);
    if (len != (~nlen & 0xffffu))
        return fail(s->err, s->label, "zlib stream: stored block length %u does not match its complement", len);
    if (len > s->cap - s->len) return fail(s->err, s->label, "zlib stream: more data than the %zu bytes expected", s->cap);
    for (; len && s->nbits >= 8; len--) s->out[s->len++] = (uint8_t)get_bits(s, 8);   /* bytes already buffered */
    if (len > s->n - s->pos) return truncated(s);
    memcpy(s->out + s->len, s->in + s->pos, len);
    s->pos += len;
    s->len += len;
    return 0;
}

/* §3.2.5: literals and <length, distance> pairs until the end-of-block symbol 256. */
static int inflate_codes(Inflate *s, const Huffman *lit, const Huffman *dist)
{
    for (;;) {
        int sym = decode_symbol(s, lit), dsym;
        unsigned len, d;
        if (overrun(s)) return truncated(s);
        if (sym < 0) return fail(s->err, s->label, "zlib stream: invalid literal/length code");
        if (sym < 256) {
            if (s->len == s->cap) return fail(s->err, s->label, "zlib stream: more data than the %zu bytes expected", s->cap);
            s->out[s->len++] = (uint8_t)sym;
            continue;
        }
        if (sym == 256) return 0;
        if (sym > 285) return fail(s->err, s->label, "zlib stream: invalid length symbol %d", sym);
        len = LEN_BASE[sym - 257] + get_bits(s, LEN_EXTRA[sym - 257]);
        dsym = decode_symbol(s, dist);
        if (overrun(s)) return truncated(s);
        if (dsym < 0 || dsym > 29) return fail(s->err, s->label, "zlib stream: invalid distance code");
        d = DIST_BASE[dsym] + get_bits(s, DIST_EXTRA[dsym]);
        if (overrun(s)) return truncated(s);
        if (d > s->len)
            return fail(s->err, s->label, "zlib stream: distance %u reaches before the start (%zu bytes decoded)", d, s->len);
        if (d > s->window)
            return fail(s->err, s->label, "zlib stream: distance %u beyond the %zu-byte window of its header", d, s->window);
        if (len > s->cap - s->len) return fail(s->err, s->label, "zlib stream: more data than the %zu bytes expected", s->cap);
        for (; len; len--, s->len++) s->out[s->len] = s->out[s->len - d];   /* may overlap: byte by byte */
    }
}

static int bad_code(Inflate *s, const char *what, int r)
{
    return fail(s->err, s->label, "zlib stream: %s code lengths are %s", what,
                r == HUFF_OVERSUBSCRIBED ? "over-subscribed" : "incomplete");
}

/* §3.2.7: the code lengths of a dynamic block, themselves Huffman coded and run-length coded. */
static int read_dynamic_codes(Inflate *s, Huffman *lit, Huffman *dist)
{
    uint8_t lengths[286 + 30], cl[19] = {0};
    Huffman clh;
    int nlen = (int)get_bits(s, 5) + 257, ndist = (int)get_bits(s, 5) + 1, ncl = (int)get_bits(s, 4) + 4, i, r;
    if (nlen > 286 || ndist > 30)
        return fail(s->err, s->label, "zlib stream: %d length and %d distance codes (at most 286 and 30)", nlen, ndist);
    for (i = 0; i < ncl; i++) cl[CL_ORDER[i]] = (uint8_t)get_bits(s, 3);
    if (overrun(s)) return truncated(s);
    if ((r = huffman_build(&clh, cl, 19, CODE_LENGTHS))) return bad_code(s, "code-length", r);
    for (i = 0; i < nlen + ndist;) {
        int sym = decode_symbol(s, &clh), rep, value = 0;
        if (overrun(s)) return truncated(s);
        if (sym < 0) return fail(s->err, s->label, "zlib stream: invalid code-length code");
        if (sym < 16) { lengths[i++] = (uint8_t)sym; continue; }
        if (sym == 16) {
            if (i == 0) return fail(s->err, s->label, "zlib stream: code length repeat with no previous length");
            value = lengths[i - 1];
            rep = 3 + (int)get_bits(s, 2);
        } else {
            rep = sym == 17 ? 3 + (int)get_bits(s, 3) : 11 + (int)get_bits(s, 7);
        }
        if (rep > nlen + ndist - i) return fail(s->err, s->label, "zlib stream: code length repeat runs past the end");
        while (rep--) lengths[i++] = (uint8_t)value;
    }
    if (lengths[256] == 0) return fail(s->err, s->label, "zlib stream: dynamic block without an end-of-block code");
    if ((r = huffman_build(lit, lengths, nlen, LITLEN))) return bad_code(s, "literal/length", r);
    if ((r = huffman_build(dist, lengths + nlen, ndist, DISTANCES))) return bad_code(s, "distance", r);
    return 0;
}

/* RFC 1950 §2.2: header, deflate blocks (§3.2.3), Adler-32 of the output; nothing may follow. */
static int inflate_zlib(Inflate *s)
{
    Huffman lit, dist;
    unsigned cmf, flg, final, type;
    uint32_t adler;
    int i;
    if (s->n < 2) return truncated(s);
    cmf = s->in[0];
    flg = s->in[1];
    if ((cmf & 15) != 8) return fail(s->err, s->label, "zlib stream: compression method %u (only 8, deflate)", cmf & 15);
    if ((cmf >> 4) > 7) return fail(s->err, s->label, "zlib stream: window size code %u (at most 7)", cmf >> 4);
    if ((cmf << 8 | flg) % 31) return fail(s->err, s->label, "zlib stream: header check bits are wrong");
    if (flg & 32) return fail(s->err, s->label, "zlib stream: asks for a preset dictionary (not allowed in PNG)");
    s->window = (size_t)1 << ((cmf >> 4) + 8);
    s->pos = 2;
    do {
        final = get_bits(s, 1);
        type = get_bits(s, 2);
        if (overrun(s)) return truncated(s);
        if (type == 0) {
            if (inflate_stored(s)) return -1;
        } else if (type == 1) {
            if (!s->have_fixed) {               /* once per stream: many tiny blocks must stay cheap */
                uint8_t l[288], d[32];
                fixed_lengths(l, d);
                huffman_build(&s->fixed_lit, l, 288, LITLEN);
                huffman_build(&s->fixed_dist, d, 32, DISTANCES);
                s->have_fixed = 1;
            }
            if (inflate_codes(s, &s->fixed_lit, &s->fixed_dist)) return -1;
        } else if (type == 2) {
            if (read_dynamic_codes(s, &lit, &dist) || inflate_codes(s, &lit, &dist)) return -1;
        } else {
            return fail(s->err, s->label, "zlib stream: invalid block type 3");
        }
    } while (!final);
    drop_bits(s, s->nbits & 7);
    for (adler = 0, i = 0; i < 4; i++) adler = adler << 8 | get_bits(s, 8);   /* big-endian */
    if (overrun(s)) return fail(s->err, s->label, "zlib stream is truncated before its Adler-32 checksum");
    if (adler != adler32_update(1, s->out, s->len)) return fail(s->err, s->label, "zlib stream: Adler-32 mismatch (data corrupt)");
    if (s->nbits || s->pos < s->n)
        return fail(s->err, s->label, "zlib stream: %zu bytes follow its end", s->n - s->pos + (size_t)s->nbits / 8);
    return 0;
}

int zlib_decompress(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *len, const char *label,
                    char err[EDIFF_ERR])
{
    Inflate s;
    int r;
    memset(&s, 0, sizeof s);
    s.in = in;
    s.n = n;
    s.out = out;
    s.cap = cap;
    s.label = label;
    s.err = err;
    r = inflate_zlib(&s);
    *len = s.len;
    return r;
}

/* ------------------------------------------------------------------ deflate ----------------------- */

/* A growable byte buffer; running out of memory exits, as xmalloc does. */
typedef struct {
    uint8_t *p;
    size_t   len, cap;
} Buf;

static void buf_reserve(Buf *b, size_t extra)
{
    if (extra > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *p;
        while (extra > cap - b->len) cap *= 2;
        if (!(p = realloc(b->p, cap))) {
            fprintf(stderr, "ediff: out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
}

static void buf_put(Buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_be32(Buf *b, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_put(b, q, 4);
}

typedef struct {
    Buf     *out;
    uint32_t bits;
    int      nbits;
} BitWriter;

/* Append the n low bits of v, least significant first (§3.1.1). n <= 24. */
static void put_bits(BitWriter *w, uint32_t v, int n)
{
    w->bits |= v << w->nbits;
    w->nbits += n;
    while (w->nbits >= 8) {
        uint8_t byte = (uint8_t)w->bits;
        buf_put(w->out, &byte, 1);
        w->bits >>= 8;
        w->nbits -= 8;
    }
}

static void flush_bits(BitWriter *w) { if (w->nbits) put_bits(w, 0, 8 - w->nbits); }

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Huffman code lengths of at most `limit` bits for freq[0..n) (0 for unused symbols): the two-queue
 * Huffman construction over symbols sorted by frequency, then depths beyond the limit are folded back
 * (each fold moves one leaf up to the limit and splits a shallower leaf, keeping the Kraft sum at 1),
 * and the lengths are dealt out again, longest to the rarest symbols. */
static void huffman_lengths(const uint32_t *freq, int n, int limit, uint8_t *len)
{
    uint64_t key[288];
    uint32_t weight[2 * 288];
    int parent[2 * 288], depth[2 * 288], count[2 * 288] = {0}, m = 0, i, k, leaf = 0, node, d;
    uint32_t kraft = 0;
    for (i = 0; i < n; i++) {
        len[i] = 0;
        if (freq[i]) key[m++] = (uint64_t)freq[i] << 9 | (uint64_t)i;
    }
    if (m == 0) return;
    if (m == 1) { len[key[0] & 511] = 1; return; }
    qsort(key, (size_t)m, sizeof key[0], cmp_u64);
    for (i = 0; i < m; i++) weight[i] = (uint32_t)(key[i] >> 9);
    for (k = m, node = m; k < 2 * m - 1; k++) {            /* leaves and merged nodes both come out sorted */
        int pick[2], j;
        for (j = 0; j < 2; j++)
            pick[j] = leaf < m && (node >= k || weight[leaf] <= weight[node]) ? leaf++ : node++;
        weight[k] = weight[pick[0]] + weight[pick[1]];
        parent[pick[0]] = parent[pick[1]] = k;
    }
    depth[2 * m - 2] = 0;
    for (k = 2 * m - 3; k >= 0; k--) depth[k] = depth[parent[k]] + 1;
    for (i = 0; i < m; i++) count[depth[i] < limit ? depth[i] : limit]++;
    for (d = 1; d <= limit; d++) kraft += (uint32_t)count[d] << (limit - d);
    for (; kraft > 1u << limit; kraft--) {
        count[limit]--;
        for (d = limit - 1; d > 0 && !count[d]; d--) {}
        count[d]--;
        count[d + 1] += 2;
    }
    for (d = limit, i = 0; d > 0; d--)
        for (k = count[d]; k > 0; k--) len[key[i++] & 511] = (uint8_t)d;
}

/* Canonical codes for code lengths (§3.2.2), bit-reversed so they can be sent LSB first. */
static void huffman_codes(const uint8_t *len, int n, uint16_t *code)
{
    int count[16] = {0}, i, l;
    unsigned next[16], c = 0;
    for (i = 0; i < n; i++) count[len[i]]++;
    count[0] = 0;
    for (l = 1; l < 16; l++) next[l] = c = (c + (unsigned)count[l - 1]) << 1;
    for (i = 0; i < n; i++)
        if (len[i]) code[i] = (uint16_t)reverse_bits(next[len[i]]++, len[i]);
}

static int length_symbol(unsigned len) { int s = 28; while (LEN_BASE[s] > len) s--; return s; }
static int distance_symbol(unsigned d) { int s = 29; while (DIST_BASE[s] > d) s--; return s; }

#define WINDOW      32768
#define HASH_BITS   15
#define MAX_CHAIN   32           /* candidates per position: 1024x1024 photos come within 0.1% of 128, 3x faster */
#define NICE_LEN    128          /* a match this long ends the search */
#define LAZY_LEN    16           /* a shorter match is checked against the one at the next byte */
#define BLOCK_SYMS  16384        /* symbols per deflate block */

/* One LZ77 output symbol: a literal (dist 0) or a match of length 3..258 at distance 1..32768. */
typedef struct {
    uint16_t lit_or_len;
    uint16_t dist;
} Sym;

typedef struct {
    const uint8_t *in;
    size_t         n;
    int32_t       *head;         /* [1 << HASH_BITS] most recent position of each hash, -1 for none */
    int32_t       *prev;         /* [WINDOW] the position before pos with the same hash, at pos % WINDOW */
    Sym           *syms;
    int            nsyms;
    size_t         block_start;  /* input offset of the block being collected */
    uint8_t        cost[286];    /* bits a literal/length symbol is expected to cost (see match_pays) */
    uint8_t        dcost[30];    /* and a distance symbol */
    BitWriter      bw;
} Deflate;

static unsigned hash3(const uint8_t *p) { return ((unsigned)p[0] << 10 ^ (unsigned)p[1] << 5 ^ p[2]) & ((1u << HASH_BITS) - 1); }

static void insert_position(Deflate *z, size_t pos)
{
    unsigned h;
    if (pos + 3 > z->n) return;
    h = hash3(z->in + pos);
    z->prev[pos % WINDOW] = z->head[h];
    z->head[h] = (int32_t)pos;
}

/* The price model for matches: code lengths of the symbol counts + 1 (so unseen symbols are priced,
 * not free). Called with the counts of each block for the next one. */
static void price_symbols(Deflate *z, const uint32_t *lf, const uint32_t *df)
{
    uint32_t f[286];
    int i;
    for (i = 0; i < 286; i++) f[i] = lf[i] + 1;
    huffman_lengths(f, 286, 15, z->cost);
    for (i = 0; i < 30; i++) f[i] = df[i] + 1;
    huffman_lengths(f, 30, 15, z->dcost);
}

/* Before any block: literals priced by the byte histogram of the first 64 KiB, lengths and distances
 * at the fixed code's 7 and 5 bits (a count that gives about those lengths). */
static void price_initial(Deflate *z)
{
    uint32_t lf[286] = {0}, df[30];
    size_t i, n = z->n < 65536 ? z->n : 65536;
    for (i = 0; i < n; i++) lf[z->in[i]]++;
    for (i = 256; i < 286; i++) lf[i] = (uint32_t)(n >> 7);
    for (i = 0; i < 30; i++) df[i] = 1;
    price_symbols(z, lf, df);
}

/* True if a match is expected to cost fewer bits than the literals it replaces. On filtered image rows
 * short, distant matches often do not (zlib's Z_FILTERED strategy, which Pillow uses, drops every
 * match under 6 bytes for that reason); this asks the statistics instead. */
static int match_pays(const Deflate *z, size_t pos, int len, unsigned dist)
{
    int ls = length_symbol((unsigned)len), ds = distance_symbol(dist), i;
    unsigned match = z->cost[257 + ls] + LEN_EXTRA[ls] + z->dcost[ds] + DIST_EXTRA[ds], lits = 0;
    for (i = 0; i < len && lits <= match; i++) lits += z->cost[z->in[pos + (size_t)i]];
    return match < lits;
}

/* The longest match for pos among earlier positions with the same hash (at most MAX_CHAIN of them,
 * within WINDOW bytes); then pos joins the chains. Returns its length (0 if under 3). */
static int find_match(Deflate *z, size_t pos, unsigned *dist)
{
    const uint8_t *b = z->in + pos;
    size_t limit = pos > WINDOW ? pos - WINDOW : 0, maxlen = z->n - pos < 258 ? z->n - pos : 258, best = 2;
    int32_t cand;
    int chain = MAX_CHAIN;
    if (pos + 3 > z->n) return 0;
    for (cand = z->head[hash3(b)]; cand >= 0 && (size_t)cand >= limit && chain--;) {
        const uint8_t *a = z->in + cand;
        int32_t next;
        if (a[best] == b[best] && a[0] == b[0] && a[1] == b[1]) {
            size_t l = 2;
            while (l < maxlen && a[l] == b[l]) l++;
            if (l > best) {
                best = l;
                *dist = (unsigned)(pos - (size_t)cand);
                if (l >= NICE_LEN || l == maxlen) break;
            }
        }
        next = z->prev[cand % WINDOW];
        if (next >= cand) break;                 /* a slot reused by a newer position: chain ends */
        cand = next;
    }
    insert_position(z, pos);
    return best >= 3 && match_pays(z, pos, (int)best, *dist) ? (int)best : 0;
}

/* Sizes in bits of the block's symbols under code lengths lit[286], dist[30] (extra bits included). */
static uint64_t coded_bits(const uint32_t *lf, const uint32_t *df, const uint8_t *lit, const uint8_t *dist)
{
    uint64_t bits = 0;
    int i;
    for (i = 0; i < 286; i++) bits += (uint64_t)lf[i] * (lit[i] + (i > 256 ? LEN_EXTRA[i - 257] : 0));
    for (i = 0; i < 30; i++) bits += (uint64_t)df[i] * (dist[i] + DIST_EXTRA[i]);
    return bits;
}

/* Run-length code of code lengths (§3.2.7): 0-15 literally, 16 = repeat the previous 3-6 times,
 * 17 = 3-10 zeros, 18 = 11-138 zeros. Returns the number of symbols; extra[] holds their extra bits. */
static int rle_lengths(const uint8_t *len, int n, uint8_t *sym, uint8_t *extra)
{
    int i = 0, k = 0, prev = -1;
    while (i < n) {
        int run = 1;
        while (i + run < n && run < 138 && len[i + run] == len[i]) run++;
        if (len[i] == 0 && run >= 3) {
            sym[k] = run >= 11 ? 18 : 17;
            extra[k++] = (uint8_t)(run - (run >= 11 ? 11 : 3));
            i += run;
            prev = 0;
        } else if (len[i] == prev && run >= 3) {
            run = run < 6 ? run : 6;
            sym[k] = 16;
            extra[k++] = (uint8_t)(run - 3);
            i += run;
        } else {
            prev = sym[k] = len[i++];
            extra[k++] = 0;
        }
    }
    return k;
}

static const uint8_t RLE_EXTRA_BITS[19] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7};

/* The block's symbols under code lengths lit[288], dist[32] (all of them: the fixed code's canonical
 * order counts symbols 286, 287, 30 and 31 too), then end-of-block. */
static void put_symbols(BitWriter *w, const Sym *syms, int nsyms, const uint8_t *lit, const uint8_t *dist)
{
    uint16_t lcode[288], dcode[32];
    int i;
    huffman_codes(lit, 288, lcode);
    huffman_codes(dist, 32, dcode);
    for (i = 0; i < nsyms; i++) {
        unsigned v = syms[i].lit_or_len, d = syms[i].dist;
        if (d == 0) {
            put_bits(w, lcode[v], lit[v]);
        } else {
            int ls = length_symbol(v), ds = distance_symbol(d);
            put_bits(w, lcode[257 + ls], lit[257 + ls]);
            put_bits(w, v - LEN_BASE[ls], LEN_EXTRA[ls]);
            put_bits(w, dcode[ds], dist[ds]);
            put_bits(w, d - DIST_BASE[ds], DIST_EXTRA[ds]);
        }
    }
    put_bits(w, lcode[256], lit[256]);
}

/* Send the collected symbols as one block (§3.2.3): dynamic, fixed or stored, whichever is smallest. */
static void emit_block(Deflate *z, size_t end, int final)
{
    uint32_t lf[286] = {0}, df[30] = {0}, cf[19] = {0};
    uint8_t lit[288] = {0}, dist[32] = {0}, fl[288], fd[32], all[286 + 30], rsym[286 + 30], rextra[286 + 30], cl[19];
    uint16_t ccode[19];
    uint64_t dyn, fixed, stored;
    size_t raw = end - z->block_start;
    int i, k, nlit = 286, ndist = 30, ncl = 19, nrle;
    BitWriter *w = &z->bw;
    for (i = 0; i < z->nsyms; i++) {
        if (z->syms[i].dist == 0) lf[z->syms[i].lit_or_len]++;
        else {
            lf[257 + length_symbol(z->syms[i].lit_or_len)]++;
            df[distance_symbol(z->syms[i].dist)]++;
        }
    }
    lf[256] = 1;
    huffman_lengths(lf, 286, 15, lit);
    huffman_lengths(df, 30, 15, dist);
    for (i = 0; i < 30 && !dist[i]; i++) {}
    if (i == 30) dist[0] = 1;                      /* no matches: one unused distance code, as zlib sends */
    while (nlit > 257 && !lit[nlit - 1]) nlit--;
    while (ndist > 1 && !dist[ndist - 1]) ndist--;
    memcpy(all, lit, (size_t)nlit);
    memcpy(all + nlit, dist, (size_t)ndist);
    nrle = rle_lengths(all, nlit + ndist, rsym, rextra);
    for (i = 0; i < nrle; i++) cf[rsym[i]]++;
    for (i = 0, k = 0; i < 19; i++) k += cf[i] != 0;
    if (k == 1) cf[cf[0] ? 1 : 0] = 1;             /* a code-length code must be complete: two codes at least */
    huffman_lengths(cf, 19, 7, cl);
    while (ncl > 4 && !cl[CL_ORDER[ncl - 1]]) ncl--;

    dyn = 3 + 14 + 3 * (uint64_t)ncl + coded_bits(lf, df, lit, dist);
    for (i = 0; i < nrle; i++) dyn += cl[rsym[i]] + RLE_EXTRA_BITS[rsym[i]];
    fixed_lengths(fl, fd);
    fixed = 3 + coded_bits(lf, df, fl, fd);
    stored = (raw / 65535 + 1) * (3 + 7 + 32) + 8 * (uint64_t)raw;

    if (stored < dyn && stored < fixed) {
        size_t off = z->block_start;
        do {
            size_t k = end - off < 65535 ? end - off : 65535;
            put_bits(w, final && off + k == end, 3);       /* BFINAL, BTYPE 00 */
            flush_bits(w);
            put_bits(w, (uint32_t)k, 16);
            put_bits(w, (uint32_t)k ^ 0xffff, 16);
            buf_put(w->out, z->in + off, k);
            off += k;
        } while (off < end);
    } else if (fixed <= dyn) {
        put_bits(w, (unsigned)final | 1u << 1, 3);
        put_symbols(w, z->syms, z->nsyms, fl, fd);
    } else {
        put_bits(w, (unsigned)final | 2u << 1, 3);
        put_bits(w, (unsigned)(nlit - 257), 5);
        put_bits(w, (unsigned)(ndist - 1), 5);
        put_bits(w, (unsigned)(ncl - 4), 4);
        for (i = 0; i < ncl; i++) put_bits(w, cl[CL_ORDER[i]], 3);
        huffman_codes(cl, 19, ccode);
        for (i = 0; i < nrle; i++) {
            put_bits(w, ccode[rsym[i]], cl[rsym[i]]);
            put_bits(w, rextra[i], RLE_EXTRA_BITS[rsym[i]]);
        }
        put_symbols(w, z->syms, z->nsyms, lit, dist);
    }
    price_symbols(z, lf, df);
    z->nsyms = 0;
    z->block_start = end;
}

static void push_symbol(Deflate *z, unsigned lit_or_len, unsigned dist)
{
    z->syms[z->nsyms].lit_or_len = (uint16_t)lit_or_len;
    z->syms[z->nsyms].dist = (uint16_t)dist;
    z->nsyms++;
}

/* LZ77 with lazy matching (as zlib does): a match is emitted unless the next position has a longer
 * one, in which case a literal goes out and the longer match is considered in turn. */
static void deflate_data(Deflate *z)
{
    size_t i = 0, next;                          /* next: first position not yet in the hash chains */
    unsigned dist = 0, dist2 = 0;
    int len = z->n ? find_match(z, 0, &dist) : 0, len2;
    while (i < z->n) {
        if (z->nsyms == BLOCK_SYMS) emit_block(z, i, 0);
        next = i + 1;
        if (len && len < LAZY_LEN && i + 1 < z->n) {
            len2 = find_match(z, i + 1, &dist2);
            if (len2 > len) {
                push_symbol(z, z->in[i++], 0);
                len = len2;
                dist = dist2;
                continue;
            }
            next = i + 2;
        }
        if (len) {
            push_symbol(z, (unsigned)len, dist);
            for (; next < i + (size_t)len; next++) insert_position(z, next);
            i += (size_t)len;
        } else {
            push_symbol(z, z->in[i++], 0);
        }
        len = i < z->n ? find_match(z, i, &dist) : 0;
    }
    emit_block(z, z->n, 1);
}

int zlib_compress(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len, char err[EDIFF_ERR])
{
    Deflate z;
    Buf buf = {NULL, 0, 0};
    static const uint8_t header[2] = {0x78, 0x9c};   /* deflate, 32 KiB window, default level */
    size_t i;
    if (n > (size_t)INT32_MAX) return fail(err, "zlib", "%zu bytes is more than one stream of ours takes (2^31-1)", n);
    memset(&z, 0, sizeof z);
    z.in = in;
    z.n = n;
    z.head = xmalloc(sizeof(int32_t) << HASH_BITS);
    z.prev = xmalloc(sizeof(int32_t) * WINDOW);
    z.syms = xmalloc(sizeof(Sym) * BLOCK_SYMS);
    for (i = 0; i < (size_t)1 << HASH_BITS; i++) z.head[i] = -1;
    for (i = 0; i < WINDOW; i++) z.prev[i] = -1;
    z.bw.out = &buf;
    price_initial(&z);
    buf_put(&buf, header, 2);
    deflate_data(&z);
    flush_bits(&z.bw);
    buf_be32(&buf, adler32_update(1, in, n));
    free(z.head);
    free(z.prev);
    free(z.syms);
    *out = buf.p;
    *out_len = buf.len;
    return 0;
}

/* ------------------------------------------------------------------ filters ----------------------- */

/* §9.4: the Paeth predictor — whichever of left, up, upper-left is closest to left + up - upper-left. */
static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* The predictor of filter type t (§9.2) for byte i of a row; prior is the row above (NULL: zeros). */
static int predict(int t, const uint8_t *row, const uint8_t *prior, size_t i, size_t bpp)
{
    int a = i >= bpp ? row[i - bpp] : 0, b = prior ? prior[i] : 0, c = prior && i >= bpp ? prior[i - bpp] : 0;
    switch (t) {
    case 1: return a;
    case 2: return b;
    case 3: return (a + b) >> 1;
    case 4: return paeth(a, b, c);
    default: return 0;
    }
}

/* Undo the filter of each row in place (rows of 1 + rowbytes bytes; byte 0 is the filter type). */
static int unfilter(uint8_t *rows, size_t nrows, size_t rowbytes, size_t bpp, const char *label, char err[EDIFF_ERR])
{
    size_t r, i;
    for (r = 0; r < nrows; r++) {
        uint8_t *row = rows + r * (rowbytes + 1) + 1, *prior = r ? row - rowbytes - 1 : NULL;
        int t = row[-1];
        if (t > 4) return fail(err, label, "row %zu has filter type %d (0-4 are defined)", r, t);
        if (t)
            for (i = 0; i < rowbytes; i++) row[i] = (uint8_t)(row[i] + predict(t, row, prior, i, bpp));
    }
    return 0;
}

/* Filter 8-bit rows for writing: each row gets the type with the least sum of |byte as signed|, the
 * heuristic the PNG specification suggests (§12.7). out holds h rows of 1 + rowbytes bytes. */
static void filter_rows(const uint8_t *px, int w, int h, int bpp, uint8_t *out)
{
    size_t rowbytes = (size_t)w * (size_t)bpp, i;
    uint8_t *trial = xmalloc(rowbytes + 1);
    int y, t;
    for (y = 0; y < h; y++) {
        const uint8_t *row = px + (size_t)y * rowbytes, *prior = y ? row - rowbytes : NULL;
        uint8_t *dst = out + (size_t)y * (rowbytes + 1);
        unsigned long best = (unsigned long)-1;
        for (t = 0; t < 5; t++) {
            unsigned long sum = 0;
            for (i = 0; i < rowbytes; i++) {
                trial[i] = (uint8_t)(row[i] - predict(t, row, prior, i, (size_t)bpp));
                sum += (unsigned long)abs((int)(signed char)trial[i]);
            }
            if (sum < best) {
                best = sum;
                dst[0] = (uint8_t)t;
                memcpy(dst + 1, trial, rowbytes);
            }
        }
    }
    free(trial);
}

/* ------------------------------------------------------------------ reading ----------------------- */

enum { CT_GREY = 0, CT_RGB = 2, CT_PALETTE = 3, CT_GREY_ALPHA = 4, CT_RGBA = 6 };

/* What the chunks said. */
typedef struct {
    uint32_t w, h;
    int      depth, color, interlace, channels;
    uint8_t  palette[256][4];     /* RGBA, alpha from tRNS */
    int      n_palette;
    int      has_key;             /* tRNS of a grey or RGB image: this sample value is transparent */
    unsigned key[3];
    size_t   idat_first;          /* offset of the first IDAT chunk */
    size_t   idat_bytes;          /* total of their data */
} PngHeader;

static const uint8_t PNG_SIGNATURE[8] = {137, 'P', 'N', 'G', '\r', '\n', 26, '\n'};

/* §11.2.1: IHDR, with the colour type / bit depth combinations of Table 11.1 and our size limits. */
static int read_ihdr(PngHeader *h, const uint8_t *p, uint32_t len, const char *label, char err[EDIFF_ERR])
{
    int d;
    if (len != 13) return fail(err, label, "IHDR is %u bytes (13 expected)", len);
    h->w = be32(p);
    h->h = be32(p + 4);
    h->depth = d = p[8];
    h->color = p[9];
    h->interlace = p[12];
    if (h->w == 0 || h->h == 0 || h->w > 0x7fffffffu || h->h > 0x7fffffffu)
        return fail(err, label, "invalid image size %ux%u", h->w, h->h);
    if (h->w > PNG_MAX_SIDE || h->h > PNG_MAX_SIDE)
        return fail(err, label, "image is %ux%u; the limit is %d pixels per side", h->w, h->h, PNG_MAX_SIDE);
    if ((uint64_t)h->w * h->h > PNG_MAX_PIXELS)
        return fail(err, label, "image is %ux%u = %llu pixels; the limit is %d", h->w, h->h,
                    (unsigned long long)h->w * h->h, PNG_MAX_PIXELS);
    switch (h->color) {
    case CT_GREY:       h->channels = 1; if (d == 1 || d == 2 || d == 4 || d == 8 || d == 16) break; goto bad_depth;
    case CT_PALETTE:    h->channels = 1; if (d == 1 || d == 2 || d == 4 || d == 8) break; goto bad_depth;
    case CT_RGB:        h->channels = 3; if (d == 8 || d == 16) break; goto bad_depth;
    case CT_GREY_ALPHA: h->channels = 2; if (d == 8 || d == 16) break; goto bad_depth;
    case CT_RGBA:       h->channels = 4; if (d == 8 || d == 16) break; goto bad_depth;
    default: return fail(err, label, "invalid colour type %d", h->color);
    }
    if (p[10]) return fail(err, label, "compression method %d (only 0 is defined)", p[10]);
    if (p[11]) return fail(err, label, "filter method %d (only 0 is defined)", p[11]);
    if (h->interlace > 1) return fail(err, label, "interlace method %d (0 or 1 are defined)", h->interlace);
    return 0;
bad_depth:
    return fail(err, label, "bit depth %d is not allowed with colour type %d", d, h->color);
}

static int read_plte(PngHeader *h, const uint8_t *p, uint32_t len, const char *label, char err[EDIFF_ERR])
{
    uint32_t i;
    if (h->color == CT_GREY || h->color == CT_GREY_ALPHA) return fail(err, label, "PLTE chunk in a greyscale image");
    if (len == 0 || len % 3 || len / 3 > 256) return fail(err, label, "PLTE chunk of %u bytes", len);
    if (h->color == CT_PALETTE && len / 3 > 1u << h->depth)
        return fail(err, label, "%u palette entries for bit depth %d", len / 3, h->depth);
    h->n_palette = (int)(len / 3);
    for (i = 0; i < len / 3; i++) {
        memcpy(h->palette[i], p + 3 * i, 3);
        h->palette[i][3] = 255;
    }
    return 0;
}

/* §11.3.1.1 tRNS: alpha per palette entry, or the one grey / RGB sample value that is transparent. */
static int read_trns(PngHeader *h, const uint8_t *p, uint32_t len, const char *label, char err[EDIFF_ERR])
{
    uint32_t i;
    if (h->color == CT_PALETTE) {
        if (!h->n_palette) return fail(err, label, "tRNS chunk before PLTE");
        if (len > (uint32_t)h->n_palette) return fail(err, label, "tRNS has %u entries for a %d-colour palette", len, h->n_palette);
        for (i = 0; i < len; i++) h->palette[i][3] = p[i];
    } else if (h->color == CT_GREY || h->color == CT_RGB) {
        int n = h->color == CT_GREY ? 1 : 3, c;
        if (len != 2u * (unsigned)n) return fail(err, label, "tRNS chunk of %u bytes (%d expected)", len, 2 * n);
        for (c = 0; c < n; c++) h->key[c] = (unsigned)p[2 * c] << 8 | p[2 * c + 1];
        h->has_key = 1;
    } else {
        return fail(err, label, "tRNS chunk in an image with an alpha channel");
    }
    return 0;
}

/* Latin-1 -> UTF-8 (tEXt and zTXt hold Latin-1, §11.3.3). */
static char *latin1_to_utf8(const uint8_t *s, size_t n)
{
    char *out = xmalloc(2 * n + 1), *o = out;
    size_t i;
    for (i = 0; i < n; i++) {
        if (s[i] < 0x80) *o++ = (char)s[i];
        else { *o++ = (char)(0xc0 | s[i] >> 6); *o++ = (char)(0x80 | (s[i] & 0x3f)); }
    }
    *o = 0;
    return out;
}

/* True if s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned lead = s[i], k, j, cp;
        if (lead < 0x80) { i++; continue; }
        k = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;   /* continuation bytes */
        if (k == 0 || lead > 0xf4 || n - i <= k) return 0;
        cp = lead & (0x3fu >> k);
        for (j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < (k == 1 ? 0x80u : k == 2 ? 0x800u : 0x10000u) || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return 0;
        i += k + 1;
    }
    return 1;
}

/* The value of a text chunk whose keyword is "parameters" (tEXt, zTXt or iTXt, §11.3.3) as a malloc'd
 * UTF-8 string. `p` points just past the keyword's NUL. */
static int read_text_value(const char *type, const uint8_t *p, size_t n, char **value, const char *label, char err[EDIFF_ERR])
{
    const uint8_t *lang_end, *text;
    uint8_t *raw = NULL;
    size_t len;
    int latin1 = strcmp(type, "iTXt") != 0, compressed = strcmp(type, "zTXt") == 0;
    char what[64];
    snprintf(what, sizeof what, "%s: %s chunk 'parameters'", label, type);
    if (!latin1) {                                /* flag, method, language\0, translated keyword\0 */
        if (n < 2 || p[0] > 1 || p[1] != 0) return fail(err, what, "bad compression flag or method");
        compressed = p[0];
        lang_end = memchr(p + 2, 0, n - 2);
        text = lang_end ? memchr(lang_end + 1, 0, n - (size_t)(lang_end + 1 - p)) : NULL;
        if (!text) return fail(err, what, "language tag or translated keyword not terminated");
        text++;                                   /* past the translated keyword's NUL */
        n -= (size_t)(text - p);
        p = text;
    } else if (compressed) {
        if (n < 1 || p[0] != 0) return fail(err, what, "compression method is not 0");
        p++;
        n--;
    }
    if (compressed) {
        raw = xmalloc(PNG_TEXT_MAX);
        if (zlib_decompress(p, n, raw, PNG_TEXT_MAX, &len, what, err)) { free(raw); return -1; }
        p = raw;
        n = len;
    }
    if (memchr(p, 0, n)) { free(raw); return fail(err, what, "text holds a NUL byte"); }
    if (n > PNG_TEXT_MAX) { free(raw); return fail(err, what, "text of %zu bytes (limit %d)", n, PNG_TEXT_MAX); }
    if (!latin1 && !utf8_valid(p, n)) { free(raw); return fail(err, what, "text is not valid UTF-8"); }
    if (latin1) *value = latin1_to_utf8(p, n);
    else {
        *value = xmalloc(n + 1);
        memcpy(*value, p, n);
        (*value)[n] = 0;
    }
    free(raw);
    return 0;
}

/* Walk every chunk (§5.3, §5.6 ordering): check lengths and CRCs, read IHDR, PLTE, tRNS, locate the
 * IDAT run and the "parameters" text. Unknown ancillary chunks are skipped, unknown critical ones refused. */
static int read_chunks(const uint8_t *d, size_t size, const char *label, PngHeader *h, char **parameters, char err[EDIFF_ERR])
{
    size_t pos = 8;
    int seen_plte = 0, seen_trns = 0, idat_state = 0;   /* idat_state: 0 none yet, 1 in the run, 2 after it */
    if (size < 8) return fail(err, label, "not a PNG file (%zu bytes)", size);
    if (memcmp(d, PNG_SIGNATURE, 8)) return fail(err, label, "not a PNG file (bad signature)");
    for (;;) {
        uint32_t len;
        const uint8_t *type, *body;
        char name[5];
        int i;
        if (size - pos < 12)
            return fail(err, label, "truncated: %s at byte %zu", pos == size ? "file ends without IEND" : "incomplete chunk header", pos);
        len = be32(d + pos);
        type = d + pos + 4;
        body = d + pos + 8;
        for (i = 0; i < 4; i++)
            if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z')))
                return fail(err, label, "chunk at byte %zu has an invalid type (bytes %02x %02x %02x %02x)", pos,
                            type[0], type[1], type[2], type[3]);
        memcpy(name, type, 4);
        name[4] = 0;
        if (len > 0x7fffffffu) return fail(err, label, "chunk '%s' at byte %zu: length %u exceeds 2^31-1", name, pos, len);
        if (len > size - pos - 12)
            return fail(err, label, "truncated: chunk '%s' at byte %zu needs %u bytes, %zu remain", name, pos,
                        len + 12, size - pos);
        if (crc32_update(0, type, (size_t)len + 4) != be32(body + len))
            return fail(err, label, "CRC mismatch in chunk '%s' at byte %zu (file corrupt)", name, pos);
        if (pos == 8 && strcmp(name, "IHDR")) return fail(err, label, "first chunk is '%s', not IHDR", name);
        if (idat_state == 1 && strcmp(name, "IDAT")) idat_state = 2;

        if (!strcmp(name, "IHDR")) {
            if (pos != 8) return fail(err, label, "second IHDR chunk at byte %zu", pos);
            if (read_ihdr(h, body, len, label, err)) return -1;
        } else if (!strcmp(name, "PLTE")) {
            if (seen_plte++) return fail(err, label, "second PLTE chunk");
            if (idat_state) return fail(err, label, "PLTE chunk after the image data");
            if (seen_trns) return fail(err, label, "PLTE chunk after tRNS");
            if (read_plte(h, body, len, label, err)) return -1;
        } else if (!strcmp(name, "tRNS")) {
            if (seen_trns++) return fail(err, label, "second tRNS chunk");
            if (idat_state) return fail(err, label, "tRNS chunk after the image data");
            if (read_trns(h, body, len, label, err)) return -1;
        } else if (!strcmp(name, "IDAT")) {
            if (idat_state == 2) return fail(err, label, "IDAT chunks are not consecutive (another at byte %zu)", pos);
            if (h->color == CT_PALETTE && !seen_plte) return fail(err, label, "palette image without a PLTE chunk before IDAT");
            if (!idat_state) h->idat_first = pos;
            idat_state = 1;
            h->idat_bytes += len;
        } else if (!strcmp(name, "IEND")) {
            if (len) return fail(err, label, "IEND chunk with %u bytes of data", len);
            if (!idat_state) return fail(err, label, "no IDAT chunk");
            return 0;                           /* anything after IEND is not part of the image */
        } else if (!strcmp(name, "tEXt") || !strcmp(name, "zTXt") || !strcmp(name, "iTXt")) {
            static const char key[] = "parameters";
            if (!*parameters && len >= sizeof key && !memcmp(body, key, sizeof key) &&
                read_text_value(name, body + sizeof key, len - sizeof key, parameters, label, err))
                return -1;
        } else if (name[0] >= 'A' && name[0] <= 'Z') {
            return fail(err, label, "unknown critical chunk '%s'", name);
        }
        pos += (size_t)len + 12;
    }
}

static const uint8_t ADAM7_X0[7] = {0, 4, 0, 2, 0, 1, 0}, ADAM7_Y0[7] = {0, 0, 4, 0, 2, 0, 1};
static const uint8_t ADAM7_DX[7] = {8, 8, 4, 4, 2, 2, 1}, ADAM7_DY[7] = {8, 8, 8, 4, 4, 2, 2};

/* Pass p of the image (§8.2): its origin, step and size in pixels (0 if the pass is empty). */
typedef struct {
    uint32_t x0, y0, dx, dy, w, h;
    size_t   rowbytes;
} Pass;

static int image_passes(const PngHeader *h, Pass pass[7])
{
    int p, n = h->interlace ? 7 : 1;
    for (p = 0; p < n; p++) {
        Pass *q = &pass[p];
        q->x0 = h->interlace ? ADAM7_X0[p] : 0;
        q->y0 = h->interlace ? ADAM7_Y0[p] : 0;
        q->dx = h->interlace ? ADAM7_DX[p] : 1;
        q->dy = h->interlace ? ADAM7_DY[p] : 1;
        q->w = h->w > q->x0 ? (h->w - q->x0 + q->dx - 1) / q->dx : 0;
        q->h = h->h > q->y0 ? (h->h - q->y0 + q->dy - 1) / q->dy : 0;
        if (!q->w) q->h = 0;
        q->rowbytes = ((size_t)q->w * (size_t)h->channels * (size_t)h->depth + 7) / 8;
    }
    return n;
}

/* Sample i of a row, at bit depth 1, 2, 4, 8 or 16 (big-endian, leftmost pixel in the high bits). */
static unsigned sample_at(const uint8_t *row, size_t i, int depth)
{
    size_t bit;
    if (depth == 8) return row[i];
    if (depth == 16) return (unsigned)row[2 * i] << 8 | row[2 * i + 1];
    bit = i * (size_t)depth;
    return (unsigned)(row[bit / 8] >> (8 - depth - (int)(bit % 8))) & ((1u << depth) - 1);
}

/* A sample as 8 bits: low depths are scaled exactly (x255, x85, x17), 16-bit samples keep their high
 * byte (as Pillow and libpng's png_set_strip_16 do). */
static uint8_t to_8bit(unsigned v, int depth)
{
    return (uint8_t)(depth == 16 ? v >> 8 : depth == 8 ? v : v * 255u / ((1u << depth) - 1));
}

/* One unfiltered row of a pass to RGBA at dst, dst + step, ... (§7.2 sample order, §11.3.1.1 tRNS). */
static int expand_row(const PngHeader *h, const uint8_t *row, uint32_t n, uint8_t *dst, size_t step,
                      const char *label, char err[EDIFF_ERR])
{
    uint32_t x;
    int d = h->depth;
    for (x = 0; x < n; x++, dst += step) {
        unsigned v[4] = {0, 0, 0, 0}, c;    /* every used v[c] is set; gcc -O3 cannot tell */
        for (c = 0; c < (unsigned)h->channels; c++) v[c] = sample_at(row, (size_t)x * h->channels + c, d);
        switch (h->color) {
        case CT_GREY:
            dst[0] = dst[1] = dst[2] = to_8bit(v[0], d);
            dst[3] = h->has_key && v[0] == h->key[0] ? 0 : 255;
            break;
        case CT_RGB:
            for (c = 0; c < 3; c++) dst[c] = to_8bit(v[c], d);
            dst[3] = h->has_key && v[0] == h->key[0] && v[1] == h->key[1] && v[2] == h->key[2] ? 0 : 255;
            break;
        case CT_PALETTE:
            if (v[0] >= (unsigned)h->n_palette)
                return fail(err, label, "palette index %u out of range (%d entries)", v[0], h->n_palette);
            memcpy(dst, h->palette[v[0]], 4);
            break;
        case CT_GREY_ALPHA:
            dst[0] = dst[1] = dst[2] = to_8bit(v[0], d);
            dst[3] = to_8bit(v[1], d);
            break;
        default:
            for (c = 0; c < 4; c++) dst[c] = to_8bit(v[c], d);
        }
    }
    return 0;
}

/* IDAT data -> inflate (exact size) -> unfilter -> RGBA, pass by pass. */
static int decode_pixels(const uint8_t *d, const PngHeader *h, const char *label, Image *img, char err[EDIFF_ERR])
{
    Pass pass[7];
    int np = image_passes(h, pass), p, rc = -1;
    uint64_t need = 0;
    size_t pos = h->idat_first, got = 0, off = 0, bpp = ((size_t)h->channels * (size_t)h->depth + 7) / 8;
    uint8_t *z, *raw = NULL;
    char what[EDIFF_ERR];
    for (p = 0; p < np; p++) need += (uint64_t)pass[p].h * (pass[p].rowbytes + 1);
    if (need > (uint64_t)h->idat_bytes * DEFLATE_RATIO)
        return fail(err, label, "image data too short: %zu compressed bytes cannot hold the %llu bytes of a %ux%u image",
                    h->idat_bytes, (unsigned long long)need, h->w, h->h);
    z = xmalloc(h->idat_bytes + 1);
    while (got < h->idat_bytes) {               /* the IDAT run, validated by read_chunks */
        uint32_t len = be32(d + pos);
        memcpy(z + got, d + pos + 8, len);
        got += len;
        pos += (size_t)len + 12;
    }
    raw = xmalloc((size_t)need + 1);
    snprintf(what, sizeof what, "%s: image data", label);
    if (zlib_decompress(z, h->idat_bytes, raw, (size_t)need, &got, what, err)) goto done;
    if (got < need) {
        fail(err, label, "image data ends early: %zu of %llu bytes", got, (unsigned long long)need);
        goto done;
    }
    img->w = (int)h->w;
    img->h = (int)h->h;
    img->rgba = xmalloc((size_t)h->w * h->h * 4);
    for (p = 0; p < np; p++) {
        const Pass *q = &pass[p];
        uint32_t r;
        if (unfilter(raw + off, q->h, q->rowbytes, bpp, label, err)) goto done;
        for (r = 0; r < q->h; r++) {
            uint8_t *dst = img->rgba + 4 * ((size_t)(q->y0 + r * q->dy) * h->w + q->x0);
            if (expand_row(h, raw + off + r * (q->rowbytes + 1) + 1, q->w, dst, 4 * (size_t)q->dx, label, err)) goto done;
        }
        off += (size_t)q->h * (q->rowbytes + 1);
    }
    rc = 0;
done:
    free(z);
    free(raw);
    return rc;
}

void image_free(Image *img)
{
    free(img->rgba);
    free(img->parameters);
    img->rgba = NULL;
    img->parameters = NULL;
}

int png_decode(const uint8_t *data, size_t size, const char *label, Image *img, char err[EDIFF_ERR])
{
    PngHeader h;
    memset(&h, 0, sizeof h);
    memset(img, 0, sizeof *img);
    if (read_chunks(data, size, label, &h, &img->parameters, err) || decode_pixels(data, &h, label, img, err)) {
        image_free(img);
        img->w = img->h = 0;
        return -1;
    }
    return 0;
}

int png_read(const char *path, Image *img, char err[EDIFF_ERR])
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long size;
    int rc;
    memset(img, 0, sizeof *img);
    if (!f) return fail(err, path, "cannot open (%s)", strerror(errno));
    if (fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return fail(err, path, "cannot read (%s)", strerror(errno));
    }
    if ((unsigned long)size > PNG_MAX_FILE) {
        fclose(f);
        return fail(err, path, "file is %ld bytes; the limit is %u", size, PNG_MAX_FILE);
    }
    buf = xmalloc((size_t)size + 1);
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        rc = fail(err, path, "cannot read (%s)", ferror(f) ? strerror(errno) : "file shrank while reading");
    } else {
        rc = png_decode(buf, (size_t)size, path, img, err);
    }
    free(buf);
    fclose(f);
    return rc;
}

/* A pixel of a mask is painted when it is visible and not black: alpha > 0 and max(R, G, B) > 0. */
void image_mask(const Image *img, uint8_t *painted)
{
    size_t i, n = (size_t)img->w * (size_t)img->h;
    for (i = 0; i < n; i++) {
        const uint8_t *p = img->rgba + 4 * i;
        painted[i] = p[3] && (p[0] || p[1] || p[2]);
    }
}

/* ------------------------------------------------------------------ writing ----------------------- */

static void put_chunk(Buf *b, const char *type, const void *data, size_t n)
{
    buf_be32(b, (uint32_t)n);
    buf_put(b, type, 4);
    buf_put(b, data, n);
    buf_be32(b, crc32_update(crc32_update(0, type, 4), data, n));
}

/* §11.3.3.2: a keyword is 1-79 printable characters without leading, trailing or double spaces
 * (we take ASCII only). */
static int keyword_valid(const char *k)
{
    size_t n = strlen(k), i;
    if (n < 1 || n > 79 || k[0] == ' ' || k[n - 1] == ' ') return 0;
    for (i = 0; i < n; i++)
        if (k[i] < 32 || k[i] > 126 || (k[i] == ' ' && k[i + 1] == ' ')) return 0;
    return 1;
}

/* One text chunk: tEXt for an ASCII value, iTXt (uncompressed, UTF-8) otherwise — as Pillow does. */
static int put_text(Buf *b, const char *key, const char *value, const char *label, char err[EDIFF_ERR])
{
    size_t kn = strlen(key), vn = strlen(value), i;
    int ascii = 1;
    Buf c = {NULL, 0, 0};
    if (!keyword_valid(key)) return fail(err, label, "invalid text keyword '%.80s'", key);
    if (vn > PNG_TEXT_MAX) return fail(err, label, "text '%s' is %zu bytes (limit %d)", key, vn, PNG_TEXT_MAX);
    for (i = 0; i < vn; i++) ascii &= (unsigned char)value[i] < 0x80;
    if (!ascii && !utf8_valid((const uint8_t *)value, vn)) return fail(err, label, "text '%s' is not valid UTF-8", key);
    buf_put(&c, key, kn + 1);
    if (!ascii) buf_put(&c, "\0\0\0", 4);          /* uncompressed, method 0, no language, no translation */
    buf_put(&c, value, vn);
    put_chunk(b, ascii ? "tEXt" : "iTXt", c.p, c.len);
    free(c.p);
    return 0;
}

int png_encode(const uint8_t *px, int w, int h, int channels, const char *const *text, uint8_t **png,
               size_t *size, const char *label, char err[EDIFF_ERR])
{
    static const uint8_t COLOR_OF[5] = {0, CT_GREY, CT_GREY_ALPHA, CT_RGB, CT_RGBA};
    Buf b = {NULL, 0, 0};
    uint8_t ihdr[13], *filtered, *z;
    size_t zn, off, rowbytes;
    int i;
    *png = NULL;
    *size = 0;
    if (channels < 1 || channels > 4) return fail(err, label, "%d channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)", channels);
    if (w < 1 || h < 1 || w > PNG_MAX_SIDE || h > PNG_MAX_SIDE || (int64_t)w * h > PNG_MAX_PIXELS)
        return fail(err, label, "image size %dx%d outside 1..%d per side, %d pixels", w, h, PNG_MAX_SIDE, PNG_MAX_PIXELS);
    buf_put(&b, PNG_SIGNATURE, 8);
    ihdr[0] = (uint8_t)(w >> 24); ihdr[1] = (uint8_t)(w >> 16); ihdr[2] = (uint8_t)(w >> 8); ihdr[3] = (uint8_t)w;
    ihdr[4] = (uint8_t)(h >> 24); ihdr[5] = (uint8_t)(h >> 16); ihdr[6] = (uint8_t)(h >> 8); ihdr[7] = (uint8_t)h;
    ihdr[8] = 8;
    ihdr[9] = COLOR_OF[channels];
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    put_chunk(&b, "IHDR", ihdr, 13);
    for (i = 0; text && text[i]; i += 2)
        if (!text[i + 1] ? fail(err, label, "text keyword '%.80s' without a value", text[i])
                         : put_text(&b, text[i], text[i + 1], label, err)) {
            free(b.p);
            return -1;
        }
    rowbytes = (size_t)w * (size_t)channels;
    filtered = xmalloc((rowbytes + 1) * (size_t)h);
    filter_rows(px, w, h, channels, filtered);
    if (zlib_compress(filtered, (rowbytes + 1) * (size_t)h, &z, &zn, err)) {   /* < 2^31 bytes by the limits */
        free(filtered);
        free(b.p);
        return -1;
    }
    free(filtered);
    for (off = 0; off < zn; off += 65536) put_chunk(&b, "IDAT", z + off, zn - off < 65536 ? zn - off : 65536);
    free(z);
    put_chunk(&b, "IEND", "", 0);
    *png = b.p;
    *size = b.len;
    return 0;
}

/* Write the bytes to a temporary file beside `path`, flush them to disk and rename it into place, so
 * `path` is either untouched or complete. */
static int write_file_atomic(const char *path, const uint8_t *data, size_t n, char err[EDIFF_ERR])
{
    char tmp[4096];
    int ok;
#ifdef HAVE_POSIX_IO
    int fd;
    size_t done = 0;
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp) return fail(err, path, "path too long");
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666)) < 0) return fail(err, path, "cannot write (%s)", strerror(errno));
    while (done < n) {
        ssize_t k = write(fd, data + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    ok = done == n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
#else
    FILE *f;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return fail(err, path, "path too long");
    if (!(f = fopen(tmp, "wb"))) return fail(err, path, "cannot write (%s)", strerror(errno));
    ok = fwrite(data, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
#endif
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return fail(err, path, "cannot write (%s)", strerror(e));
    }
    return 0;
}

int png_write(const char *path, const uint8_t *px, int w, int h, int channels, const char *const *text, char err[EDIFF_ERR])
{
    uint8_t *png;
    size_t n;
    int rc;
    if (png_encode(px, w, h, channels, text, &png, &n, path, err)) return -1;
    rc = write_file_atomic(path, png, n, err);
    free(png);
    return rc;
}
