"""``python -m slipstream.engine.runner``: one process serving one GGUF model on loopback.

Contract with the supervisor:

- flags: ``--model PATH --model-id ID [--host 127.0.0.1] [--port 0] [--socket PATH]
  [--handoff-socket PATH] [--n-ctx 8192]
  [--parallel 8] [--queue-size 64] [--threads 2] [--batch-size 512] [--prefill-chunk 64]
  [--host-cache-mib 1024]
  [--chat-template JINJA] [--kv-type q8_0|f16]``; ``--n-ctx`` is the context every slot gets;
  ``--socket`` serves on a Unix socket (mode 0600) instead of TCP, as the supervisor does;
  ``--handoff-socket`` also takes streams whose client socket the gateway lends (``protocol/handoff.py``);
- when serving, exactly one stdout line ``SLIPSTREAM_RUNNER_READY {"port", "socket", "handoff",
  "pid", "n_ctx", "parallel", "self_check"}`` (``port`` 0 with a socket, ``socket`` and ``handoff``
  null without; ``self_check`` is ``{"prompt_tokens", "generated", "seconds"}``); logs go to stderr;
- a model that cannot be loaded exits with status 2 and a message on stderr;
- before READY the engine proves it computes (``self_check.py``: a one-batch prefill of ~16
  tokens and three decode steps through the request path, then forgotten); a wrong answer exits
  with status 3 and a message on stderr, a broken build dies of its signal, before READY either way;
- test-only: ``SLIPSTREAM_TEST_RUNNER_SELF_CHECK_FAULT=segv`` makes the runner kill itself with
  SIGSEGV during the self-check, ``=segv-after-ready`` on its first request's decode step
  (see ``self_check.py``); never set it outside tests;
- SIGTERM / SIGINT stop it cleanly with status 0.

The model loads on a worker thread; the HTTP stack imports while llama.cpp works in C with
the GIL released.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("slipstream.engine.runner")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slipstream.engine.runner", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, type=Path, help="path of the GGUF file")
    p.add_argument("--model-id", required=True, help="model id served under /v1/models")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (see the READY line)")
    p.add_argument("--socket", type=Path, default=None, help="serve on this Unix socket instead of TCP")
    p.add_argument(
        "--handoff-socket", type=Path, default=None, help="take streams' client sockets from the gateway here"
    )
    p.add_argument("--n-ctx", type=int, default=8192, help="context length of every slot")
    p.add_argument("--parallel", type=int, default=8, help="sequences decoded together")
    p.add_argument("--queue-size", type=int, default=64, help="requests waiting for a slot before 429")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512, help="max tokens per decode step")
    p.add_argument(
        "--prefill-chunk", type=int, default=64, help="prompt tokens per step while other sequences generate"
    )
    p.add_argument("--chat-template", default="", help="jinja2 chat template; empty uses the GGUF's")
    p.add_argument(
        "--kv-type", choices=("q8_0", "f16"), default="q8_0", help="KV cache type; q8_0 halves memory and cold start"
    )
    p.add_argument(
        "--host-cache-mib", type=int, default=1024,
        help="host memory for the KV caches of conversations pushed out of the slots (0: none)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.host_cache_mib < 0:
        p.error("--host-cache-mib must be >= 0")
    for name in ("n_ctx", "parallel", "threads", "batch_size", "prefill_chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.queue_size < 0:
        p.error("--queue-size must be >= 0")
    if args.batch_size < args.parallel:
        p.error("--batch-size must be at least --parallel (one token per sequence per step)")
    return args


class _Loader(threading.Thread):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(name="slipstream-load", daemon=True)
        self.args = args
        self.model: Any = None
        self.error: BaseException | None = None
        self.imported = threading.Event()

    def run(self) -> None:
        try:
            try:
                from slipstream.engine.core.llama_backend import LlamaModel, ModelConfig
            finally:
                self.imported.set()
            a = self.args
            cfg = ModelConfig(a.model, a.n_ctx, a.parallel, a.threads, a.batch_size, a.kv_type)
            self.model = LlamaModel(cfg)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread, which exits non-zero
            self.error = exc


async def serve(args: argparse.Namespace, loader: _Loader) -> int:
    # import the HTTP stack while llama.cpp loads in C (GIL released), not while llama_cpp imports
    loader.imported.wait()
    from aiohttp import web

    from slipstream.engine.core import self_check
    from slipstream.engine.core.batching import Engine
    from slipstream.engine.core.step_trace import StepTrace
    from slipstream.engine.deliver.direct_stream import make_deliver
    from slipstream.engine.deliver.handoff_server import HandoffServer
    from slipstream.engine.deliver.http_app import create_app
    from slipstream.engine.prepare.prompt import PromptRenderer
    from slipstream.engine.prepare.service import RunnerState

    sock = _listen(args)
    await asyncio.get_running_loop().run_in_executor(None, loader.join)
    if loader.error is not None or loader.model is None:
        print(f"slipstream runner: cannot load model {args.model}: {loader.error}", file=sys.stderr, flush=True)
        return 2
    model = loader.model
    loop = asyncio.get_running_loop()
    engine = Engine(
        model,
        parallel=args.parallel,
        queue_size=args.queue_size,
        deliver=make_deliver(loop),
        prefill_chunk=args.prefill_chunk,
        host_cache_bytes=args.host_cache_mib << 20,
        trace=StepTrace(Path(trace)) if (trace := os.environ.get("SLIPSTREAM_ENGINE_TRACE")) else None,
    )
    template = args.chat_template or model.chat_template()
    renderer = PromptRenderer(template, bos_token=model.token_text(model.bos), eos_token=model.token_text(model.eos))
    state = RunnerState(args.model_id, model, engine, renderer, args.n_ctx, args.parallel, os.getpid())
    try:
        fault = self_check.fault_from_env()
        started = engine.start(first=functools.partial(self_check.run, engine, args.n_ctx, fault))
        check = await asyncio.wrap_future(started)
    except self_check.SelfCheckFailed as exc:
        print(f"slipstream runner: engine self-check failed for {args.model}: {exc}", file=sys.stderr, flush=True)
        model.close()
        return 3
    assert check is not None
    log.info("engine self-check passed: %d prompt tokens in one batch, %d generated, %.1f ms",
             check.prompt_tokens, check.generated, check.seconds * 1000)  # fmt: skip
    runner = web.AppRunner(create_app(state), handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    handoff = HandoffServer(state, args.handoff_socket) if args.handoff_socket else None
    if handoff is not None:
        await handoff.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = 0 if args.socket else sock.getsockname()[1]
    where = str(args.socket) if args.socket else f"{args.host}:{port}"
    ready = {"port": port, "socket": args.socket and str(args.socket), "pid": os.getpid(), "n_ctx": args.n_ctx,
             "parallel": args.parallel, "handoff": args.handoff_socket and str(args.handoff_socket),
             "self_check": check.as_dict()}  # fmt: skip
    sys.stdout.write("SLIPSTREAM_RUNNER_READY " + json.dumps(ready) + "\n")
    sys.stdout.flush()
    log.info("serving %s on %s", args.model_id, where)
    await stop.wait()
    log.info("shutting down")
    await loop.run_in_executor(None, engine.stop)  # in-flight requests end with an error event
    await asyncio.sleep(0.05)
    if handoff is not None:
        await handoff.close()
    await runner.cleanup()
    model.close()
    if args.socket:
        args.socket.unlink(missing_ok=True)
    return 0


def _listen(args: argparse.Namespace) -> socket.socket:
    """A Unix socket only this user can open (how the supervisor runs us), or TCP for use by hand."""
    from slipstream.engine.deliver.unix_socket import bind_private

    if args.socket:
        sock = bind_private(args.socket)
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    sock.listen(1024)
    return sock


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The engine thread re-takes the GIL after every llama.cpp call; with the default 5 ms switch
    # interval it can wait behind the HTTP thread while both compute threads idle. 0.5 ms gave
    # ~12% more tokens/s at 8 streams in A/B runs (198 -> 222 tok/s, runner alone, 2 threads).
    sys.setswitchinterval(0.0005)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    loader = _Loader(args)
    loader.start()
    try:
        import uvloop

        return int(uvloop.run(serve(args, loader)))
    except ImportError:
        return asyncio.run(serve(args, loader))


if __name__ == "__main__":
    sys.exit(main())
