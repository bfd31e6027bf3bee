/* test/t_blob.c — the weight blob: lookup, convert.py equivalence (.safetensors vs .pt), and
 * corruption: truncations and byte flips must give one clear error line, never a crash. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void lookup(TestRun *T)
{
    Blob b;
    const Tensor *t;
    const char *m;
    int ok;
    if (!selected(T, "blob.lookup") || open_ref(T, &b, "convert_st.bin")) return;
    t = blob_get(&b, "conv_in.weight");
    m = blob_meta(&b, "test.model");
    ok = t && t->rank == 4 && t->shape[0] == 4 && t->shape[3] == 3 && t->dtype == DT_F32 &&
         blob_get(&b, "conv_in.bias") && blob_get(&b, "conv_in.bias")->dtype == DT_BF16 &&
         blob_get(&b, "logit_scale") && blob_get(&b, "logit_scale")->rank == 0 &&
         !blob_get(&b, "text_model.embeddings.position_ids") && !blob_get(&b, "conv_in") &&
         m && strcmp(m, "tiny") == 0 && !blob_meta(&b, "test");
    report(T, ok, "blob.lookup", "names, dtypes (f32/f16/bf16), rank 0, skipped buffer, metadata");
    blob_close(&b);
}

/* The .safetensors and the .pt conversion of the same tensors: same names, dtypes, shapes, bytes. */
static void convert_equivalence(TestRun *T)
{
    Blob a, b;
    int i, same = 1;
    if (!selected(T, "blob.convert_st_vs_pt")) return;
    if (open_ref(T, &a, "convert_st.bin")) return;
    if (open_ref(T, &b, "convert_pt.bin")) { blob_close(&a); return; }
    same = a.n_tensors == b.n_tensors;
    for (i = 0; same && i < a.n_tensors; i++) {
        const Tensor *x = a.by_name[i], *y = b.by_name[i];
        same = strcmp(x->name, y->name) == 0 && x->dtype == y->dtype && x->rank == y->rank &&
               memcmp(x->shape, y->shape, sizeof x->shape) == 0 &&
               memcmp(x->data, y->data, (size_t)x->numel * dtype_size(x->dtype)) == 0;
    }
    report(T, same, "blob.convert_st_vs_pt", "%d tensors, identical table and data: %s", a.n_tensors, same ? "yes" : "NO");
    blob_close(&a);
    blob_close(&b);
}

/* One error line: non-empty, no newline, names the label. */
static int clean_error(const char *err, const char *label)
{
    return err[0] && !strchr(err, '\n') && strncmp(err, label, strlen(label)) == 0;
}

static void corruption(TestRun *T)
{
    size_t n = 0, len, i;
    unsigned char *good = read_file("test/ref/convert_st.bin", &n), *buf;
    char err[EDIFF_ERR];
    int truncations = 0, trunc_ok = 0, flips = 0, flip_ok = 0, refixed = 0, refixed_ok = 0, accepted = 0;
    unsigned seed = 12345;
    Blob b;
    if (!selected(T, "blob.corruption")) { free(good); return; }
    if (!good) { report(T, 0, "blob.corruption", "cannot read test/ref/convert_st.bin"); return; }
    buf = xmalloc(n + 1);
    /* Truncations: every length of the header, then spread over the rest of the file. */
    for (len = 0; len < n; len += len < 80 ? 1 : 17) {
        memcpy(buf, good, len);
        err[0] = 0;
        truncations++;
        if (blob_open_memory(&b, buf, len, "trunc.bin", err) != 0 && clean_error(err, "trunc.bin")) trunc_ok++;
        else if (err[0] == 0) blob_close(&b);
    }
    report(T, truncations >= 50 && trunc_ok == truncations, "blob.corruption.truncated",
           "%d truncation lengths, %d rejected with one error line", truncations, trunc_ok);
    /* Single-byte flips in the header (all 64 bytes), metadata and table: the checksum catches each. */
    for (i = 0; i < 256; i++) {
        size_t pos = i < 64 ? i : (seed = seed * 1103515245u + 12345u) % (n < 512 ? n : 512);
        memcpy(buf, good, n);
        buf[pos] ^= (unsigned char)(1u << (i % 8));
        err[0] = 0;
        flips++;
        if (blob_open_memory(&b, buf, n, "flip.bin", err) != 0 && clean_error(err, "flip.bin")) flip_ok++;
        else if (err[0] == 0) blob_close(&b);
    }
    report(T, flips >= 200 && flip_ok == flips, "blob.corruption.flipped", "%d single-byte flips, %d rejected", flips, flip_ok);
    /* The same flips with the checksum recomputed: now the field checks must hold the line. A flip that
     * still describes a valid blob (a changed name letter) may load; then every tensor must lie inside. */
    for (i = 0; i < 256; i++) {
        size_t pos = (seed = seed * 1103515245u + 12345u) % (n < 512 ? n : 512);  /* header, metadata, table */
        uint32_t crc;
        if (pos >= 56 && pos < 60) continue;
        memcpy(buf, good, n);
        buf[pos] ^= (unsigned char)(1u << (i % 8));
        memset(buf + 56, 0, 4);
        crc = crc32_update(0, buf, n);
        buf[56] = (unsigned char)crc; buf[57] = (unsigned char)(crc >> 8);
        buf[58] = (unsigned char)(crc >> 16); buf[59] = (unsigned char)(crc >> 24);
        err[0] = 0;
        refixed++;
        if (blob_open_memory(&b, buf, n, "refix.bin", err) != 0) {
            if (clean_error(err, "refix.bin")) refixed_ok++;
        } else {
            int t, inside = 1;
            for (t = 0; t < b.n_tensors; t++) {
                const Tensor *x = &b.tensors[t];
                size_t end = (size_t)((const unsigned char *)x->data - buf) + (size_t)x->numel * dtype_size(x->dtype);
                if (end > n) inside = 0;
            }
            accepted++;
            refixed_ok += inside;
            blob_close(&b);
        }
    }
    report(T, refixed == refixed_ok, "blob.corruption.flipped_fixed_crc",
           "%d flips with a valid checksum: %d rejected cleanly, %d still valid blobs", refixed, refixed - accepted, accepted);
    free(buf);
    free(good);
}

void suite_blob(TestRun *T)
{
    lookup(T);
    convert_equivalence(T);
    corruption(T);
}
