"""Shared plumbing for the benchmarks: processes, the gateway, statistics, tables and results.

Benchmarks run as scripts (``python bench/<name>.py``), so this module is imported by its
plain name from the ``bench`` folder. Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from slipstream.cli.serve import ADMIN_TOKEN_LINE, URL_LINE

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CACHE_DIR = REPO_ROOT / ".cache"
# The ``slipstream`` script next to this interpreter; BENCH_SLIPSTREAM_BIN may name another one.
SLIPSTREAM = os.environ.get("BENCH_SLIPSTREAM_BIN") or str(Path(sys.executable).with_name("slipstream"))


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation, as numpy's default does."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float], prefix: str, quantiles: Sequence[int] = (50, 99)) -> dict[str, Any]:
    """vLLM-style keys ``mean_<prefix>``, ``median_<prefix>``, ``p99_<prefix>``; None when empty."""
    out: dict[str, Any] = {f"mean_{prefix}": _round(sum(values) / len(values)) if values else None}
    for q in quantiles:
        out[f"{'median' if q == 50 else f'p{q}'}_{prefix}"] = _round(percentile(values, q))
    return out


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return round(num / den, 3)


# --------------------------------------------------------------------------- output


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    sys.stdout.flush()


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


def write_results(name: str, data: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``bench/results/<name>-<UTC timestamp>.json`` and ``<name>-latest.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamped = RESULTS_DIR / f"{name}-{data.get('timestamp') or utc_stamp()}.json"
    latest = RESULTS_DIR / f"{name}-latest.json"
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    stamped.write_text(text)
    latest.write_text(text)
    return stamped, latest


# --------------------------------------------------------------------------- processes


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks stop every child we started."""

    def _raise(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


@dataclass
class Proc:
    """A child process we started, with its output in a log file (or a pipe we read)."""

    name: str
    popen: subprocess.Popen[str]
    log_path: Path
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 30) -> str:
        text = "".join(self.lines)
        with contextlib.suppress(OSError):
            text += self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-n:])

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL; also reaps any grandchildren (runners) that outlived it."""
        descendants = _descendants(self.pid)
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for child in descendants:
            with contextlib.suppress(Exception):
                if child.is_running():
                    child.kill()


def _descendants(pid: int) -> list[Any]:
    try:
        import psutil

        return list(psutil.Process(pid).children(recursive=True))
    except Exception:  # noqa: BLE001 - psutil is optional here; cleanup is best effort
        return []


def spawn(
    name: str,
    argv: list[str],
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    pipe_stdout: bool = False,
) -> Proc:
    """Start a child; stderr (and stdout unless piped) go to ``<log_dir>/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    log_file: IO[str] = log_path.open("w")
    try:
        popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if pipe_stdout else log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
    finally:
        log_file.close()
    return Proc(name, popen, log_path)


def wait_for_line(proc: Proc, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
    """Read piped stdout until a line matches; then keep draining it in a thread."""
    stdout = proc.popen.stdout
    assert stdout is not None
    found: list[re.Match[str]] = []

    def reader() -> None:
        for line in stdout:
            proc.lines.append(line)
            if not found and (m := pattern.search(line)):
                found.append(m)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not found and time.monotonic() < deadline and proc.alive():
        time.sleep(0.02)
    if not found:
        time.sleep(0.1)
    if not found:
        raise RuntimeError(f"{proc.name} did not become ready in {timeout_s:.0f}s:\n{proc.log_tail()}")
    return found[0]


def http_json(
    method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_http_ok(url: str, proc: Proc, timeout_s: float) -> None:
    """Poll a GET endpoint until it answers 200, the process dies, or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            status, _ = http_json("GET", url, timeout=2)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {url} in {timeout_s:.0f}s ({last}):\n{proc.log_tail()}")


# --------------------------------------------------------------------------- the gateway


@dataclass
class Gateway:
    proc: Proc
    base_url: str
    admin_token: str

    @property
    def openai_base(self) -> str:
        return self.base_url + "/v1"

    def create_key(self, name: str = "bench") -> str:
        status, body = http_json(
            "POST", self.base_url + "/v2/gen-ai/models/api_keys", {"name": name}, token=self.admin_token
        )
        if status != 200 or not isinstance(body, dict) or "api_key_info" not in body:
            raise RuntimeError(f"creating a model access key failed: HTTP {status} {body}")
        return str(body["api_key_info"]["secret_key"])

    def stop(self) -> None:
        self.proc.stop()


def start_gateway(
    config_text: str, workdir: Path, *, timeout_s: float = 60.0, env: dict[str, str] | None = None
) -> Gateway:
    """``slipstream serve --port 0`` with a generated config; URL and admin token from its stdout.

    ``env`` is added to the gateway's environment, which its runner processes inherit.
    """
    config = workdir / "slipstream.yaml"
    config.write_text(config_text)
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    argv = [SLIPSTREAM, "serve", "--port", "0", "--data-dir", str(data_dir), "--config", str(config)]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    proc = spawn("slipstream", argv, workdir, env={**inherited, **(env or {})}, pipe_stdout=True)
    # Scan stdout for the URL line, then the token line that follows it.
    stdout = proc.popen.stdout
    assert stdout is not None
    url = token = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not (url and token):
            line = stdout.readline()
            if not line:
                break
            proc.lines.append(line)
            if m := URL_LINE.search(line):
                url = m.group(1)
            if m := ADMIN_TOKEN_LINE.match(line):
                token = m.group(1)
        if not (url and token):
            raise RuntimeError("slipstream serve did not announce a URL and an admin token:\n" + proc.log_tail())
    except BaseException:
        proc.stop()
        raise

    def drain() -> None:
        for line in stdout:
            proc.lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    try:
        # The URL is announced just before the socket starts listening: wait until it answers.
        wait_http_ok(url + "/healthz", proc, timeout_s)
    except BaseException:
        proc.stop()
        raise
    return Gateway(proc, url, token)


def process_cpu_seconds(pid: int, include_children: bool = True) -> float | None:
    """User + system CPU of a process (and its live descendants), for per-request CPU cost."""
    try:
        import psutil

        procs = [psutil.Process(pid)]
        if include_children:
            procs += procs[0].children(recursive=True)
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total
    except Exception:  # noqa: BLE001 - a missing psutil or a dead process just means "unknown"
        return None


def process_rss_bytes(pid: int) -> int | None:
    """Resident memory of a process and its descendants (e.g. the gateway plus its runner)."""
    try:
        import psutil

        root = psutil.Process(pid)
        total = 0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total
    except Exception:  # noqa: BLE001 - see process_cpu_seconds
        return None
