/* test/fuzz/fuzz_cli.c — libFuzzer harness: any bytes as ediff's command line, through everything the
 * program decides before it reads a prompt's tokens or runs a network.
 *   input   the arguments after "ediff", separated by NUL bytes (at most 64)
 *   path    parse_options (every flag, --from-png reading a PNG's parameters text); when it accepts
 *           the line: model_init of the toy pipeline test/ref/pipeline.bin with the line's cascade
 *           flags (--stage, --no-sr, the PNG's stages, --no-t5, --no-clip-text, --style-image), the
 *           stage names of the settings, each stage's sampler settings, the parameters text the PNG
 *           would carry (check_text: formatted and encoded into a PNG), the prompt and negative prompt
 *           tokenized and each --paint's words found in the prompt (paint_columns)
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

/* The prompt's tokens and the context rows of every --paint's words, as run_inputs finds them. */
static void paint_words(const Model *m, const Options *o)
{
    TextEncoding prompt, negative;
    char err[EDIFF_ERR];
    int i;
    if (tokenize_prompt(m, o->prompt, &prompt, err)) abort();         /* any bytes tokenize */
    if (o->negative) {
        if (tokenize_prompt(m, o->negative, &negative, err)) abort();
        text_encoding_free(&negative);
    }
    for (i = 0; i < o->n_paint; i++) {
        Paint p;
        size_t n = strcspn(o->paint[i], "=");
        memset(&p, 0, sizeof p);
        p.words = xmalloc(n + 1);
        memcpy(p.words, o->paint[i], n);
        p.words[n] = 0;
        if (paint_columns(m, &prompt, &p, cond_context_rows(m->L5, CLIP_CONTEXT), err) &&
            strncmp(err, "--paint: '", 10) != 0)
            abort();
        free(p.words);
        free(p.column);
    }
    text_encoding_free(&prompt);
}

/* The decisions that need the model, as generate_all makes them; the tokenizers are lent to the model. */
static void with_model(const Blob *toy, const ClipTokenizer *clip, const T5Tokenizer *t5, const Options *o)
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
    if (rc == 0 && check_text(&r) == 0) {       /* check_text: -1 for a text that is not UTF-8 */
        if (m.use_clip_text) m.clip_tok = *clip;
        if (m.use_t5) m.t5_tok = *t5;
        paint_words(&m, &on_toy);
        memset(&m.clip_tok, 0, sizeof m.clip_tok);                   /* returned before model_free */
        memset(&m.t5_tok, 0, sizeof m.t5_tok);
    }
    model_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static Blob toy;                            /* mapped and loaded once: the harness's only state */
    static ClipTokenizer clip;
    static T5Tokenizer t5;
    static int mapped;
    char *args = xmalloc(size + 1), *argv[MAX_ARGS + 2], err[EDIFF_ERR];
    int argc = 1, rc;
    size_t i, start;
    Options o;
    if (!mapped) {
        if (blob_open(&toy, TOY, err) || tokenizers_open(&clip, &t5, NULL, err)) {
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
        with_model(&toy, &clip, &t5, &o);
    }
    free(o.from_text);
    free(args);
    return 0;
}
