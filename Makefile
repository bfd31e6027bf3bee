# ediff — build, test, sanitize. Needs only a C99 compiler and make; OpenMP is used when the compiler
# has it (make OMP=0 to build without). `make NATIVE=1` builds for this CPU only (see ARCH below).
#
#   make            ./ediff
#   make test       build and run the whole suite (ends with "N passed, N failed")
#   make sanitize   the same suite under -fsanitize=address,undefined
#   make bench      ediff's ops and model (portable and NATIVE=1 builds) against PyTorch, one table
#                   (test/bench.py; BENCH_ARGS="--model FILE" for another blob than weights/ediff-tiny.bin)
#   make fuzz       every libFuzzer harness of test/fuzz/ for FUZZ_SECONDS each (FUZZ=fuzz_png: one);
#                   needs clang with its sanitizer runtimes (Debian: clang, libclang-rt-14-dev)
#   make clean

CC      ?= cc
OPT     ?= -O3
NATIVE  ?= 0
WARN     = -std=c99 -Wall -Wextra -pedantic
# OpenMP: on when a test program with <omp.h> compiles and links with -fopenmp.
ifeq ($(origin OMP), undefined)
OMP := $(shell printf '\043include <omp.h>\nint main(void){return omp_get_max_threads()<0;}\n' | \
         $(CC) -fopenmp -x c - -o /dev/null >/dev/null 2>&1 && echo 1 || echo 0)
endif
OMPFLAG  = $(if $(filter 1,$(OMP)),-fopenmp)
# Floating point: the portable build never contracts a*b+c into an FMA (gcc's -std=c99 default, made
# explicit for clang); only the GEMM micro-kernel fuses, explicitly (fmaf), where the CPU has FMA, so it
# rounds the same on every machine with FMA. NATIVE=1 builds for this CPU, lets the compiler fuse
# multiply-adds everywhere and, on x86, use full-width AVX-512: a little faster, and rounded differently
# (still the same for every thread count).
NATIVE_FLAGS = -march=native -ffp-contract=fast $(if $(filter x86_64 amd64,$(shell uname -m)),-mprefer-vector-width=512)
ARCH     = $(if $(filter 1,$(NATIVE)),$(NATIVE_FLAGS),-ffp-contract=off)
ALL_CFLAGS = $(WARN) $(OPT) $(ARCH) $(OMPFLAG) $(SAN) $(CFLAGS)
LDLIBS  += -lm

# Object files live in a folder per compiler/configuration, so switching CC, OMP or NATIVE never mixes them.
BUILD   ?= build/$(notdir $(CC))$(if $(filter 1,$(OMP)),-omp)$(if $(filter 1,$(NATIVE)),-native)
LIB_SRC  = $(filter-out ediff.c,$(wildcard *.c))
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
BENCH_SRC = test/bench.c
TEST_SRC = $(filter-out $(BENCH_SRC),$(wildcard test/*.c))
TEST_OBJ = $(TEST_SRC:test/%.c=$(BUILD)/test/%.o)

.PHONY: all test serial replays sanitize bench fuzz clean FORCE
all: ediff

ediff: $(BUILD)/ediff
	cp $< $@

$(BUILD)/ediff: $(BUILD)/ediff.o $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test-run: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c ediff.h $(BUILD)/flags
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/test/%.o: test/%.c $(wildcard test/*.h) ediff.h $(BUILD)/flags
	@mkdir -p $(BUILD)/test
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# Rebuild everything when the flags change (e.g. CFLAGS+=-Werror).
$(BUILD)/flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS)' > $@

# The suite also runs the fuzz harnesses' corpora through replay drivers (test/fuzz/replay.c, built with
# this compiler) and compares images against a build without OpenMP (SERIAL_BUILD) for determinism.
FUZZ_HARNESSES = $(basename $(notdir $(wildcard test/fuzz/fuzz_*.c)))
REPLAYS  = $(FUZZ_HARNESSES:%=$(BUILD)/replay-%)
SERIAL_BUILD ?= build/$(notdir $(CC))$(if $(filter 1,$(NATIVE)),-native)
SERIAL   = $(SERIAL_BUILD)/ediff
TEST_ARGS = --serial $(SERIAL) --replay $(BUILD) $(TESTS)

$(BUILD)/replay-%: test/fuzz/%.c test/fuzz/replay.c test/png_crcs.h ediff.c $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< test/fuzz/replay.c $(LIB_OBJ) $(LDLIBS)

serial:
	@$(MAKE) --no-print-directory OMP=0 BUILD=$(SERIAL_BUILD) $(SERIAL)

replays: $(REPLAYS)

test: ediff $(BUILD)/test-run $(REPLAYS) serial
	@mkdir -p test/out
	$(BUILD)/test-run --ediff ./ediff $(TEST_ARGS)

# The benchmark: the same bench program (and ediff) built portable and with NATIVE=1, run by test/bench.py
# beside PyTorch (its Python: .venv/bin/python here or in a parent folder, else python3; PYTHON=... to choose).
PYTHON  ?= $(firstword $(wildcard .venv/bin/python ../.venv/bin/python ../../.venv/bin/python) python3)
BENCH_PORTABLE = build/bench-$(notdir $(CC))$(if $(filter 1,$(OMP)),-omp)
BENCH_NATIVE   = $(BENCH_PORTABLE)-native
$(BUILD)/bench: $(BUILD)/test/bench.o $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench:
	@$(MAKE) --no-print-directory -s BUILD=$(BENCH_PORTABLE) NATIVE=0 $(BENCH_PORTABLE)/bench $(BENCH_PORTABLE)/ediff
	@$(MAKE) --no-print-directory -s BUILD=$(BENCH_NATIVE) NATIVE=1 $(BENCH_NATIVE)/bench $(BENCH_NATIVE)/ediff
	$(PYTHON) test/bench.py --portable $(BENCH_PORTABLE)/bench --native $(BENCH_NATIVE)/bench $(BENCH_ARGS)

SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# allocator_may_return_null: a failed allocation reaches xmalloc's "out of memory" error, as without ASan.
SAN_ENV  = ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1
sanitize:
	$(MAKE) --no-print-directory BUILD=build/sanitize OPT=-O1 SAN="$(SANFLAGS)" build/sanitize/ediff build/sanitize/test-run \
		$(FUZZ_HARNESSES:%=build/sanitize/replay-%)
	$(MAKE) --no-print-directory BUILD=build/sanitize-serial OMP=0 OPT=-O1 SAN="$(SANFLAGS)" build/sanitize-serial/ediff
	@mkdir -p test/out
	$(SAN_ENV) build/sanitize/test-run --ediff build/sanitize/ediff --serial build/sanitize-serial/ediff \
		--replay build/sanitize $(TESTS)

# Fuzzing: each harness (test/fuzz/fuzz_NAME.c, LLVMFuzzerTestOneInput) built with clang's libFuzzer,
# ASan and UBSan, run niced for FUZZ_SECONDS on a working copy of its corpus (build/fuzz-work/NAME,
# seeded from test/fuzz/corpus/NAME). Crashes, and inputs slower than 60 s (hangs), land in
# build/fuzz-work/NAME-crash-* / -timeout-*; the log's last lines give the runs and coverage. Minimise new inputs into the committed corpus with
#   build/fuzz/NAME -merge=1 test/fuzz/corpus/NAME build/fuzz-work/NAME
FUZZ_SECONDS ?= 60
FUZZ_CC  ?= clang
FUZZ     ?= $(FUZZ_HARNESSES)
FUZZ_SAN  = -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Coverage guidance everywhere but in the op library, whose GEMM and attention loops only slow the
# fuzzer down: tensor.c is built -O3 with ASan and without UBSan (which costs it 6x; `make sanitize`
# runs it under UBSan). Expanded per object file, hence the $$ in `fuzz`.
FUZZ_FILE = $(if $(filter tensor.c,$<),-O3 -fno-sanitize=undefined,-fsanitize=fuzzer-no-link)
$(BUILD)/fuzz_%: test/fuzz/fuzz_%.c test/png_crcs.h ediff.c $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

fuzz:
	@$(MAKE) --no-print-directory CC=$(FUZZ_CC) OMP=0 OPT=-O1 BUILD=build/fuzz \
		SAN='$(FUZZ_SAN) $$(FUZZ_FILE)' $(FUZZ:%=build/fuzz/%)
	@mkdir -p build/fuzz-work
	@for h in $(FUZZ); do \
		mkdir -p build/fuzz-work/$$h; \
		echo "== $$h: $(FUZZ_SECONDS) s, log build/fuzz-work/$$h.log"; \
		nice -n 19 build/fuzz/$$h -max_total_time=$(FUZZ_SECONDS) -timeout=60 -close_fd_mask=3 -print_final_stats=1 \
			-artifact_prefix=build/fuzz-work/$$h- build/fuzz-work/$$h test/fuzz/corpus/$$h \
			>build/fuzz-work/$$h.log 2>&1 || { tail -40 build/fuzz-work/$$h.log; exit 1; }; \
		grep -E '^#[0-9]+[[:space:]]+DONE' build/fuzz-work/$$h.log | tail -1; \
	done

clean:
	rm -rf build ediff test/out
