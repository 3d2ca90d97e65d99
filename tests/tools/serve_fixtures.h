/* Model directories for mdeploy-serve's tests (tools/serve): DIR/NAME/VERSION/model.mdl files of
   known behaviour, good and deliberately bad.  Used in process by tests/tools/test_serve_repo.c
   and, as the command build/<config>/tests/tools/serve_fixtures, by the server's Python tests:

       serve_fixtures [--sign SECRET.key] DIR NAME/VERSION=KIND ...

   writes each DIR/NAME/VERSION/model.mdl (directories created; a file replaced atomically), and
   with --sign signs the following ones (mdeploy-keygen --sign makes the key).  KIND:
     addc:C          y = x + C, x and y float32 [1, 4] ("x", "y"), 2 self-test vectors (expected
                     outputs computed here in plain C)
     addc-novec:C    the same without self-test vectors
     addc-badvec:C   the same with wrong expected outputs (every self-test refuses it)
     emb:V           y = table[ids], ids int64 [2] ("ids"), table float32 [V, 3] with
                     table[i][j] = 10 i + j, y float32 [2, 3] ("y"); one self-test vector with
                     ids {0, V-1}.  A run with an id outside [-V, V) fails with OUT_OF_RANGE: an
                     emb:2 canary fails every request for ids {2, 3} that an emb:4 version serves
     corrupt:C       addc:C with one weight byte flipped (the content digest refuses it)
     truncated:C     addc:C cut in half
   Embedded model name: "addc" / "emb", version "vVERSION" (every directory version of one kind
   carries the same name: the metrics must be labelled by the directory). */
#ifndef MDL_TEST_SERVE_FIXTURES_H
#define MDL_TEST_SERVE_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#define SF_ADDC_WIDTH 4

/* Writes DIR/NAME/VERSION/model.mdl for KIND (above); secret_key (MDL_SECRET_KEY_BYTES) signs it
   when not NULL.  0, or -1 with a message on stderr. */
int sf_write(const char *dir, const char *name, int64_t version, const char *kind, const uint8_t *secret_key);

/* The expected output of emb:V for id (row id, column j), and whether the id is in range. */
float sf_emb_value(int64_t id, int j);

#endif
