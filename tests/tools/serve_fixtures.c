/* Model directories for mdeploy-serve's tests: see serve_fixtures.h.  Built into
   test_serve_repo, and with -DSERVE_FIXTURES_MAIN as the command serve_fixtures. */
#include "serve_fixtures.h"

#include "common/models.h"
#include "graph/model.h"
#include "graph/selftest.h"
#include "mdeploy/graph.h"
#include "mdeploy/security.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

float sf_emb_value(int64_t id, int j) { return (float)(10 * id + j); }

/* ids int64 [2] -> Gather(table [vocab, 3], axis 0) -> y [2, 3]; one self-test case. */
static mdl_status build_emb(int64_t vocab, const char *version, void **data, size_t *size) {
    mdl_builder *b;
    mdl_error err;
    mdl_status st = mdl_builder_create(NULL, &b, &err);
    if (st) return st;
    float *table = malloc(sizeof(float) * (size_t)vocab * 3);
    if (!table) {
        mdl_builder_free(b);
        return MDL_OUT_OF_MEMORY;
    }
    for (int64_t i = 0; i < vocab; i++)
        for (int j = 0; j < 3; j++) table[i * 3 + j] = sf_emb_value(i, j);
    int ids = mdl_builder_tensor(b, "ids", MDL_DTYPE_INT64, 1, (int64_t[]){2}, NULL);
    int tab = mdl_builder_tensor(b, "table", MDL_DTYPE_FLOAT32, 2, (int64_t[]){vocab, 3}, table);
    int y = mdl_builder_tensor(b, "y", MDL_DTYPE_FLOAT32, 2, (int64_t[]){2, 3}, NULL);
    mdl_op_options g = mdl_op_options_default(MDL_OP_GATHER);
    g.axis.axis = 0;
    mdl_builder_node(b, MDL_OP_GATHER, "gather", 2, (int[]){tab, ids}, 1, &y, &g);
    mdl_builder_add_input(b, ids);
    mdl_builder_add_output(b, y);
    mdl_builder_set_metadata(b, "name", "emb");
    mdl_builder_set_metadata(b, "version", version);
    int64_t in[2] = {0, vocab - 1};
    float out[6];
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 3; j++) out[r * 3 + j] = sf_emb_value(in[r], j);
    mdl__st_tensor ts[2] = {{0, MDL_DTYPE_INT64, 1, {2}, in, sizeof in},
                            {0, MDL_DTYPE_FLOAT32, 2, {2, 3}, out, sizeof out}};
    mdl__st_case c = {1, 1, &ts[0], &ts[1]};
    mdl__selftest s = {1, &c, 1e-4f, 1e-3f, "serve_fixtures"};
    mdl__builder_set_selftest(b, &s);
    st = mdl_builder_finish(b, data, size, &err);
    if (st) fprintf(stderr, "serve_fixtures: emb: %s\n", err.msg);
    mdl_builder_free(b);
    free(table);
    return st;
}

static int mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int sf_write(const char *dir, const char *name, int64_t version, const char *kind, const uint8_t *secret_key) {
    char vdir[4096], path[4200], tmp[4300], vname[32];
    snprintf(vdir, sizeof vdir, "%s/%s/%" PRId64, dir, name, version);
    snprintf(path, sizeof path, "%s/model.mdl", vdir);
    snprintf(tmp, sizeof tmp, "%s/.model.mdl.tmp", vdir);
    snprintf(vname, sizeof vname, "v%" PRId64, version);
    const char *colon = strchr(kind, ':');
    size_t klen = colon ? (size_t)(colon - kind) : strlen(kind);
    double arg = colon ? atof(colon + 1) : 0;
    void *data = NULL;
    size_t size = 0;
    mdl_status st;
#define KIND(s) (klen == strlen(s) && !strncmp(kind, s, klen))
    if (KIND("addc") || KIND("corrupt") || KIND("truncated"))
        st = tm_build_addc((float)arg, SF_ADDC_WIDTH, vname, 2, 0, &data, &size);
    else if (KIND("addc-novec"))
        st = tm_build_addc((float)arg, SF_ADDC_WIDTH, vname, 0, 0, &data, &size);
    else if (KIND("addc-badvec"))
        st = tm_build_addc((float)arg, SF_ADDC_WIDTH, vname, 2, 0.5f, &data, &size);
    else if (KIND("emb") && arg >= 1)
        st = build_emb((int64_t)arg, vname, &data, &size);
    else {
        fprintf(stderr, "serve_fixtures: unknown kind '%s'\n", kind);
        return -1;
    }
#undef KIND
    if (st) return -1;
    mdl_error err;
    if (secret_key && mdl_seal_sign(data, size, secret_key, &err) != MDL_OK) {
        fprintf(stderr, "serve_fixtures: signing %s: %s\n", path, err.msg);
        free(data);
        return -1;
    }
    if (!strncmp(kind, "corrupt", 7)) {
        /* the constant c (SF_ADDC_WIDTH floats equal to arg) is somewhere in the file: change one
           byte of its first occurrence */
        float c = (float)arg;
        uint8_t *p = data;
        size_t at = size / 2;
        for (size_t i = 0; i + 2 * sizeof c <= size; i++)
            if (!memcmp(p + i, &c, sizeof c) && !memcmp(p + i + 4, &c, sizeof c)) {
                at = i + 1;
                break;
            }
        p[at] ^= 0x40;
    } else if (!strncmp(kind, "truncated", 9))
        size /= 2;
    int rc = -1;
    if (mkdirs(vdir) != 0) {
        fprintf(stderr, "serve_fixtures: cannot create %s: %s\n", vdir, strerror(errno));
    } else {
        FILE *f = fopen(tmp, "wb");
        if (f && fwrite(data, 1, size, f) == size && fclose(f) == 0) rc = rename(tmp, path);
        else if (f) fclose(f);
        if (rc) fprintf(stderr, "serve_fixtures: cannot write %s: %s\n", path, strerror(errno));
    }
    free(data);
    return rc;
}

#ifdef SERVE_FIXTURES_MAIN
int main(int argc, char **argv) {
    uint8_t sk[MDL_SECRET_KEY_BYTES];
    const uint8_t *key = NULL;
    int i = 1;
    if (argc > 2 && !strcmp(argv[1], "--sign")) {
        mdl_error err;
        if (mdl_key_file_read(argv[2], "ed25519-secret", sk, sizeof sk, &err) != MDL_OK) {
            fprintf(stderr, "serve_fixtures: %s\n", err.msg);
            return 1;
        }
        key = sk;
        i = 3;
    }
    if (argc - i < 2) {
        fputs("usage: serve_fixtures [--sign SECRET.key] DIR NAME/VERSION=KIND ...  (tests/tools/serve_fixtures.h)\n",
              stderr);
        return 2;
    }
    const char *dir = argv[i++];
    for (; i < argc; i++) {
        char name[256];
        long long version;
        int n = 0;
        if (sscanf(argv[i], "%255[^/]/%lld=%n", name, &version, &n) != 2 || n == 0 || version <= 0) {
            fprintf(stderr, "serve_fixtures: '%s' is not NAME/VERSION=KIND\n", argv[i]);
            return 2;
        }
        if (sf_write(dir, name, version, argv[i] + n, key) != 0) return 1;
    }
    return 0;
}
#endif
