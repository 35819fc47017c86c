"""`python -m digest` and the `digest` console script: the command line, started cheaply.

Python's cyclic garbage collector runs many times while the ~600 modules a build needs are imported,
and once more over every object when the interpreter exits. Neither frees anything worth freeing:
module-level objects live as long as the process, and the operating system takes back all memory at
exit anyway. Together that was ~25 ms of a ~200 ms `digest build` (benchmarks/build_vs_mjml.py).
So the collector is off while the command line is imported, and what exists then is frozen
(`gc.freeze`: moved to a generation the collector never scans). The command itself runs with the
collector on, so a long send still frees its cycles; when it ends, its objects are frozen too, which
spares the collection at exit. Nothing is skipped: atexit handlers run and files are closed as usual.
"""

from __future__ import annotations

import gc


def run() -> None:
    gc.disable()
    try:
        from .cli import main
    finally:
        gc.freeze()
        gc.enable()
    try:
        main(prog_name="digest")
    finally:
        gc.freeze()


if __name__ == "__main__":
    run()
