"""`python -m digest` and the `digest` console script: the command line, started and ended cheaply.

The command line is imported with the garbage collector off and what exists then frozen
(startup.imports_frozen), since module-level objects live as long as the process anyway; the command
itself runs with the collector on. When it is done the process ends as mypy's does: exit handlers
run, the standard streams are flushed, then `os._exit` skips tearing the interpreter down. Nothing is
left in a buffer: commands write and close their files and the ledger commits before it answers. A
process with a non-daemon thread still running, or a non-numeric exit status, ends the ordinary way.
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
