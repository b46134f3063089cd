"""Prometheus /metrics reflects real traffic: tokens, TTFT, inter-token latency, runners and slots."""

from __future__ import annotations

import re

from openai import OpenAI

from tests.support.http import request
from tests.support.server import LiveServer

LOCAL = "llama3.3-70b-instruct"


def sample(text: str, name: str, *, default: float | None = None, **labels: str) -> float:
    """One sample's value; Prometheus prints labels sorted by name."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$" if labels else rf"^{re.escape(name)} (\S+)$"
    match = re.search(pattern, text, flags=re.M)
    if match is None and default is not None:
        return default
    assert match, f"{name}{{{want}}} not in metrics"
    return float(match.group(1))


def test_metrics_follow_a_streamed_request(client: OpenAI, live_server: LiveServer) -> None:
    before = request("GET", live_server.base_url + "/metrics").body
    assert isinstance(before, str)
    stream = client.chat.completions.create(
        model=LOCAL,
        messages=[{"role": "user", "content": "Count from one to twenty."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage][-1]
    reply = request("GET", live_server.base_url + "/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    after = reply.body
    assert isinstance(after, str)
    completion = sample(after, "slipstream_tokens_total", model=LOCAL, kind="completion")
    completion_before = sample(before, "slipstream_tokens_total", default=0.0, model=LOCAL, kind="completion")
    assert completion - completion_before == usage.completion_tokens
    assert sample(after, "slipstream_time_to_first_token_seconds_count", model=LOCAL) >= 1
    assert sample(after, "slipstream_inter_token_latency_seconds_count", model=LOCAL) >= 1
    assert sample(after, "slipstream_cold_starts_total", model=LOCAL) >= 1
    assert sample(after, "slipstream_loaded_runners") >= 1
    assert sample(after, "slipstream_slots", model=LOCAL) == 4
    assert sample(after, "slipstream_slots_in_use", model=LOCAL) == 0
    assert sample(after, "slipstream_queue_time_seconds_count", model=LOCAL) >= 1
    assert sample(after, "slipstream_queue_time_seconds_sum", model=LOCAL) >= 0
    assert sample(after, "slipstream_requests_total", model=LOCAL, status="ok") >= 1
