/* test/run.c — runs every suite of test/suites.h; ends with "N passed, N failed".
 * Usage: test-run [--ediff PATH] [--serial PATH] [--replay DIR] [--threads N] [FILTER]
 *   --ediff   the program under test (default ./ediff); --serial the same built without OpenMP (OMP=0)
 *   --replay  the folder of the fuzz replay drivers (replay-fuzz_NAME); run from the repository root */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUITE(name) void suite_##name(TestRun *T);
#include "suites.h"
#undef SUITE

int main(int argc, char **argv)
{
    TestRun T = {0, 0, NULL, "./ediff", NULL, NULL};
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ediff") == 0 && i + 1 < argc) T.ediff = argv[++i];
        else if (strcmp(argv[i], "--serial") == 0 && i + 1 < argc) T.serial = argv[++i];
        else if (strcmp(argv[i], "--replay") == 0 && i + 1 < argc) T.replay = argv[++i];
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) set_threads(atoi(argv[++i]));
        else T.filter = argv[i];
    }
#define SUITE(name) suite_##name(&T);
#include "suites.h"
#undef SUITE
    printf("%d passed, %d failed\n", T.passed, T.failed);
    return T.failed ? 1 : 0;
}
