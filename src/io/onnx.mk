# The ONNX importer (converter only; host builds).  -included by the top Makefile after the object
# rules.  The ONNX schema is not copied into the repo: protoc-c compiles the onnx.proto that the
# installed `onnx` Python package ships into $(B)/gen/ at build time.

ONNX_GEN := $(B)/gen
# The importer's files (onnx_host.c, onnx_lower_*_host.c) include onnx.pb-c.h; the converter's
# other host files get the include path too, so a lowering file of an operator family may live
# beside the IR (they include io/onnx_lower_host.h).
ONNX_SRCS := $(filter src/io/onnx%_host.c src/graph/convert%_host.c src/quant/%_host.c,$(HOST_SRCS))
ONNX_OBJS := $(ONNX_SRCS:%.c=$(B)/%.o)

# The package is located when the rule runs (not at every make invocation: importing onnx costs
# a noticeable fraction of a second and firmware builds never need it).
$(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h &:
	@mkdir -p $(ONNX_GEN)
	@d=$$($(PYTHON) -c 'import onnx, os; print(os.path.dirname(onnx.__file__))' 2>/dev/null); \
	if [ -z "$$d" ] || [ ! -f "$$d/onnx.proto" ]; then \
	    echo "error: onnx.proto not found: install the onnx Python package (make deps-python)" >&2; \
	    exit 1; fi; \
	command -v protoc-c >/dev/null || { echo "error: protoc-c not found (apt-get install protobuf-c-compiler)" >&2; exit 1; }; \
	echo "protoc-c $$d/onnx.proto -> $(ONNX_GEN)/"; \
	protoc-c --proto_path="$$d" --c_out=$(ONNX_GEN) "$$d/onnx.proto"

$(ONNX_GEN)/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c $(ONNX_GEN)/onnx.pb-c.h
	$(CC) $(CPPFLAGS) -I$(ONNX_GEN) $(CFLAGS) -c $< -o $@

$(ONNX_OBJS): CPPFLAGS += -I$(ONNX_GEN)
$(ONNX_OBJS): $(ONNX_GEN)/onnx.pb-c.h

# LIB_OBJS was expanded into the archive rules already; extra prerequisites join $^ there.
LIB_OBJS += $(ONNX_GEN)/onnx.pb-c.o
$(B)/libmdeploy.a $(B)/libmdeploy.so: $(ONNX_GEN)/onnx.pb-c.o
LDLIBS += -lprotobuf-c

# The conversion tests drive the CLI too.
$(B)/tests/convert/test_convert: $(B)/bin/mdeploy-convert
