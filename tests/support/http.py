"""Raw HTTP, for the requests an SDK refuses to send (bad JSON, huge bodies, wrong types)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def request(method: str, url: str, body: bytes | None = None, token: str | None = None, **headers: str) -> Reply:
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        req.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, hdrs, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, hdrs, raw = err.code, dict(err.headers), err.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return Reply(status, {k.lower(): v for k, v in hdrs.items()}, parsed)


def post_json(url: str, payload: Any, token: str | None) -> Reply:
    return request("POST", url, json.dumps(payload).encode(), token)
