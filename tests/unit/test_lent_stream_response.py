"""How the gateway ends a lent stream from the runner's reports, with the runner as a scripted peer."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from slipstream.http.lent_stream import LentStreamResponse
from slipstream.serving.lent_stream import LentStreamCall
from slipstream.serving.metering import UsageMeter


class ScriptedRunner:
    """The runner's side of a lent stream: a fixed list of reports, then nothing (it died) or done."""

    def __init__(self, reports: list[dict[str, Any] | None]) -> None:
        self.reports = list(reports)
        self.lent: list[int] = []
        self.write_timeouts: list[float] = []
        self.closed = False

    def lend(self, fd: int, write_timeout_s: float) -> None:
        self.lent.append(fd)
        self.write_timeouts.append(write_timeout_s)

    async def next_report(self) -> dict[str, Any] | None:
        report = self.reports.pop(0) if self.reports else None
        if report == {"garbled": True}:
            raise ValueError("not JSON")
        return report

    def client_left(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Transport:
    def __init__(self) -> None:
        self.closed = False
        self.reset = False

    def get_extra_info(self, name: str) -> None:
        return None

    def abort(self) -> None:
        self.closed = self.reset = True

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class Meter:
    def __init__(self, sent: list[dict[str, Any]]) -> None:
        self.usage: dict[str, Any] | None = None
        self.finished: tuple[Any, ...] | None = None
        self.sent = sent
        self.settled_after: int | None = None  # how many ASGI messages had been sent when the row was committed

    def observe(self, usage: dict[str, Any] | None) -> None:
        self.usage = usage or self.usage

    def timings_from(self, first_at: float | None, intervals: list[float]) -> None:
        pass

    def finish(self, status: str, http_status: int, code: str | None = None) -> asyncio.Future[None]:
        self.finished = self.finished or (status, http_status, code)
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        committed.set_result(None)
        return committed

    async def settle(self, status: str, http_status: int, code: str | None = None) -> None:
        await self.finish(status, http_status, code)
        self.settled_after = len(self.sent)

    async def settle_failure(self, exc: BaseException) -> None:
        await self.fail(exc)
        self.settled_after = len(self.sent)

    fail = UsageMeter.fail  # the real mapping from an exception to the row's status


async def play(
    reports: list[dict[str, Any] | None], scope: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], Transport, Meter, ScriptedRunner]:
    sent: list[dict[str, Any]] = []
    runner, transport, meter = ScriptedRunner(reports), Transport(), Meter(sent)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)  # the client stays
        raise AssertionError

    response = LentStreamResponse(LentStreamCall(runner, cast(UsageMeter, meter)), cast(Any, transport), 7)
    await asyncio.wait_for(response(scope or {"type": "http"}, receive, send), 5)
    return sent, transport, meter, runner


USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 0}}


async def test_a_finished_stream_is_metered_before_done_is_written() -> None:
    sent, transport, meter, runner = await play([{"usage": USAGE}, {"done": "ok", "usage": USAGE, "itl": []}])
    assert runner.lent == [7] and runner.closed
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[-1] == {"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False}
    assert meter.finished == ("ok", 200, None) and meter.usage == USAGE
    assert meter.settled_after == 1  # committed while only the head was out, before [DONE]
    assert not transport.closed


async def test_a_runner_that_dies_between_chunks_leaves_an_error_event() -> None:
    sent, transport, meter, _ = await play([{"usage": USAGE}, {"blocked": True}, {"blocked": False}, None])
    assert sent[-1]["more_body"] is False and b'"code":"upstream_error"' in sent[-1]["body"]
    assert meter.finished == ("error", 502, "upstream_error") and meter.usage == USAGE
    assert meter.settled_after == 1  # the error row is committed before the error event goes out
    assert not transport.closed


async def test_a_runner_that_dies_inside_a_chunk_gets_the_connection_closed_not_an_event() -> None:
    sent, transport, meter, _ = await play([{"usage": USAGE}, {"blocked": True}, None])
    assert [m["type"] for m in sent] == ["http.response.start"]  # no bytes after a torn chunk
    assert transport.closed
    assert meter.finished == ("error", 502, "upstream_error") and meter.usage == USAGE


async def test_an_unreadable_report_counts_as_a_runner_that_died() -> None:
    sent, _, meter, runner = await play([{"usage": USAGE}, {"garbled": True}])
    assert b'"code":"upstream_error"' in sent[-1]["body"] and sent[-1]["more_body"] is False
    assert meter.finished == ("error", 502, "upstream_error") and runner.closed


async def test_a_runner_that_gave_up_on_a_stalled_client_gets_the_connection_reset() -> None:
    """The runner reports ``cancelled`` when the client read nothing for the write timeout: the
    row is a cancellation with the usage so far, and the connection is reset, not left open."""
    scope = {"type": "http", "extensions": {"slipstream.limits": {"write_timeout_s": 1.5}}}
    sent, transport, meter, runner = await play([{"usage": USAGE}, {"done": "cancelled", "usage": USAGE}], scope)
    assert runner.write_timeouts == [1.5]  # the runner is told the connection's limit
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert meter.finished == ("cancelled", 499, "client_disconnected") and meter.usage == USAGE
    assert transport.reset and runner.closed
