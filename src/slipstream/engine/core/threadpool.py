"""A persistent ggml CPU threadpool for the context, as llama.cpp's own server uses.

Without one, ggml creates and joins its worker threads on every ``llama_decode``; a
persistent pool (polling briefly between steps) saves that per step, which matters when a
step of a 135M model takes only a few milliseconds. llama-cpp-python does not bind these
functions, so they are declared here from ``ggml.h`` / ``ggml-cpu.h`` / ``llama.h``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp as lc

_GGML_MAX_N_THREADS = 512


class _ThreadpoolParams(ctypes.Structure):
    _fields_ = [
        ("cpumask", ctypes.c_bool * _GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


def _llama_library() -> ctypes.CDLL:
    """libllama exactly as llama_cpp loaded it, with its own function cache.

    Symbols are looked up through libllama's handle, so ggml's come from the libggml copies
    libllama itself links. Opening ``llama_cpp/lib/libggml-cpu.so`` by path instead mapped a
    second copy of ggml beside the one that computes (the wheel ships ``.so`` and ``.so.0`` as
    separate files), and ignored ``LLAMA_CPP_LIB_PATH``, mixing two builds in one runner.
    """
    loaded = lc.llama_cpp._lib
    return ctypes.CDLL(loaded._name, handle=loaded._handle)


class Threadpool:
    """Owns one ggml threadpool attached to a llama context (for single and batched decoding)."""

    def __init__(self, ctx: Any, n_threads: int) -> None:
        base = cpu = llama = _llama_library()
        base.ggml_threadpool_params_init.argtypes = [ctypes.POINTER(_ThreadpoolParams), ctypes.c_int]
        base.ggml_threadpool_params_init.restype = None
        cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(_ThreadpoolParams)]
        cpu.ggml_threadpool_new.restype = ctypes.c_void_p
        cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
        cpu.ggml_threadpool_free.restype = None
        llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        llama.llama_attach_threadpool.restype = None
        llama.llama_detach_threadpool.argtypes = [ctypes.c_void_p]
        llama.llama_detach_threadpool.restype = None
        self._cpu, self._llama = cpu, llama
        params = _ThreadpoolParams()
        base.ggml_threadpool_params_init(ctypes.byref(params), n_threads)
        self._pool = cpu.ggml_threadpool_new(ctypes.byref(params))
        self._ctx = ctypes.cast(ctx, ctypes.c_void_p)
        if self._pool:
            llama.llama_attach_threadpool(self._ctx, self._pool, self._pool)

    @property
    def attached(self) -> bool:
        return bool(self._pool)

    def close(self) -> None:
        if self._pool:
            self._llama.llama_detach_threadpool(self._ctx)
            self._cpu.ggml_threadpool_free(self._pool)
            self._pool = None
