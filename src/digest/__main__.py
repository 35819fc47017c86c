"""`python -m digest` and the `digest` console script: the command line, started and ended cheaply.

Python's cyclic garbage collector runs many times while the ~600 modules a build needs are imported,
and once more over every object when the interpreter exits. Neither frees anything worth freeing:
module-level objects live as long as the process, and the operating system takes back all memory at
exit anyway. So the command line is imported with the collector off, and what exists then is frozen
(startup.imports_frozen; the render stack a build imports later gets the same). The command itself
runs with the collector on, so a long send still frees its cycles.

When the command is done, the process ends the way mypy's does (`mypy.util.hard_exit`): the exit
handlers run and the standard streams are flushed, then `os._exit` skips tearing down the
interpreter, which deallocates every object of those ~600 modules one by one: ~5 ms of a ~200 ms
`digest build` (BENCHMARKS.md). Nothing a command writes is left in a buffer: files are
written and closed inside the commands, the ledger commits before it answers, and the exit handlers
(logging, temporary folders) still run. A process with a non-daemon thread still running, or an
exit status that is not a number, ends the ordinary way.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys


def run() -> None:
    from .startup import imports_frozen

    with imports_frozen("digest.cli"):
        from .cli import main
    try:
        main(prog_name="digest")
    except SystemExit as done:
        status = done.code
    else:
        status = 0  # click's standalone mode always exits; this is for a main() that returns
    _exit(status)


def _exit(status: object) -> None:
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others or not (status is None or isinstance(status, int)):
        gc.freeze()  # still spares the collection over everything at exit
        raise SystemExit(status)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (digest list | head): nothing to say
            stream.flush()
    os._exit(status or 0)


if __name__ == "__main__":
    run()
