"""Safe model delivery (``include/mdeploy/security.h``): content digest, Ed25519 signatures,
encryption at rest, anti-rollback counter.

Keys are ``bytes`` (Ed25519 public key 32 bytes, secret key 64, encryption key 32) or the path of
a key file written by ``mdeploy-keygen`` (one line ``mdeploy KIND HEX``).
"""

import ctypes
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from . import _lib
from ._lib import lib

KeyLike = Union[bytes, bytearray, str, "os.PathLike[str]"]

_KINDS = {"ed25519-public": 32, "ed25519-secret": 64, "xchacha20poly1305": 32}
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None


def _error(err: "_lib.mdl_error", st: int) -> Exception:
    from ._model import _raise

    return _raise(err, st)


def read_key_file(path: Union[str, "os.PathLike[str]"], kind: str) -> bytes:
    """The key in a ``mdeploy-keygen`` file; ``kind`` is ``"ed25519-public"``, ``"ed25519-secret"``
    or ``"xchacha20poly1305"``."""
    n = _KINDS[kind]
    buf = (ctypes.c_uint8 * n)()
    err = _lib.mdl_error()
    st = lib.mdl_key_file_read(os.fsencode(path), kind.encode(), buf, n, ctypes.byref(err))
    if st:
        raise _error(err, st)
    return bytes(buf)


def _key(key: KeyLike, kind: str) -> bytes:
    from ._model import ArgumentTypeError, Error, Status

    if isinstance(key, (bytes, bytearray)):
        if len(key) != _KINDS[kind]:
            raise Error(f"a {kind} key has {_KINDS[kind]} bytes, not {len(key)}", Status.INVALID_ARGUMENT)
        return bytes(key)
    if isinstance(key, (str, os.PathLike)):
        return read_key_file(key, kind)
    raise ArgumentTypeError(f"a key is bytes or a key file path, not {type(key).__name__}")


def sha256(data: Union[bytes, bytearray, memoryview]) -> bytes:
    """SHA-256 of data with the library's own (portable C) implementation."""
    b = bytes(data)
    out = (ctypes.c_uint8 * 32)()
    lib.mdl_sha256(b, len(b), out)
    return bytes(out)


def key_id(public_key: KeyLike) -> bytes:
    """The 8-byte key id of an Ed25519 public key (first bytes of its SHA-256)."""
    pk = _key(public_key, "ed25519-public")
    out = (ctypes.c_uint8 * 8)()
    lib.mdl_key_id(pk, out)
    return bytes(out)


def keygen() -> Tuple[bytes, bytes]:
    """A new Ed25519 key pair ``(public, secret)``."""
    pk, sk = (ctypes.c_uint8 * 32)(), (ctypes.c_uint8 * 64)()
    err = _lib.mdl_error()
    st = lib.mdl_keygen(pk, sk, ctypes.byref(err))
    if st:
        raise _error(err, st)
    return bytes(pk), bytes(sk)


def encryption_keygen() -> bytes:
    """A new random 32-byte model encryption key."""
    k = (ctypes.c_uint8 * 32)()
    err = _lib.mdl_error()
    st = lib.mdl_encryption_keygen(k, ctypes.byref(err))
    if st:
        raise _error(err, st)
    return bytes(k)


def sign(model: Union[bytes, bytearray], secret_key: KeyLike) -> bytes:
    """The model's bytes signed with the Ed25519 secret key (its digest is checked first)."""
    sk = _key(secret_key, "ed25519-secret")
    buf = ctypes.create_string_buffer(bytes(model), len(model))
    err = _lib.mdl_error()
    st = lib.mdl_seal_sign(buf, len(model), sk, ctypes.byref(err))
    if st:
        raise _error(err, st)
    return buf.raw


def encrypt(model: Union[bytes, bytearray], key: KeyLike) -> bytes:
    """The model encrypted at rest (XChaCha20-Poly1305); sign the result with :func:`sign`."""
    k = _key(key, "xchacha20poly1305")
    b = bytes(model)
    out, n = ctypes.c_void_p(), ctypes.c_size_t()
    err = _lib.mdl_error()
    st = lib.mdl_seal_encrypt(b, len(b), k, ctypes.byref(out), ctypes.byref(n), ctypes.byref(err))
    if st:
        raise _error(err, st)
    try:
        return ctypes.string_at(out.value, n.value)
    finally:
        _libc.free(out.value)


class Security:
    """The ``mdl_security`` hook table for a load, with its key buffers kept alive."""

    def __init__(self, public_keys: Optional[Iterable[KeyLike]] = None, decryption_key: Optional[KeyLike] = None):
        keys: List[bytes] = [_key(k, "ed25519-public") for k in (public_keys or [])]
        self._pub = ctypes.create_string_buffer(b"".join(keys), max(1, 32 * len(keys)))
        self._dec = ctypes.create_string_buffer(_key(decryption_key, "xchacha20poly1305"), 32) if decryption_key is not None else None
        self.c = lib.mdl_security_host()
        self.c.public_keys = ctypes.addressof(self._pub) if keys else None
        self.c.npublic_keys = len(keys)
        self.c.decryption_key = ctypes.addressof(self._dec) if self._dec is not None else None


def seal_info(model: Union[bytes, bytearray], public_keys: Optional[Iterable[KeyLike]] = None,
              min_counter: int = 0) -> Dict[str, Any]:
    """What a model file's seal says, checked as loading does (``mdl_seal_check``): raises
    :class:`mdeploy.Error` naming the failed check; else a dict with ``has_seal``,
    ``digest`` (hex), ``signed``, ``signature_checked``, ``key_id`` (hex), ``encrypted``,
    ``security_counter``."""
    b = bytes(model)
    sec = Security(public_keys)
    opts = lib.mdl_load_options_default()
    opts.security = ctypes.pointer(sec.c)
    opts.min_counter = int(min_counter)
    info = _lib.mdl_seal_info()
    err = _lib.mdl_error()
    st = lib.mdl_seal_check(b, len(b), ctypes.byref(opts), ctypes.byref(info), ctypes.byref(err))
    if st:
        raise _error(err, st)
    return {
        "has_seal": bool(info.has_seal),
        "digest": bytes(info.digest).hex() if info.has_seal else "",
        "signed": bool(info.is_signed),
        "signature_checked": bool(info.signature_checked),
        "key_id": bytes(info.key_id).hex() if info.is_signed else "",
        "encrypted": bool(info.encrypted),
        "security_counter": int(info.security_counter),
    }
