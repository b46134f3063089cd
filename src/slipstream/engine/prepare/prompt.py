"""Messages (and tools) → prompt text, rendered with the GGUF's own jinja2 chat template.

Many small models' templates know nothing of tools, so tool use is rendered in one plain-text
convention the runner also parses back (see ``tool_calls``):

- the tool list goes into the system message, with the instruction to answer with
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
- an assistant message's ``tool_calls`` become those same tags after its content;
- a ``tool`` message becomes a user turn ``<tool_response>{"tool_call_id", "content"}</tool_response>``;
- ``developer`` is rendered as ``system``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import BaseLoader, TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from slipstream.engine.errors import internal, invalid
from slipstream.engine.prepare.params import Tool

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _raise(message: str) -> None:
    raise TemplateError(message)


class PromptRenderer:
    def __init__(self, template: str | None, *, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(
            loader=BaseLoader(), trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(template or CHATML)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[dict[str, Any]], tools: list[Tool], tool_choice: str) -> str:
        convo = normalise(messages, tools if tool_choice != "none" else [], tool_choice)
        try:
            return self._template.render(
                messages=convo,
                add_generation_prompt=True,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError as exc:
            raise invalid("messages", f"the model's chat template rejected the messages: {exc}") from exc
        except Exception as exc:  # a broken template is the operator's problem, not the client's
            raise internal(f"chat template failed: {type(exc).__name__}: {exc}") from exc


def tools_instruction(tools: list[Tool], tool_choice: str) -> str:
    lines = [
        "You can call functions. To call one, reply with exactly",
        f'{TOOL_OPEN}{{"name": "<function name>", "arguments": {{<arguments as JSON>}}}}{TOOL_CLOSE}',
        "and nothing else. Otherwise reply normally." if tool_choice == "auto" else "",
        "Available functions:",
    ]
    for tool in tools:
        spec = {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
        lines.append(json.dumps(spec, ensure_ascii=False))
    return "\n".join(line for line in lines if line)


def normalise(messages: list[dict[str, Any]], tools: list[Tool], tool_choice: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for msg in messages:
        role, content = msg["role"], msg.get("content") or ""
        if role == "developer":
            role = "system"
        if role == "tool":
            payload = json.dumps({"tool_call_id": msg["tool_call_id"], "content": content}, ensure_ascii=False)
            role, content = "user", f"<tool_response>\n{payload}\n</tool_response>"
        for call in msg.get("tool_calls", []):
            content += TOOL_OPEN + render_call(call["name"], call["arguments"]) + TOOL_CLOSE
        out.append({"role": role, "content": content})
    if tools:
        block = tools_instruction(tools, tool_choice)
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{block}"}
        else:
            out.insert(0, {"role": "system", "content": block})
    return out


def render_call(name: str, arguments: str) -> str:
    try:
        args: Any = json.loads(arguments) if arguments else {}
    except ValueError:
        args = arguments
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
