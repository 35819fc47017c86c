"""Parallel: run one piece of a build in a forked child process while this process carries on.

A folder's first `digest build` has two chains of work that do not depend on each other: importing
the render stack and compiling the templates (Jinja2, premailer with cssutils, lxml: ~90 ms), and
reading the content (importing PyYAML and markdown-it, then parsing every file: ~40 ms for the 47
shipped items). On a machine with a second core the content is read in a child process and comes
back pickled through a pipe (content.start_loading, for pipeline.build_edition). Later builds of an unchanged
folder read the content cache instead and never fork. (Compiling the templates in the child as well
was tried: the child then became the longer chain, and the build was no faster.)

The child only ever hands over a result. When forking is not safe or would not pay (not Linux,
other threads running, a single CPU), or the child fails in any way, the work runs in this process,
exactly as it would have without this module; an error the work raises on purpose (a DigestError,
such as the content folder's list of problems) is raised here either way.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import DigestError

T = TypeVar("T")
log = logging.getLogger(__name__)


def start(work: Callable[[], T]) -> Callable[[], T]:
    """Start `work` in a child process where that is safe and pays; call the result to get its value.

    Call it once: the child's answer is read once (a second call does the work here again)."""
    wait = _fork(work)

    def result() -> T:
        nonlocal wait
        if wait is not None:
            outcome, wait = wait(), None
            if outcome is not None:
                done, value = outcome
                if done:
                    return value  # type: ignore[no-any-return]
                raise value
        return work()

    return result


def _can_fork() -> bool:
    # Forking a process with other threads can copy a lock some thread holds (`digest serve` has
    # threads, and builds in-process); a single CPU would only take turns.
    return sys.platform == "linux" and threading.active_count() == 1 and len(os.sched_getaffinity(0)) > 1


def _fork(work: Callable[[], Any]) -> Callable[[], tuple[bool, Any] | None] | None:
    if not _can_fork():
        return None
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError as exc:
        log.debug("not forking: %s", exc)
        return None
    if pid == 0:
        _child(work, read_end, write_end)  # never returns
    os.close(write_end)

    def wait() -> tuple[bool, Any] | None:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            log.debug("child process %s failed (wait status %s); doing its work here", pid, status)
            return None
        outcome: tuple[bool, Any] = pickle.loads(data)  # written by our own child, through our own pipe
        return outcome

    return wait


def _child(work: Callable[[], Any], read_end: int, write_end: int) -> None:
    """Do the work, write (True, value) or (False, DigestError), and leave at once.

    `os._exit` skips everything the parent set up to run at exit (its buffered output, atexit handlers,
    temporary folders): those belong to the parent. Any other failure exits non-zero with nothing
    written, and the parent does the work itself, so a bug shows there with its traceback.
    """
    status = 1
    try:
        os.close(read_end)
        try:
            outcome: tuple[bool, Any] = (True, work())
        except DigestError as exc:
            outcome = (False, exc)
        data = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        status = 0
    finally:
        os._exit(status)
