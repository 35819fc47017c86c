"""Startup: import a stack of modules without the cyclic garbage collector rescanning them.

Importing hundreds of modules creates hundreds of thousands of objects (functions, classes, compiled
regexes) that live as long as the process. The collector, left on, runs dozens of times meanwhile and
then again over all of them, freeing nothing. So a stack is imported with the collector off, and what
exists afterwards is frozen (`gc.freeze`: moved to a generation the collector never scans). The command
line's own imports are done this way (__main__.py), and so is the render stack, which `digest build`
imports lazily so that `digest list` and `--help` stay fast (pipeline.build_edition): in a build that took the
collector's time from ~9.5 ms to ~1.7 ms.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def imports_frozen(module: str) -> Iterator[None]:
    """Do the imports in the block with the collector off and freeze what exists afterwards.

    Only the first time, while `module` is not imported yet: a long-running command (`digest serve`
    rebuilds again and again) must not freeze, and so never free, the garbage it holds at a later moment.
    Inside another such block (the collector already off) it does nothing of its own.
    """
    if module in sys.modules or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
