/* mdeploy-keygen: key files for signed and encrypted models (include/mdeploy/security.h).
   Options: the table below (mdeploy-keygen --help). */
#include "mdeploy/security.h"
#include "tool_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tool_opt opts[] = {
    {"sign", 256, "PREFIX", "write an Ed25519 key pair: PREFIX.key (secret, mode 0600), PREFIX.pub"},
    {"encryption", 257, "FILE", "write a random XChaCha20-Poly1305 model encryption key (mode 0600)"},
};
static const tool_cli cli = {
    "mdeploy-keygen", "Key files for signed (mdeploy-sign, mdeploy-convert --sign) and encrypted models.",
    "--sign PREFIX\n--encryption FILE", opts, TOOL_NOPTS(opts),
    "mdeploy-keygen --sign release           # release.key (keep private), release.pub (for loaders)\n"
    "mdeploy-keygen --encryption model.key   # for mdeploy-sign --encrypt model.key",
};

int main(int argc, char **argv) {
    const char *sign = NULL, *encryption = NULL, *extra = NULL;
    for (int c; (c = tool_getopt(&cli, argc, argv)) != -1;) {
        if (c == 256) sign = tool_optarg;
        else if (c == 257) encryption = tool_optarg;
        else if (!extra) extra = tool_optarg; /* reported after every option was parsed */
    }
    if (extra) {
        char msg[600];
        snprintf(msg, sizeof msg, "unexpected argument '%.500s'", extra);
        return tool_usage_error(&cli, msg);
    }
    if (!sign == !encryption) return tool_usage_error(&cli, "give one of --sign PREFIX or --encryption FILE");
    mdl_error err;
    if (sign) {
        uint8_t pk[MDL_PUBLIC_KEY_BYTES], sk[MDL_SECRET_KEY_BYTES], id[MDL_KEY_ID_BYTES];
        size_t n = strlen(sign) + 5;
        char *sec = malloc(n), *pub = malloc(n);
        if (!sec || !pub) return 1;
        snprintf(sec, n, "%s.key", sign);
        snprintf(pub, n, "%s.pub", sign);
        int rc = 1;
        if (!mdl_keygen(pk, sk, &err) && !mdl_key_file_write(sec, "ed25519-secret", sk, sizeof sk, &err) &&
            !mdl_key_file_write(pub, "ed25519-public", pk, sizeof pk, &err)) {
            mdl_key_id(pk, id);
            printf("wrote %s (secret: keep it private) and %s (public), key id ", sec, pub);
            for (int i = 0; i < MDL_KEY_ID_BYTES; i++) printf("%02x", id[i]);
            printf("\n");
            rc = 0;
        } else {
            fprintf(stderr, "mdeploy-keygen: %s\n", err.msg);
        }
        memset(sk, 0, sizeof sk);
        free(sec);
        free(pub);
        return rc;
    }
    {
        uint8_t k[MDL_ENCRYPTION_KEY_BYTES];
        int rc = 0;
        if (mdl_encryption_keygen(k, &err) || mdl_key_file_write(encryption, "xchacha20poly1305", k, sizeof k, &err)) {
            fprintf(stderr, "mdeploy-keygen: %s\n", err.msg);
            rc = 1;
        } else {
            printf("wrote %s (model encryption key: keep it private)\n", encryption);
        }
        memset(k, 0, sizeof k);
        return rc;
    }
}
