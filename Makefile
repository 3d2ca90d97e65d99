# mdeploy — plain Makefile.  Options: BLAS=0|1 (default 1)  SODIUM=0|1 (default 1)  SAN=1 (ASan+UBSan)  TSAN=1  DEBUG=1
# Targets: all check check-spark demo install fuzz fuzz-long bench firmware firmware-check firmware-report clean   (see README.md)
# V=1 shows the compiler command lines (by default each step prints one short line, e.g. "CC x.o").

BLAS ?= 1
SODIUM ?= 1
SIMD ?= 1
SAN ?= 0
TSAN ?= 0
DEBUG ?= 0
PREFIX ?= /usr/local
FUZZ_SECONDS ?= 60
CC ?= cc
PYTHON ?= python3
V ?= 0
ifeq ($(V),1)
  Q :=
  say :=
else
  Q := @
  say = printf '  %-7s %s\n' '$(1)' '$(2)';
endif

# The version, from the public header's MDL_VERSION_* macros (the one place it is written): the
# shared libraries' SONAME is lib*.so.MAJOR, their file lib*.so.MAJOR.MINOR.PATCH.
mdl_version_part = $(shell sed -n 's/^\#define MDL_VERSION_$(1) \([0-9]*\).*/\1/p' include/mdeploy/mdeploy.h)
VERSION_MAJOR := $(call mdl_version_part,MAJOR)
VERSION := $(VERSION_MAJOR).$(call mdl_version_part,MINOR).$(call mdl_version_part,PATCH)

mdl_config = $(if $(filter 1,$(DEBUG)),debug,release)$(if $(filter 0,$(BLAS)),-noblas)$(if $(filter 0,$(1)),-nosodium)$(if $(filter 0,$(SIMD)),-nosimd)$(if $(filter 1,$(SAN)),-san)$(if $(filter 1,$(TSAN)),-tsan)
CONFIG := $(call mdl_config,$(SODIUM))
B := build/$(CONFIG)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
OPT := $(if $(filter 1,$(DEBUG)),-O0,-O2)
CPPFLAGS += -Iinclude -Isrc
CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -g $(OPT) $(WARN) -fPIC -fvisibility=hidden
LDLIBS += -lm -lpthread
# Host builds run sessions with worker threads (src/graph/threads_host.c); the firmware and fuzz
# builds compile the core without it, and without the run metrics (src/graph/metrics_host.c).
CPPFLAGS += -DMDL_WITH_THREADS -DMDL_WITH_METRICS
# ... and the self-test vectors' reader (src/graph/selftest_host.c; the loader checks them).
CPPFLAGS += -DMDL_WITH_SELFTEST
ifeq ($(BLAS),1)
  CPPFLAGS += -DMDL_WITH_BLAS
  LDLIBS += -lopenblas
endif
ifeq ($(SAN),1)
  CFLAGS += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
endif
# ThreadSanitizer (clang), for the session worker pool: make TSAN=1 tests, then e.g.
# build/release-tsan/tests/graph/test_threads
ifeq ($(TSAN),1)
  CC := clang
  CFLAGS += -fsanitize=thread -fno-omit-frame-pointer -Wno-unused-function
  LDFLAGS += -fsanitize=thread
endif

# Sources.  *_host.c files use stdio/files/threads and stay out of firmware builds; *_blas.c only
# with BLAS=1.  Two libraries: libmdeploy (the runtime: libc, libm, optional OpenBLAS) and
# libmdeploy-convert (the converter: ONNX importer, graph conversion, quantization and pruning on
# the host; it needs protobuf-c).  A new converter file follows one of CONVERT_SRCS' patterns.
ALL_SRCS := $(sort $(wildcard src/*/*.c))
BLAS_SRCS := $(filter %_blas.c,$(ALL_SRCS))
HOST_SRCS := $(filter %_host.c,$(ALL_SRCS))
CORE_SRCS := $(filter-out $(BLAS_SRCS) $(HOST_SRCS),$(ALL_SRCS))
CONVERT_SRCS := $(filter src/io/onnx%_host.c src/graph/convert%_host.c src/quant/%_host.c,$(HOST_SRCS))
# x86 SIMD kernels (src/ops/x86/*_avx2.c, *_avx512.c): built with per-file flags, chosen once at
# run time by cpuid; SIMD=0 leaves them all out (the portable kernels remain).
ARCH := $(shell $(CC) -dumpmachine 2>/dev/null)
X86_SRCS := $(if $(and $(filter 1,$(SIMD)),$(findstring x86_64,$(ARCH))),$(sort $(wildcard src/ops/x86/*.c)))
ifneq ($(X86_SRCS),)
  CPPFLAGS += -DMDL_HAVE_X86_SIMD
endif
LIB_SRCS := $(CORE_SRCS) $(filter-out $(CONVERT_SRCS),$(HOST_SRCS)) $(if $(filter 1,$(BLAS)),$(BLAS_SRCS)) $(X86_SRCS)
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/%.o)
# (src/io/onnx.mk adds the generated protobuf-c code)
CONVERT_OBJS := $(CONVERT_SRCS:%.c=$(B)/%.o)
CONVERT_LDLIBS := -lprotobuf-c
# shared libraries must resolve every symbol at link time (not with the sanitizers' runtimes)
SO_DEFS := $(if $(filter 1,$(SAN) $(TSAN)),,-Wl,-z,defs)
# Static archives, in link order (the converter calls into the runtime); shared libraries, each
# with its lib*.so.MAJOR and lib*.so links.
LIBS_A := $(B)/libmdeploy-convert.a $(B)/libmdeploy.a
LIBS_SO := $(foreach l,libmdeploy libmdeploy-convert,$(B)/$(l).so.$(VERSION) $(B)/$(l).so.$(VERSION_MAJOR) $(B)/$(l).so)

TOOLS := $(patsubst tools/%.c,$(B)/bin/%,$(wildcard tools/mdeploy-*.c))
TEST_COMMON := $(wildcard tests/common/*.c)
TEST_SRCS := $(sort $(wildcard tests/*/test_*.c))
TESTS := $(patsubst tests/%.c,$(B)/tests/%,$(TEST_SRCS))
EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))

.PHONY: all lib tools tests examples check check-spark check-tsan check-onnx-node demo install install-check fuzz fuzz-smoke fuzz-long firmware bench clean deps deps-demo check-wheel wheel
.DEFAULT_GOAL := all

all: lib tools examples
lib: $(LIBS_A) $(LIBS_SO)
tools: $(TOOLS)
tests: $(TESTS)
examples: $(EXAMPLES)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$@)$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(B)/src/ops/x86/%_avx2.o: CFLAGS += -mavx2 -mfma
$(B)/src/ops/x86/%_avx512.o: CFLAGS += -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma
# the int8 GEMM's AVX-512 kernel is the VNNI one (vpdpbusd), called only when cpuid has it
$(B)/src/ops/x86/gemm_int8_avx512.o: CFLAGS += -mavx512vnni
$(B)/src/ops/x86/gemm_int8_amx_avx512.o: CFLAGS += -mavx512vnni -mamx-tile -mamx-int8
$(B)/src/ops/x86/qsparse_conv_avx512.o: CFLAGS += -mavx512vnni -mavx512vbmi
$(B)/src/ops/x86/qconv_small_avx512.o: CFLAGS += -mavx512vnni

$(B)/libmdeploy.a: $(LIB_OBJS)
$(B)/libmdeploy-convert.a: $(CONVERT_OBJS)
$(B)/libmdeploy.a $(B)/libmdeploy-convert.a:
	@rm -f $@
	$(Q)$(call say,AR,$@)ar rcs $@ $^

$(B)/libmdeploy.so.$(VERSION): $(LIB_OBJS)
	$(Q)$(call say,LD,$@)$(CC) -shared $(LDFLAGS) -Wl,-soname,libmdeploy.so.$(VERSION_MAJOR) $(SO_DEFS) \
	    -o $@ $^ $(LDLIBS)
# The converter carries its own copy of the runtime parts it uses (linked from the static archive
# and not exported: --exclude-libs), since it calls the runtime's internals, which the runtime
# library does not export; it exports only the API of include/mdeploy/convert.h.
$(B)/libmdeploy-convert.so.$(VERSION): $(CONVERT_OBJS) $(B)/libmdeploy.a
	$(Q)$(call say,LD,$@)$(CC) -shared $(LDFLAGS) -Wl,-soname,libmdeploy-convert.so.$(VERSION_MAJOR) \
	    $(SO_DEFS) -Wl,--exclude-libs,ALL -o $@ $(CONVERT_OBJS) $(B)/libmdeploy.a $(CONVERT_LDLIBS) $(LDLIBS)
$(B)/%.so.$(VERSION_MAJOR): $(B)/%.so.$(VERSION)
	@ln -sf $(notdir $<) $@
$(B)/%.so: $(B)/%.so.$(VERSION_MAJOR)
	@ln -sf $(notdir $<) $@

# Tools, examples and tests link the static archives: only the members they use come in, and
# --as-needed keeps libraries they do not use (protobuf-c for mdeploy-run) out of their NEEDED.
$(B)/bin/%: tools/%.c tools/tool_util.h $(LIBS_A)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBS_A) -Wl,--as-needed -lcjson \
	    $(CONVERT_LDLIBS) $(LDLIBS)

$(B)/examples/%: examples/%.c $(LIBS_A)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBS_A) -Wl,--as-needed $(CONVERT_LDLIBS) $(LDLIBS)

$(B)/tests/%: tests/%.c $(TEST_COMMON) $(LIBS_A)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(CPPFLAGS) -Itests -DMDL_BUILD_DIR='"$(B)"' $(CFLAGS) -Wno-shadow $(LDFLAGS) -o $@ $< $(TEST_COMMON) \
	    $(LIBS_A) -lcmocka -lcjson $(CONVERT_LDLIBS) $(LDLIBS) $(TEST_LDLIBS)

-include $(LIB_OBJS:.o=.d) $(CONVERT_OBJS:.o=.d)

# Tests that run the command-line tools need them built first.
$(filter $(B)/tests/tools/% $(B)/tests/convert/%,$(TESTS)): | $(TOOLS) $(EXAMPLES)

# The ONNX importer's build rules (protobuf-c code generated from the onnx package's onnx.proto).
-include src/io/onnx.mk

# Debian packages (apt-get) and Python packages (pip) that are missing: deps for make check,
# deps-demo only what make demo needs (compiler, OpenBLAS, cJSON, protobuf-c, libonnx-dev).
deps:
	@bash tools/scripts/install-deps.sh check
deps-demo:
	@bash tools/scripts/install-deps.sh demo

# The whole test suite: CMocka tests (default build, BLAS=0, and BLAS=0 under ASan+UBSan), flatc
# conformance, replay of the corrupt-model corpus + a short fuzz run, the firmware images run
# under QEMU (Cortex-M4, Cortex-M7, RV32) and compared with the host, the worker pool under
# ThreadSanitizer, make install, the SODIUM=0 runtime (check-nosodium), Python tests, and the
# Spark batch-scoring test when Java and pyspark are installed (check-spark).
check: deps
	@$(MAKE) --no-print-directory all tests
	@$(MAKE) --no-print-directory BLAS=0 tests
	@$(MAKE) --no-print-directory BLAS=0 SAN=1 tests
	@$(MAKE) --no-print-directory firmware-check
	@$(MAKE) --no-print-directory fuzz-smoke
	@$(MAKE) --no-print-directory check-tsan
	@$(MAKE) --no-print-directory install-check
	@$(MAKE) --no-print-directory check-nosodium
	@$(MAKE) --no-print-directory check-wheel
	@$(MAKE) --no-print-directory check-onnx-node
	@bash tests/run.sh build/release build/release-noblas build/release-noblas-san
	@$(MAKE) --no-print-directory check-prune-example
	@if command -v java >/dev/null 2>&1 && $(PYTHON) -c "import pyspark, pandas, pyarrow" 2>/dev/null; then \
	    $(MAKE) --no-print-directory check-spark; \
	else echo "== check-spark skipped: no Java or no pyspark/pandas/pyarrow (make deps installs them)"; fi

# examples/python/prune_digits.py --fast (issue #15): prune + fine-tune the digits CNN with PyTorch,
# convert float and int8, check size and accuracy (about 10 s).  PyTorch: /usr/bin/python3 here.
TORCH_PYTHON ?= /usr/bin/python3
check-prune-example: all
	@if $(TORCH_PYTHON) -c "import torch, onnx" 2>/dev/null; then echo "== examples/python/prune_digits.py --fast"; \
	    MDEPLOY_LIB=$(CURDIR)/$(B)/libmdeploy.so PYTHONPATH=$(CURDIR)/bindings/python timeout 600 \
	    $(TORCH_PYTHON) examples/python/prune_digits.py --fast; \
	else echo "== prune_digits.py skipped: no PyTorch/onnx in $(TORCH_PYTHON)"; fi

# The session worker pool under ThreadSanitizer (clang): the threads test at every CPU level;
# and the run metrics, sessions of one model on four threads; and the hot swap (test_swap: four
# readers while 1,000 candidates are swapped in).
# OpenBLAS keeps to the calling thread: its own pool is not instrumented (false reports).
TSAN_TESTS := test_threads test_metrics test_swap
check-tsan:
	@$(MAKE) --no-print-directory TSAN=1 $(TSAN_TESTS:%=build/release-tsan/tests/graph/%) >/dev/null
	@for t in $(TSAN_TESTS); do echo "== ThreadSanitizer: tests/graph/$$t"; \
	    OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 build/release-tsan/tests/graph/$$t \
	    >build/release-tsan/$$t.log 2>&1 || { tail -n 60 build/release-tsan/$$t.log; exit 1; }; done
	@echo "no data races"

# ONNX's backend node tests (fetched once from the onnx 1.17.0 wheel into build/onnx-node-tests),
# each converted and run as it is and with its inputs made constants: fails on a wrong answer, a
# crash, or a refusal not in tests/convert/onnx_node_allow.txt.  Per-operator counts: --per-op.
check-onnx-node: all
	@echo "== ONNX backend node tests (tests/convert/onnx_node_suite.py)"
	@timeout 900 $(PYTHON) tests/convert/onnx_node_suite.py --lib $(B)/libmdeploy.so --cache build/onnx-node-tests

# The Python wheel, portable: the BLAS=0 libraries (the runtime's own AVX2/AVX-512 kernels, no
# 36 MB OpenBLAS to bundle), auditwheel repair bundling libprotobuf-c; installed into a fresh venv
# and run from outside the repository (tests/wheel/check_wheel.sh).  The wheel: build/wheel/wheelhouse.
check-wheel:
	@$(MAKE) --no-print-directory BLAS=0 lib
	@echo "== check-wheel: pip wheel + auditwheel repair, installed into a fresh venv"
	@bash tests/wheel/check_wheel.sh build/release-noblas build/wheel
wheel: check-wheel

# Batch scoring with PySpark (examples/spark/score.py): Spark local mode on 100k rows and
# multiprocessing, both bit-identical to one process; prints rows/s.  Needs Java and pyspark.
check-spark: all
	@echo "== check-spark: examples/spark (Spark local mode, 100k rows)"
	@MDEPLOY_LIB=$(CURDIR)/$(B)/libmdeploy.so PYTHONPATH=$(CURDIR)/bindings/python timeout 900 \
	    $(PYTHON) -m pytest -q -s -p no:cacheprovider -W ignore::FutureWarning examples/spark

# make install into a scratch prefix (and once more with DESTDIR), then tests/install/check.sh:
# the SONAMEs and links, no protobuf-c under the runtime (ldd), and examples/minimal.c and
# examples/convert.c built against the installed tree with CMake (examples/cmake) and with
# pkg-config (shared and static), run on a model and checked against ONNX Runtime.
install-check: all
	@rm -rf $(B)/install-check
	@$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(B)/install-check/prefix >/dev/null
	@$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(B)/install-check/destdir PREFIX=/opt/mdeploy >/dev/null
	@bash tests/install/check.sh $(B) $(VERSION) $(SODIUM)

# The build's output goes to $(B)/build.log (V=1 shows it, with the commands); in parallel on
# every core unless -j was given.
demo: deps-demo
	@mkdir -p $(B)
ifeq ($(V),1)
	$(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc)) all
else
	@$(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc)) all \
	    >$(B)/build.log 2>&1 || { tail -n 30 $(B)/build.log; echo "make demo: the build failed (log: $(B)/build.log)" >&2; exit 1; }
	@echo "== build: $$(grep -c '^  CC' $(B)/build.log) files compiled into $(B) (log: $(B)/build.log; V=1 shows the commands)"
endif
	@bash examples/demo.sh $(B)

# Side by side with ONNX Runtime; writes bench/results/ (see bench/README.md).
bench: deps
	@$(MAKE) --no-print-directory all $(B)/bench/sparse $(B)/bench/loadtime
	@$(B)/bench/loadtime 32000 5 | tee bench/results/loadtime.txt
	@bash bench/run.sh $(B)

# Sparse against dense kernels on the same shapes (bench/sparse.c, internal API: static library).
$(B)/bench/sparse: bench/sparse.c $(B)/libmdeploy.a
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libmdeploy.a $(LDLIBS)

# Load time of a 32,000-node chain, with and without a stored plan (bench/loadtime.c; the
# generator is the tests' tm_build_chain).
$(B)/bench/loadtime: bench/loadtime.c $(TEST_COMMON) $(B)/libmdeploy.a
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_COMMON) $(B)/libmdeploy.a -lcmocka $(LDLIBS)

# ---- fuzzing (clang libFuzzer + ASan/UBSan) -------------------------------------------------
FUZZ_CC ?= clang
FUZZ_B := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_FLAGS := -g -O1 $(FUZZ_SAN) -Iinclude -Isrc -std=c11 -D_POSIX_C_SOURCE=200809L \
              -DMDL_WITH_METRICS $(if $(X86_SRCS),-DMDL_HAVE_X86_SIMD)
FUZZ_FLAGS += -DMDL_WITH_SELFTEST # the loader checks self-test vectors (selftest_host.c)
# The fuzzed library is the production one: core sources plus the x86 SIMD kernels (each with its
# own flags, so they are compiled to objects first).
FUZZ_OBJS := $(patsubst %.c,$(FUZZ_B)/%.o,$(CORE_SRCS) $(X86_SRCS))
# The objects depend on a stamp holding the flags and (-MMD) on their headers: a flag or header
# change rebuilds them (objects built from two versions of a struct disagree on its layout).
$(FUZZ_B)/.flags: FORCE
	@mkdir -p $(FUZZ_B)
	@echo '$(FUZZ_CC) $(FUZZ_FLAGS) -MMD -MP' | cmp -s - $@ || echo '$(FUZZ_CC) $(FUZZ_FLAGS) -MMD -MP' >$@
FORCE:
$(FUZZ_B)/%.o: %.c $(FUZZ_B)/.flags
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$@)$(FUZZ_CC) $(FUZZ_FLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_B)/src/ops/x86/%_avx2.o: FUZZ_FLAGS += -mavx2 -mfma
$(FUZZ_B)/src/ops/x86/%_avx512.o: FUZZ_FLAGS += -mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma
$(FUZZ_B)/src/ops/x86/gemm_int8_avx512.o: FUZZ_FLAGS += -mavx512vnni
$(FUZZ_B)/src/ops/x86/gemm_int8_amx_avx512.o: FUZZ_FLAGS += -mavx512vnni -mamx-tile -mamx-int8
$(FUZZ_B)/src/ops/x86/qsparse_conv_avx512.o: FUZZ_FLAGS += -mavx512vnni -mavx512vbmi
$(FUZZ_B)/src/ops/x86/qconv_small_avx512.o: FUZZ_FLAGS += -mavx512vnni
# The targets (tests/fuzz/fuzz_*.c): load (in place), run (fuzzer-chosen input values),
# file (MDL_LOAD_COPY from odd addresses, mdl_model_load_file), npy (the .npy reader), onnx (the
# ONNX importer on a memory buffer).  They link the host sources too (file, .npy, converter and
# its protobuf code), built with the same sanitizers; no worker threads.
FUZZ_TARGETS := load run file npy onnx
# and serve_request: mdeploy-serve's request bodies (tools/serve/request.c; its rule is below)
FUZZ_TARGETS += serve_request
FUZZ_HOST_OBJS := $(patsubst %.c,$(FUZZ_B)/%.o,$(filter-out src/graph/threads_host.c,$(HOST_SRCS))) \
                  $(FUZZ_B)/gen/onnx.pb-c.o
# kept between runs (make would delete them as intermediates of the pattern rule below)
.SECONDARY: $(FUZZ_OBJS) $(FUZZ_HOST_OBJS)
-include $(FUZZ_OBJS:.o=.d) $(FUZZ_HOST_OBJS:.o=.d)
$(patsubst %.c,$(FUZZ_B)/%.o,$(ONNX_SRCS)): FUZZ_FLAGS += -I$(ONNX_GEN)
$(patsubst %.c,$(FUZZ_B)/%.o,$(ONNX_SRCS)): $(ONNX_GEN)/onnx.pb-c.h
$(FUZZ_B)/gen/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h $(FUZZ_B)/.flags
	@mkdir -p $(dir $@)
	$(Q)$(call say,CC,$@)$(FUZZ_CC) $(FUZZ_FLAGS) -I$(ONNX_GEN) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_B)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FUZZ_OBJS) $(FUZZ_HOST_OBJS)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJS) $(FUZZ_HOST_OBJS) -lm -lpthread -lprotobuf-c

# mdeploy-serve's request parser links tools/serve/request.c and cJSON besides the library.
$(FUZZ_B)/fuzz_serve_request: tests/fuzz/fuzz_serve_request.c tools/serve/request.c tools/serve/request.h \
    $(FUZZ_OBJS) $(FUZZ_HOST_OBJS)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< tools/serve/request.c $(FUZZ_OBJS) \
	    $(FUZZ_HOST_OBJS) -lcjson -lm -lpthread -lprotobuf-c

fuzz: $(FUZZ_B)/fuzz_load
	@mkdir -p $(FUZZ_B)/corpus $(FUZZ_B)/artifacts
	$(FUZZ_B)/fuzz_load -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536 \
	    -artifact_prefix=$(FUZZ_B)/artifacts/ $(FUZZ_B)/corpus tests/fuzz/corpus

# Every target at once, FUZZ_SECONDS each, one process per target (tests/fuzz/run.sh prints the
# executions per target and fails on a crash).  E.g. make fuzz-long FUZZ_SECONDS=3600
fuzz-long: $(FUZZ_TARGETS:%=$(FUZZ_B)/fuzz_%)
	@bash tests/fuzz/run.sh $(FUZZ_B) $(FUZZ_SECONDS) parallel $(FUZZ_TARGETS)

# Replays the committed corpus under ASan/UBSan, then each target for 10 s in turn (about a minute).
fuzz-smoke: $(FUZZ_TARGETS:%=$(FUZZ_B)/fuzz_%)
	@echo "== fuzz smoke: corpus replay + 10 s of libFuzzer per target (ASan+UBSan)"
	@$(FUZZ_B)/fuzz_load -runs=0 tests/fuzz/corpus >$(FUZZ_B)/replay.log 2>&1 || { cat $(FUZZ_B)/replay.log; exit 1; }
	@echo "replayed $$(ls tests/fuzz/corpus | wc -l) corpus files: clean"
	@bash tests/fuzz/run.sh $(FUZZ_B) 10 sequential $(FUZZ_TARGETS)

# ---- firmware: bare-metal images for Cortex-M4, Cortex-M7 and RV32 under QEMU -------------
include examples/firmware/firmware.mk

# make install PREFIX=/usr/local (DESTDIR=... for staging): headers, both libraries (static, and
# shared with their lib*.so.MAJOR and lib*.so links), the tools, pkg-config files (mdeploy,
# mdeploy-convert) and the CMake package (find_package(mdeploy): mdeploy::mdeploy, mdeploy::convert).
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
mdl_empty :=
mdl_space := $(mdl_empty) $(mdl_empty)
mdl_cmake_libs = $(subst $(mdl_space),;,$(strip $(patsubst -l%,%,$(1))))
INSTALL_SUBST := sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' \
    -e 's|@LIBS@|$(strip $(LDLIBS))|g' -e 's|@CONVERT_LIBS@|$(CONVERT_LDLIBS)|g' \
    -e 's|@CMAKE_LIBS@|$(call mdl_cmake_libs,$(LDLIBS))|g' -e 's|@CMAKE_CONVERT_LIBS@|$(call mdl_cmake_libs,$(CONVERT_LDLIBS))|g'
install: all
	install -d $(DESTDIR)$(INCLUDEDIR)/mdeploy $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/cmake/mdeploy \
	    $(DESTDIR)$(BINDIR)
	install -m 644 include/mdeploy/*.h $(DESTDIR)$(INCLUDEDIR)/mdeploy/
	install -m 644 $(LIBS_A) $(DESTDIR)$(LIBDIR)/
	for l in libmdeploy libmdeploy-convert; do \
	    install -m 755 $(B)/$$l.so.$(VERSION) $(DESTDIR)$(LIBDIR)/ && \
	    ln -sf $$l.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$$l.so.$(VERSION_MAJOR) && \
	    ln -sf $$l.so.$(VERSION_MAJOR) $(DESTDIR)$(LIBDIR)/$$l.so || exit 1; done
	install -m 755 $(TOOLS) $(SERVE_BIN) $(DESTDIR)$(BINDIR)/
	$(INSTALL_SUBST) tools/mdeploy.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/mdeploy.pc
	$(INSTALL_SUBST) tools/mdeploy-convert.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/mdeploy-convert.pc
	$(INSTALL_SUBST) tools/mdeployConfig.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/mdeploy/mdeployConfig.cmake
	$(INSTALL_SUBST) tools/mdeployConfigVersion.cmake.in > $(DESTDIR)$(LIBDIR)/cmake/mdeploy/mdeployConfigVersion.cmake

clean:
	rm -rf build

# ---- model seal (include/mdeploy/security.h) -----------------------------------------------
# Signatures and encryption at rest on the host come from libsodium (src/io/sign_host.c); the
# core (src/io/seal.c, sha256.c) is libc only.  The fuzz targets do not link the host signer.
# SODIUM=0 builds the runtime without libsodium: the content digest is still checked, but a
# model that needs a signature check or decryption is refused (MDL_UNSUPPORTED, saying so), and
# keygen, signing and encryption return MDL_UNSUPPORTED.  Default 1 on every machine (like BLAS):
# the same command builds the same library everywhere, and a missing libsodium-dev stops the
# build with what to do instead of silently producing a runtime that refuses signed models.
# The tests link libsodium in both: it is their independent oracle (SHA-256, Ed25519, AEAD).
CPPFLAGS += -DMDL_SODIUM=$(SODIUM)
ifeq ($(SODIUM),1)
  LDLIBS += -lsodium
endif
TEST_LDLIBS += -lsodium
FUZZ_HOST_OBJS := $(filter-out %/sign_host.o,$(FUZZ_HOST_OBJS))

# The content digest's cost at load on a ResNet-18 (torchvision, random weights, exported in a
# temporary directory; needs /usr/bin/python3 with torch and torchvision), with the x86 SHA
# extensions and with the portable C code.  bench/sealtime.c.
.PHONY: bench-seal check-nosodium
# The SODIUM=0 runtime (about a minute: the library, the tools and the two seal tests, not the
# whole suite): loads that need a signature check or decryption refused with MDL_UNSUPPORTED,
# keygen/sign/encrypt too, the digest still checked (tests/io/test_seal, tests/tools/test_seal_cli),
# and no libsodium among the shared library's NEEDED (make SODIUM=0 install-check checks the
# installed tree the same way).
NOSODIUM_B := build/$(call mdl_config,0)
check-nosodium:
	@$(MAKE) --no-print-directory SODIUM=0 lib tools $(NOSODIUM_B)/tests/io/test_seal $(NOSODIUM_B)/tests/tools/test_seal_cli >/dev/null
	@echo "== SODIUM=0: the seal tests, and libmdeploy.so without libsodium"
	@for t in io/test_seal tools/test_seal_cli; do $(NOSODIUM_B)/tests/$$t >$(NOSODIUM_B)/$$(basename $$t).log 2>&1 || \
	    { tail -n 40 $(NOSODIUM_B)/$$(basename $$t).log; exit 1; }; done
	@! objdump -p $(NOSODIUM_B)/libmdeploy.so | grep 'NEEDED.*libsodium' || { echo "SODIUM=0: libmdeploy.so needs libsodium" >&2; exit 1; }
	@echo "SODIUM=0: refusals checked; libmdeploy.so NEEDED: $$(objdump -p $(NOSODIUM_B)/libmdeploy.so | awk '$$1 == "NEEDED" {printf "%s ", $$2}')"
$(B)/bench/sealtime: bench/sealtime.c $(B)/libmdeploy.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libmdeploy.a $(LDLIBS)
bench-seal: all $(B)/bench/sealtime
	@d=$$(mktemp -d) && trap 'rm -rf $$d' EXIT && \
	    /usr/bin/python3 -c "import torch, torchvision; m = torchvision.models.resnet18().eval(); \
	    torch.onnx.export(m, torch.zeros(1, 3, 224, 224), '$$d/r18.onnx', input_names=['x'], opset_version=13)" && \
	    $(B)/bin/mdeploy-convert $$d/r18.onnx -o $$d/r18.mdl -q && $(B)/bench/sealtime $$d/r18.mdl 21 && \
	    echo "portable C SHA-256 (MDL_CPU_LEVEL=0):" && MDL_CPU_LEVEL=0 $(B)/bench/sealtime $$d/r18.mdl 21

# ---- mdeploy-serve's model repository (tools/serve/repo.c) -----------------------------------
# test_serve_repo links the repository and the fixture writer (tests/tools/serve_fixtures.c),
# which is also a command for the server's Python tests (build/<config>/tests/tools/serve_fixtures).
SERVE_REPO_TEST_SRCS := tools/serve/repo.c tests/tools/serve_fixtures.c
$(B)/tests/tools/test_serve_repo: tests/tools/test_serve_repo.c $(SERVE_REPO_TEST_SRCS) tools/serve/repo.h \
    tests/tools/serve_fixtures.h $(TEST_COMMON) $(LIBS_A)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(CPPFLAGS) -Itests -Itools/serve $(CFLAGS) -Wno-shadow $(LDFLAGS) -o $@ $< \
	    $(SERVE_REPO_TEST_SRCS) $(TEST_COMMON) $(LIBS_A) -lcmocka -lcjson $(CONVERT_LDLIBS) $(LDLIBS)
$(B)/tests/tools/serve_fixtures: tests/tools/serve_fixtures.c tests/tools/serve_fixtures.h $(TEST_COMMON) $(LIBS_A)
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(CPPFLAGS) -Itests -DSERVE_FIXTURES_MAIN $(CFLAGS) $(LDFLAGS) -o $@ $< \
	    $(TEST_COMMON) $(LIBS_A) -lcmocka $(CONVERT_LDLIBS) $(LDLIBS)
tests: $(B)/tests/tools/serve_fixtures
# under ThreadSanitizer too (make check-tsan): acquiring threads while another polls and reads
.PHONY: check-tsan-serve
check-tsan: check-tsan-serve
check-tsan-serve:
	@$(MAKE) --no-print-directory TSAN=1 build/release-tsan/tests/tools/test_serve_repo >/dev/null
	@echo "== ThreadSanitizer: tests/tools/test_serve_repo"
	@OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 build/release-tsan/tests/tools/test_serve_repo \
	    >build/release-tsan/test_serve_repo.log 2>&1 || { tail -n 60 build/release-tsan/test_serve_repo.log; exit 1; }

# ---- mdeploy-serve (tools/serve/): the HTTP server, on libmicrohttpd (issue #19) ------------
# Built when pkg-config finds libmicrohttpd (make deps installs libmicrohttpd-dev, so make check
# always builds it); otherwise make all says in one line that it is skipped.  Public API only
# (include/, not src/), linked with the static runtime, cJSON and libmicrohttpd.
SERVE_SRCS := $(sort $(wildcard tools/serve/*.c))
HAVE_MHD := $(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo 1)
ifeq ($(HAVE_MHD),1)
SERVE_BIN := $(B)/bin/mdeploy-serve
tools: $(SERVE_BIN)
$(SERVE_BIN): $(SERVE_SRCS) $(wildcard tools/serve/*.h) tools/seal_util.h $(B)/libmdeploy.a
	@mkdir -p $(dir $@)
	$(Q)$(call say,LD,$@)$(CC) $(filter-out -Isrc,$(CPPFLAGS)) $(shell pkg-config --cflags libmicrohttpd) $(CFLAGS) \
	    $(LDFLAGS) -o $@ $(SERVE_SRCS) $(B)/libmdeploy.a -lcjson $(shell pkg-config --libs libmicrohttpd) $(LDLIBS)
else
.PHONY: serve-skipped
tools: serve-skipped
serve-skipped:
	@echo "mdeploy-serve skipped: libmicrohttpd not found by pkg-config (make deps installs libmicrohttpd-dev)"
endif
