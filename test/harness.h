/* test/harness.h — the test runner's helpers. Every test prints one line:
 *   PASS  ops.gemm.17x33x9            max-abs 2.4e-07  (tol 1e-05)
 * and the run ends with "N passed, N failed". Reference data are ediff blobs under test/ref/, written
 * by the generator scripts beside them (test/gen_*.py) from PyTorch, float64 where it helps. */
#ifndef HARNESS_H
#define HARNESS_H
#include "../ediff.h"
#include <stddef.h>

typedef struct {
    int         passed, failed;
    const char *filter;   /* run only tests whose name contains this */
    const char *ediff;    /* the ediff binary under test (CLI tests) */
    const char *serial;   /* the same program built without OpenMP (determinism), or NULL */
    const char *replay;   /* the folder of the fuzz replay drivers replay-fuzz_NAME, or NULL */
} TestRun;

int  selected(const TestRun *T, const char *name);
/* Record one result; the detail (printf format) follows the name on the line. Returns ok. */
int  report(TestRun *T, int ok, const char *name, const char *detail_fmt, ...);
/* Compare n floats with a reference: |got - want| <= tol everywhere (TOL_ABS), or
 * max|got - want| / max|want| <= tol (TOL_REL). NaN or inf in `got` fails. */
enum { TOL_ABS = 0, TOL_REL = 1 };
int  check_close(TestRun *T, const char *name, const float *got, const float *want, size_t n,
                 double tol, int mode);
/* The same for double arrays (samplers, whose state is double). */
int  check_close_f64(TestRun *T, const char *name, const double *got, const double *want, size_t n,
                     double tol, int mode);
/* Open test/ref/FILE; a failure is recorded as a failed test named after the file. */
int  open_ref(TestRun *T, Blob *b, const char *file);
/* A reference tensor as a malloc'd float32 array (any dtype); NULL (and a failed test) if absent. */
float *ref_f32(TestRun *T, const Blob *b, const char *name, size_t *n);
const Tensor *ref_tensor(TestRun *T, const Blob *b, const char *name);
/* The whole file, malloc'd, with a 0 byte after it; NULL if it cannot be read. */
unsigned char *read_file(const char *path, size_t *n);
/* Run a shell command; returns its exit status (0..255) and its first `cap`-1 bytes of stdout+stderr. */
int  run_cmd(const char *cmd, char *out, size_t cap);
/* Run `PROGRAM ARGS` (ARGS printf-style, shell syntax; PROGRAM is T->ediff) as run_cmd does, with
 * OMP_WAIT_POLICY=passive: on a loaded machine spinning OpenMP threads make the toy model's
 * multi-thread runs take seconds instead of milliseconds. */
int  run_ediff(const TestRun *T, char *out, size_t cap, const char *fmt, ...);
int  run_program(const char *program, char *out, size_t cap, const char *fmt, ...);
int  file_exists(const char *path);
int  same_file(const char *a, const char *b);          /* both readable and byte-identical */

#endif
