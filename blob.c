/* blob.c — the weight blob (docs/blob.md): one flat file, mmapped read-only, every field validated
 * before use, so a corrupt or hostile file gives one error line and never a crash.
 *
 *   header   64 bytes: "EDIFFBLB", version, tensor count, metadata and table extents, file size, CRC-32
 *   metadata "key=value\n" lines (UTF-8)
 *   table    one record per tensor: name length, dtype, rank, shape, data offset, data size, name
 *   data     each tensor 64-byte aligned, little-endian
 */
#include "ediff.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define HAVE_MMAP 1
#endif

#define BLOB_MAGIC      "EDIFFBLB"
#define BLOB_VERSION    1
#define BLOB_HEADER     64
#define MAX_TENSORS     (1 << 20)
#define MAX_NAME        1023
#define MAX_META        (64u << 20)
#define MAX_META_LINES  (1 << 20)
#define MIN_RECORD      24          /* bytes of the smallest record: rank 0, a 1-byte name, padded to 8 */

/* ------------------------------------------------------------------ CRC-32 ------------------------ */

/* CRC-32 of zlib and PNG (reflected polynomial 0xEDB88320), slicing by 8 (Kounavis & Berry 2005: eight
 * table lookups per 8 bytes, independent of each other) over tables built at each call (8 KiB, a few
 * microseconds; the blob check at start-up reads the whole file through it). `crc` is the running
 * value (0 to start). */
uint32_t crc32_update(uint32_t crc, const void *data, size_t n)
{
    uint32_t table[8][256];
    const uint8_t *p = data;
    uint32_t c = ~crc;
    int i, k;
    for (i = 0; i < 256; i++) {
        uint32_t v = (uint32_t)i;
        for (k = 0; k < 8; k++) v = (v >> 1) ^ (0xEDB88320u & (0u - (v & 1)));
        table[0][i] = v;
    }
    for (i = 0; i < 256; i++)
        for (k = 1; k < 8; k++) table[k][i] = (table[k - 1][i] >> 8) ^ table[0][table[k - 1][i] & 255];
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = table[7][lo & 255] ^ table[6][(lo >> 8) & 255] ^ table[5][(lo >> 16) & 255] ^ table[4][lo >> 24] ^
            table[3][hi & 255] ^ table[2][(hi >> 8) & 255] ^ table[1][(hi >> 16) & 255] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = table[0][(c ^ *p++) & 255] ^ (c >> 8);
    return ~c;
}

/* ------------------------------------------------------------------ parsing ----------------------- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* err = "label: message" (the label cut to half the buffer at most) */
static void format_err(char err[EDIFF_ERR], const char *label, const char *fmt, va_list ap)
{
    size_t k = strlen(label);
    if (k > EDIFF_ERR / 2) k = EDIFF_ERR / 2;
    memcpy(err, label, k);
    memcpy(err + k, ": ", 2);
    vsnprintf(err + k + 2, EDIFF_ERR - k - 2, fmt, ap);
}

static int fail(char err[EDIFF_ERR], const char *label, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    format_err(err, label, fmt, ap);
    va_end(ap);
    return -1;
}

/* Is [off, off+len) inside a file of `size` bytes? (no overflow) */
static int in_file(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const Tensor *const *)a)->name, (*(const Tensor *const *)b)->name);
}
static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int valid_key(const char *k)
{
    if (!*k) return 0;
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              *k == '.' || *k == '_' || *k == '-'))
            return 0;
    return 1;
}

static int parse_meta(Blob *b, const uint8_t *text, size_t n, char err[EDIFF_ERR])
{
    size_t i, lines = 0;
    char *s;
    int k = 0;
    for (i = 0; i < n; i++) {
        if (text[i] == 0) return fail(err, b->path, "metadata: NUL byte at offset %zu", i);
        if (text[i] == '\n') lines++;
    }
    if (n && text[n - 1] != '\n') return fail(err, b->path, "metadata: last line is not terminated");
    if (lines > MAX_META_LINES) return fail(err, b->path, "metadata: %zu lines (limit %d)", lines, MAX_META_LINES);
    b->meta = xmalloc(n + 1);
    memcpy(b->meta, text, n);
    b->meta[n] = 0;
    b->meta_kv = xmalloc((lines ? lines : 1) * 2 * sizeof(char *));
    for (s = b->meta; *s; k++) {
        char *nl = strchr(s, '\n'), *eq;
        *nl = 0;
        eq = strchr(s, '=');
        if (!eq) return fail(err, b->path, "metadata line %d has no '='", k + 1);
        *eq = 0;
        if (!valid_key(s)) return fail(err, b->path, "metadata line %d: bad key", k + 1);
        b->meta_kv[2 * k] = s;
        b->meta_kv[2 * k + 1] = eq + 1;
        s = nl + 1;
    }
    b->n_meta = k;
    qsort(b->meta_kv, (size_t)k, 2 * sizeof(char *), cmp_key);
    for (k = 1; k < b->n_meta; k++)
        if (strcmp(b->meta_kv[2 * k - 2], b->meta_kv[2 * k]) == 0)
            return fail(err, b->path, "metadata: duplicate key '%s'", b->meta_kv[2 * k]);
    return 0;
}

static int parse(Blob *b, char err[EDIFF_ERR])
{
    const uint8_t *p = b->base;
    uint64_t size = b->size, n, meta_off, meta_size, table_off, table_size, file_size, pos;
    uint32_t crc, version;
    int i;
    uint8_t zero[4] = {0, 0, 0, 0};

    if (size < BLOB_HEADER) return fail(err, b->path, "file is %llu bytes, shorter than the 64-byte header", (unsigned long long)size);
    if (memcmp(p, BLOB_MAGIC, 8) != 0) return fail(err, b->path, "not an ediff blob (bad magic)");
    version = rd32(p + 8);
    if (version != BLOB_VERSION) return fail(err, b->path, "format version %u, this ediff reads version %d", version, BLOB_VERSION);
    n = rd32(p + 12);
    meta_off = rd64(p + 16); meta_size = rd64(p + 24);
    table_off = rd64(p + 32); table_size = rd64(p + 40);
    file_size = rd64(p + 48);
    crc = rd32(p + 56);
    if (file_size != size) return fail(err, b->path, "header says %llu bytes, file has %llu (truncated or padded)", (unsigned long long)file_size, (unsigned long long)size);
    if (rd32(p + 60) != 0) return fail(err, b->path, "header: reserved field is not zero");
    if (n > MAX_TENSORS) return fail(err, b->path, "header: %llu tensors (limit %d)", (unsigned long long)n, MAX_TENSORS);
    if (meta_off < BLOB_HEADER || !in_file(meta_off, meta_size, size) || meta_size > MAX_META)
        return fail(err, b->path, "header: metadata extent [%llu, +%llu) is outside the file", (unsigned long long)meta_off, (unsigned long long)meta_size);
    if (table_off < BLOB_HEADER || !in_file(table_off, table_size, size))
        return fail(err, b->path, "header: tensor table extent [%llu, +%llu) is outside the file", (unsigned long long)table_off, (unsigned long long)table_size);
    if (n > (table_size + 2) / MIN_RECORD)      /* n records take 24n - 2 bytes or more: before allocating */
        return fail(err, b->path, "header: %llu tensors cannot fit a %llu-byte table", (unsigned long long)n,
                    (unsigned long long)table_size);
    {   /* CRC-32 of the whole file with the checksum field read as zero */
        uint32_t c = crc32_update(0, p, 56);
        c = crc32_update(c, zero, 4);
        c = crc32_update(c, p + 60, size - 60);
        if (c != crc) return fail(err, b->path, "checksum mismatch (file corrupt): header %08x, data %08x", crc, c);
    }
    if (parse_meta(b, p + meta_off, meta_size, err)) return -1;

    b->tensors = xcalloc(n ? n : 1, sizeof(Tensor));
    b->n_tensors = (int)n;
    pos = table_off;
    for (i = 0; i < (int)n; i++) {
        Tensor *t = &b->tensors[i];
        uint64_t end = table_off + table_size, name_len, rank, off, bytes, numel = 1, rec;
        unsigned d;
        if (!in_file(pos, 4, end)) return fail(err, b->path, "tensor %d: record outside the table", i);
        name_len = rd16(p + pos); t->dtype = p[pos + 2]; rank = p[pos + 3];
        if (rank > MAX_RANK) return fail(err, b->path, "tensor %d: rank %llu (limit %d)", i, (unsigned long long)rank, MAX_RANK);
        if (name_len == 0 || name_len > MAX_NAME) return fail(err, b->path, "tensor %d: name length %llu", i, (unsigned long long)name_len);
        rec = 4 + 8 * rank + 16 + name_len + 1;
        if (!in_file(pos, rec, end)) return fail(err, b->path, "tensor %d: record outside the table", i);
        if (p[pos + rec - 1] != 0 || memchr(p + pos + rec - 1 - name_len, 0, name_len))
            return fail(err, b->path, "tensor %d: name is not NUL-terminated", i);
        t->name = (const char *)p + pos + rec - 1 - name_len;
        if (dtype_size(t->dtype) == 0) return fail(err, b->path, "tensor '%s': unknown dtype %d", t->name, t->dtype);
        t->rank = (int)rank;
        for (d = 0; d < rank; d++) {
            uint64_t dim = rd64(p + pos + 4 + 8 * d);
            if (dim > (uint64_t)INT32_MAX) return fail(err, b->path, "tensor '%s': dimension %u is %llu", t->name, d, (unsigned long long)dim);
            if (dim && numel > UINT64_MAX / dim / 8) return fail(err, b->path, "tensor '%s': shape overflows", t->name);
            numel *= dim;
            t->shape[d] = (int64_t)dim;
        }
        off = rd64(p + pos + 4 + 8 * rank);
        bytes = rd64(p + pos + 4 + 8 * rank + 8);
        if (bytes != numel * dtype_size(t->dtype))
            return fail(err, b->path, "tensor '%s': %llu data bytes, shape x %s needs %llu", t->name, (unsigned long long)bytes, dtype_name(t->dtype), (unsigned long long)(numel * dtype_size(t->dtype)));
        if (off % 64 != 0) return fail(err, b->path, "tensor '%s': data offset %llu is not 64-byte aligned", t->name, (unsigned long long)off);
        if (!in_file(off, bytes, size) || off < BLOB_HEADER)
            return fail(err, b->path, "tensor '%s': data [%llu, +%llu) is outside the file", t->name, (unsigned long long)off, (unsigned long long)bytes);
        t->numel = (int64_t)numel;
        t->data = p + off;
        pos += (rec + 7) / 8 * 8;
    }
    b->by_name = xmalloc((n ? n : 1) * sizeof(Tensor *));
    for (i = 0; i < (int)n; i++) b->by_name[i] = &b->tensors[i];
    qsort(b->by_name, (size_t)n, sizeof(Tensor *), cmp_name);
    for (i = 1; i < (int)n; i++)
        if (strcmp(b->by_name[i - 1]->name, b->by_name[i]->name) == 0)
            return fail(err, b->path, "duplicate tensor name '%s'", b->by_name[i]->name);
    return 0;
}

/* ------------------------------------------------------------------ open / close ------------------ */

static void set_path(Blob *b, const char *path)
{
    size_t n = strlen(path);
    if (n < sizeof b->path) memcpy(b->path, path, n + 1);
    else snprintf(b->path, sizeof b->path, "...%s", path + n - (sizeof b->path - 4));
}

int blob_open_memory(Blob *b, const void *data, size_t size, const char *label, char err[EDIFF_ERR])
{
    memset(b, 0, sizeof *b);
    set_path(b, label);
    b->base = data;
    b->size = size;
    b->storage = BLOB_BORROWED;
    if (parse(b, err)) {
        blob_close(b);
        return -1;
    }
    return 0;
}

int blob_open(Blob *b, const char *path, char err[EDIFF_ERR])
{
    int rc;
    memset(b, 0, sizeof *b);
    set_path(b, path);
#ifdef HAVE_MMAP
    {
        struct stat st;
        int fd = open(path, O_RDONLY);
        if (fd < 0) return fail(err, b->path, "cannot open: %s", strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return fail(err, b->path, "not a regular file");
        }
        b->size = (size_t)st.st_size;
        if (b->size == 0) {
            close(fd);
            return fail(err, b->path, "file is empty");
        }
        b->base = mmap(NULL, b->size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (b->base == MAP_FAILED) {
            b->base = NULL;
            return fail(err, b->path, "cannot map: %s", strerror(errno));
        }
        b->storage = BLOB_MMAP;
    }
#else
    {
        FILE *f = fopen(path, "rb");
        long n;
        uint8_t *buf;
        if (!f) return fail(err, b->path, "cannot open: %s", strerror(errno));
        if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
            fclose(f);
            return fail(err, b->path, "cannot determine the file size");
        }
        buf = xmalloc((size_t)n + 64);
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            fclose(f);
            free(buf);
            return fail(err, b->path, "read error");
        }
        fclose(f);
        b->base = buf;
        b->size = (size_t)n;
        b->storage = BLOB_READ;
    }
#endif
    rc = parse(b, err);
    if (rc) blob_close(b);
    return rc;
}

void blob_close(Blob *b)
{
#ifdef HAVE_MMAP
    if (b->storage == BLOB_MMAP) munmap((void *)b->base, b->size);
#endif
    if (b->storage == BLOB_READ) free((void *)b->base);
    free(b->tensors);
    free(b->by_name);
    free(b->meta);
    free(b->meta_kv);
    memset(b, 0, sizeof *b);
}

const Tensor *blob_get(const Blob *b, const char *name)
{
    int lo = 0, hi = b->n_tensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(name, b->by_name[mid]->name);
        if (c == 0) return b->by_name[mid];
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

const char *blob_meta(const Blob *b, const char *key)
{
    int lo = 0, hi = b->n_meta - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(key, b->meta_kv[2 * mid]);
        if (c == 0) return b->meta_kv[2 * mid + 1];
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

/* ------------------------------------------------------------------ Loader ------------------------ */

void loader_init(Loader *L, const Blob *b, const char *prefix)
{
    memset(L, 0, sizeof *L);
    L->blob = b;
    snprintf(L->prefix, sizeof L->prefix, "%s", prefix ? prefix : "");
}

int loader_fail(Loader *L, const char *fmt, ...)
{
    va_list ap;
    if (L->failed) return -1;
    va_start(ap, fmt);
    format_err(L->err, L->blob->path, fmt, ap);
    va_end(ap);
    L->failed = 1;
    return -1;
}

/* prefix + formatted name into buf; 0 if it does not fit */
static int full_name(Loader *L, char *buf, size_t n, const char *fmt, va_list ap)
{
    size_t p = strlen(L->prefix);
    int r;
    if (p >= n) return 0;
    memcpy(buf, L->prefix, p);
    r = vsnprintf(buf + p, n - p, fmt, ap);
    return r >= 0 && (size_t)r < n - p;
}

static const Tensor *get_tensor(Loader *L, int required, int rank, const int *shape, const char *fmt, va_list ap)
{
    char name[MAX_NAME + 1];
    const Tensor *t;
    int d;
    if (L->failed) return NULL;
    if (!full_name(L, name, sizeof name, fmt, ap)) { loader_fail(L, "tensor name too long"); return NULL; }
    t = blob_get(L->blob, name);
    if (!t) {
        if (required) loader_fail(L, "missing tensor '%s'", name);
        return NULL;
    }
    if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16) {
        loader_fail(L, "tensor '%s' has dtype %s, expected f32, f16 or bf16", name, dtype_name(t->dtype));
        return NULL;
    }
    if (t->rank != rank) goto bad_shape;
    for (d = 0; d < rank; d++)
        if (t->shape[d] != shape[d]) goto bad_shape;
    return t;
bad_shape: {
        char got[96] = "", want[96] = "";
        for (d = 0; d < t->rank; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        for (d = 0; d < rank; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", d ? "," : "", shape[d]);
        loader_fail(L, "tensor '%s' has shape [%s], the config needs [%s]", name, got, want);
        return NULL;
    }
}

const Tensor *ld_tensor(Loader *L, int rank, const int *shape, const char *name_fmt, ...)
{
    const Tensor *t;
    va_list ap;
    va_start(ap, name_fmt);
    t = get_tensor(L, 1, rank, shape, name_fmt, ap);
    va_end(ap);
    return t;
}

const Tensor *ld_optional(Loader *L, int rank, const int *shape, const char *name_fmt, ...)
{
    const Tensor *t;
    va_list ap;
    va_start(ap, name_fmt);
    t = get_tensor(L, 0, rank, shape, name_fmt, ap);
    va_end(ap);
    return t;
}

int ld_has(Loader *L, const char *name_fmt, ...)
{
    char name[MAX_NAME + 1];
    int ok;
    va_list ap;
    va_start(ap, name_fmt);
    ok = full_name(L, name, sizeof name, name_fmt, ap);
    va_end(ap);
    return ok && blob_get(L->blob, name) != NULL;
}

/* The value of prefix+key, or NULL (recording an error if required). */
static const char *meta_value(Loader *L, int required, const char *fmt, va_list ap, char *key, size_t keyn)
{
    const char *v;
    if (L->failed) return NULL;
    if (!full_name(L, key, keyn, fmt, ap)) { loader_fail(L, "metadata key too long"); return NULL; }
    v = blob_meta(L->blob, key);
    if (!v && required) loader_fail(L, "missing metadata key '%s'", key);
    return v;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    double v;
    if (strcmp(s, "inf") == 0) { *out = HUGE_VAL; return 0; }
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end || v != v) return -1;
    *out = v;
    return 0;
}

/* A numeric metadata value: 0 and *out set, or 1 if absent and optional, or -1 (error recorded). */
static int meta_number(Loader *L, int required, int integer, double *out, const char *fmt, va_list ap)
{
    char key[256];
    const char *v = meta_value(L, required, fmt, ap, key, sizeof key);
    long l;
    if (!v) return L->failed ? -1 : 1;
    if (integer ? parse_long(v, &l) : parse_double(v, out))
        return loader_fail(L, "metadata '%s=%s' is not %s", key, v, integer ? "an integer" : "a number");
    if (integer && (l < INT_MIN || l > INT_MAX))          /* callers keep ints: never a silent wrap */
        return loader_fail(L, "metadata '%s=%s' is out of range %d..%d", key, v, INT_MIN, INT_MAX);
    if (integer) *out = (double)l;
    return 0;
}

long ld_int(Loader *L, const char *key_fmt, ...)
{
    double v = 0; va_list ap;
    va_start(ap, key_fmt); meta_number(L, 1, 1, &v, key_fmt, ap); va_end(ap);
    return (long)v;
}

long ld_int_or(Loader *L, long dflt, const char *key_fmt, ...)
{
    double v = 0; int r; va_list ap;
    va_start(ap, key_fmt); r = meta_number(L, 0, 1, &v, key_fmt, ap); va_end(ap);
    return r == 0 ? (long)v : dflt;
}

double ld_float(Loader *L, const char *key_fmt, ...)
{
    double v = 0; va_list ap;
    va_start(ap, key_fmt); meta_number(L, 1, 0, &v, key_fmt, ap); va_end(ap);
    return v;
}

double ld_float_or(Loader *L, double dflt, const char *key_fmt, ...)
{
    double v = 0; int r; va_list ap;
    va_start(ap, key_fmt); r = meta_number(L, 0, 0, &v, key_fmt, ap); va_end(ap);
    return r == 0 ? v : dflt;
}

const char *ld_str(Loader *L, const char *key_fmt, ...)
{
    char key[256];
    const char *v;
    va_list ap;
    va_start(ap, key_fmt);
    v = meta_value(L, 1, key_fmt, ap, key, sizeof key);
    va_end(ap);
    return v ? v : "";
}

const char *ld_str_or(Loader *L, const char *dflt, const char *key_fmt, ...)
{
    char key[256];
    const char *v;
    va_list ap;
    va_start(ap, key_fmt);
    v = meta_value(L, 0, key_fmt, ap, key, sizeof key);
    va_end(ap);
    return v ? v : dflt;
}

int ld_ints(Loader *L, int *out, int max, const char *key_fmt, ...)
{
    char key[256], item[32];
    const char *v, *s;
    int n = 0;
    va_list ap;
    va_start(ap, key_fmt);
    v = meta_value(L, 1, key_fmt, ap, key, sizeof key);
    va_end(ap);
    if (!v) return 0;
    for (s = v; *s;) {
        size_t len = strcspn(s, ",");
        long x;
        if (len == 0 || len >= sizeof item || n == max) goto bad;
        memcpy(item, s, len);
        item[len] = 0;
        if (parse_long(item, &x) || x < INT32_MIN || x > INT32_MAX) goto bad;
        out[n++] = (int)x;
        s += len;
        if (*s == ',') s++;
    }
    if (n == 0) goto bad;
    return n;
bad:
    loader_fail(L, "metadata '%s=%s' is not a list of at most %d integers", key, v, max);
    return 0;
}

int ld_bool_or(Loader *L, int dflt, const char *key_fmt, ...)
{
    char key[256];
    const char *v;
    va_list ap;
    va_start(ap, key_fmt);
    v = meta_value(L, 0, key_fmt, ap, key, sizeof key);
    va_end(ap);
    if (!v) return dflt;
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) return 1;
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) return 0;
    loader_fail(L, "metadata '%s=%s' is not true or false", key, v);
    return dflt;
}

int ld_floats_or(Loader *L, double *out, int max, const char *key_fmt, ...)
{
    char key[256], item[64];
    const char *v, *s;
    int n = 0;
    va_list ap;
    va_start(ap, key_fmt);
    v = meta_value(L, 0, key_fmt, ap, key, sizeof key);
    va_end(ap);
    if (!v) return 0;
    for (s = v; *s;) {
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof item || n == max) goto bad;
        memcpy(item, s, len);
        item[len] = 0;
        if (parse_double(item, &out[n])) goto bad;
        n++;
        s += len;
        if (*s == ',') s++;
    }
    if (n == 0) goto bad;
    return n;
bad:
    loader_fail(L, "metadata '%s=%s' is not a list of at most %d numbers", key, v, max);
    return 0;
}
