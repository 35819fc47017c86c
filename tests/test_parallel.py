"""parallel.py: work in a forked child comes back the same as work done here, errors included.

Each case runs in a fresh interpreter: whether the child is used depends on the process (no other
threads), and pytest's may have some. The scripts print what they saw; the asserts are here.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from _factories import fresh_python

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="digest forks only on Linux")
# The child is used with 2+ CPUs. On a one-CPU machine the scripts are told of two, so the fork, the
# pipe and the pickling are still exercised for real; only the CPU count is stood in for.
ONE_CPU = sys.platform == "linux" and len(os.sched_getaffinity(0)) < 2
AS_IF_TWO_CPUS = "import os\nos.sched_getaffinity = lambda pid: {0, 1}\n"


def _script(script: str) -> str:
    return (AS_IF_TWO_CPUS if ONE_CPU else "") + textwrap.dedent(script)


def _run(script: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> dict[str, object]:
    done = fresh_python(_script(script), cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_work_runs_in_a_child_and_its_value_comes_back() -> None:
    """The value comes back from another process, larger than a pipe holds; a second call works here."""
    seen = _run(
        """
        import json, os
        from digest import parallel
        result = parallel.start(lambda: {"pid": os.getpid(), "data": list(range(100_000))})
        value = result()
        again = result()  # the child's answer is read once; a second call works here
        print(json.dumps({"parent": os.getpid(), "worker": value["pid"], "n": len(value["data"]),
                          "again": again["pid"]}))
        """
    )
    assert seen["worker"] != seen["parent"] and seen["again"] == seen["parent"]
    assert seen["n"] == 100_000  # more than a pipe holds at once: the parent reads while the child writes


def test_a_digest_error_in_the_child_is_raised_here_with_its_problems() -> None:
    """A ContentError raised in the child is raised here with its problems, warnings and message."""
    seen = _run(
        """
        import json, os
        from digest import parallel
        from digest.errors import ContentError, Problem

        def work():
            raise ContentError([Problem("content/a.md", 3, "bad date", "use YYYY-MM-DD")],
                               [Problem("content/b.md", 1, "unknown field 'x'")])

        try:
            parallel.start(work)()
        except ContentError as exc:
            print(json.dumps({"problems": [str(p) for p in exc.problems],
                              "warnings": [str(w) for w in exc.warnings], "message": str(exc)}))
        """
    )
    assert seen["problems"] == ["content/a.md:3: bad date; use YYYY-MM-DD"]
    assert seen["warnings"] == ["content/b.md:1: unknown field 'x'"]
    assert "1 problem in the content folder" in str(seen["message"])


def test_a_child_that_fails_otherwise_leaves_the_work_to_this_process() -> None:
    """A bug, an unpicklable result or a dead child: the work is done again here, as a serial run would."""
    seen = _run(
        """
        import json, os
        from digest import parallel
        parent = os.getpid()

        def buggy():
            if os.getpid() != parent:
                raise ZeroDivisionError("only in the child")
            return "here"

        def unpicklable():
            return lambda: os.getpid()

        def dies():
            if os.getpid() != parent:
                os._exit(3)
            return "here"

        print(json.dumps({
            "buggy": parallel.start(buggy)(),
            "unpicklable": parallel.start(unpicklable)()(),
            "dies": parallel.start(dies)(),
            "parent": parent,
        }))
        """
    )
    assert seen["buggy"] == "here" and seen["dies"] == "here"
    assert seen["unpicklable"] == seen["parent"]


def test_no_child_while_another_thread_runs() -> None:
    """With another thread running the work is done in this process."""
    seen = _run(
        """
        import json, os, threading
        from digest import parallel
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        try:
            print(json.dumps({"worker": parallel.start(os.getpid)(), "parent": os.getpid()}))
        finally:
            stop.set()
        """
    )
    assert seen["worker"] == seen["parent"]


def test_a_first_build_parses_in_a_child_and_builds_the_same_email(tmp_path: Path) -> None:
    """A build parsed in a child writes the same files as one parsed here, without importing the parsers."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "content", project / "content")
    shutil.copy(REPO / "digest.toml", project / "digest.toml")
    window = ["--since", "2019-01-01", "--until", "2019-12-31"]
    seen = _run(
        f"""
        import json, sys
        from digest.cli import main
        try:
            main({["build", *window, "--out", "child"]!r}, prog_name="digest")
        except SystemExit as done:
            code = done.code
        print(json.dumps({{"code": code, "parsers": "digest.readers" in sys.modules}}))
        """,
        cwd=project,
        env={"DIGEST_NO_CACHE": "1"},
    )
    assert seen == {"code": 0, "parsers": False}
    from click.testing import CliRunner

    from digest.cli import main

    cwd = os.getcwd()
    os.chdir(project)
    try:
        result = CliRunner().invoke(main, ["build", *window, "--out", "here"], env={"DIGEST_NO_CACHE": "1"})
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    for name in ("email.html", "email.txt", "email.mjml"):
        assert (project / "child" / name).read_bytes() == (project / "here" / name).read_bytes(), name


def test_no_child_on_one_cpu() -> None:
    """A process allowed on one CPU only does the work itself (the fork would only take turns)."""
    done = fresh_python(
        textwrap.dedent(
            """
            import json, os
            from digest import parallel
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            print(json.dumps({"worker": parallel.start(os.getpid)(), "parent": os.getpid()}))
            """
        )
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["worker"] == seen["parent"]


def test_a_broken_folder_fails_the_same_way_through_the_child(tmp_path: Path) -> None:
    """`digest build` of a folder with a bad date, parsed in the child, exits 1 naming the file and line."""
    project = tmp_path / "project"
    (project / "content").mkdir(parents=True)
    shutil.copy(REPO / "digest.toml", project / "digest.toml")
    (project / "content" / "2020-01-05-bad.md").write_text("---\ntitle: Bad\ndate: 2020-13-45\n---\nBody.\n")
    command = """
        import runpy, sys
        sys.argv = ["digest", "build", "--month", "2020-01"]
        runpy.run_module("digest", run_name="__main__")
        """
    done = fresh_python(_script(command), cwd=project, env={"DIGEST_NO_CACHE": "1"})
    assert done.returncode == 1
    assert "content/2020-01-05-bad.md:3:" in done.stderr and "nothing was built" in done.stderr
    assert "Traceback" not in done.stderr
