"""Hot swap with rollback (``include/mdeploy/swap.h``): a service's model, replaced while it runs."""

from __future__ import annotations

import ctypes
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _lib
from ._lib import decode, lib
from ._model import ArgumentTypeError, Error, Status, _dtype, _raise, _check_threads

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray]


def _bytes(source: Any) -> np.ndarray:
    try:
        return np.frombuffer(source, dtype=np.uint8)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(
            f"a model is a path (str or os.PathLike) or its bytes, not {type(source).__name__}"
        ) from e


class Swap:
    """The active model of a long-running service, swapped without stopping it.

    ``Swap(path_or_bytes)`` loads the first model.  :meth:`run` is thread-safe: each call takes
    a session of the model active at that moment from its pool (nothing is allocated in steady
    state) and gives it back afterwards.  :meth:`load` loads a candidate (a path or the file's
    bytes), verifies it, runs its self-test vectors when it has some (``require_selftest=True``
    refuses one without), refuses it when its inputs or outputs differ from the active model's
    (names, dtypes, shapes, symbolic dims), and then switches: runs that start afterwards use the
    new model, runs in progress finish on the old one.  A refused candidate raises
    :class:`Error` whose message starts with ``"candidate refused: "`` and changes nothing.
    :meth:`rollback` makes the previous model active again.  :attr:`info` says which is active.
    """

    def __init__(self, source: Source, *, require_selftest: bool = False, skip_selftest: bool = False,
                 threads: int = 1) -> None:
        opts = lib.mdl_swap_options_default()
        opts.require_selftest = bool(require_selftest)
        opts.skip_selftest = bool(skip_selftest)
        opts.session.threads = _check_threads(threads)
        out = ctypes.c_void_p()
        err = _lib.mdl_error()
        if isinstance(source, (str, os.PathLike)):
            st = lib.mdl_swap_create_file(os.fsencode(source), ctypes.byref(opts), ctypes.byref(out), ctypes.byref(err))
        else:
            buf = _bytes(source)
            st = lib.mdl_swap_create_buffer(buf.ctypes.data if buf.size else None, buf.size, ctypes.byref(opts),
                                            ctypes.byref(out), ctypes.byref(err))
        if st != Status.OK or not out.value:
            raise _raise(err, st or Status.INTERNAL)
        self._h: Optional[int] = out.value
        # close() waits for runs in progress: the C handle may only be freed with every session back
        self._lock = threading.Condition()
        self._running = 0

    def _enter(self) -> int:
        with self._lock:
            if self._h is None:
                raise Error("the swap handle has been closed", Status.INVALID_ARGUMENT)
            self._running += 1
            return self._h

    def _leave(self) -> None:
        with self._lock:
            self._running -= 1
            self._lock.notify_all()

    def load(self, source: Source) -> None:
        """Swap in a candidate (path or bytes); raises :class:`Error` when it is refused."""
        h = self._enter()
        try:
            err = _lib.mdl_error()
            if isinstance(source, (str, os.PathLike)):
                st = lib.mdl_swap_load_file(h, os.fsencode(source), None, ctypes.byref(err))
            else:
                buf = _bytes(source)
                st = lib.mdl_swap_load_buffer(h, buf.ctypes.data if buf.size else None, buf.size, None, ctypes.byref(err))
            if st != Status.OK:
                raise _raise(err, st)
        finally:
            self._leave()

    def rollback(self) -> None:
        """Make the previous model active (a second rollback undoes the first)."""
        h = self._enter()
        try:
            err = _lib.mdl_error()
            st = lib.mdl_swap_rollback(h, ctypes.byref(err))
            if st != Status.OK:
                raise _raise(err, st)
        finally:
            self._leave()

    @property
    def info(self) -> Dict[str, Any]:
        """``{"id", "previous_id", "name", "version", "source", "accepted", "refused", "rollbacks",
        "live_models"}`` of the active model (ids: 1 for the first, +1 per accepted candidate)."""
        h = self._enter()
        try:
            i = _lib.mdl_swap_info()
            lib.mdl_swap_info_get(h, ctypes.byref(i))
        finally:
            self._leave()
        return {"id": int(i.id), "previous_id": int(i.previous_id), "name": decode(i.name),
                "version": decode(i.version), "source": decode(i.source), "accepted": int(i.accepted),
                "refused": int(i.refused), "rollbacks": int(i.rollbacks), "live_models": int(i.live_models)}

    def run(self, inputs: Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]], *,
            as_dict: bool = False) -> Union[List[np.ndarray], Dict[str, np.ndarray]]:
        """Run the active model once (thread-safe); returns new arrays, as :meth:`Model.run`.

        Inputs must have the active model's shapes (dynamic dims: a pooled session is resized
        to them, which allocates)."""
        h = self._enter()
        s = ctypes.c_void_p()
        err = _lib.mdl_error()
        try:
            st = lib.mdl_swap_acquire(h, ctypes.byref(s), ctypes.byref(err))
            if st != Status.OK:
                raise _raise(err, st)
            try:
                return self._run(s.value, inputs, as_dict)
            finally:
                lib.mdl_swap_release(h, s.value)
        finally:
            self._leave()

    @staticmethod
    def _infos(fn: Any, p: int, n: int) -> List[_lib.mdl_tensor_info]:
        out = []
        for i in range(n):
            ti = _lib.mdl_tensor_info()
            fn(p, i, ctypes.byref(ti))
            out.append(ti)
        return out

    def _run(self, p: int, inputs: Any, as_dict: bool) -> Union[List[np.ndarray], Dict[str, np.ndarray]]:
        model = lib.mdl_session_model(p)
        nin, nout = lib.mdl_model_input_count(model), lib.mdl_model_output_count(model)
        names = [decode(t.name) for t in self._infos(lib.mdl_model_input_info, model, nin)]
        if isinstance(inputs, Mapping):
            missing = [n for n in names if n not in inputs]
            if missing or len(inputs) != nin:
                raise Error(f"inputs {sorted(inputs)}: the model's are {names}", Status.INVALID_ARGUMENT)
            arrays = [inputs[n] for n in names]
        elif isinstance(inputs, np.ndarray):
            arrays = [inputs]
        else:
            arrays = list(inputs)
        if len(arrays) != nin:
            raise Error(f"{len(arrays)} inputs for a model with {nin}", Status.INVALID_ARGUMENT)
        infos = self._infos(lib.mdl_session_input_info, p, nin)
        xs = [np.ascontiguousarray(a, dtype=_dtype(t.dtype)) for a, t in zip(arrays, infos)]
        shapes = [tuple(t.dims[d] for d in range(t.rank)) for t in infos]
        if any(x.shape != sh for x, sh in zip(xs, shapes)):
            if lib.mdl_model_symbol_count(model) == 0:
                bad = next(i for i, (x, sh) in enumerate(zip(xs, shapes)) if x.shape != sh)
                raise Error(f"input {bad} '{names[bad]}': shape {xs[bad].shape}, the model takes {shapes[bad]}",
                            Status.SHAPE)
            arr = (_lib.mdl_shape * nin)()
            for i, x in enumerate(xs):
                arr[i].rank = x.ndim
                for d, v in enumerate(x.shape):
                    arr[i].dims[d] = v
            err = _lib.mdl_error()
            st = lib.mdl_session_resize(p, nin, arr, ctypes.byref(err))
            if st != Status.OK:
                raise _raise(err, st)
        for i, x in enumerate(xs):
            err = _lib.mdl_error()
            st = lib.mdl_session_set_input(p, i, x.ctypes.data if x.nbytes else None, x.nbytes, ctypes.byref(err))
            if st != Status.OK:
                raise _raise(err, st)
        st = lib.mdl_session_run(p)
        if st != Status.OK:
            raise Error(decode(lib.mdl_session_message(p)) or decode(lib.mdl_status_str(st)), st)
        outs = []
        onames = []
        for i, t in enumerate(self._infos(lib.mdl_session_output_info, p, nout)):
            y = np.empty(tuple(t.dims[d] for d in range(t.rank)), dtype=_dtype(t.dtype))
            if y.nbytes:
                ctypes.memmove(y.ctypes.data, lib.mdl_session_output_data(p, i), y.nbytes)
            outs.append(y)
            onames.append(decode(t.name))
        return dict(zip(onames, outs)) if as_dict else outs

    def close(self) -> None:
        """Free the handle and its models once the runs in progress have finished."""
        with self._lock:
            while self._running:
                self._lock.wait()
            h, self._h = self._h, None
        if h:
            lib.mdl_swap_free(h)

    def __enter__(self) -> "Swap":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
