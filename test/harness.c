/* test/harness.c — result lines, reference loading and comparison for the test runner. */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int selected(const TestRun *T, const char *name)
{
    return !T->filter || strstr(name, T->filter) != NULL;
}

int report(TestRun *T, int ok, const char *name, const char *detail_fmt, ...)
{
    va_list ap;
    printf("%s  %-44s ", ok ? "PASS" : "FAIL", name);
    va_start(ap, detail_fmt);
    vprintf(detail_fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (ok) T->passed++; else T->failed++;
    return ok;
}

/* got/want are float (dbl = 0) or double (dbl = 1) arrays. */
static int compare(TestRun *T, const char *name, const void *got, const void *want, int dbl, size_t n,
                   double tol, int mode)
{
    double max_abs = 0.0, scale = 0.0, err, g = 0, w = 0;
    size_t i, worst = 0;
    int finite = 1;
    for (i = 0; i < n; i++) {
        double gi = dbl ? ((const double *)got)[i] : ((const float *)got)[i];
        double wi = dbl ? ((const double *)want)[i] : ((const float *)want)[i];
        double d = fabs(gi - wi);
        if (!(gi == gi) || isinf(gi)) finite = 0;
        if (d > max_abs) { max_abs = d; worst = i; g = gi; w = wi; }
        if (fabs(wi) > scale) scale = fabs(wi);
    }
    err = mode == TOL_REL ? (scale > 0 ? max_abs / scale : max_abs) : max_abs;
    if (!finite)
        return report(T, 0, name, "non-finite output (n=%zu)", n);
    if (err <= tol)
        return report(T, 1, name, "%s %.2e  (tol %.0e, n=%zu)", mode == TOL_REL ? "max-rel" : "max-abs", err, tol, n);
    return report(T, 0, name, "%s %.2e  (tol %.0e, n=%zu) worst at %zu: got %.10g want %.10g",
                  mode == TOL_REL ? "max-rel" : "max-abs", err, tol, n, worst, g, w);
}

int check_close(TestRun *T, const char *name, const float *got, const float *want, size_t n,
                double tol, int mode)
{
    return compare(T, name, got, want, 0, n, tol, mode);
}

int check_close_f64(TestRun *T, const char *name, const double *got, const double *want, size_t n,
                    double tol, int mode)
{
    return compare(T, name, got, want, 1, n, tol, mode);
}

int open_ref(TestRun *T, Blob *b, const char *file)
{
    char path[512], err[EDIFF_ERR];
    snprintf(path, sizeof path, "test/ref/%s", file);
    if (blob_open(b, path, err) == 0) return 0;
    report(T, 0, file, "cannot open reference: %s", err);
    return -1;
}

const Tensor *ref_tensor(TestRun *T, const Blob *b, const char *name)
{
    const Tensor *t = blob_get(b, name);
    if (!t) report(T, 0, name, "reference tensor missing from %s", b->path);
    return t;
}

float *ref_f32(TestRun *T, const Blob *b, const char *name, size_t *n)
{
    const Tensor *t = ref_tensor(T, b, name);
    float *x;
    if (!t) return NULL;
    x = xmalloc((size_t)t->numel * sizeof(float) + 1);
    tensor_to_f32(t, x, 0, t->numel);
    if (n) *n = (size_t)t->numel;
    return x;
}

unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long len;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fclose(f);
        return NULL;
    }
    buf = xmalloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    buf[*n] = 0;                                   /* text files can be read as strings */
    fclose(f);
    if (*n != (size_t)len) {
        free(buf);
        return NULL;
    }
    return buf;
}

int run_cmd(const char *cmd, char *out, size_t cap)
{
    char full[4096], line[64];
    FILE *f;
    size_t got = 0;
    int status = -1;
    /* The exit status travels through a file: C99 has no portable way to decode system()'s value. */
    snprintf(full, sizeof full, "( %s ) >test/out/cmd.txt 2>&1; echo $? >test/out/cmd.rc", cmd);
    if (system(full) == -1) return -1;
    if (out && cap) {
        out[0] = 0;
        if ((f = fopen("test/out/cmd.txt", "rb"))) {
            got = fread(out, 1, cap - 1, f);
            out[got] = 0;
            fclose(f);
        }
    }
    if ((f = fopen("test/out/cmd.rc", "r"))) {
        if (fgets(line, sizeof line, f)) status = atoi(line);
        fclose(f);
    }
    return status;
}

static int run_program_v(const char *program, char *out, size_t cap, const char *fmt, va_list ap)
{
    char args[3000], cmd[3400];
    vsnprintf(args, sizeof args, fmt, ap);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=passive %s %s", program, args);
    return run_cmd(cmd, out, cap);
}

int run_program(const char *program, char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = run_program_v(program, out, cap, fmt, ap);
    va_end(ap);
    return rc;
}

int run_ediff(const TestRun *T, char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = run_program_v(T->ediff, out, cap, fmt, ap);
    va_end(ap);
    return rc;
}

int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

int same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = read_file(a, &na), *y = read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}
