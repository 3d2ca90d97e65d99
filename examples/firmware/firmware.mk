# Firmware builds (included by the top-level Makefile).  See examples/firmware/README.md.
#
#   make firmware [TARGET=cortex-m4|cortex-m7|rv32]   core library + one image per model
#   make firmware-check [TARGET=...]                  run each image under QEMU, compare with the host
#   make firmware-report                              bench/results/firmware.md (all targets)
#
# The core is the runtime without host files, BLAS or SIMD, built with -Os, no error strings
# (MDL_NO_ERROR_STRINGS; but see cortex-m4-msg below), no default allocator (MDL_NO_MALLOC) and no default kernel table
# (MDL_NO_DEFAULT_KERNELS): an image links only the kernels its model registers, fixed shapes
# only (MDL_NO_DYNAMIC) and no speed-only kernel paths (MDL_SMALL_CODE).  Models are
# converted and embedded on the host (mdeploy-convert, mdeploy-embed from $(B)).

FW_TARGETS := cortex-m4 cortex-m7 rv32
TARGET ?=
FW_SEL := $(if $(TARGET),$(TARGET),$(FW_TARGETS))
ifneq ($(filter firmware%,$(MAKECMDGOALS)),)
$(foreach t,$(FW_SEL),$(if $(filter $(t),$(FW_TARGETS)),,$(error TARGET=$(t): use one of $(FW_TARGETS))))
endif

FW_COMMON := -Os -std=c11 -g -ffunction-sections -fdata-sections -Wall -Wextra -Werror \
             -Wno-unused-parameter -Iinclude -Isrc --specs=picolibc.specs
FW_CORE_DEFS := -DMDL_NO_MALLOC -DMDL_NO_DEFAULT_KERNELS -DMDL_MAX_NODE_IO=16 -DMDL_NO_DYNAMIC -DMDL_SMALL_CODE
# Flash and RAM of each QEMU board (4 MiB each; the largest image, the text classifier, needs
# ~240 KiB of flash and ~600 KiB of RAM).  The stack grows down from the top of RAM into the space static data leaves (painted).
FW_LDFLAGS = --oslib=semihost --crt0=semihost -DPICOLIBC_INTEGER_PRINTF_SCANF \
             -Wl,--gc-sections

FW_CC_cortex-m4 := arm-none-eabi-gcc
FW_ARCH_cortex-m4 := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
FW_MEM_cortex-m4 := -Wl,--defsym=__flash=0x00000000 -Wl,--defsym=__flash_size=0x400000 \
                    -Wl,--defsym=__ram=0x20000000 -Wl,--defsym=__ram_size=0x400000
FW_QEMU_cortex-m4 := qemu-system-arm -M mps2-an386

FW_CC_cortex-m7 := arm-none-eabi-gcc
FW_ARCH_cortex-m7 := -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16
FW_MEM_cortex-m7 := $(FW_MEM_cortex-m4)
FW_QEMU_cortex-m7 := qemu-system-arm -M mps2-an500

FW_CC_rv32 := riscv64-unknown-elf-gcc
FW_ARCH_rv32 := -march=rv32imac -mabi=ilp32
FW_MEM_rv32 := -Wl,--defsym=__flash=0x80000000 -Wl,--defsym=__flash_size=0x400000 \
               -Wl,--defsym=__ram=0x80400000 -Wl,--defsym=__ram_size=0x400000
FW_QEMU_rv32 := qemu-system-riscv32 -M virt -bios none

# cortex-m4-msg: the Cortex-M4 core and digits_s8 image with error strings on, to show that the
# messages (e.g. which registration a model lacks) reach a firmware user too.
FW_CC_cortex-m4-msg := $(FW_CC_cortex-m4)
FW_ARCH_cortex-m4-msg := $(FW_ARCH_cortex-m4)
FW_MEM_cortex-m4-msg := $(FW_MEM_cortex-m4)
FW_QEMU_cortex-m4-msg := $(FW_QEMU_cortex-m4)
FW_DEFS_cortex-m4-msg :=
# ... and a model with dynamic dims (a symbolic batch), which its MDL_NO_DYNAMIC core must refuse
# at load with MDL_UNSUPPORTED and a message saying so (check "dynamic-model" in main.c)
FW_EXTRA_cortex-m4-msg = $(FW_GEN)/fw_dyn_model.c
FW_APP_cortex-m4-msg := -DFW_DYN_MODEL -DFW_SEAL_CHECK # (and the seal check, which it links)
$(foreach t,$(FW_TARGETS),$(eval FW_DEFS_$(t) := -DMDL_NO_ERROR_STRINGS))

FW_QEMU_OPTS := -nographic -monitor none -serial none -semihosting-config enable=on,target=native

# Models: NAME, ONNX file, converter options, inputs (.npy), rows run, output tolerance (0: the
# host's bytes exactly; int8 models are compared bit for bit, float outputs included).
FW_MODELS := digits_f32 digits_s8 text_s8 recommender_f32 recommender_s8
FW_ONNX_digits_f32 := examples/digits/digits_cnn.onnx
FW_IN_digits_f32 := examples/digits/images.npy
FW_TOL_digits_f32 := 1e-5
FW_ONNX_digits_s8 := tests/models/quant/digits_qdq_s8.onnx
# the digits export has a dynamic batch: firmware needs fixed shapes (one image per run)
FW_SHAPE_digits_f32 := --input-shape image=1x1x8x8
FW_SHAPE_digits_s8 := --input-shape image=1x1x8x8
FW_IN_digits_s8 := examples/digits/images.npy
FW_TOL_digits_s8 := 0
# the text classifier as ONNX Runtime quantizes it (quantize_dynamic): int8 embedding and LSTM
# weights in flash, widened to float once at load; the LSTM computes in float (libm): 1e-5
FW_ONNX_text_s8 := tests/models/quant/text_lstm_dyn.onnx
FW_IN_text_s8 := tests/models/text_lstm.in0.npy
FW_TOL_text_s8 := 1e-5
FW_ONNX_recommender_f32 := tests/models/recommender.onnx
FW_IN_recommender_f32 := tests/models/recommender.in0.npy tests/models/recommender.in1.npy
FW_TOL_recommender_f32 := 1e-5
FW_ONNX_recommender_s8 := tests/models/quant/recommender_qdq_s8.onnx
FW_IN_recommender_s8 := tests/models/quant/recommender.in0.npy tests/models/quant/recommender.in1.npy
FW_TOL_recommender_s8 := 0

FW_DIR := build/fw
FW_GEN := $(FW_DIR)/models

.PHONY: firmware firmware-check firmware-report firmware-core
# generated models and images are kept (not deleted as intermediates of the logs)
.SECONDARY: $(foreach m,$(FW_MODELS),$(FW_GEN)/$(m).mdl $(FW_GEN)/$(m).c $(FW_GEN)/$(m).h \
    $(FW_DIR)/host/$(m) $(foreach t,$(FW_TARGETS) cortex-m4-msg,$(FW_DIR)/$(t)/$(m).elf))

# ---- models: converted and embedded on the host ---------------------------------------------
$(FW_GEN)/fw_dyn_model.c: $(B)/bin/mdeploy-convert tests/firmware/embed_raw.py examples/firmware/firmware.mk
	@mkdir -p $(dir $@)
	@$(B)/bin/mdeploy-convert tests/models/dynamic/dyn_nopad.onnx -o $(FW_GEN)/fw_dyn_model.mdl >/dev/null
	@$(PYTHON) tests/firmware/embed_raw.py $(FW_GEN)/fw_dyn_model.mdl fw_dyn_model $@
$(FW_GEN)/%.mdl: $(B)/bin/mdeploy-convert examples/firmware/firmware.mk
	@mkdir -p $(dir $@)
	@$(B)/bin/mdeploy-convert $(FW_ONNX_$*) $(FW_SHAPE_$*) -o $@ >/dev/null
$(FW_GEN)/%.c $(FW_GEN)/%.h: $(FW_GEN)/%.mdl $(B)/bin/mdeploy-embed
	@$(B)/bin/mdeploy-embed $< -n $* -o $(FW_GEN) $(foreach f,$(FW_IN_$*),-i $(f)) >/dev/null

# the same program on the host, against the full library: the reference output
$(FW_DIR)/host/%: examples/firmware/main.c $(FW_GEN)/%.c $(FW_GEN)/%.h $(B)/libmdeploy.a
	@mkdir -p $(dir $@)
	@$(CC) $(CPPFLAGS) -I$(FW_GEN) -DFW_HOST -DFW_NAME=$* -DFW_HEADER='"$*.h"' $(CFLAGS) \
	    $(LDFLAGS) -o $@ examples/firmware/main.c $(FW_GEN)/$*.c $(B)/libmdeploy.a $(LDLIBS)
$(FW_DIR)/host/%.out: $(FW_DIR)/host/%
	@$< > $@

# ---- per target: core library, images --------------------------------------------------------
define FW_TARGET_RULES
$(FW_DIR)/$(1)/core/%.o: %.c
	@mkdir -p $$(dir $$@)
	@$(FW_CC_$(1)) $(FW_ARCH_$(1)) $(FW_COMMON) $(FW_DEFS_$(1)) $(FW_CORE_DEFS) -MMD -MP -c $$< -o $$@
$(FW_DIR)/$(1)/libmdeploy-core.a: $(CORE_SRCS:%.c=$(FW_DIR)/$(1)/core/%.o)
	@rm -f $$@
	@$(subst -gcc,-ar,$(FW_CC_$(1))) rcs $$@ $$^
$(FW_DIR)/$(1)/%.elf: examples/firmware/main.c $(FW_GEN)/%.c $(FW_GEN)/%.h $(FW_EXTRA_$(1)) $(FW_DIR)/$(1)/libmdeploy-core.a
	@$(FW_CC_$(1)) $(FW_ARCH_$(1)) $(FW_COMMON) $(FW_DEFS_$(1)) $(FW_APP_$(1)) -I$(FW_GEN) -DFW_NAME=$$* -DFW_HEADER='"$$*.h"' \
	    $(FW_LDFLAGS) $(FW_MEM_$(1)) -Wl,-Map=$(FW_DIR)/$(1)/$$*.map -o $$@ \
	    examples/firmware/main.c $(FW_GEN)/$$*.c $(FW_EXTRA_$(1)) $(FW_DIR)/$(1)/libmdeploy-core.a -lm
	@if $(subst -gcc,-nm,$(FW_CC_$(1))) $$@ | grep -qwE 'malloc|free|calloc|realloc'; then \
	    echo "firmware: $$@ links a heap allocator:"; $(subst -gcc,-nm,$(FW_CC_$(1))) $$@ | grep -wE 'malloc|free|calloc|realloc'; rm -f $$@; exit 1; fi
	@$(PYTHON) tests/firmware/check_kernels.py $(subst -gcc,-nm,$(FW_CC_$(1))) $$@ $(FW_GEN)/$$*.h \
	    include/mdeploy/resolver.h || { rm -f $$@; exit 1; }
$(FW_DIR)/$(1)/%.log: $(FW_DIR)/$(1)/%.elf
	@timeout 60 $(FW_QEMU_$(1)) $(FW_QEMU_OPTS) -kernel $$< > $$@.tmp 2>&1 || \
	    { echo "firmware: $(1) $$* failed under QEMU (exit $$$$?):"; tail -n 20 $$@.tmp; exit 1; }
	@mv $$@.tmp $$@
endef
$(foreach t,$(FW_TARGETS) cortex-m4-msg,$(eval $(call FW_TARGET_RULES,$(t))))
-include $(wildcard $(FW_DIR)/*/core/src/*/*.d)

firmware-core: $(foreach t,$(FW_SEL),$(FW_DIR)/$(t)/libmdeploy-core.a)

FW_MSG := $(if $(filter cortex-m4,$(FW_SEL)),$(FW_DIR)/cortex-m4-msg/digits_s8)
firmware: $(foreach t,$(FW_SEL),$(foreach m,$(FW_MODELS),$(FW_DIR)/$(t)/$(m).elf)) $(FW_MSG:%=%.elf)
	@echo "== firmware: $(FW_SEL) x $(FW_MODELS): no malloc/free, only the registered kernels in each image"

# Every image under QEMU (each run bounded by 60 s), its outputs compared with the host's.
firmware-check: firmware $(foreach m,$(FW_MODELS),$(FW_DIR)/host/$(m).out) \
                $(foreach t,$(FW_SEL),$(foreach m,$(FW_MODELS),$(FW_DIR)/$(t)/$(m).log)) $(FW_MSG:%=%.log)
	@$(PYTHON) tests/firmware/compare.py $(foreach t,$(FW_SEL),$(foreach m,$(FW_MODELS),\
	    $(FW_DIR)/$(t)/$(m).log:$(FW_DIR)/host/$(m).out:$(FW_TOL_$(m)))) \
	    $(FW_MSG:%=%.log:$(FW_DIR)/host/digits_s8.out:0)

firmware-report:
	@$(MAKE) --no-print-directory firmware-check TARGET=
	@$(PYTHON) tools/scripts/firmware_report.py $(FW_DIR) "$(FW_TARGETS)" "$(FW_MODELS)" \
	    > bench/results/firmware.md
	@echo "== wrote bench/results/firmware.md"
