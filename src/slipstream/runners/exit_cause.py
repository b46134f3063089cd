"""Why a runner process ended, in words a user can act on.

A bare "backend unreachable" after a crash leaves the user nowhere. A negative return code is
a signal, named here; a crash on a CPU that advertises AMX is nearly always llama.cpp built
with ``-march=native`` (its AMX kernels die on the first batched matmul), so the message says
how to rebuild. Anything else points at ``slipstream doctor``.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from slipstream.cpu import cpu_has_amx

# signals a broken build or a bad kernel raises; SIGKILL/SIGTERM come from outside (OOM killer, operator)
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT})
DOCTOR_HINT = "run `slipstream doctor` to check the engine build"
AMX_HINT = "this CPU advertises AMX, rebuild with `make clean run`"


def signal_label(returncode: int) -> str | None:
    """``-11`` → ``"SIGSEGV (signal 11)"``; None for a normal exit status."""
    if returncode >= 0:
        return None
    number = -returncode
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


def _crash_hint(amx: bool) -> str:
    return AMX_HINT if amx else DOCTOR_HINT


def describe_start_failure(
    model_id: str, returncode: int, stderr_tail: Sequence[str] = (), *, amx: bool | None = None
) -> str:
    """The one sentence a client and the gateway log get when a runner dies before READY."""
    amx = cpu_has_amx() if amx is None else amx
    label = signal_label(returncode)
    if label is not None:
        number = -returncode
        if number in CRASH_SIGNALS:
            return f"The local engine crashed with {label} while loading {model_id}; {_crash_hint(amx)}."
        hint = "it may have run out of memory; " if number == signal.SIGKILL else ""
        return f"The local engine was stopped by {label} while loading {model_id}; {hint}{DOCTOR_HINT}."
    said = " | ".join(line.strip() for line in stderr_tail if line.strip())
    said = f" ({said})" if said else ""
    return f"The local engine exited with status {returncode} while loading {model_id}{said}; {DOCTOR_HINT}."


def describe_serving_exit(model_id: str, returncode: int, *, amx: bool | None = None) -> str:
    """What a client gets instead of "backend unreachable" when a ready runner dies under its request."""
    amx = cpu_has_amx() if amx is None else amx
    label = signal_label(returncode)
    if label is not None and -returncode in CRASH_SIGNALS:
        return f"The local engine crashed with {label} while serving {model_id}; {_crash_hint(amx)}."
    hint = "it may have run out of memory; " if returncode == -signal.SIGKILL else ""
    return f"The local engine {describe_exit(returncode)} while serving {model_id}; {hint}{DOCTOR_HINT}."


def describe_exit(returncode: int) -> str:
    """A running runner's end, for the log: ``"crashed with SIGSEGV (signal 11)"`` or ``"exited with status 0"``."""
    label = signal_label(returncode)
    if label is None:
        return f"exited with status {returncode}"
    return f"crashed with {label}" if -returncode in CRASH_SIGNALS else f"was stopped by {label}"
