"""The runner's loop-side writes to a lent client socket: framing, a full socket, a vanished client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import pytest

from slipstream.engine.deliver.direct_stream import RawBytes
from slipstream.engine.deliver.lent_socket import ClientGone, LentSocket
from tests.unit.test_direct_stream import frames


def pair() -> tuple[socket.socket, socket.socket]:
    ours, client = socket.socketpair()
    for s in (ours, client):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setblocking(False)
    return ours, client


async def read_all(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    data = b""
    while len(data) < size:
        data += await loop.sock_recv(sock, 65536)
    return data


async def test_a_full_socket_buffers_in_order_and_flush_waits_for_the_reader() -> None:
    ours, client = pair()
    out = LentSocket(asyncio.get_running_loop(), os.dup(ours.fileno()))
    events = [b"data: %d %s\n\n" % (i, b"x" * 3000) for i in range(40)]
    for ev in events[:20]:
        await out.write(ev)
    assert not out.idle()  # 60 KB cannot fit in a 4 KB socket: the rest waits in our buffer
    out.write_raw(RawBytes(b"%x\r\n%b\r\n" % (len(events[20]), events[20])))
    for ev in events[21:]:
        await out.write(ev)
    expected = b"".join(b"%x\r\n%b\r\n" % (len(ev), ev) for ev in events)
    reader = asyncio.ensure_future(read_all(client, len(expected)))
    await asyncio.wait_for(out.flush(), 10)
    assert out.idle()
    assert frames(await asyncio.wait_for(reader, 10)) == events
    out.close()
    ours.close()
    client.close()


async def test_a_client_that_left_raises_client_gone() -> None:
    ours, client = pair()
    out = LentSocket(asyncio.get_running_loop(), os.dup(ours.fileno()))
    client.close()
    with pytest.raises(ClientGone):
        for _ in range(10):
            await out.write(b"data: x\n\n")
    assert not out.idle()
    out.close()
    ours.close()


async def test_close_fails_a_pending_flush() -> None:
    ours, client = pair()
    out = LentSocket(asyncio.get_running_loop(), os.dup(ours.fileno()))
    for _ in range(10):
        await out.write(b"y" * 3000)
    flushing = asyncio.ensure_future(out.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done()
    out.close()
    with pytest.raises(ClientGone):
        await asyncio.wait_for(flushing, 1)
    ours.close()
    client.close()


async def test_a_client_that_reads_nothing_for_the_write_timeout_is_given_up() -> None:
    ours, client = pair()
    out = LentSocket(asyncio.get_running_loop(), os.dup(ours.fileno()), write_timeout_s=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ClientGone, match="read nothing"):
        async with asyncio.timeout(5):
            for _ in range(200):  # 600 KB: beyond the 256 KB the writer buffers before it waits
                await out.write(b"z" * 3000)
            await out.flush()
    assert asyncio.get_running_loop().time() - started >= 0.3
    out.close()
    ours.close()
    client.close()


async def test_a_slow_reader_that_keeps_taking_bytes_is_not_given_up() -> None:
    ours, client = pair()
    out = LentSocket(asyncio.get_running_loop(), os.dup(ours.fileno()), write_timeout_s=0.3)
    events = [b"w" * 3000 for _ in range(20)]
    for ev in events:
        await out.write(ev)
    expected = sum(len(b"%x\r\n%b\r\n" % (len(ev), ev)) for ev in events)
    client.setblocking(False)
    got = 0
    for _ in range(400):  # 4 KB every 0.1 s: slower than the timeout would allow in one go
        if got >= expected:
            break
        await asyncio.sleep(0.1)
        with contextlib.suppress(BlockingIOError):
            got += len(client.recv(4096))
    await asyncio.wait_for(out.flush(), 5)
    assert out.idle()
    out.close()
    ours.close()
    client.close()
