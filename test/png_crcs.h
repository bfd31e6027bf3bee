/* test/png_crcs.h — one helper shared by the PNG tests (test/t_png.c) and the PNG fuzz target
 * (test/fuzz/fuzz_png.c), which are built into different programs: make a mutated PNG's chunk CRCs valid
 * again, so that the mutation reaches what the CRCs guard (IHDR values, palettes, text, the zlib stream). */
#ifndef EDIFF_TEST_PNG_CRCS_H
#define EDIFF_TEST_PNG_CRCS_H

#include "../ediff.h"

/* Recompute the CRC of every chunk, walking the chunk lengths as far as they fit in the n bytes. */
static void fix_crcs(uint8_t *p, size_t n)
{
    size_t pos = 8;
    while (n >= 12 && pos <= n - 12) {
        uint32_t len = (uint32_t)p[pos] << 24 | (uint32_t)p[pos + 1] << 16 | (uint32_t)p[pos + 2] << 8 | p[pos + 3], c;
        if (len > n - pos - 12) break;
        c = crc32_update(0, p + pos + 4, (size_t)len + 4);
        p[pos + 8 + len] = (uint8_t)(c >> 24);
        p[pos + 9 + len] = (uint8_t)(c >> 16);
        p[pos + 10 + len] = (uint8_t)(c >> 8);
        p[pos + 11 + len] = (uint8_t)c;
        pos += (size_t)len + 12;
    }
}

#endif
