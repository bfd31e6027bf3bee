# ediff — build, test, sanitize. Needs only a C99 compiler and make; OpenMP is used when the compiler
# has it (make OMP=0 to build without). `make NATIVE=1` builds for this CPU only (see ARCH below).
#
#   make            ./ediff
#   make test       build and run the whole suite (ends with "N passed, N failed")
#   make sanitize   the same suite under -fsanitize=address,undefined
#   make bench      ediff's ops and model (portable and NATIVE=1 builds) against PyTorch, one table
#                   (test/bench.py; BENCH_ARGS="--model FILE" for another blob than weights/ediff-tiny.bin)
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

.PHONY: all test sanitize bench clean FORCE
all: ediff

ediff: $(BUILD)/ediff
	cp $< $@

$(BUILD)/ediff: $(BUILD)/ediff.o $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/test-run: $(TEST_OBJ) $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c ediff.h $(BUILD)/flags
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/test/%.o: test/%.c test/harness.h test/suites.h ediff.h $(BUILD)/flags
	@mkdir -p $(BUILD)/test
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# Rebuild everything when the flags change (e.g. CFLAGS+=-Werror).
$(BUILD)/flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS)' > $@

test: ediff $(BUILD)/test-run
	@mkdir -p test/out
	$(BUILD)/test-run --ediff ./ediff $(TESTS)

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
sanitize:
	$(MAKE) --no-print-directory BUILD=build/sanitize OPT=-O1 SAN="$(SANFLAGS)" build/sanitize/ediff build/sanitize/test-run
	@mkdir -p test/out
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/sanitize/test-run --ediff build/sanitize/ediff $(TESTS)

clean:
	rm -rf build ediff test/out
