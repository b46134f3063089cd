"""Whether each configured model can be served: its GGUF file exists, its upstream answers.

Upstreams are asked ``GET {base_url}/models`` with a short timeout and the configured key, all
at once, so a dead upstream costs seconds, not one timeout per model.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any

import aiohttp

from slipstream.catalog import ModelEntry, resolve_gguf
from slipstream.diagnostics.report import Check, Status

UPSTREAM_TIMEOUT_S = 5.0


def _facts(entry: ModelEntry, **more: Any) -> dict[str, Any]:
    return {"id": entry.id, "provider": entry.provider, **more}


def check_local(entry: ModelEntry) -> Check:
    name = f"model {entry.id}"
    assert entry.gguf is not None  # ModelEntry's validator demands it for provider 'local'
    try:
        path = resolve_gguf(entry.gguf)
    except FileNotFoundError as exc:
        return Check(name, Status.fail, str(exc), _facts(entry, gguf=entry.gguf))
    facts = _facts(entry, gguf=str(path))
    if not path.is_file():
        return Check(name, Status.fail, f"GGUF file missing: {path}", facts)
    size = path.stat().st_size
    return Check(name, Status.ok, f"local GGUF {path} ({size / 2**20:.0f} MiB)", facts)


def _listed(body: Any) -> list[str]:
    data = body.get("data") if isinstance(body, dict) else None
    return [str(m.get("id")) for m in data if isinstance(m, dict)] if isinstance(data, list) else []


async def check_upstream(entry: ModelEntry, session: aiohttp.ClientSession) -> Check:
    name = f"model {entry.id}"
    assert entry.base_url is not None  # ModelEntry's validator demands it for openai_compatible
    url = entry.base_url.rstrip("/") + "/models"
    facts = _facts(entry, url=url)
    key = os.environ.get(entry.api_key_env) if entry.api_key_env else None
    unset = f"; ${entry.api_key_env} (its key) is not set" if entry.api_key_env and not key else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with session.get(url, headers=headers) as resp:
            facts["http_status"] = resp.status
            body = await resp.json(content_type=None) if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Check(name, Status.fail, f"upstream {url} unreachable: {str(exc) or type(exc).__name__}", facts)
    if resp.status in (401, 403):
        return Check(name, Status.fail, f"upstream {url} refused the key (HTTP {resp.status}){unset}", facts)
    if resp.status != 200:
        return Check(name, Status.warn, f"upstream {url} answered HTTP {resp.status}", facts)
    listed = _listed(body)
    if listed and entry.target_model not in listed:
        detail = f"upstream {url} is reachable but does not list {entry.target_model!r}"
        return Check(name, Status.warn, detail, facts)
    if unset:
        return Check(name, Status.warn, f"upstream {url} reachable{unset}", facts)
    return Check(name, Status.ok, f"upstream {url} reachable", facts)


async def _local(entry: ModelEntry, _session: aiohttp.ClientSession) -> Check:
    return check_local(entry)


async def _fake(entry: ModelEntry, _session: aiohttp.ClientSession) -> Check:
    return Check(f"model {entry.id}", Status.ok, "built-in fake provider", _facts(entry))


_CHECKERS: dict[str, Callable[[ModelEntry, aiohttp.ClientSession], Awaitable[Check]]] = {
    "local": _local,
    "openai_compatible": check_upstream,
    "fake": _fake,
}


def _unchecked(entry: ModelEntry) -> Check:
    if entry.provider in {ep.name for ep in entry_points(group="slipstream.providers")}:
        detail = f"provider {entry.provider!r} is a plugin; doctor does not check it"
        return Check(f"model {entry.id}", Status.warn, detail, _facts(entry))
    detail = f"no provider named {entry.provider!r} is installed"
    return Check(f"model {entry.id}", Status.fail, detail, _facts(entry))


async def check_models(entries: list[ModelEntry]) -> list[Check]:
    """One check per entry, in catalog order."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S)) as session:

        async def one(entry: ModelEntry) -> Check:
            checker = _CHECKERS.get(entry.provider)
            return await checker(entry, session) if checker else _unchecked(entry)

        return list(await asyncio.gather(*(one(entry) for entry in entries)))
