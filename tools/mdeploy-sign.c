/* mdeploy-sign: signs (and optionally encrypts) an existing sealed .mdl over the public API
   (include/mdeploy/security.h).
   usage: mdeploy-sign MODEL.mdl --key KEY [--encrypt ENCKEY] [-o OUT.mdl]   (default: in place) */
#include "seal_util.h"

static int usage(FILE *f) {
    fputs("usage: mdeploy-sign MODEL.mdl [--key SECRET.key] [--encrypt ENC.key] [-o OUT.mdl]\n"
          "  --key FILE       sign with this Ed25519 secret key (mdeploy-keygen --sign)\n"
          "  --encrypt FILE   encrypt the model with this key (mdeploy-keygen --encryption);\n"
          "                   with --key both the inner and the encrypted file are signed\n"
          "  -o FILE          write here (default: replace MODEL.mdl)\n", f);
    return f == stdout ? 0 : 1;
}

int main(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *key = NULL, *enc = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        const char **dst = !strcmp(a, "--key") ? &key : !strcmp(a, "--encrypt") ? &enc : !strcmp(a, "-o") ? &out : NULL;
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "mdeploy-sign: %s needs a value\n", a);
                return 1;
            }
            *dst = argv[++i];
        } else if (a[0] == '-' || in) {
            fprintf(stderr, "mdeploy-sign: unexpected argument '%s'\n", a);
            return usage(stderr);
        } else {
            in = a;
        }
    }
    if (!in || (!key && !enc)) return usage(stderr);
    return seal_file(in, out ? out : in, key, enc, "mdeploy-sign") ? 0 : 1;
}
