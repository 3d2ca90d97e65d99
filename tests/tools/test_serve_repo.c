/* mdeploy-serve's model repository (tools/serve/repo.h) on temporary model directories written by
   tests/tools/serve_fixtures.c.  The oracle of every run is the fixture's formula, computed here
   (addc:C answers x + C, emb:V answers 10 id + j), so a request served by the wrong version, or a
   version serving when it should not, fails the test.  Verdicts are checked at their boundary
   (a window one request short gives no verdict; p99 by nearest rank: 1 slow request in 100
   passes, 2 fail).  The concurrency test (four threads acquiring while another polls, adds
   versions and reads describe/metrics) also runs under ThreadSanitizer (make check-tsan). */
#define _XOPEN_SOURCE 700 /* nftw */
#include "common/harness.h"
#include "repo.h"
#include "serve_fixtures.h"

#include "mdeploy/metrics.h"
#include "mdeploy/security.h"

#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

static char dir_[256];

static const char *tmpdir(void) {
    snprintf(dir_, sizeof dir_, "/tmp/test_serve_repo.XXXXXX");
    if (!mkdtemp(dir_)) fail_msg("mkdtemp failed");
    return dir_;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void put_(const char *dir, const char *name, int64_t version, const char *kind, const uint8_t *key) {
    if (sf_write(dir, name, version, kind, key) != 0) fail_msg("sf_write %s/%" PRId64 " %s", name, version, kind);
}
#define PUT(dir, name, version, kind) put_(dir, name, version, kind, NULL)

static srv_repo *open_repo(const srv_repo_options *o) {
    srv_repo *r;
    char err[512] = "";
    if (srv_repo_open(o, &r, err, sizeof err) != 0) fail_msg("srv_repo_open: %s", err);
    return r;
}

static srv_repo_options opts(const char *dir, int canary) {
    srv_repo_options o = srv_repo_options_default();
    o.model_dir = dir;
    o.canary_percent = canary;
    return o;
}

/* Runs an addc lease on input seed and returns C (the constant it adds), or NAN when the outputs
   are not x + C for one C of the constants 1..9. */
static float run_addc(srv_lease *l, int seed) {
    float x[SF_ADDC_WIDTH], y[SF_ADDC_WIDTH];
    for (int i = 0; i < SF_ADDC_WIDTH; i++) x[i] = (float)((seed + i) % 50) * 0.25f;
    assert_int_equal(mdl_session_set_input(l->session, 0, x, sizeof x, NULL), MDL_OK);
    assert_int_equal(mdl_session_run(l->session), MDL_OK);
    assert_int_equal(mdl_session_get_output(l->session, 0, y, sizeof y, NULL), MDL_OK);
    float c = y[0] - x[0];
    for (int k = 1; k <= 9; k++)
        if (c == (float)k) {
            for (int i = 1; i < SF_ADDC_WIDTH; i++)
                if (y[i] != x[i] + (float)k) return NAN;
            return (float)k;
        }
    return NAN;
}

/* Acquires (model, version), expecting success; returns the lease. */
static srv_lease acquire_ok(srv_repo *r, const char *model, int64_t version) {
    srv_lease l;
    char err[512] = "";
    int rc = srv_repo_acquire(r, model, version, &l, err, sizeof err);
    if (rc != 0) fail_msg("acquire %s/%" PRId64 ": %d %s", model, version, rc, err);
    assert_non_null(l.session);
    assert_string_equal(l.model, model);
    return l;
}

static void acquire_fails(srv_repo *r, const char *model, int64_t version, int want, const char *msg) {
    srv_lease l;
    char err[512] = "";
    int rc = srv_repo_acquire(r, model, version, &l, err, sizeof err);
    if (rc != want || !strstr(err, msg))
        fail_msg("acquire %s/%" PRId64 ": got %d '%s', want %d with '%s'", model, version, rc, err, want, msg);
    assert_null(l.session);
}

/* The unpinned version that serves the next request (one counted, successful run). */
static int64_t serves(srv_repo *r, const char *model) {
    srv_lease l = acquire_ok(r, model, 0);
    float c = run_addc(&l, 3);
    int64_t v = l.version;
    srv_repo_release(r, &l, true, true, 1000);
    return c == c ? v * 100 + (int64_t)c : -1; /* version and the constant it adds */
}

/* The describe entry of one version. */
static cJSON *entry(cJSON *d, int64_t version) {
    cJSON *arr = cJSON_GetObjectItem(d, "model_version_status"), *e;
    char num[24];
    snprintf(num, sizeof num, "%" PRId64, version);
    cJSON_ArrayForEach(e, arr) {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "version")), num)) return e;
    }
    return NULL;
}

static const char *field(cJSON *d, int64_t version, const char *name) {
    cJSON *e = entry(d, version);
    if (!e) fail_msg("describe has no version %" PRId64, version);
    if (!strcmp(name, "error_message") || !strcmp(name, "error_code"))
        return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "status"), name));
    return cJSON_GetStringValue(cJSON_GetObjectItem(e, name));
}

static void expect_role(srv_repo *r, const char *model, int64_t version, const char *role, const char *state) {
    cJSON *d = srv_repo_describe(r, model);
    assert_non_null(d);
    const char *got = field(d, version, "role"), *st = field(d, version, "state");
    if (strcmp(got, role) || strcmp(st, state))
        fail_msg("%s version %" PRId64 ": role %s state %s, want %s %s", model, version, got, st, role, state);
    cJSON_Delete(d);
}

static void expect_reason(srv_repo *r, const char *model, int64_t version, const char *code, const char *msg) {
    cJSON *d = srv_repo_describe(r, model);
    assert_non_null(d);
    const char *c = field(d, version, "error_code"), *m = field(d, version, "error_message");
    if (strcmp(c, code) || !strstr(m, msg))
        fail_msg("%s version %" PRId64 ": %s '%s', want %s with '%s'", model, version, c, m, code, msg);
    cJSON_Delete(d);
}

static int poll_(srv_repo *r, char *log, size_t cap) {
    int n = srv_repo_poll(r, log, cap);
    return n;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_options(void **state) {
    (void)state;
    const char *dir = tmpdir();
    srv_repo *r = (srv_repo *)1;
    char err[512];
    srv_repo_options o = opts(dir, 101);
    assert_int_not_equal(srv_repo_open(&o, &r, err, sizeof err), 0);
    assert_null(r);
    assert_non_null(strstr(err, "canary"));
    o = opts(dir, 10);
    o.rollback_window = 0;
    assert_int_not_equal(srv_repo_open(&o, &r, err, sizeof err), 0);
    assert_non_null(strstr(err, "window"));
    o = opts(dir, 10);
    o.rollback_error_rate = 1.5;
    assert_int_not_equal(srv_repo_open(&o, &r, err, sizeof err), 0);
    o = opts(NULL, 10);
    assert_int_not_equal(srv_repo_open(&o, &r, err, sizeof err), 0);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    o = opts(missing, 10);
    assert_int_not_equal(srv_repo_open(&o, &r, err, sizeof err), 0);
    assert_non_null(strstr(err, missing));
    /* an empty directory opens, is not ready, lists nothing */
    o = opts(dir, 10);
    r = open_repo(&o);
    assert_false(srv_repo_ready(r));
    cJSON *l = srv_repo_list(r);
    assert_int_equal(cJSON_GetArraySize(l), 0);
    cJSON_Delete(l);
    assert_null(srv_repo_describe(r, "m"));
    srv_repo_close(r);
    rm_rf(dir);
}

/* Three good versions: the newest serves, the one below is previous, the oldest is not loaded;
   the signature; pinning; unknown names; entries that are not NAME/VERSION are ignored. */
static void test_versions_found(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    PUT(dir, "m", 2, "addc:2");
    PUT(dir, "m", 3, "addc:3");
    PUT(dir, "e", 7, "emb:4");
    char p[512];
    snprintf(p, sizeof p, "%s/m/latest", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/README", dir);
    FILE *f = fopen(p, "w");
    fputs("x\n", f);
    fclose(f);
    srv_repo_options o = opts(dir, 10);
    srv_repo *r = open_repo(&o);
    assert_true(srv_repo_ready(r));
    char log[8192];
    int n = poll_(r, log, sizeof log);
    assert_true(n >= 5);
    assert_non_null(strstr(log, "m version 3: serving as stable"));
    assert_non_null(strstr(log, "m version 2: loaded as previous"));
    assert_non_null(strstr(log, "/m/latest: not NAME/VERSION"));
    assert_non_null(strstr(log, "/README: not NAME/VERSION"));
    /* reported once */
    assert_int_equal(poll_(r, log, sizeof log), 0);
    assert_string_equal(log, "");

    assert_int_equal(serves(r, "m"), 303);
    srv_lease l = acquire_ok(r, "m", 2);
    assert_true(run_addc(&l, 5) == 2.0f);
    assert_int_equal(l.version, 2);
    srv_repo_release(r, &l, true, true, 10);
    acquire_fails(r, "m", 1, 404, "not serving");
    acquire_fails(r, "m", 9, 404, "no version 9");
    acquire_fails(r, "x", 0, 404, "unknown model 'x'");

    cJSON *list = srv_repo_list(r);
    assert_int_equal(cJSON_GetArraySize(list), 2);
    assert_string_equal(cJSON_GetArrayItem(list, 0)->valuestring, "e");
    assert_string_equal(cJSON_GetArrayItem(list, 1)->valuestring, "m");
    cJSON_Delete(list);

    expect_role(r, "m", 3, "stable", "AVAILABLE");
    expect_role(r, "m", 2, "previous", "AVAILABLE");
    expect_role(r, "m", 1, "idle", "END");
    cJSON *d = srv_repo_describe(r, "e");
    char *text = cJSON_PrintUnformatted(d);
    const char *want = "{\"model_version_status\":[{\"version\":\"7\",\"state\":\"AVAILABLE\",\"status\":"
                       "{\"error_code\":\"OK\",\"error_message\":\"\"},\"role\":\"stable\",\"requests\":0,"
                       "\"errors\":0,\"model_name\":\"emb\",\"model_version\":\"v7\",\"signature\":{\"inputs\":"
                       "[{\"name\":\"ids\",\"dtype\":\"int64\",\"shape\":[2]}],\"outputs\":[{\"name\":\"y\","
                       "\"dtype\":\"float32\",\"shape\":[2,3]}]}}],\"canary_percent\":0,\"rollbacks\":0}";
    if (strcmp(text, want)) fail_msg("describe:\n%s\nwant\n%s", text, want);
    free(text);
    cJSON_Delete(d);
    d = srv_repo_describe(r, "m");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(d, "model_version_status")), 3);
    /* counted requests per version */
    cJSON *e3 = entry(d, 3), *e2 = entry(d, 2);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(e3, "requests")), 1);
    assert_int_equal((int)cJSON_GetNumberValue(cJSON_GetObjectItem(e2, "requests")), 1);
    cJSON_Delete(d);
    srv_repo_close(r);
    rm_rf(dir);
}

/* Every kind of bad version is refused with its reason and never serves; the newest good one
   below them serves. */
static void test_refused(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    PUT(dir, "m", 2, "corrupt:2");
    PUT(dir, "m", 3, "addc-badvec:3");
    PUT(dir, "m", 4, "truncated:4");
    PUT(dir, "m", 5, "addc-novec:5");
    char p[512];
    snprintf(p, sizeof p, "%s/m/6", dir);
    mkdir(p, 0755);
    srv_repo_options o = opts(dir, 10);
    o.require_selftest = true;
    srv_repo *r = open_repo(&o);
    char log[8192];
    poll_(r, log, sizeof log);
    for (int v = 2; v <= 6; v++) {
        char line[64];
        snprintf(line, sizeof line, "m version %d: refused: ", v);
        if (!strstr(log, line)) fail_msg("no '%s' in the log:\n%s", line, log);
    }
    expect_reason(r, "m", 2, "DATA_LOSS", "digest");
    expect_reason(r, "m", 3, "DATA_LOSS", "self-test failed");
    expect_reason(r, "m", 5, "INVALID_ARGUMENT", "no self-test vectors");
    expect_reason(r, "m", 6, "NOT_FOUND", "model.mdl");
    expect_role(r, "m", 4, "failed", "END");
    expect_role(r, "m", 1, "stable", "AVAILABLE");
    expect_reason(r, "m", 1, "OK", "");
    for (int v = 2; v <= 6; v++) acquire_fails(r, "m", v, 404, "not serving (failed: ");
    for (int i = 0; i < 10; i++) assert_int_equal(serves(r, "m"), 101);
    /* refused versions are not retried while their file is the same */
    assert_int_equal(poll_(r, log, sizeof log), 0);
    /* a fixed file is: version 6 gets a good model and becomes the canary */
    PUT(dir, "m", 6, "addc:6");
    assert_int_equal(poll_(r, log, sizeof log), 1);
    assert_non_null(strstr(log, "m version 6: serving as canary (10%)"));
    srv_lease l = acquire_ok(r, "m", 6);
    assert_true(run_addc(&l, 4) == 6.0f);
    srv_repo_release(r, &l, true, true, 1000);
    srv_repo_close(r);
    rm_rf(dir);

    /* without require_selftest a version without vectors serves */
    dir = tmpdir();
    PUT(dir, "m", 5, "addc-novec:5");
    o = opts(dir, 10);
    r = open_repo(&o);
    assert_int_equal(serves(r, "m"), 505);
    srv_repo_close(r);
    rm_rf(dir);
}

/* With a public key, an unsigned version and one signed by another key are refused. */
static void test_signatures(void **state) {
    (void)state;
    uint8_t pk[MDL_PUBLIC_KEY_BYTES], sk[MDL_SECRET_KEY_BYTES], pk2[MDL_PUBLIC_KEY_BYTES], sk2[MDL_SECRET_KEY_BYTES];
    assert_int_equal(mdl_keygen(pk, sk, NULL), MDL_OK);
    assert_int_equal(mdl_keygen(pk2, sk2, NULL), MDL_OK);
    const char *dir = tmpdir();
    put_(dir, "m", 1, "addc:1", sk);
    put_(dir, "m", 2, "addc:2", NULL);
    put_(dir, "m", 3, "addc:3", sk2);
    mdl_security sec = mdl_security_host();
    sec.public_keys = (const uint8_t(*)[MDL_PUBLIC_KEY_BYTES])pk;
    sec.npublic_keys = 1;
    srv_repo_options o = opts(dir, 10);
    o.load.security = &sec;
    srv_repo *r = open_repo(&o);
    expect_reason(r, "m", 3, "UNIMPLEMENTED", "unknown key id");
    expect_reason(r, "m", 2, "UNIMPLEMENTED", "unsigned");
    expect_role(r, "m", 1, "stable", "AVAILABLE");
    assert_int_equal(serves(r, "m"), 101);
    srv_repo_close(r);
    rm_rf(dir);
}

/* 503 while a model has no serving version; readiness. */
static void test_not_serving(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "good", 1, "addc:1");
    PUT(dir, "bad", 1, "corrupt:1");
    char p[512];
    snprintf(p, sizeof p, "%s/empty", dir);
    mkdir(p, 0755);
    srv_repo_options o = opts(dir, 0);
    srv_repo *r = open_repo(&o);
    assert_false(srv_repo_ready(r));
    acquire_fails(r, "bad", 0, 503, "no version of model 'bad' is serving");
    acquire_fails(r, "empty", 0, 503, "no version");
    acquire_fails(r, "bad", 1, 404, "not serving");
    assert_int_equal(serves(r, "good"), 101);
    cJSON *l = srv_repo_list(r);
    assert_int_equal(cJSON_GetArraySize(l), 3);
    cJSON_Delete(l);
    cJSON *d = srv_repo_describe(r, "empty");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(d, "model_version_status")), 0);
    cJSON_Delete(d);
    /* fixing both makes the repository ready */
    PUT(dir, "bad", 1, "addc:2");
    PUT(dir, "empty", 4, "addc:4");
    char log[4096];
    poll_(r, log, sizeof log);
    assert_true(srv_repo_ready(r));
    assert_int_equal(serves(r, "bad"), 102);
    assert_int_equal(serves(r, "empty"), 404);
    /* a removed model is unknown */
    snprintf(p, sizeof p, "%s/good", dir);
    rm_rf(p);
    poll_(r, log, sizeof log);
    acquire_fails(r, "good", 0, 404, "unknown model");
    assert_null(srv_repo_describe(r, "good"));
    assert_true(srv_repo_ready(r));
    srv_repo_close(r);
    rm_rf(dir);
}

/* The canary's share of 2,000 unpinned requests, for several settings: the split is
   deterministic (p of every 100), so the share is exact; the test allows the 2 points. */
static void test_canary_share(void **state) {
    (void)state;
    const int percents[] = {10, 37, 1, 50, 100};
    for (size_t t = 0; t < sizeof percents / sizeof *percents; t++) {
        const char *dir = tmpdir();
        PUT(dir, "m", 1, "addc:1");
        srv_repo_options o = opts(dir, percents[t]);
        o.promote_after = 0; /* stays canary */
        srv_repo *r = open_repo(&o);
        char log[4096];
        poll_(r, log, sizeof log);
        PUT(dir, "m", 2, "addc:2");
        assert_int_equal(poll_(r, log, sizeof log), 1);
        expect_role(r, "m", 2, "canary", "AVAILABLE");
        int canary = 0, n = 2000;
        for (int i = 0; i < n; i++) {
            srv_lease l = acquire_ok(r, "m", 0);
            float c = run_addc(&l, i);
            assert_true(c == (float)l.version); /* the version that answered is the one leased */
            canary += l.version == 2;
            srv_repo_release(r, &l, true, true, 1000);
        }
        double share = 100.0 * canary / n;
        print_message("canary %d%%: %d of %d requests (%.2f%%)\n", percents[t], canary, n, share);
        assert_true(share >= percents[t] - 2 && share <= percents[t] + 2);
        /* pinned requests are not split */
        for (int i = 0; i < 50; i++) {
            srv_lease l = acquire_ok(r, "m", 1);
            assert_int_equal(l.version, 1);
            srv_repo_release(r, &l, false, false, 0);
        }
        srv_repo_close(r);
        rm_rf(dir);
    }
}

/* emb:2 as the canary of emb:4: requests for ids {2, 3} fail on it with OUT_OF_RANGE.  With a
   window of 20 and 5% allowed, the 20th canary request rolls it back, not the 19th. */
static void test_rollback_on_errors(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "e", 1, "emb:4");
    srv_repo_options o = opts(dir, 50);
    o.rollback_window = 20;
    o.rollback_error_rate = 0.05;
    srv_repo *r = open_repo(&o);
    char log[4096];
    poll_(r, log, sizeof log);
    PUT(dir, "e", 2, "emb:2");
    assert_int_equal(poll_(r, log, sizeof log), 1);
    expect_role(r, "e", 2, "canary", "AVAILABLE");
    int on_canary = 0, served = 0; /* requests the stable version answered right */
    bool skipped = false;
    while (on_canary < 20) {
        srv_lease l = acquire_ok(r, "e", 0);
        int64_t ids[2] = {2, 3};
        assert_int_equal(mdl_session_set_input(l.session, 0, ids, sizeof ids, NULL), MDL_OK);
        mdl_status st = mdl_session_run(l.session);
        if (l.version == 2) {
            on_canary++;
            assert_int_equal(st, MDL_OUT_OF_RANGE);
        } else {
            assert_int_equal(st, MDL_OK);
            float y[6];
            mdl_session_get_output(l.session, 0, y, sizeof y, NULL);
            for (int k = 0; k < 6; k++) assert_true(y[k] == sf_emb_value(ids[k / 3], k % 3));
            served++;
        }
        /* requests refused for the client's fault do not count */
        if (l.version == 2 && on_canary == 10 && !skipped) {
            skipped = true;
            srv_repo_release(r, &l, false, false, 0);
            on_canary--;
            continue;
        }
        srv_repo_release(r, &l, true, st == MDL_OK, 1000);
        if (on_canary == 19) expect_role(r, "e", 2, "canary", "AVAILABLE");
    }
    assert_true(served > 0);
    expect_role(r, "e", 2, "rolled_back", "END");
    expect_reason(r, "e", 2, "ABORTED", "error share 1 over the last 20 requests");
    acquire_fails(r, "e", 2, 404, "rolled back");
    for (int i = 0; i < 100; i++) {
        srv_lease l = acquire_ok(r, "e", 0);
        assert_int_equal(l.version, 1);
        srv_repo_release(r, &l, true, true, 1000);
    }
    assert_int_equal(poll_(r, log, sizeof log), 1);
    assert_non_null(strstr(log, "e version 2: rolled back: error share 1"));
    char text[16384];
    srv_repo_metrics(r, text, sizeof text);
    assert_non_null(strstr(text, "mdeploy_serve_rollbacks_total{model=\"e\"} 1\n"));
    assert_non_null(strstr(text, "mdeploy_serve_versions{model=\"e\",version=\"2\",state=\"rolled_back\"} 1\n"));
    /* not retried while its file is the same; retried (and judged again) when it changes */
    assert_int_equal(poll_(r, log, sizeof log), 0);
    PUT(dir, "e", 2, "emb:4");
    assert_int_equal(poll_(r, log, sizeof log), 1);
    expect_role(r, "e", 2, "canary", "AVAILABLE");
    srv_repo_close(r);
    rm_rf(dir);
}

/* The error share's boundary: window 20 and 5% allowed: 1 failure in the last 20 stays (0.05 is
   not above 0.05), 2 roll back; the window slides (a failure 20 requests ago is forgotten). */
static void test_error_share_boundary(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "e", 1, "emb:4");
    srv_repo_options o = opts(dir, 100);
    o.rollback_window = 20;
    o.rollback_error_rate = 0.05;
    srv_repo *r = open_repo(&o);
    PUT(dir, "e", 2, "emb:2");
    char log[4096];
    poll_(r, log, sizeof log);
    /* failures at requests 5, 30 (25 apart: never two in one window), then at 40 (with 30) */
    for (int i = 0; i <= 40; i++) {
        expect_role(r, "e", 2, "canary", "AVAILABLE");
        srv_lease l = acquire_ok(r, "e", 0);
        assert_int_equal(l.version, 2);
        bool bad = i == 5 || i == 30 || i == 40;
        int64_t ids[2] = {bad ? 2 : 0, 1};
        mdl_session_set_input(l.session, 0, ids, sizeof ids, NULL);
        mdl_status st = mdl_session_run(l.session);
        assert_int_equal(st, bad ? MDL_OUT_OF_RANGE : MDL_OK);
        srv_repo_release(r, &l, true, st == MDL_OK, 1000);
    }
    expect_role(r, "e", 2, "rolled_back", "END");
    expect_reason(r, "e", 2, "ABORTED", "error share 0.1 over the last 20 requests is above 0.05");
    srv_repo_close(r);
    rm_rf(dir);
}

/* p99 over the window by nearest rank: with 100 requests, 1 slow one passes, 2 roll back. */
static void test_rollback_on_p99(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    srv_repo_options o = opts(dir, 100);
    o.rollback_window = 100;
    o.rollback_p99_ms = 10;
    srv_repo *r = open_repo(&o);
    PUT(dir, "m", 2, "addc:2");
    char log[4096];
    poll_(r, log, sizeof log);
    for (int i = 0; i < 150; i++) { /* one slow request in every window */
        srv_lease l = acquire_ok(r, "m", 0);
        assert_int_equal(l.version, 2);
        srv_repo_release(r, &l, true, true, i == 120 ? 50000000u : 2000000u);
    }
    expect_role(r, "m", 2, "canary", "AVAILABLE");
    srv_lease l = acquire_ok(r, "m", 0);
    srv_repo_release(r, &l, true, true, 10000001u); /* a second one, just above 10 ms */
    expect_role(r, "m", 2, "rolled_back", "END");
    expect_reason(r, "m", 2, "ABORTED", "p99 latency 10.000 ms over the last 100 requests is above 10.000 ms");
    assert_int_equal(serves(r, "m"), 101);
    srv_repo_close(r);
    rm_rf(dir);
}

/* After promote_after successful requests the canary becomes stable and the old stable one
   previous; the version before that is unloaded. */
static void test_promotion(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    srv_repo_options o = opts(dir, 50);
    o.promote_after = 30;
    o.rollback_window = 10;
    srv_repo *r = open_repo(&o);
    char log[4096];
    poll_(r, log, sizeof log);
    for (int64_t next = 2; next <= 3; next++) {
        char kind[16];
        snprintf(kind, sizeof kind, "addc:%d", (int)next);
        PUT(dir, "m", next, kind);
        poll_(r, log, sizeof log);
        expect_role(r, "m", next, "canary", "AVAILABLE");
        int ok = 0;
        while (ok < 30) {
            expect_role(r, "m", next, "canary", "AVAILABLE");
            /* every third one pinned (judged too) */
            srv_lease l = acquire_ok(r, "m", ok % 3 == 2 ? next : 0);
            ok += l.version == next;
            srv_repo_release(r, &l, true, true, 1000);
        }
        expect_role(r, "m", next, "stable", "AVAILABLE");
        expect_role(r, "m", next - 1, "previous", "AVAILABLE");
        for (int i = 0; i < 20; i++) assert_int_equal(serves(r, "m"), next * 101);
        poll_(r, log, sizeof log);
        char want[128];
        snprintf(want, sizeof want, "m version %d: promoted to stable after 30 successful requests", (int)next);
        assert_non_null(strstr(log, want));
    }
    expect_role(r, "m", 1, "idle", "END");
    acquire_fails(r, "m", 1, 404, "not serving");
    srv_repo_close(r);
    rm_rf(dir);
}

/* Manual rollback: previous <-> stable, twice; 409 without a previous version. */
static void test_manual_rollback(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    PUT(dir, "n", 1, "addc:1");
    srv_repo_options o = opts(dir, 0);
    srv_repo *r = open_repo(&o);
    PUT(dir, "m", 2, "addc:2");
    char log[4096], err[256];
    poll_(r, log, sizeof log);
    assert_non_null(strstr(log, "m version 2: serving as stable (version 1 kept as previous)"));
    assert_int_equal(serves(r, "m"), 202);
    assert_int_equal(srv_repo_rollback(r, "m", err, sizeof err), 0);
    assert_int_equal(serves(r, "m"), 101);
    expect_role(r, "m", 2, "previous", "AVAILABLE");
    assert_int_equal(srv_repo_rollback(r, "m", err, sizeof err), 0);
    assert_int_equal(serves(r, "m"), 202);
    assert_int_equal(srv_repo_rollback(r, "n", err, sizeof err), 409);
    assert_non_null(strstr(err, "no previous version"));
    assert_int_equal(srv_repo_rollback(r, "zz", err, sizeof err), 404);
    char text[16384];
    srv_repo_metrics(r, text, sizeof text);
    assert_non_null(strstr(text, "mdeploy_serve_rollbacks_total{model=\"m\"} 2\n"));
    srv_repo_close(r);
    rm_rf(dir);
}

/* A version removed while a request holds its session: the request finishes on it, the
   previous version serves new requests, the model is freed at the release (ASan would see a
   use after free or a leak). */
static void test_removal_with_lease(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    PUT(dir, "m", 2, "addc:2");
    srv_repo_options o = opts(dir, 0);
    srv_repo *r = open_repo(&o);
    srv_lease held = acquire_ok(r, "m", 0);
    assert_int_equal(held.version, 2);
    char p[512], log[4096];
    snprintf(p, sizeof p, "%s/m/2", dir);
    rm_rf(p);
    poll_(r, log, sizeof log);
    assert_non_null(strstr(log, "m version 2: removed"));
    assert_non_null(strstr(log, "m version 1: serving as stable (version 2 was removed)"));
    acquire_fails(r, "m", 2, 404, "no version 2");
    assert_int_equal(serves(r, "m"), 101);
    assert_true(run_addc(&held, 9) == 2.0f); /* still runs on the removed version */
    char text[32768];
    srv_repo_metrics(r, text, sizeof text);
    assert_null(strstr(text, "version=\"2\""));
    srv_repo_release(r, &held, true, true, 1000);
    assert_null(held.internal_);
    /* the only version removed: 503 */
    snprintf(p, sizeof p, "%s/m/1", dir);
    held = acquire_ok(r, "m", 1);
    rm_rf(p);
    poll_(r, log, sizeof log);
    acquire_fails(r, "m", 0, 503, "no version");
    assert_false(srv_repo_ready(r));
    assert_true(run_addc(&held, 1) == 1.0f);
    srv_repo_release(r, &held, true, true, 1000);
    srv_repo_close(r);
    rm_rf(dir);
}

/* A newer version replaces a canary on trial; when the stable version is removed without a
   previous one, the newest version below the canary takes over, and the canary itself when no
   other version is left. */
static void test_canary_replaced(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    srv_repo_options o = opts(dir, 50);
    o.promote_after = 0;
    srv_repo *r = open_repo(&o);
    char log[4096], p[512];
    PUT(dir, "m", 2, "addc:2");
    poll_(r, log, sizeof log);
    expect_role(r, "m", 2, "canary", "AVAILABLE");
    PUT(dir, "m", 3, "addc:3");
    poll_(r, log, sizeof log);
    assert_non_null(strstr(log, "m version 2: canary replaced by version 3"));
    expect_role(r, "m", 3, "canary", "AVAILABLE");
    expect_role(r, "m", 2, "idle", "END");
    acquire_fails(r, "m", 2, 404, "not serving (idle)");
    snprintf(p, sizeof p, "%s/m/1", dir);
    rm_rf(p);
    poll_(r, log, sizeof log);
    expect_role(r, "m", 2, "stable", "AVAILABLE");
    expect_role(r, "m", 3, "canary", "AVAILABLE");
    int on[4] = {0};
    for (int i = 0; i < 100; i++) {
        int64_t v = serves(r, "m");
        assert_true(v == 202 || v == 303);
        on[v / 100]++;
    }
    assert_int_equal(on[3], 50);
    snprintf(p, sizeof p, "%s/m/2", dir);
    rm_rf(p);
    poll_(r, log, sizeof log);
    assert_non_null(strstr(log, "m version 3: serving as stable (no other version left)"));
    for (int i = 0; i < 10; i++) assert_int_equal(serves(r, "m"), 303);
    srv_repo_close(r);
    rm_rf(dir);
}

/* A scan that cannot read a model directory (here: out of file descriptors, as under load)
   changes nothing: its versions are not taken for removed. */
static void test_scan_incomplete(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    PUT(dir, "m", 2, "addc:2");
    srv_repo_options o = opts(dir, 0);
    srv_repo *r = open_repo(&o);
    char log[4096];
    poll_(r, log, sizeof log);
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int fds[256], n = 0, fd;
    while (n < 256 && (fd = open("/dev/null", O_RDONLY)) >= 0) fds[n++] = fd;
    assert_true(n > 0 && n < 256);
    close(fds[--n]); /* one descriptor left: the model directory's, not a version's */
    int events = srv_repo_poll(r, log, sizeof log);
    while (n > 0) close(fds[--n]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(events, 1);
    if (!strstr(log, "cannot read") || !strstr(log, "the repository is left as it was")) fail_msg("log: %s", log);
    expect_role(r, "m", 2, "stable", "AVAILABLE");
    expect_role(r, "m", 1, "previous", "AVAILABLE");
    assert_int_equal(serves(r, "m"), 202);
    assert_int_equal(poll_(r, log, sizeof log), 0);
    srv_repo_close(r);
    rm_rf(dir);
}

/* A serving version's file replaced: reloaded; a replacement that fails keeps the old one. */
static void test_changed_file(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    srv_repo_options o = opts(dir, 0);
    srv_repo *r = open_repo(&o);
    char log[4096];
    poll_(r, log, sizeof log);
    srv_lease held = acquire_ok(r, "m", 0);
    PUT(dir, "m", 1, "addc:3");
    assert_int_equal(poll_(r, log, sizeof log), 1);
    assert_non_null(strstr(log, "m version 1: reloaded"));
    assert_int_equal(serves(r, "m"), 103);
    assert_true(run_addc(&held, 2) == 1.0f); /* the old file's model, until released */
    srv_repo_release(r, &held, true, true, 1000);
    PUT(dir, "m", 1, "corrupt:4");
    assert_int_equal(poll_(r, log, sizeof log), 1);
    assert_non_null(strstr(log, "the loaded one keeps serving"));
    assert_int_equal(serves(r, "m"), 103);
    assert_int_equal(poll_(r, log, sizeof log), 0); /* not retried */
    srv_repo_close(r);
    rm_rf(dir);
}

/* Prometheus text: series labelled by the directory's name and version (two directory versions
   of one file: the same embedded name and version), with the counts of the runs done here. */
static void test_metrics(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "q\"m", 1, "emb:4");
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/q\"m/1/model.mdl", dir);
    snprintf(b, sizeof b, "%s/q\"m/2", dir);
    mkdir(b, 0755);
    snprintf(b, sizeof b, "%s/q\"m/2/model.mdl", dir);
    FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
    srv_repo_options o = opts(dir, 0);
    o.load.flags |= MDL_LOAD_METRICS_OPS;
    srv_repo *r = open_repo(&o);
    /* version 2 (stable): 3 good runs, 2 out of range; version 1 (previous): 1 good run */
    const int64_t ids[6][2] = {{0, 1}, {3, 3}, {9, 0}, {1, 2}, {0, -7}, {2, 2}};
    for (int i = 0; i < 6; i++) {
        srv_lease l = acquire_ok(r, "q\"m", i == 5 ? 1 : 0);
        mdl_session_set_input(l.session, 0, ids[i], sizeof ids[i], NULL);
        mdl_status st = mdl_session_run(l.session);
        srv_repo_release(r, &l, true, st == MDL_OK, 1000);
    }
    size_t len = srv_repo_metrics(r, NULL, 0);
    char *text = malloc(len + 1);
    assert_int_equal(srv_repo_metrics(r, text, len + 1), len);
    assert_int_equal(strlen(text), len);
    /* the self-test's runs count too: one per load */
    const char *want[] = {
        "# TYPE mdeploy_runs_total counter\n",
        "mdeploy_runs_total{model=\"q\\\"m\",version=\"1\"} 2\n",
        "mdeploy_runs_total{model=\"q\\\"m\",version=\"2\"} 6\n",
        "mdeploy_run_errors_total{model=\"q\\\"m\",version=\"2\",status=\"OUT_OF_RANGE\"} 2\n",
        "mdeploy_run_errors_total{model=\"q\\\"m\",version=\"1\",status=\"OUT_OF_RANGE\"} 0\n",
        "mdeploy_run_duration_seconds_bucket{model=\"q\\\"m\",version=\"2\",le=\"+Inf\"} 4\n",
        "mdeploy_run_duration_seconds_count{model=\"q\\\"m\",version=\"2\"} 4\n",
        "mdeploy_run_duration_seconds_bucket{model=\"q\\\"m\",version=\"1\",le=\"0.00001\"} ",
        "mdeploy_run_duration_seconds_bucket{model=\"q\\\"m\",version=\"1\",le=\"10\"} 2\n",
        "mdeploy_serve_versions{model=\"q\\\"m\",version=\"2\",state=\"stable\"} 1\n",
        "mdeploy_serve_versions{model=\"q\\\"m\",version=\"1\",state=\"previous\"} 1\n",
        "mdeploy_serve_requests_total{model=\"q\\\"m\",version=\"2\"} 5\n",
        "mdeploy_serve_rollbacks_total{model=\"q\\\"m\"} 0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(text, want[i])) fail_msg("no '%s' in\n%s", want[i], text);
    /* the oracle for every sample line: the library's own exposition of each version's model
       (labelled with the embedded name and version, the same for both), relabelled */
    for (int v = 1; v <= 2; v++) {
        srv_lease l = acquire_ok(r, "q\"m", v);
        const mdl_model *model = mdl_session_model(l.session);
        char lib[16384], from[64], to[64];
        size_t ln = mdl_metrics_prometheus(&model, 1, lib, sizeof lib);
        assert_true(ln < sizeof lib);
        srv_repo_release(r, &l, false, false, 0);
        snprintf(from, sizeof from, "{model=\"emb\",version=\"v1\"");
        snprintf(to, sizeof to, "{model=\"q\\\"m\",version=\"%d\"", v);
        int samples = 0;
        for (char *line = strtok(lib, "\n"); line; line = strtok(NULL, "\n")) {
            if (line[0] == '#') { /* the same HELP and TYPE lines */
                if (!strstr(text, line)) fail_msg("no '%s' in\n%s", line, text);
                continue;
            }
            char *at = strstr(line, from), want_line[512];
            assert_non_null(at);
            snprintf(want_line, sizeof want_line, "\n%.*s%s%s\n", (int)(at - line), line, to, at + strlen(from));
            if (!strstr(text, want_line)) fail_msg("no '%s' in\n%s", want_line + 1, text);
            samples++;
        }
        assert_true(samples >= 1 + (MDL_STATUS_COUNT - 1) + (MDL_METRICS_BUCKETS + 3) + 1);
        assert_non_null(strstr(text, ",op=\"Gather\"} "));
    }
    /* each family's HELP/TYPE once */
    const char *p = strstr(text, "# TYPE mdeploy_runs_total");
    assert_null(strstr(p + 1, "# TYPE mdeploy_runs_total"));
    /* truncation: as snprintf */
    char small[64];
    assert_int_equal(srv_repo_metrics(r, small, sizeof small), len);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(strncmp(small, text, sizeof small - 1), 0);
    free(text);
    srv_repo_close(r);
    rm_rf(dir);
}

/* Four threads acquire, run, check and release while a fifth adds versions, polls, rolls back
   and reads describe and metrics. */
#define WORKERS 4
typedef struct shared {
    srv_repo *r;
    atomic_int stop;
    atomic_int errors, runs, unavailable;
} shared;

static void *worker(void *arg) {
    shared *s = arg;
    int i = 0;
    while (!atomic_load(&s->stop) || i < 200) {
        srv_lease l;
        char err[256];
        int rc = srv_repo_acquire(s->r, "m", 0, &l, err, sizeof err);
        if (rc == 503) { /* between a removal and the load of the next version */
            atomic_fetch_add(&s->unavailable, 1);
            continue;
        }
        if (rc) {
            fprintf(stderr, "acquire: %d %s\n", rc, err);
            atomic_fetch_add(&s->errors, 1);
            continue;
        }
        float x[SF_ADDC_WIDTH], y[SF_ADDC_WIDTH];
        for (int k = 0; k < SF_ADDC_WIDTH; k++) x[k] = (float)(i + k);
        memcpy(mdl_session_input_data(l.session, 0), x, sizeof x);
        bool ok = mdl_session_run(l.session) == MDL_OK;
        memcpy(y, mdl_session_output_data(l.session, 0), sizeof y);
        /* version v adds (v - 1) % 9 + 1 */
        float c = (float)((l.version - 1) % 9 + 1);
        for (int k = 0; k < SF_ADDC_WIDTH; k++)
            if (y[k] != x[k] + c) ok = false;
        if (!ok) atomic_fetch_add(&s->errors, 1);
        srv_repo_release(s->r, &l, true, ok, 1000);
        atomic_fetch_add(&s->runs, 1);
        i++;
    }
    return NULL;
}

static void test_concurrency(void **state) {
    (void)state;
    const char *dir = tmpdir();
    PUT(dir, "m", 1, "addc:1");
    srv_repo_options o = opts(dir, 30);
    o.promote_after = 50;
    o.rollback_window = 20;
    srv_repo *r = open_repo(&o);
    shared s = {r, 0, 0, 0, 0};
    pthread_t th[WORKERS];
    for (int i = 0; i < WORKERS; i++) pthread_create(&th[i], NULL, worker, &s);
    char log[8192], err[256];
    char *text = malloc(1 << 16);
    for (int v = 2; v <= 12; v++) {
        char kind[16];
        snprintf(kind, sizeof kind, "addc:%d", (v - 1) % 9 + 1);
        PUT(dir, "m", v, kind);
        srv_repo_poll(r, log, sizeof log);
        for (int k = 0; k < 20; k++) {
            cJSON *d = srv_repo_describe(r, "m");
            cJSON_Delete(d);
            srv_repo_metrics(r, text, 1 << 16);
            assert_true(srv_repo_ready(r));
            nanosleep(&(struct timespec){0, 500000}, NULL);
        }
        if (v % 3 == 0) srv_repo_rollback(r, "m", err, sizeof err);
        if (v % 4 == 0) {
            char p[512];
            snprintf(p, sizeof p, "%s/m/%d", dir, v - 2);
            rm_rf(p);
            srv_repo_poll(r, log, sizeof log);
        }
    }
    atomic_store(&s.stop, 1);
    for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    print_message("%d runs on %d threads while 11 versions came and went (%d times 503)\n", atomic_load(&s.runs),
                  WORKERS, atomic_load(&s.unavailable));
    assert_int_equal(atomic_load(&s.errors), 0);
    assert_true(atomic_load(&s.runs) >= WORKERS * 200);
    free(text);
    srv_repo_close(r);
    rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_versions_found),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_signatures),
        cmocka_unit_test(test_not_serving),
        cmocka_unit_test(test_canary_share),
        cmocka_unit_test(test_rollback_on_errors),
        cmocka_unit_test(test_error_share_boundary),
        cmocka_unit_test(test_rollback_on_p99),
        cmocka_unit_test(test_promotion),
        cmocka_unit_test(test_manual_rollback),
        cmocka_unit_test(test_removal_with_lease),
        cmocka_unit_test(test_canary_replaced),
        cmocka_unit_test(test_scan_incomplete),
        cmocka_unit_test(test_changed_file),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
