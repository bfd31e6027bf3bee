/* One line per test suite (test/t_NAME.c defines suite_NAME), in the order they run. */
SUITE(ops)
SUITE(blob)
SUITE(sampler)
SUITE(unet)
SUITE(encoders)
SUITE(png)
SUITE(tokenizer)
SUITE(cli)
