"""Hostile JSON schemas: each bomb is a 400 naming the keyword, the runner lives on, stderr stays quiet.

A ``maxLength: 100000`` once became 100000 nested grammar groups that llama.cpp parsed
recursively until the runner died of SIGSEGV, killing every request on the model; smaller bombs
made llama.cpp dump the whole grammar to stderr. One runner serves the module, its stderr in a
file, so the test can check that nothing was dumped and that its pid never changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.engine.conftest import start_runner

QUESTION = [{"role": "user", "content": "Describe a book as JSON."}]
SCHEMA = "response_format.json_schema.schema"


class Runner:
    def __init__(self, proc: subprocess.Popen[str], port: int, stderr: Path) -> None:
        self.proc, self.port, self.stderr_path = proc, port, stderr

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def chat(self, **body: Any) -> tuple[int, Any]:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 10_000))  # the stdlib encoder recurses once per nesting level
        try:
            payload = json.dumps({"model": "m", "messages": QUESTION, "max_tokens": 8, **body}).encode()
        finally:
            sys.setrecursionlimit(limit)
        req = urllib.request.Request(
            self.base + "/v1/chat/completions", data=payload, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def pid(self) -> int:
        with urllib.request.urlopen(self.base + "/status", timeout=30) as resp:
            return int(json.loads(resp.read())["pid"])


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    err_path = tmp_path_factory.mktemp("hostile") / "runner.stderr"
    with start_runner("--parallel", "2", "--n-ctx", "2048", stderr=err_path) as started:
        yield Runner(started.proc, started.port, err_path)


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def nested(levels: int, wrap: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = wrap(schema)
    return schema


def objects(s: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": s}, "required": ["a"]}


def arrays(s: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": s}


def any_of(s: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [s, {"type": "null"}]}


def tool(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


BOMBS = [
    pytest.param({"response_format": json_schema({"type": "string", "maxLength": 100_000})},
                 f"{SCHEMA}.maxLength", ("'maxLength'", "at most 4096"), id="string-maxLength"),
    pytest.param({"response_format": json_schema({"type": "string", "minLength": 100_000})},
                 f"{SCHEMA}.minLength", ("'minLength'", "at most 4096"), id="string-minLength"),
    pytest.param({"response_format": json_schema({"type": "array", "items": {"type": "integer"}, "minItems": 50_000})},
                 f"{SCHEMA}.minItems", ("'minItems'", "at most 4096"), id="array-minItems"),
    pytest.param({"response_format": json_schema({"type": "array", "items": {"type": "integer"}, "maxItems": 10**9})},
                 f"{SCHEMA}.maxItems", ("'maxItems'", "at most 4096"), id="array-maxItems"),
    pytest.param({"response_format": json_schema(nested(1000, arrays))},
                 SCHEMA + ".items" * 64, ("'nesting depth'", "at most 64"), id="arrays-1000-deep"),
    pytest.param({"response_format": json_schema(nested(400, objects))},
                 SCHEMA + ".properties.a" * 32, ("'nesting depth'", "at most 64"), id="objects-400-deep"),
    pytest.param({"response_format": json_schema(nested(400, any_of))},
                 SCHEMA + ".anyOf[0]" * 31 + ".anyOf[1]", ("'nesting depth'", "at most 64"), id="anyOf-400-deep"),
    pytest.param({"response_format": json_schema({"enum": [f"v{i}" for i in range(100_000)]})},
                 f"{SCHEMA}.enum", ("'enum'", "at most 512"), id="enum-100000"),
    pytest.param({"response_format": json_schema(
                    {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(5000)}})},
                 f"{SCHEMA}.properties", ("'properties'", "at most 256"), id="properties-5000"),
    pytest.param({"response_format": json_schema({"type": "string", "pattern": "^a{0,5000}$"})},
                 SCHEMA, ("grammar over this server's limits", "nest more than 64"), id="pattern-repetition"),
    pytest.param({"tools": [tool({"type": "object", "properties": {"s": {"type": "string", "maxLength": 100_000}}})],
                  "tool_choice": "required"},
                 "tools[0].function.parameters.properties.s.maxLength", ("'maxLength'", "at most 4096"),
                 id="tool-maxLength"),
    pytest.param({"tools": [tool({"type": "object", "properties": {"s": {"type": "string"}}}),
                            tool(nested(1000, arrays))]},
                 "tools[1].function.parameters" + ".items" * 64, ("'nesting depth'",), id="tool-auto-deep"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "param", "words"), BOMBS)
def test_schema_bomb_is_400_and_the_runner_lives(runner: Runner, body: dict[str, Any], param: str, words: Any) -> None:
    pid = runner.pid()
    status, reply = runner.chat(**body)
    assert status == 400, reply
    err = reply["error"]
    assert (err["type"], err["code"], err["param"]) == ("invalid_request_error", "invalid_value", param)
    for word in words:
        assert word in err["message"], err["message"]
    assert runner.proc.poll() is None and runner.pid() == pid == runner.proc.pid
    status, ok = runner.chat()
    assert status == 200 and ok["choices"][0]["message"]["content"] is not None
    logged = runner.stderr()
    assert "error parsing grammar" not in logged and "::=" not in logged, logged[-2000:]


def test_min_above_max_is_400(runner: Runner) -> None:
    status, reply = runner.chat(response_format=json_schema({"type": "string", "minLength": 5, "maxLength": 2}))
    assert status == 400 and reply["error"]["param"] == f"{SCHEMA}.minLength"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": 4096},
        {"type": "string", "minLength": 4096, "maxLength": 4096},
        {"type": "array", "items": {"type": "integer"}, "maxItems": 4096},
        {"type": "array", "items": {"type": "array", "items": {"type": "string", "maxLength": 4096}, "maxItems": 4096}},
        nested(30, objects),
        {"enum": [f"value-{i}" for i in range(512)]},
    ],
    ids=["maxLength-4096", "exact-4096", "maxItems-4096", "nested-bounds", "objects-30-deep", "enum-512"],
)
def test_bounds_at_the_limit_compile(runner: Runner, schema: dict[str, Any]) -> None:
    status, reply = runner.chat(response_format=json_schema(schema))
    assert status == 200, reply
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")


BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "year": {"type": "integer", "minimum": 1900, "maximum": 2030},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 10},
        "in_print": {"type": "boolean"},
    },
    "required": ["title", "year", "tags", "in_print"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_realistic_schema_still_works_and_validates(runner: Runner, seed: int) -> None:
    status, reply = runner.chat(response_format=json_schema(BOOK), max_tokens=600, temperature=0.7, seed=seed)
    assert status == 200, reply
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop", choice["message"]["content"]
    jsonschema.validate(json.loads(choice["message"]["content"]), BOOK)


def test_a_realistic_tool_still_works_and_validates(runner: Runner) -> None:
    params = BOOK["properties"]["tags"]
    wrapper = {"type": "object", "properties": {"tags": params}, "required": ["tags"], "additionalProperties": False}
    status, reply = runner.chat(tools=[tool(wrapper)], tool_choice="required", max_tokens=300, temperature=0)
    assert status == 200, reply
    (call,) = reply["choices"][0]["message"]["tool_calls"]
    jsonschema.validate(json.loads(call["function"]["arguments"]), wrapper)
