"""The llama.cpp handles for one model: model, context, tokenizer and one reusable batch.

Only the engine thread decodes; tokenizing and building samplers are thread-safe in
llama.cpp and may happen on the HTTP thread. ctypes releases the GIL during
``llama_decode``, so the HTTP loop keeps running while a step computes.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp as lc
import numpy as np

from slipstream.engine.core.threadpool import Threadpool

_LOG_ERROR = 4  # ggml_log_level GGML_LOG_LEVEL_ERROR
_KV_TYPES = {"f16": 1, "q8_0": 8}  # ggml_type ids


class ModelLoadError(RuntimeError):
    """The GGUF could not be loaded or a context could not be created."""


@dataclass(frozen=True)
class ModelConfig:
    path: Path
    n_ctx: int  # per sequence, as the client sees it
    parallel: int
    threads: int
    batch_size: int
    kv_type: str = "q8_0"


def _log_errors_only(level: int, text: bytes, _user: Any) -> None:
    if level == _LOG_ERROR:
        sys.stderr.write(text.decode("utf-8", "replace"))


class LlamaModel:
    """Owns the model and a context with ``parallel`` separate KV streams of ``n_ctx`` cells (and
    one spare stream of the same size, when there is more than one slot)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._log_cb = lc.llama_log_callback(_log_errors_only)
        lc.llama_log_set(self._log_cb, ctypes.c_void_p(0))
        lc.llama_backend_init()
        if not config.path.is_file():
            raise ModelLoadError(f"model file not found: {config.path}")
        mparams = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(config.path).encode(), mparams)
        if not self.model:
            raise ModelLoadError(f"llama.cpp could not load {config.path} (not a valid GGUF?)")
        cparams = lc.llama_context_default_params()
        # one stream per slot, and a spare one that compaction swaps slots through (slots.py)
        self.spare_seq = config.parallel
        streams = config.parallel + 1 if config.parallel > 1 else 1
        cparams.n_ctx = config.n_ctx * streams
        cparams.n_seq_max = streams
        cparams.n_batch = config.batch_size
        cparams.n_ubatch = config.batch_size
        cparams.n_threads = config.threads
        cparams.n_threads_batch = config.threads
        cparams.kv_unified = False  # one stream per slot: attention only over its own cells
        cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_AUTO
        cparams.no_perf = True
        if config.kv_type != "f16":
            cparams.type_k = cparams.type_v = _KV_TYPES[config.kv_type]
            cparams.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_ENABLED
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise ModelLoadError("llama.cpp could not create a context (out of memory?)")
        self.n_ctx_seq = int(lc.llama_n_ctx_seq(self.ctx))
        if self.n_ctx_seq < config.n_ctx:
            raise ModelLoadError(f"context per sequence is {self.n_ctx_seq}, below --n-ctx {config.n_ctx}")
        self._pool = Threadpool(self.ctx, config.threads)
        self.memory = lc.llama_get_memory(self.ctx)
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    # --- metadata -------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return bytes(buf.value).decode("utf-8", "replace")

    def chat_template(self) -> str | None:
        raw = lc.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", "replace") if raw else None

    def token_text(self, token: int) -> str:
        """The vocabulary text of a (special) token, e.g. ``<|im_end|>``."""
        if token < 0:
            return ""
        raw = lc.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", "replace") if raw else ""

    @property
    def bos(self) -> int:
        return int(lc.llama_vocab_bos(self.vocab))

    @property
    def eos(self) -> int:
        return int(lc.llama_vocab_eos(self.vocab))

    @property
    def add_bos(self) -> bool:
        return bool(lc.llama_vocab_get_add_bos(self.vocab))

    # --- tokenizer (thread-safe) --------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (lc.llama_token * cap)()
        n = lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (lc.llama_token * cap)()
            n = lc.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """Bytes of one token as generated text (special tokens render as nothing)."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(256)
        n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        out = buf.raw[:n]
        self._pieces[token] = out
        return out

    def is_eog(self, token: int) -> bool:
        cached = self._eog.get(token)
        if cached is None:
            cached = self._eog[token] = bool(lc.llama_vocab_is_eog(self.vocab, token))
        return cached

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token id; scans the vocabulary once (for ``ignore_eos``)."""
        return [t for t in range(self.n_vocab) if self.is_eog(t)]

    # --- decoding (engine thread only) ---------------------------------------------------

    def decode(self, batch: TokenBatch) -> int:
        batch.struct.n_tokens = batch.n
        return int(lc.llama_decode(self.ctx, batch.struct))

    def logits(self, idx: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        ptr = lc.llama_get_logits_ith(self.ctx, idx)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def seq_clear(self, seq_id: int, start: int = 0) -> None:
        """Drop the KV cells of ``seq_id`` from position ``start`` on."""
        lc.llama_memory_seq_rm(self.memory, seq_id, start, -1)

    def seq_copy(self, src: int, dst: int) -> None:
        lc.llama_memory_seq_cp(self.memory, src, dst, -1, -1)

    def seq_save(self, seq_id: int) -> tuple[mmap.mmap, int]:
        """The KV cells of ``seq_id`` in a new host buffer, and the bytes written.

        An anonymous mapping, not a numpy array: numpy asks the kernel for huge pages on large
        arrays, and where that makes page faults compact memory first, saving 11 MB took 31 ms
        instead of 7."""
        size = int(lc.llama_state_seq_get_size(self.ctx, seq_id))
        buf = mmap.mmap(-1, max(size, 1))
        n = int(lc.llama_state_seq_get_data(self.ctx, _u8_pointer(buf), size, seq_id))
        return buf, n

    def seq_restore(self, data: mmap.mmap, size: int, seq_id: int) -> bool:
        """Replace the KV of ``seq_id`` with a ``seq_save`` buffer; False (and ``seq_id`` empty) on failure."""
        if int(lc.llama_state_seq_set_data(self.ctx, _u8_pointer(data), size, seq_id)) == 0:
            self.seq_clear(seq_id)
            return False
        return True

    def close(self) -> None:
        self._pool.close()
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            lc.llama_model_free(self.model)
            self.model = None


def _u8_pointer(buf: mmap.mmap) -> Any:
    """A ``uint8_t *`` into ``buf`` (alive as long as ``buf`` is)."""
    return ctypes.cast(ctypes.addressof(ctypes.c_uint8.from_buffer(buf)), ctypes.POINTER(ctypes.c_uint8))


class TokenBatch:
    """One ``llama_batch`` whose arrays are numpy-owned, reused for every step.

    Built by hand instead of ``llama_batch_init`` so each token's ``seq_id`` pointer points into
    one contiguous array that numpy can fill in a single slice assignment.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tokens = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq = np.ones(capacity, dtype=np.int32)
        self.seq_ids = np.zeros(capacity, dtype=np.int32)
        self.want = np.zeros(capacity, dtype=np.int8)
        i32p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq_ids.ctypes.data
        self._seq_ptrs = (i32p * capacity)(*[ctypes.cast(base + 4 * i, i32p) for i in range(capacity)])
        s: Any = lc.llama_batch()
        s.n_tokens = 0
        s.token = self.tokens.ctypes.data_as(i32p)
        s.embd = None
        s.pos = self.pos.ctypes.data_as(i32p)
        s.n_seq_id = self.n_seq.ctypes.data_as(i32p)
        s.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(i32p))
        s.logits = self.want.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.struct = s
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, token: int, pos: int, seq_id: int) -> int:
        """Add one token whose logits are wanted; returns its batch index."""
        i = self.n
        self.tokens[i] = token
        self.pos[i] = pos
        self.seq_ids[i] = seq_id
        self.want[i] = 1
        self.n = i + 1
        return i

    def add_run(self, tokens: list[int], start_pos: int, seq_id: int, want_last: bool) -> int:
        """Add consecutive prompt tokens of one sequence; returns the index of the last one."""
        a, b = self.n, self.n + len(tokens)
        self.tokens[a:b] = tokens
        self.pos[a:b] = np.arange(start_pos, start_pos + len(tokens), dtype=np.int32)
        self.seq_ids[a:b] = seq_id
        self.want[a:b] = 0
        if want_last:
            self.want[b - 1] = 1
        self.n = b
        return b - 1
