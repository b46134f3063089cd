"""The engine thread's direct writes: exact chunked framing, and a clean hand-back to the loop."""

from __future__ import annotations

import os
import socket

from slipstream.engine.core.jobs import ChoiceDelta, JobDone
from slipstream.engine.deliver.direct_stream import DirectWriter, RawBytes


def writer_on(sock: socket.socket) -> DirectWriter:
    writer = DirectWriter(os.dup(sock.fileno()))
    writer.render = lambda ev: [b"data: " + ev.text.encode() + b"\n\n"]
    writer.active = True
    return writer


def read_available(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    data = b""
    while True:
        try:
            part = sock.recv(65536)
        except BlockingIOError:
            return data
        if not part:
            return data
        data += part


def frames(data: bytes) -> list[bytes]:
    """Decode HTTP/1.1 chunked framing strictly."""
    out = []
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        assert data[n : n + 2] == b"\r\n", "bad chunk framing"
        out.append(data[:n])
        data = data[n + 2 :]
    return out


def test_deltas_are_written_framed_and_final_events_go_to_the_loop() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        ours.setblocking(False)
        writer = writer_on(ours)
        done = JobDone(5, 0, 2)
        assert writer.push([ChoiceDelta(0, "a", 1), ChoiceDelta(0, "b", 2), done]) == [done]
        assert frames(read_available(peer)) == [b"data: a\n\ndata: b\n\n"]
        writer.close()


def test_a_full_socket_buffer_hands_the_unwritten_bytes_and_all_later_events_to_the_loop() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        ours.setblocking(False)
        writer = writer_on(ours)
        pushed = 0
        rest: list[object] = []
        while not rest and pushed < 10_000:  # a slow reader: nobody reads until the buffer is full
            pushed += 1
            rest = list(writer.push([ChoiceDelta(0, f"{pushed:05d}" * 100, pushed)]))
        assert writer.given_up and isinstance(rest[0], RawBytes) and len(rest) == 1
        later = ChoiceDelta(0, "later", pushed + 1)
        assert writer.push([later]) == [later], "after a short write the loop carries every event"
        payloads = frames(read_available(peer) + rest[0])
        assert payloads == [b"data: " + (f"{i:05d}" * 100).encode() + b"\n\n" for i in range(1, pushed + 1)]
        writer.close()


def test_a_vanished_client_drops_deltas_but_not_the_final_event() -> None:
    ours, peer = socket.socketpair()
    with ours:
        ours.setblocking(False)
        writer = writer_on(ours)
        peer.close()
        done = JobDone(5, 0, 1)
        assert writer.push([ChoiceDelta(0, "a", 1), done]) == [done]
        assert writer.given_up
        writer.close()


def test_nothing_is_written_before_activation_or_after_close() -> None:
    ours, peer = socket.socketpair()
    with ours, peer:
        writer = writer_on(ours)
        writer.active = False
        ev = ChoiceDelta(0, "a", 1)
        assert writer.push([ev]) == [ev]
        writer.active = True
        writer.close()
        assert writer.push([ev]) == [ev]
        assert read_available(peer) == b""
