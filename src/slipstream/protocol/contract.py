"""One request contract: which chat-completions parameters exist, for the gateway and the runner alike.

The gateway validates bodies with ``protocol.chat.ChatCompletionRequest``, whose fields are
``CORE_PARAMS | BOOKKEEPING_PARAMS``; the runner (``engine/prepare/params.py``) accepts exactly
``LOCAL_ACCEPTED``. Both read these sets, so they cannot drift apart. Plain frozensets, so the
runner process checks against them without loading pydantic.

- ``CORE_PARAMS`` shape the answer and go to every provider;
- ``BOOKKEEPING_PARAMS`` change nothing in the answer, only the upstream account's side
  (retention, service tier and its price, abuse tracking, cache routing); a provider passes on
  only those it forwards, the gateway drops the rest and names them in a response header;
- ``LOCAL_PARAMS`` are the local runner's own sampling knobs, beyond OpenAI's.
"""

from __future__ import annotations

CORE_PARAMS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
        "presence_penalty", "frequency_penalty", "n", "stream", "stream_options", "logprobs", "top_logprobs",
        "logit_bias", "response_format", "tools", "tool_choice", "parallel_tool_calls",
    }
)  # fmt: skip
BOOKKEEPING_PARAMS = frozenset({"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"})
LOCAL_PARAMS = frozenset({"top_k", "min_p", "repeat_penalty", "ignore_eos"})
LOCAL_ACCEPTED = CORE_PARAMS | BOOKKEEPING_PARAMS | LOCAL_PARAMS
"""What a local runner accepts; a bookkeeping parameter, or ``parallel_tool_calls``, changes nothing there."""
