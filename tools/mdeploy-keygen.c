/* mdeploy-keygen: key files for signed and encrypted models (include/mdeploy/security.h).
   usage: mdeploy-keygen --sign PREFIX          PREFIX.key (Ed25519 secret, mode 0600) and
                                                PREFIX.pub (public; give it to the loaders)
          mdeploy-keygen --encryption FILE      a random XChaCha20-Poly1305 key (mode 0600) */
#include "mdeploy/security.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f) {
    fputs("usage: mdeploy-keygen --sign PREFIX        writes PREFIX.key (secret) and PREFIX.pub\n"
          "       mdeploy-keygen --encryption FILE    writes a model encryption key\n", f);
    return f == stdout ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) return usage(stdout);
    if (argc != 3) return usage(stderr);
    mdl_error err;
    if (!strcmp(argv[1], "--sign")) {
        uint8_t pk[MDL_PUBLIC_KEY_BYTES], sk[MDL_SECRET_KEY_BYTES], id[MDL_KEY_ID_BYTES];
        size_t n = strlen(argv[2]) + 5;
        char *sec = malloc(n), *pub = malloc(n);
        if (!sec || !pub) return 1;
        snprintf(sec, n, "%s.key", argv[2]);
        snprintf(pub, n, "%s.pub", argv[2]);
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
    if (!strcmp(argv[1], "--encryption")) {
        uint8_t k[MDL_ENCRYPTION_KEY_BYTES];
        int rc = 0;
        if (mdl_encryption_keygen(k, &err) || mdl_key_file_write(argv[2], "xchacha20poly1305", k, sizeof k, &err)) {
            fprintf(stderr, "mdeploy-keygen: %s\n", err.msg);
            rc = 1;
        } else {
            printf("wrote %s (model encryption key: keep it private)\n", argv[2]);
        }
        memset(k, 0, sizeof k);
        return rc;
    }
    return usage(stderr);
}
