"""The model seal from Python (include/mdeploy/security.h): the library's SHA-256 against
hashlib, signing/encryption round trips, every refusal with its message, and a signature checked
independently of the library with the `cryptography` package (Ed25519) over the byte ranges the
header documents, the FlatBuffers layout walked by hand."""

import hashlib
import struct

import numpy as np
import pytest

import mdeploy
from conftest import Builder, build_mlp, mlp_reference


def test_sha256_matches_hashlib():
    rng = np.random.default_rng(7)
    for n in list(range(0, 260)) + [4095, 4096, 65537, 1 << 20]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert mdeploy.sha256(data) == hashlib.sha256(data).digest(), n


def _seal_ranges(b: bytes):
    """(digest, key_id, signature) (offset, length) pairs and the security counter, from the
    FlatBuffers binary layout: root table, vtable, Model field 15 (seal), Seal fields 0..2."""

    def u32(p):
        return struct.unpack_from("<I", b, p)[0]

    def field(table, fid):
        vt = table - struct.unpack_from("<i", b, table)[0]
        vlen = struct.unpack_from("<H", b, vt)[0]
        if 4 + 2 * fid + 2 > vlen:
            return 0
        off = struct.unpack_from("<H", b, vt + 4 + 2 * fid)[0]
        return table + off if off else 0

    root = u32(0)
    assert b[4:8] == b"MDL1"
    c = field(root, 14)
    counter = struct.unpack_from("<Q", b, c)[0] if c else 0
    f = field(root, 15)
    seal = f + u32(f)
    out = []
    for i in range(3):
        v = field(seal, i)
        vec = v + u32(v)
        out.append((vec + 4, u32(vec)))
    assert [n for _, n in out] == [32, 8, 64]
    return out, counter


def _counter_model(counter: str) -> bytes:
    b = Builder()
    x = b.tensor("x", np.float32, (1, 4))
    y = b.tensor("y", np.float32, None)
    b.node("RELU", "relu", [x], [y])
    b.io([x], [y])
    b.meta("version", "1.0.0")
    b.meta("security_counter", counter)
    return b.finish()


def test_signed_model_independent_check():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pk, sk = mdeploy.keygen()
    signed = mdeploy.sign(build_mlp(), sk)
    (d, k, s), _ = _seal_ranges(signed)
    z = bytearray(signed)
    for at, n in (d, k, s):
        z[at : at + n] = bytes(n)
    digest = hashlib.sha256(bytes(z)).digest()
    assert digest == signed[d[0] : d[0] + 32]
    assert signed[k[0] : k[0] + 8] == hashlib.sha256(pk).digest()[:8] == mdeploy.key_id(pk)
    msg = b"MDL1SIG1" + digest + signed[k[0] : k[0] + 8]
    Ed25519PublicKey.from_public_bytes(pk).verify(signed[s[0] : s[0] + 64], msg)  # raises if bad
    with pytest.raises(Exception):
        Ed25519PublicKey.from_public_bytes(pk).verify(signed[s[0] : s[0] + 64], msg[:-1] + b"\0")
    # and the library agrees
    m = mdeploy.Model(signed, public_keys=[pk])
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(m.run(x)[0], mlp_reference(x), rtol=1e-5, atol=1e-6)
    info = mdeploy.seal_info(signed, public_keys=[pk])
    assert info["signature_checked"] and info["digest"] == digest.hex()


def test_refusals_say_what_failed():
    pk, sk = mdeploy.keygen()
    pk2, sk2 = mdeploy.keygen()
    plain = build_mlp()
    signed = mdeploy.sign(plain, sk)
    (d, k, s), _ = _seal_ranges(signed)
    # a flipped weight byte (the weights are at the end of the file)
    bad = bytearray(plain)
    bad[-20] ^= 1
    with pytest.raises(mdeploy.Error, match="content digest mismatch") as e:
        mdeploy.Model(bytes(bad))
    assert e.value.status == mdeploy.Status.CORRUPT_MODEL
    mdeploy.Model(bytes(bad), verify_digest=False)  # the flag really skips the check
    # signatures
    with pytest.raises(mdeploy.Error, match="unsigned"):
        mdeploy.Model(plain, public_keys=[pk])
    with pytest.raises(mdeploy.Error, match="unknown key id"):
        mdeploy.Model(signed, public_keys=[pk2])
    bad = bytearray(signed)
    bad[s[0] + 10] ^= 0x40
    with pytest.raises(mdeploy.Error, match="bad signature"):
        mdeploy.Model(bytes(bad), public_keys=[pk2, pk])
    with pytest.raises(mdeploy.Error, match="bad signature"):
        mdeploy.Model(mdeploy.sign(plain, sk2)[: k[0]] + signed[k[0] : k[0] + 8] + mdeploy.sign(plain, sk2)[k[0] + 8 :],
                      public_keys=[pk])
    # anti-rollback
    m5 = _counter_model("5")
    assert mdeploy.Model(m5, min_counter=5).security_counter == 5
    with pytest.raises(mdeploy.Error, match="security counter 5 is below the minimum 6") as e:
        mdeploy.Model(m5, min_counter=6)
    assert e.value.status == mdeploy.Status.VERSION


def test_encryption_round_trip_and_wrong_key():
    key, wrong = mdeploy.encryption_keygen(), mdeploy.encryption_keygen()
    enc = mdeploy.encrypt(build_mlp(), key)
    assert mdeploy.seal_info(enc)["encrypted"]
    m = mdeploy.Model(enc, decryption_key=key)
    x = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(m.run(x)[0], mlp_reference(x), rtol=1e-5, atol=1e-6)
    assert m.version == "3.1"
    with pytest.raises(mdeploy.Error, match="decryption failed: wrong decryption key"):
        mdeploy.Model(enc, decryption_key=wrong)
    with pytest.raises(mdeploy.Error, match="the model is encrypted"):
        mdeploy.Model(enc)


def test_key_files(tmp_path):
    import subprocess
    import os

    binary = os.path.join(os.path.dirname(mdeploy.library_path), "bin", "mdeploy-keygen")
    subprocess.run([binary, "--sign", str(tmp_path / "k")], check=True, capture_output=True)
    subprocess.run([binary, "--encryption", str(tmp_path / "e.key")], check=True, capture_output=True)
    pk = mdeploy.read_key_file(tmp_path / "k.pub", "ed25519-public")
    signed = mdeploy.sign(build_mlp(), tmp_path / "k.key")
    enc = mdeploy.sign(mdeploy.encrypt(signed, tmp_path / "e.key"), tmp_path / "k.key")
    m = mdeploy.Model(enc, public_keys=[tmp_path / "k.pub"], decryption_key=tmp_path / "e.key")
    assert m.outputs[0].name == "probs"
    assert mdeploy.seal_info(enc, public_keys=[pk])["signature_checked"]
    with pytest.raises(mdeploy.Error, match="holds a ed25519-public key, expected xchacha20poly1305"):
        mdeploy.Model(enc, decryption_key=tmp_path / "k.pub")
