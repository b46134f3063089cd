"""Where each prompt's KV comes from, and where KV goes when slots move: the batching loop's cache keeper.

A new prompt's first slot receives the longest prefix on offer: its own cache, another slot's
(a whole-stream copy), or host memory (a restore, see host_cache.py), and what that slot held is
saved to host memory first when nothing else holds it. Compaction moves busy sequences into holes
(slots.py), swapping through the spare stream when the hole is a cache worth keeping.

llama.cpp runs stream copies only at the next ``llama_decode``, while saves and restores act at
once; so the streams that queued copies read or write are remembered until a decode has run, and
host memory stays away from them meanwhile.
"""

from __future__ import annotations

from slipstream.engine.core.host_cache import HostCache
from slipstream.engine.core.jobs import SeqState, Sequence
from slipstream.engine.core.llama_backend import LlamaModel
from slipstream.engine.core.slots import COPY_MIN, Slot, SlotTable, common_prefix


class KVMoves:
    """Engine-thread-only."""

    def __init__(self, model: LlamaModel, slots: SlotTable, host_cache_bytes: int) -> None:
        self.model = model
        self.slots = slots
        self.host_cache = HostCache(host_cache_bytes) if host_cache_bytes > 0 else None
        self.copies = 0  # stream copies queued since the last decode
        self._pending: set[int] = set()  # streams those copies read or write

    def copy(self, src: int, dst: int) -> None:
        self.model.seq_copy(src, dst)
        self.copies += 1
        self._pending.update((src, dst))

    def decoded(self, ok: bool) -> None:
        """A decode ran; if it succeeded, the queued copies ran with it (kept pending otherwise, to be safe)."""
        self.copies = 0
        if ok:
            self._pending.clear()

    def place(self, prompt: list[int], n: int) -> tuple[list[Slot], int]:
        """Reserve ``n`` slots and bring the longest cached prefix of ``prompt`` into the first;
        returns the slots and how many prompt tokens' KV it holds (never the last token's, whose
        logits must be computed)."""
        place = self.slots.take(prompt, n)
        target = place.slots[0]
        cached, source = place.cached, place.copy_from
        if self.host_cache is not None and target.seq_id not in self._pending:
            cached, source = self._through_host_cache(self.host_cache, target, prompt, cached, source)
        keep = min(cached, len(prompt) - 1)
        if source is not None:
            self.copy(source, target.seq_id)
            target.tokens[:] = self.slots.slots[source].tokens[:keep]
        self.model.seq_clear(target.seq_id, keep)
        del target.tokens[keep:]
        for sibling in place.slots[1:]:  # stale until the first choice's KV is copied in
            self.model.seq_clear(sibling.seq_id)
            sibling.tokens.clear()
        return place.slots, keep

    def compact(self, active: list[Sequence]) -> bool:
        """Keep the busy slots consecutive, so each step is one graph (see slots.py); whether any moved."""
        moves = self.slots.compaction_moves()
        by_slot = {seq.slot: seq for seq in active}
        for move in moves:
            seq = by_slot[move.src]
            has_kv = seq.state is not SeqState.FOLLOW  # a FOLLOW sibling has no KV yet: only its reservation moves
            if move.swap and has_kv:  # stream copies run in order at the next decode
                self.copy(move.dst, self.model.spare_seq)
                self.copy(move.src, move.dst)
                self.copy(self.model.spare_seq, move.src)
            elif move.swap:
                self.copy(move.dst, move.src)
            elif has_kv:
                self.copy(move.src, move.dst)
            self.slots.move(move)
            seq.slot = move.dst
        return bool(moves)

    def _through_host_cache(
        self, host: HostCache, target: Slot, prompt: list[int], cached: int, source: int | None
    ) -> tuple[int, int | None]:
        """Save what ``target`` would lose, restore the prompt's conversation if host memory holds
        more of it than any slot; returns the new (cached, copy source)."""
        entry, hit = host.best(prompt)
        if entry is not None and hit >= cached + COPY_MIN:
            host.take(entry)  # first: saving the target's cache may drop entries to make room
        else:
            entry = None
        self._save_evicted(host, target, prompt)
        if entry is None:
            return cached, source
        if self.model.seq_restore(entry.data, entry.size, target.seq_id):
            target.tokens[:] = entry.tokens
            host.restored += 1
            return hit, None
        target.tokens.clear()  # the restore failed and left the slot empty
        return (cached, source) if source is not None else (0, None)

    def _save_evicted(self, host: HostCache, slot: Slot, prompt: list[int]) -> None:
        """Before a new prompt overwrites a slot, keep its cache in host memory if nothing else holds it."""
        tokens = slot.tokens
        if common_prefix(tokens, prompt) == len(tokens) or not self.slots.worth_keeping(slot.seq_id):
            return
        if host.covers(tokens):
            return
        data, size = self.model.seq_save(slot.seq_id)
        if size:
            host.put(tokens, data, size)
