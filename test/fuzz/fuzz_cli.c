/* test/fuzz/fuzz_cli.c — libFuzzer harness: any bytes as ediff's command line, through everything the
 * program decides before it reads a prompt's tokens or runs a network.
 *   input   the arguments after "ediff", separated by NUL bytes (at most 64)
 *   path    parse_options (every flag, --from-png reading a PNG's parameters text); when it accepts
 *           the line: model_init of the toy pipeline test/ref/pipeline.bin with the line's cascade
 *           flags (--stage, --no-sr, the PNG's stages, --no-t5, --no-clip-text, --style-image), the
 *           stage names of the settings, each stage's sampler settings, and the parameters text the
 *           PNG would carry (check_text: formatted and encoded into a PNG)
 * Properties: parse_options returns -1 (help or version), 0, 1 or 2; an accepted line has a prompt and
 * valid counts; the later steps succeed or give an error message (which the program prints on one line,
 * escaped: print_error), never a crash.
 * Build and run: make fuzz FUZZ=fuzz_cli FUZZ_SECONDS=N (this file includes ediff.c; run from the
 * repository root). Seeds: test/fuzz/corpus/fuzz_cli/, written by test/fuzz/gen_seeds.py. */
#define EDIFF_NO_MAIN
#include "../../ediff.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOY    "test/ref/pipeline.bin"
#define MAX_ARGS 64

/* The decisions that need the model, as generate_all makes them. */
static void with_model(const Blob *toy, const Options *o)
{
    Options on_toy = *o;
    Model m;
    Run r;
    char err[EDIFF_ERR];
    int s, rc;
    on_toy.model = TOY;
    memset(&m, 0, sizeof m);
    m.blob = *toy;                              /* blob_open stays 0: model_free leaves it open */
    if (model_init(&m, &on_toy, err)) {
        if (strncmp(err, TOY ": ", strlen(TOY) + 2) != 0) abort();        /* printed by print_error */
        model_free(&m);
        return;
    }
    memset(&r, 0, sizeof r);
    r.model = &m;
    r.opt = &on_toy;
    rc = check_setting_stages(&on_toy, &m);
    if (rc != 0 && rc != 2) abort();
    for (s = 0; rc == 0 && s < m.n_stages; s++) {
        r.stage[s].stage = &m.stage[s];
        if (stage_settings(&r.stage[s], &on_toy, err)) {
            if (!err[0]) abort();
            rc = 2;
        }
    }
    if (rc == 0) check_text(&r);                /* 0, or -1 for a text that is not UTF-8 */
    model_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static Blob toy;                            /* mapped once: the harness's only state */
    static int mapped;
    char *args = xmalloc(size + 1), *argv[MAX_ARGS + 2], err[EDIFF_ERR];
    int argc = 1, rc;
    size_t i, start;
    Options o;
    if (!mapped) {
        if (blob_open(&toy, TOY, err)) {
            fprintf(stderr, "fuzz_cli: %s (run from the repository root)\n", err);
            abort();
        }
        mapped = 1;
    }
    memcpy(args, data, size);
    args[size] = 0;
    argv[0] = "ediff";
    for (i = 0, start = 0; i <= size && argc <= MAX_ARGS; i++)
        if (i == size || args[i] == 0) {
            if (i < size || i > start) argv[argc++] = args + start;    /* a trailing NUL ends the last one */
            start = i + 1;
        }
    argv[argc] = NULL;
    rc = parse_options(&o, argc, argv);
    if (rc < -1 || rc > 2) abort();
    if (rc == 0) {
        if (!o.prompt || o.n_paint > PAINT_MAX || o.n_set > SETTINGS_MAX || o.batch < 1) abort();
        with_model(&toy, &o);
    }
    free(o.from_text);
    free(args);
    return 0;
}
