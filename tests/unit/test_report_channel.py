"""The runner's report lines: in call order from any thread, finished by the loop when the socket is full."""

from __future__ import annotations

import asyncio
import json
import socket
import threading

from slipstream.engine.deliver.report_channel import ReportChannel


def pair(buffer: int) -> tuple[socket.socket, socket.socket]:
    ours, gateway = socket.socketpair()
    for s in (ours, gateway):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    ours.setblocking(False)
    return ours, gateway


async def read_lines(sock: socket.socket, count: int) -> list[dict[str, int]]:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    data = b""
    while data.count(b"\n") < count:
        data += await loop.sock_recv(sock, 65536)
    return [json.loads(line) for line in data.splitlines()]


async def test_lines_from_another_thread_keep_their_order_through_a_full_socket() -> None:
    ours, gateway = pair(4096)
    channel = ReportChannel(asyncio.get_running_loop(), ours)
    padding = "x" * 500

    def send_all() -> None:
        for i in range(200):
            channel.send({"n": i, "pad": padding})

    writer = threading.Thread(target=send_all)
    writer.start()
    writer.join()
    assert not channel.broken
    reader = asyncio.ensure_future(read_lines(gateway, 200))
    await asyncio.wait_for(channel.drain(), 10)  # 100 KB could not fit: the loop finished the rest
    assert [m["n"] for m in await asyncio.wait_for(reader, 10)] == list(range(200))
    ours.close()
    gateway.close()


async def test_a_gateway_that_left_breaks_the_channel_without_raising() -> None:
    ours, gateway = pair(4096)
    channel = ReportChannel(asyncio.get_running_loop(), ours)
    gateway.close()
    for i in range(3):
        channel.send({"n": i})
    assert channel.broken
    await asyncio.wait_for(channel.drain(), 1)
    ours.close()
