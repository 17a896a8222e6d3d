# The two commands of README.md: `make demo` and `make test`. Everything else is CMake.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_CC    ?= clang-14
FUZZ_SECONDS ?= 600
JOBS       ?= $(shell nproc)
# the libFuzzer harnesses: fuzz/NAME.c (docs/fuzzing.md)
FUZZERS    := $(sort $(basename $(notdir $(wildcard fuzz/*.c))))

.PHONY: deps build asan fuzz-build fuzz demo test test-fast install clean
PREFIX     ?= /usr/local

deps:
	@tools/install-deps.sh

$(BUILD)/build.ninja $(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# the harnesses of fuzz/ with clang: libFuzzer, ASan, UBSan (a build of its own, LOOM_FUZZ)
fuzz-build: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=$(FUZZ_CC) -DCMAKE_BUILD_TYPE=Debug -DLOOM_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

# Every harness in turn for FUZZ_SECONDS (600) after its corpus; new inputs gather in
# $(FUZZ_BUILD)/fuzz-work/NAME/corpus, crashes in .../artifacts (docs/fuzzing.md: what to do
# with a finding). Fails at the end if any harness found something.
fuzz: fuzz-build
	@fail=; for h in $(FUZZERS); do \
	  fuzz/run_fuzz.sh $(FUZZ_BUILD)/fuzz_$$h $$h $(FUZZ_SECONDS) $(FUZZ_BUILD)/fuzz-work/$$h || fail="$$fail $$h"; \
	done; if [ -n "$$fail" ]; then echo "make fuzz: findings in:$$fail"; exit 1; fi

demo: build
	tools/demo.sh $(BUILD)

# Every test twice: the optimized build, then the ASan+UBSan build (leaks checked); then each
# fuzzer once (its build is sanitized already) over its corpus and 30 s of fresh fuzzing.
test: build asan fuzz-build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j $(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# include/loom.h, libloom.a, libloom.so, loom.pc and the loom command under $(PREFIX)
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
