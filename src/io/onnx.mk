# The ONNX importer (converter only; host builds).  -included by the top Makefile after the object
# rules.  The ONNX schema is not copied into the repo: protoc-c compiles the onnx.proto of Debian's
# libonnx-dev package (/usr/include/onnx/onnx.proto; ONNX_PROTO=PATH picks another) into $(B)/gen/
# at build time, so the build does not depend on the version of any Python onnx package.

ONNX_GEN := $(B)/gen
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
# The importer's files (onnx_host.c, onnx_lower_*_host.c) include onnx.pb-c.h; the converter's
# other files get the include path too, so a lowering file of an operator family may live beside
# the IR (they include io/onnx_lower_host.h).  ONNX_SRCS: the fuzz build's name for them.
ONNX_SRCS := $(CONVERT_SRCS)
ONNX_OBJS := $(CONVERT_OBJS)

$(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h &: $(wildcard $(ONNX_PROTO)) src/io/onnx.mk
	@mkdir -p $(ONNX_GEN)
	@[ -f "$(ONNX_PROTO)" ] || { echo "error: $(ONNX_PROTO) not found: the converter is generated from the ONNX schema of Debian's libonnx-dev (sudo apt-get install libonnx-dev, or make deps); ONNX_PROTO=PATH names another onnx.proto" >&2; exit 1; }
	@command -v protoc-c >/dev/null || { echo "error: protoc-c not found (sudo apt-get install protobuf-c-compiler)" >&2; exit 1; }
	$(Q)$(call say,PROTOC,$(ONNX_PROTO))protoc-c --proto_path="$(dir $(ONNX_PROTO))" --c_out=$(ONNX_GEN) "$(ONNX_PROTO)"

$(ONNX_GEN)/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h
	$(Q)$(call say,CC,$@)$(CC) $(CPPFLAGS) -I$(ONNX_GEN) $(CFLAGS) -c $< -o $@

$(ONNX_OBJS): CPPFLAGS += -I$(ONNX_GEN)
$(ONNX_OBJS): $(ONNX_GEN)/onnx.pb-c.h

# CONVERT_OBJS was expanded into the archive rules already; extra prerequisites join $^ there.
CONVERT_OBJS += $(ONNX_GEN)/onnx.pb-c.o
$(B)/libmdeploy-convert.a $(B)/libmdeploy-convert.so.$(VERSION): $(ONNX_GEN)/onnx.pb-c.o

# The conversion tests drive the CLI too.
$(B)/tests/convert/test_convert: $(B)/bin/mdeploy-convert
