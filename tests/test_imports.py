"""What a fresh `digest` process imports: what its command needs, and not the libraries of other commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _factories import fresh_python

# Libraries only other commands use: import (feedparser, icalendar), archive (icalendar), check
# (tinycss2), send (sendgrid, aiosmtpd in tests, the ledger's sqlite3 and psycopg), serve (wsgiref).
NOT_FOR_BUILD = (
    "feedparser",
    "icalendar",
    "recurring_ical_events",
    "psycopg",
    "tinycss2",
    "sendgrid",
    "python_http_client",
    "aiosmtpd",
    "sqlite3",
    "smtplib",
    "wsgiref",
    "urllib.request",
    "http.client",
)
# `digest --help` and `--version` need click and the command line's own modules, nothing of the pipeline.
STARTUP_MODULES = {
    "digest",
    "digest.__main__",
    "digest.cli",
    "digest.cli_build",
    "digest.cli_ledger",
    "digest.cli_options",
    "digest.cli_send",
    "digest.cli_site",
    "digest.deliver",
    "digest.errors",
    "digest.startup",
}


def _modules_after(argv: list[str], cwd: Path, env: dict[str, str]) -> set[str]:
    """The modules loaded when the console script's run() has done `argv` in a new interpreter."""
    script = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: print('\\n' + json.dumps(sorted(sys.modules))))\n"
        "from digest.__main__ import run\n"
        f"sys.argv = {['digest', *argv]!r}\n"
        "run()\n"
    )
    done = fresh_python(script, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_help_and_version_load_only_the_command_line(argv: list[str], repo: Path, tmp_path: Path) -> None:
    """`digest --help` and `--version` load click and cli.py, not settings, models or any library of a command."""
    loaded = _modules_after(argv, repo, {"XDG_CACHE_HOME": str(tmp_path)})
    ours = {name for name in loaded if name == "digest" or name.startswith("digest.")}
    assert ours == STARTUP_MODULES
    assert not {"jinja2", "premailer", "lxml", "yaml", "tomllib", "zoneinfo"} & loaded


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_a_build_does_not_load_the_libraries_of_other_commands(cache: str, repo: Path, tmp_path: Path) -> None:
    """A first build and a rebuild from the caches load none of import's, check's or send's libraries."""
    argv = ["build", "--since", "2012-01-01", "--until", "2020-03-31", "--out", str(tmp_path / "build")]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    loaded = _modules_after(argv, repo, env)
    if cache == "warm":
        loaded = _modules_after(argv, repo, env)
        assert "yaml" not in loaded  # the content came from the cache: the test ran the path it names
        assert "cryptography" not in loaded  # the sample recipient's unsubscribe token too
    assert "premailer" in loaded and (tmp_path / "build" / "email.html").is_file()
    assert sorted(set(NOT_FOR_BUILD) & loaded) == []
