"""Slot choice by longest cached prefix, and FIFO admission with a bounded queue."""

from __future__ import annotations

import pytest

from slipstream.engine.core.jobs import Job
from slipstream.engine.core.slots import Admission, Move, SlotTable, common_prefix, runs
from slipstream.errors import SlipstreamError


def job(n: int = 1) -> Job:
    return Job(prompt=[1, 2, 3], n=n, max_tokens=4, top_logprobs=None, samplers=[None] * n, stops=())  # type: ignore[list-item]


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2 and common_prefix([], [1]) == 0
    long = list(range(1000))
    for at in (0, 1, 255, 256, 257, 511, 512, 999):  # at chunk edges and inside chunks
        other = [*long[:at], -1, *long[at + 1 :]]
        assert common_prefix(long, other) == at and common_prefix(other, long) == at
    assert common_prefix(long, long[:700]) == 700 and common_prefix(long[:300], long) == 300


def test_runs_counts_graphs_per_step() -> None:
    assert runs(set()) == 0 and runs({0, 1, 2}) == 1 and runs({0, 1, 2, 5}) == 2 and runs({1, 3, 5}) == 3


def test_the_previous_turn_of_a_chat_keeps_its_slot() -> None:
    table = SlotTable(3)
    turn1 = list(range(40))
    table.slots[1].tokens = list(turn1)
    place = table.take([*turn1, 99, 98], 1)
    assert place.slots[0].seq_id == 1 and place.cached == 40 and place.copy_from is None


def test_a_shared_prefix_is_copied_into_a_free_slot_instead_of_overwriting_a_cache() -> None:
    table = SlotTable(3)
    system = list(range(30))
    table.slots[0].tokens = [*system, 7, 7, 7]  # another conversation on the same system prompt
    place = table.take([*system, 5, 5], 1)
    assert place.slots[0].seq_id == 1, "slot 0's cached tail must survive"
    assert place.copy_from == 0 and place.cached == 30


def test_a_short_shared_prefix_is_not_worth_a_copy() -> None:
    table = SlotTable(2)
    table.slots[0].tokens = [1, 2, 3, 4]
    place = table.take([1, 2, 3, 9], 1)
    assert place.slots[0].seq_id == 1 and place.copy_from is None and place.cached == 0


def test_the_same_prompt_again_reuses_its_slot_in_place() -> None:
    table = SlotTable(3)
    prompt = list(range(40))
    table.slots[2].tokens = [*prompt, 7, 7]  # its earlier answer's tail is given up
    place = table.take(prompt, 1)
    assert place.slots[0].seq_id == 2 and place.cached == 40 and place.copy_from is None


def test_when_every_slot_holds_a_cache_the_least_recently_used_goes() -> None:
    table = SlotTable(3)
    for i, used in enumerate((3.0, 1.0, 2.0)):
        table.slots[i].tokens, table.slots[i].last_used = [100 + i] * 5, used
    assert table.take([1, 2, 3], 1).slots[0].seq_id == 1


def test_compaction_closes_gaps_with_the_fewest_moves() -> None:
    table = SlotTable(8)
    for i in (0, 2, 3, 7):
        table.slots[i].busy = True
        table.slots[i].tokens = [i] * 3
    moves = table.compaction_moves()
    assert moves == [Move(7, 1, swap=False)], "an empty hole needs no swap"
    for move in moves:
        table.move(move)
    busy = {s.seq_id for s in table.slots if s.busy}
    assert busy == {0, 1, 2, 3} and runs(busy) == 1 and table.compaction_moves() == []
    assert table.slots[1].tokens == [7, 7, 7] and table.slots[7].tokens == [7, 7, 7], "the old slot stays a cache"


def test_compaction_swaps_a_cache_that_no_other_slot_holds_out_of_the_hole() -> None:
    table = SlotTable(4)
    for i in range(4):
        table.slots[i].tokens = list(range(100 * i, 100 * i + 40))
        table.slots[i].last_used = float(i)
    table.slots[0].busy = table.slots[2].busy = True
    (move,) = table.compaction_moves()
    assert move == Move(2, 1, swap=True)
    table.move(move)
    assert table.slots[1].busy and table.slots[1].tokens == list(range(200, 240))
    assert not table.slots[2].busy and table.slots[2].tokens == list(range(100, 140)), "the chat's cache moved over"
    assert table.slots[2].last_used == 1.0, "it keeps its own age for eviction"


def test_a_hole_whose_cache_another_slot_also_holds_is_simply_overwritten() -> None:
    table = SlotTable(4)
    system = list(range(500, 540))
    table.slots[0].tokens = [*system, 1, 2]
    table.slots[1].tokens = list(system)  # only the shared system prompt: slot 0 holds it too
    table.slots[2].tokens = [*system, 3, 4]
    table.slots[0].busy = table.slots[2].busy = True
    assert table.compaction_moves() == [Move(2, 1, swap=False)]


def test_of_equal_windows_compaction_picks_the_one_whose_holes_cost_no_cache() -> None:
    table = SlotTable(4)
    table.slots[1].tokens = list(range(100, 140))  # a chat between turns, left of the busy slot
    table.slots[0].busy = table.slots[2].busy = True
    # busy {0, 2}: windows [0,1] and [1,2] would fill slot 1 (a chat's cache), [2,3] only moves slot 0 into empty 3
    assert table.compaction_moves() == [Move(0, 3, swap=False)]


def test_siblings_of_n_choices_are_contiguous() -> None:
    table = SlotTable(6)
    table.slots[2].busy = True
    place = table.take([1, 2, 3], 3)
    ids = sorted(s.seq_id for s in place.slots)
    assert runs({*ids, 2}) == 1 and all(s.busy for s in place.slots)


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
