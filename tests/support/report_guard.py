"""Keep a dead runner's failing tests from aborting the whole run with INTERNALERROR.

CPython 3.11.0-3.11.7 keep the AST constructor's recursion depth in global state (gh-106905,
fixed in 3.11.8). pytest calls ``ast.parse`` while it formats a failure; if the garbage
collector runs during that call and a finalizer logs a traceback (an unclosed client or async
generator left behind by a test whose runner died; 3.11's ``traceback`` parses each line for
its carets), the nested parse resets the depth and pytest dies with
``SystemError: AST constructor recursion depth mismatch`` as an INTERNALERROR, ending the run.
With the collector paused while a report is built, the failure stays one failed test.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Generator

import pytest

AFFECTED = (3, 11) <= sys.version_info[:3] < (3, 11, 8)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    if not AFFECTED or not gc.isenabled():
        return (yield)
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()
