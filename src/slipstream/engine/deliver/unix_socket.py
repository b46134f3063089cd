"""Unix sockets that only this user can open: how the gateway reaches its runners."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def bind_private(path: Path) -> socket.socket:
    """A listening-ready socket at ``path`` with mode 0600 from the start (no window where it is open)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)
    old_mask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_mask)
    return sock
