"""Slot choice by longest cached prefix, and FIFO admission with a bounded queue."""

from __future__ import annotations

import pytest

from slipstream.engine.jobs import Job
from slipstream.engine.slots import Admission, SlotTable, common_prefix
from slipstream.errors import SlipstreamError


def job(n: int = 1) -> Job:
    return Job(prompt=[1, 2, 3], n=n, max_tokens=4, top_logprobs=None, samplers=[None] * n, stops=())  # type: ignore[list-item]


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2 and common_prefix([], [1]) == 0


def test_longest_prefix_slot_wins() -> None:
    table = SlotTable(3)
    table.slots[1].tokens = [5, 6, 7, 8]
    table.slots[2].tokens = [5, 6]
    slots, hit = table.take([5, 6, 7, 9], 1)
    assert slots[0].seq_id == 1 and hit == 3
    slots2, hit2 = table.take([5, 6, 1], 2)
    assert slots2[0].seq_id == 2 and hit2 == 2 and len(slots2) == 2


def test_admission_queue_bound_and_fifo() -> None:
    adm = Admission(slots=1, queue_size=1)
    a, b, c = job(), job(), job()
    adm.submit(a)
    adm.submit(b)
    with pytest.raises(SlipstreamError) as exc:
        adm.submit(c)
    assert exc.value.status == 429 and exc.value.code == "rate_limit_exceeded"
    assert adm.take_ready() == [a] and adm.queued == 1
    adm.release(1)
    assert adm.take_ready() == [b] and adm.queued == 0


def test_cancel_removes_a_queued_job() -> None:
    adm = Admission(slots=1, queue_size=2)
    a, b = job(), job()
    adm.submit(a)
    adm.submit(b)
    adm.cancel(b)
    assert b.cancelled and adm.queued == 0
