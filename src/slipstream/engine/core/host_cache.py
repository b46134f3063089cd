"""KV caches of conversations pushed out of the slots, kept in host memory until they return.

With more conversations than slots (16 chats on 8 slots), every turn lands on a slot that holds
someone else's history, and its own history had to be prefilled again: with 830-token system
prompts and 4 turns, 14 % of all prompt tokens, which on 2 cores was two thirds of the run's time.
Saving a slot's KV before it is overwritten (``llama_state_seq_get_data``, a copy of the cells the
sequence uses) and restoring it when the conversation comes back costs a few milliseconds per
thousand tokens against seconds of prefill.

An entry is kept only if no slot or other entry holds the same tokens (a prefix of another is
dropped), and the least recently used entries go when the byte budget is exceeded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from slipstream.engine.core.slots import common_prefix


@dataclass(eq=False)
class Entry:
    tokens: list[int]
    data: Any  # the saved sequence state (a numpy byte array), opaque here
    size: int


class HostCache:
    """Engine-thread-only."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, Entry] = OrderedDict()  # id(entry) -> entry, oldest first
        self.bytes = 0
        self.saved = self.restored = 0  # counters for /status

    def __len__(self) -> int:
        return len(self._entries)

    def best(self, prompt: list[int]) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with ``prompt``, and that prefix's length."""
        best: Entry | None = None
        hit = 0
        for entry in self._entries.values():
            if entry.tokens and entry.tokens[0] == prompt[0] and (n := common_prefix(entry.tokens, prompt)) > hit:
                best, hit = entry, n
        return best, hit

    def covers(self, tokens: list[int]) -> bool:
        """Whether some entry already holds these tokens (or more)."""
        return any(common_prefix(e.tokens, tokens) == len(tokens) for e in self._entries.values())

    def put(self, tokens: list[int], data: Any, size: int) -> None:
        if size > self.budget_bytes:
            return
        for entry in [e for e in self._entries.values() if common_prefix(e.tokens, tokens) == len(e.tokens)]:
            self.take(entry)  # the new entry extends it
        entry = Entry(list(tokens), data, size)
        self._entries[id(entry)] = entry
        self.bytes += size
        self.saved += 1
        while self.bytes > self.budget_bytes:
            _, oldest = self._entries.popitem(last=False)
            self.bytes -= oldest.size

    def take(self, entry: Entry) -> None:
        """Remove an entry (restored into a slot, or superseded)."""
        if self._entries.pop(id(entry), None) is not None:
            self.bytes -= entry.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
