/* mdeploy-sign: signs (and optionally encrypts) an existing sealed .mdl over the public API
   (include/mdeploy/security.h).
   Options: the table below (mdeploy-sign --help). */
#include "seal_util.h"
#include "tool_util.h"

static const tool_opt opts[] = {
    {"key", 256, "FILE", "sign with this Ed25519 secret key (mdeploy-keygen --sign)"},
    {"encrypt", 257, "FILE", "encrypt the model with this key (mdeploy-keygen --encryption);\n"
                              "with --key both the inner and the encrypted file are signed"},
    {"output", 'o', "FILE", "write here (default: replace MODEL.mdl)"},
};
static const tool_cli cli = {
    "mdeploy-sign", "Signs and/or encrypts an existing .mdl file (sealed: format 2.3 or later).",
    "MODEL.mdl [--key SECRET.key] [--encrypt ENC.key] [-o OUT.mdl]", opts, TOOL_NOPTS(opts),
    "mdeploy-sign net.mdl --key release.key\n"
    "mdeploy-sign net.mdl --key release.key --encrypt model.key -o net.sealed.mdl",
};

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *key = NULL, *enc = NULL;
    for (int c; (c = tool_getopt(&cli, argc, argv)) != -1;) {
        if (c == 256) key = tool_optarg;
        else if (c == 257) enc = tool_optarg;
        else if (c == 'o') out = tool_optarg;
        else if (in) return tool_usage_error(&cli, "more than one model given");
        else in = tool_optarg;
    }
    if (!in) return tool_usage_error(&cli, "no model given");
    if (!key && !enc) return tool_usage_error(&cli, "nothing to do: give --key and/or --encrypt");
    return seal_file(in, out ? out : in, key, enc, "mdeploy-sign") ? 0 : 1;
}
