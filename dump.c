/* dump.c — `ediff --dump DIR`: intermediate tensors as numpy .npy files, named after the modules that
 * produce them so that they line up with PyTorch forward hooks (docs/crosscheck.md, weights/crosscheck.py).
 *
 * A Dumper writes DIR/NAME.npy, NAME a slash-separated path whose last part is a module path as the blob
 * names its weights ("prompt/t5.encoder.block.3", "base/step03/call1/cond/base.1.unet.mid_block"),
 * creating the folders on the way; it keeps the names in the order written (the manifest run.json lists)
 * and applies --dump-filter (which names) and --dump-steps (which sampler steps dump their denoiser
 * calls). The numeric code never sees it: encoders and UNets report through a DumpHook, samplers
 * through a SampleHook, and ediff.c wires the rest. With dir NULL every call returns at once.
 */
#include "ediff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#include <sys/types.h>
#define HAVE_MKDIR 1
#endif

/* A step number 0..9999 or "last" (DUMP_LAST), the whole of s[0, len). */
static int parse_step(const char *s, size_t len, int *step)
{
    char buf[16], *end;
    long v;
    if (len == 4 && strncmp(s, "last", 4) == 0) {
        *step = DUMP_LAST;
        return 0;
    }
    if (len == 0 || len >= sizeof buf || s[0] < '0' || s[0] > '9') return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    v = strtol(buf, &end, 10);
    if (*end || v > 9999) return -1;
    *step = (int)v;
    return 0;
}

/* One item of --dump-steps: N, A-B, A-last, last, all (0-last) or none (no range: returns 1). */
static int parse_item(const char *s, size_t len, int *lo, int *hi)
{
    size_t dash = strcspn(s, "-");
    if (len == 4 && strncmp(s, "none", 4) == 0) return 1;
    if (len == 3 && strncmp(s, "all", 3) == 0) {
        *lo = 0;
        *hi = DUMP_LAST;
        return 0;
    }
    if (dash >= len) {
        if (parse_step(s, len, lo)) return -1;
        *hi = *lo;
        return 0;
    }
    if (parse_step(s, dash, lo) || *lo == DUMP_LAST || parse_step(s + dash + 1, len - dash - 1, hi)) return -1;
    return 0;
}

int dump_steps_parse(Dumper *d, const char *spec, char err[EDIFF_ERR])
{
    const char *p = spec;
    d->n_ranges = 0;
    for (;;) {
        size_t len = strcspn(p, ",");
        int lo, hi, rc = parse_item(p, len, &lo, &hi);
        if (rc < 0) {
            snprintf(err, EDIFF_ERR, "--dump-steps: '%.*s' is not a step (N, A-B, A-last, last, all or none)",
                     (int)(len < 40 ? len : 40), p);
            return -1;
        }
        if (rc == 0 && d->n_ranges == DUMP_RANGES_MAX) {
            snprintf(err, EDIFF_ERR, "--dump-steps: more than %d items", DUMP_RANGES_MAX);
            return -1;
        }
        if (rc == 0) {
            d->lo[d->n_ranges] = lo;
            d->hi[d->n_ranges++] = hi;
        }
        if (!p[len]) return 0;
        p += len + 1;
    }
}

int dump_init(Dumper *d, const char *dir, const char *filter, const char *steps, char err[EDIFF_ERR])
{
    memset(d, 0, sizeof *d);
    d->dir = dir;
    d->filter = filter && *filter ? filter : NULL;
    return dump_steps_parse(d, steps ? steps : "0,last", err);
}

void dump_free(Dumper *d)
{
    int i;
    for (i = 0; i < d->n_names; i++) free(d->names[i]);
    free(d->names);
    d->names = NULL;
    d->n_names = d->cap_names = 0;
}

/* Shell-style wildcards over the whole text: '*' any run of characters ('/' included), '?' any one. */
int glob_match(const char *pattern, const char *text)
{
    const char *star = NULL, *resume = NULL;
    while (*text) {
        if (*pattern == '*') {
            star = pattern++;
            resume = text;
        } else if (*pattern == '?' || *pattern == *text) {
            pattern++;
            text++;
        } else if (star) {                 /* let the last '*' take one more character */
            pattern = star + 1;
            text = ++resume;
        } else {
            return 0;
        }
    }
    while (*pattern == '*') pattern++;
    return *pattern == 0;
}

int dump_wanted(const Dumper *d, const char *name)
{
    const char *p;
    char item[256];
    if (!d || !d->dir) return 0;
    if (!d->filter) return 1;
    for (p = d->filter; *p;) {
        size_t len = strcspn(p, ",");
        snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), p);
        if (item[0] && (strpbrk(item, "*?") ? glob_match(item, name) : strstr(name, item) != NULL)) return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

int dump_step_wanted(const Dumper *d, int step, int steps)
{
    int i;
    if (!d || !d->dir) return 0;
    for (i = 0; i < d->n_ranges; i++) {
        int lo = d->lo[i] == DUMP_LAST ? steps - 1 : d->lo[i], hi = d->hi[i] == DUMP_LAST ? steps - 1 : d->hi[i];
        if (lo <= step && step <= hi) return 1;
    }
    return 0;
}

/* The folders of DIR/NAME.npy below DIR (which exists). */
static int make_folders(char *path, size_t from, char err[EDIFF_ERR])
{
#ifdef HAVE_MKDIR
    char *p;
    for (p = path + from; (p = strchr(p, '/')); p++) {
        *p = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            snprintf(err, EDIFF_ERR, "--dump: cannot create the directory %.200s (%s)", path, strerror(errno));
            *p = '/';
            return -1;
        }
        *p = '/';
    }
#else
    (void)path; (void)from; (void)err;     /* folders must exist: fopen says which one does not */
#endif
    return 0;
}

void dump_array(Dumper *d, const char *name, int dtype, const void *data, int rank, const int64_t *shape)
{
    char path[1024];
    size_t dir_len;
    if (!d || !d->dir || !data || d->failed || !dump_wanted(d, name)) return;
    dir_len = strlen(d->dir);
    if (snprintf(path, sizeof path, "%s/%s.npy", d->dir, name) >= (int)sizeof path) {
        snprintf(d->err, EDIFF_ERR, "--dump %s: path too long", d->dir);
        d->failed = 1;
        return;
    }
    if (make_folders(path, dir_len + 1, d->err) || npy_write_dtype(path, data, dtype, rank, shape, d->err)) {
        d->failed = 1;
        return;
    }
    if (d->n_names == d->cap_names) {
        char **grown;
        d->cap_names = d->cap_names ? 2 * d->cap_names : 256;
        grown = realloc(d->names, (size_t)d->cap_names * sizeof *grown);
        if (!grown) { fprintf(stderr, "ediff: out of memory\n"); exit(1); }
        d->names = grown;
    }
    d->names[d->n_names] = xmalloc(strlen(name) + 1);
    strcpy(d->names[d->n_names++], name);
}

/* The DumpHook adapter: PREFIX + the module name, a batch dimension of 1 first when asked. */
static void hook_array(void *ctx, const char *name, const float *x, int rank, const int64_t *shape)
{
    Dumper *d = ctx;
    char full[512];
    int64_t batched[MAX_RANK];
    int i;
    snprintf(full, sizeof full, "%s%s", d->prefix, name);
    if (d->hook_batch && rank < MAX_RANK) {
        batched[0] = 1;
        for (i = 0; i < rank; i++) batched[i + 1] = shape[i];
        dump_array(d, full, DT_F32, x, rank + 1, batched);
    } else {
        dump_array(d, full, DT_F32, x, rank, shape);
    }
}

DumpHook dump_hook(Dumper *d, const char *prefix, int batch)
{
    DumpHook h;
    snprintf(d->prefix, sizeof d->prefix, "%s", prefix);
    d->hook_batch = batch;
    h.fn = hook_array;
    h.ctx = d;
    return h;
}
