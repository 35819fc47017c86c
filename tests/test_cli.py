"""CLI: every command has help with an example, appears in the README, and translates errors once."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import click
import pytest
from _factories import FRENCH_WORDS, fresh_python
from click.testing import CliRunner

from digest import __version__
from digest.cli import main

COMMANDS = sorted(main.commands)
IDENTITY = 'name = "T"\nslug = "t"\nsender = "T <t@example.org>"\n'  # what every digest.toml must set


def run(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    if cwd is None:
        result = runner.invoke(main, list(args), catch_exceptions=False)
    else:
        with runner.isolated_filesystem(temp_dir=cwd):
            result = runner.invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    """--version prints the package version."""
    code, out, _ = run("--version")
    assert code == 0 and __version__ in out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name: str) -> None:
    """Each command's --help has a description and an 'Example:' block naming the command."""
    code, out, _ = run(name, "--help")
    assert code == 0
    assert "Example:" in out and f"digest {name}" in out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_is_in_the_readme(repo: Path, name: str) -> None:
    """The README documents every command under its own heading."""
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"^#+ .*`digest {re.escape(name)}\b", readme, re.M), f"README has no heading for digest {name}"


def test_readme_mentions_shell_completion(repo: Path) -> None:
    """The README has the line for enabling shell completion."""
    assert "_DIGEST_COMPLETE=" in (repo / "README.md").read_text(encoding="utf-8")


def test_list_json_all_shipped_items(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """digest list --since 2012-01-01 --json lists all 47 shipped items."""
    monkeypatch.chdir(repo)
    code, out, _ = run("list", "--since", "2012-01-01", "--today", "2020-03-31", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["count"] == 47 and len(data["items"]) == 47
    assert {row["reason"] for row in data["items"]} == {"posted"}


def test_list_month_with_upcoming_events(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """January 2020: the two items posted that month, and the April workshop as an upcoming event."""
    monkeypatch.chdir(repo)
    code, out, _ = run("list", "--month", "2020-01", "--json")
    assert code == 0
    data = json.loads(out)
    posted = [(r["date"], r["title"]) for r in data["items"] if r["reason"] == "posted"]
    assert posted == [("2020-01-28", "New Mayors Cohort 2020"), ("2020-01-21", "Summer 2020 Annual Meeting")]
    upcoming = [r for r in data["items"] if r["reason"] == "upcoming"]
    assert upcoming and all("2020-02-01" <= r["event"]["start"] <= data["upcoming_until"] for r in upcoming)
    code, out, _ = run("list", "--month", "2020-01")
    assert "upcoming event on" in out and "New Mayors Cohort 2020" in out


def test_empty_selection_exit_code(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window with nothing in it exits 3 with a clear message, no traceback."""
    monkeypatch.chdir(repo)
    code, out, err = run("list", "--month", "2024-01")
    assert code == 3
    assert "nothing to build" in err and "Traceback" not in err


def test_usage_error_exit_code(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Conflicting window flags are a usage error (exit 2)."""
    monkeypatch.chdir(repo)
    code, _, err = run("list", "--month", "2020-01", "--period", "this-month")
    assert code == 2 and "cannot be combined" in err


def test_broken_content_folder(tmp_path: Path) -> None:
    """A folder with broken files: one message per problem naming file and line, exit 1, no traceback."""
    (tmp_path / "content").mkdir()
    (tmp_path / "digest.toml").write_text(IDENTITY, encoding="utf-8")
    (tmp_path / "content" / "a.md").write_text("---\ntitle: A\ndate: March 40, 2020\n---\nx\n", encoding="utf-8")
    (tmp_path / "content" / "b.md").write_text("---\ndate: 2020-01-01\n---\nx\n", encoding="utf-8")
    (tmp_path / "content" / "c.md").write_bytes(b"---\ntitle: \xff\n---\n")
    code, _, err = run("--config", str(tmp_path / "digest.toml"), "list", "--since", "2012-01-01")
    assert code == 1
    assert "Traceback" not in err
    assert re.search(r"a\.md:3: .*date", err)
    assert re.search(r"b\.md(:\d+)?: .*title", err)
    assert "c.md" in err and "UTF-8" in err


def test_init_scaffolds_and_refuses_to_overwrite(tmp_path: Path) -> None:
    """digest init creates a working newsletter and refuses to overwrite it the second time."""
    target = tmp_path / "news"
    code, out, _ = run("init", str(target))
    assert code == 0 and (target / "digest.toml").is_file() and (target / "templates").is_dir()
    code, out, _ = run("--config", str(target / "digest.toml"), "list", "--since", "2020-01-01", "--json")
    assert code == 0 and json.loads(out)["count"] == 1
    before = (target / "digest.toml").read_text()
    (target / "digest.toml").write_text(before + "# edited\n")
    code, _, err = run("init", str(target))
    assert code == 1 and "would overwrite" in err
    assert (target / "digest.toml").read_text().endswith("# edited\n")


def test_main_is_a_click_group() -> None:
    """The console script entry point is the click group."""
    assert isinstance(main, click.Group)


def _newsletter(tmp_path: Path, repo: Path, extra_config: str = "") -> Path:
    import shutil

    shutil.copytree(repo / "content", tmp_path / "content")
    text = (repo / "digest.toml").read_text(encoding="utf-8")
    (tmp_path / "digest.toml").write_text(text + extra_config, encoding="utf-8")
    return tmp_path / "digest.toml"


def test_check_passes_on_the_shipped_content(tmp_path: Path, repo: Path) -> None:
    """digest check passes on the shipped digest (all 47 items) and says so in its closing line."""
    cfg = _newsletter(tmp_path, repo)
    code, out, err = run("--config", str(cfg), "check", "--since", "2012-01-01", "--no-spamassassin")
    assert code == 0, out + err
    assert "all checks passed" in out and "PASS  html-size" in out


def test_check_fails_without_postal_address(tmp_path: Path, repo: Path) -> None:
    """A digest stripped of its postal address fails (exit 6) and the line says what to set."""
    cfg = _newsletter(tmp_path, repo)
    cfg.write_text(re.sub(r"(?m)^postal_address = .*$", 'postal_address = ""', cfg.read_text()), encoding="utf-8")
    code, out, _ = run("--config", str(cfg), "check", "--month", "2020-01", "--no-spamassassin")
    assert code == 6
    assert re.search(r"FAIL\s+\S*postal\S*\s+.*postal_address", out), out


def test_check_fails_when_too_large_for_gmail(tmp_path: Path, repo: Path) -> None:
    """A digest made too large (long summaries) fails the Gmail clipping check with its size, exit 6."""
    cfg = _newsletter(tmp_path, repo)
    long_text = " ".join(["Mayors discussed budgets, water, transit and housing at length."] * 40)
    for n in range(40):
        (tmp_path / "content" / f"2021-01-{n % 28 + 1:02d}-long-{n}.md").write_text(
            f"---\ntitle: Long report {n}\ndate: 2021-01-{n % 28 + 1:02d}\nkind: report\n---\n{long_text}\n",
            encoding="utf-8",
        )
    code, out, _ = run("--config", str(cfg), "check", "--month", "2021-01", "--no-spamassassin", "--json")
    assert code == 6
    size = next(c for c in json.loads(out)["checks"] if c["name"] == "html-size")
    assert size["status"] == "fail" and size["value"] > 102_000 and "102,000" in size["detail"]


def _process(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter, as the console script runs: output through pipes, so buffered."""
    return fresh_python(code, cwd=cwd)


def test_the_console_script_keeps_exit_codes_output_and_exit_handlers(repo: Path) -> None:
    """digest.__main__.run ends the process with os._exit: the exit code is the command's, buffered
    output is all there, and atexit handlers still run (after the command's output)."""
    start = "import atexit, sys\natexit.register(print, 'exit handler ran')\nfrom digest.__main__ import run\n"
    listed = _process(start + "sys.argv = ['digest', 'list', '--month', '2020-01', '--json']\nrun()", repo)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[-1] == "exit handler ran"
    assert json.loads(listed.stdout[: listed.stdout.rindex("exit handler ran")])["count"] > 0
    empty = _process(start + "sys.argv = ['digest', 'list', '--month', '2024-01']\nrun()", repo)
    assert empty.returncode == 3 and "nothing to build" in empty.stderr
    assert empty.stdout.strip() == "exit handler ran"
    conflicting = "['digest', 'list', '--month', '2020-01', '--period', 'this-month']"
    usage = _process(start + f"sys.argv = {conflicting}\nrun()", repo)
    assert usage.returncode == 2 and "cannot be combined" in usage.stderr


def test_the_console_script_skips_tearing_down_the_interpreter(repo: Path) -> None:
    """The point of ending with os._exit: objects alive at the end are not deallocated one by one
    (an ordinary exit would run this __del__ during interpreter teardown)."""
    code = (
        "import sys\n"
        "class Noisy:\n"
        "    def __del__(self):\n"
        "        print('torn down', flush=True)\n"
        "kept = Noisy()\n"
        "from digest.__main__ import run\n"
        "sys.argv = ['digest', '--version']\n"
        "run()\n"
    )
    done = _process(code, repo)
    assert done.returncode == 0 and "digest" in done.stdout
    assert "torn down" not in done.stdout
    ordinary = _process(code.replace("run()", "raise SystemExit(0)"), repo)
    assert "torn down" in ordinary.stdout  # the same script, ended the ordinary way


def test_the_console_script_waits_for_a_thread_that_is_still_working(repo: Path) -> None:
    """With a non-daemon thread running, the process ends the ordinary way, which waits for it."""
    code = (
        "import sys, threading, time\n"
        "from digest.__main__ import run\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished', flush=True))).start()\n"
        "sys.argv = ['digest', '--version']\n"
        "run()\n"
    )
    done = _process(code, repo)
    assert done.returncode == 0, done.stderr
    assert "thread finished" in done.stdout


def test_a_newsletter_in_another_language_builds_and_passes_the_checks(tmp_path: Path, repo: Path) -> None:
    """With [words] in French (and language = "fr"), every fixed word and date of both parts, the
    subject and the preheader is French; the build is otherwise the same, and `digest check` still
    finds the unsubscribe link by its (French) text."""
    cfg = _newsletter(tmp_path, repo, FRENCH_WORDS)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('language = "en"', 'language = "fr"'), encoding="utf-8")
    code, out, err = run("--config", str(cfg), "build", "--month", "2020-01", "--out", str(tmp_path / "fr"))
    assert code == 0, out + err
    html = (tmp_path / "fr" / "email.html").read_text(encoding="utf-8")
    text = (tmp_path / "fr" / "email.txt").read_text(encoding="utf-8")
    manifest = json.loads((tmp_path / "fr" / "manifest.json").read_text(encoding="utf-8"))
    assert '<html lang="fr"' in html
    for part in (html, text):
        assert "janvier 2020" in part and "Publié le " in part and "Se désabonner" in part
        assert "nouveaux articles de janvier 2020" in part and "January" not in part
        for english in ("Posted ", "Unsubscribe", "View in browser", "new items", "You receive this email"):
            assert english not in part, english
    assert "Voir dans le navigateur" in html and "Voir cet e-mail dans le navigateur" in text
    assert re.search(r"Publié le \d{1,2} janvier 2020", text)
    assert "janvier 2020" in manifest["subject"] and " et " in manifest["subject"] and "more" not in manifest["subject"]
    assert "nouveaux articles de janvier 2020" in manifest["preheader"]
    code, out, err = run("--config", str(cfg), "check", "--month", "2020-01", "--no-spamassassin")
    assert code == 0, out + err
    assert re.search(r"PASS\s+html-unsubscribe", out) and re.search(r"PASS\s+text-unsubscribe", out)


def _bad_list(folder: Path, bad: int) -> Path:
    """A members.csv with one good row, then `bad` invalid addresses and one duplicate."""
    rows = ["email,name", "ann@example.org,Ann"] + [f"bob{n}@,Bob {n}" for n in range(bad)] + ["ANN@example.org,Ann"]
    path = folder / "members.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("dry_run", [True, False])
def test_bad_list_rows_are_shown_with_their_line_numbers(tmp_path: Path, repo: Path, dry_run: bool) -> None:
    """A send (and a dry run) prints the first bad rows as file:line, address and why, and where the rest are."""
    cfg = _newsletter(tmp_path, repo)
    members = _bad_list(tmp_path, bad=7)
    args = ["--config", str(cfg), "send", "--month", "2020-01", "--recipients", str(members), "--yes"]
    code, out, err = run(*args, "--skip-checks", *(["--dry-run"] if dry_run else []))
    assert code == 0, out + err
    assert f"{members}:3: 'bob0@': not a valid email address" in err
    assert f"{members}:7: 'bob4@'" in err and f"{members}:8:" not in err
    assert "... and 3 more bad rows (add --report FILE to list them)" in err
    assert "8 list rows skipped (7 invalid, 1 duplicate)" in out


def test_all_bad_rows_are_in_the_report(tmp_path: Path, repo: Path) -> None:
    """With --report, the screen names the report file as the place for the rest, and the report has every row."""
    cfg = _newsletter(tmp_path, repo)
    members = _bad_list(tmp_path, bad=6)
    report = tmp_path / "report.json"
    args = ["send", "--month", "2020-01", "--recipients", str(members), "--dry-run", "--report", str(report)]
    code, _, err = run("--config", str(cfg), *args)
    assert code == 0 and f"(the first 7 are in {report})" in err
    problems = json.loads(report.read_text())["problems"]
    assert [p["line"] for p in problems] == [3, 4, 5, 6, 7, 8, 9]


def test_outside_a_newsletter_folder_says_no_digest_toml_was_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """digest list in a folder without digest.toml names the file it looked for, not only a missing content/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    code, _, err = run("list")
    assert code == 1 and "Traceback" not in err
    assert f"no digest.toml found: looked for {tmp_path.resolve() / 'digest.toml'}" in err


def test_init_prints_a_next_step_that_works_as_printed(tmp_path: Path) -> None:
    """The command `digest init` prints as the next step runs, exactly as printed, and exits 0."""
    import os
    import sys

    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "DIGEST_CONFIG"}}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    shell = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "shell": True}
    made = subprocess.run("digest init 'my news'", **shell)  # type: ignore[call-overload]
    assert made.returncode == 0, made.stderr
    step = made.stdout.strip().splitlines()[-1]
    assert step.startswith("Next: cd 'my news' && digest preview --month ")
    ran = subprocess.run(step.removeprefix("Next: "), **shell)  # type: ignore[call-overload]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Built my-newsletter-" in ran.stdout


def test_an_empty_window_hints_at_the_contents_own_dates(tmp_path: Path) -> None:
    """Exit 3 suggests a window from the folder's own earliest and latest item dates, not the sample's."""
    (tmp_path / "content").mkdir()
    (tmp_path / "digest.toml").write_text(IDENTITY, encoding="utf-8")
    for day in ("2024-02-03", "2024-06-09"):
        page = tmp_path / "content" / f"{day}-x{day[6]}.md"
        page.write_text(f"---\ntitle: T\ndate: {day}\n---\nx\n", encoding="utf-8")
    code, _, err = run("--config", str(tmp_path / "digest.toml"), "list", "--month", "2020-01")
    assert code == 3
    assert "dated 2024-02-03 .. 2024-06-09: try --month 2024-06, or --since 2024-02-03" in err
    assert "2012" not in err


def test_status_and_history_agree_when_nothing_was_sent(tmp_path: Path, repo: Path) -> None:
    """Before the first send, status and history both say no editions were sent, and both exit 0."""
    cfg = str(_newsletter(tmp_path, repo))
    answers = [run("--config", cfg, command) for command in ("status", "history")]
    assert [(code, out.strip()) for code, out, _ in answers] == [(0, "No editions sent yet.")] * 2
    assert run("--config", cfg, "status", "--json")[:2] == (0, "{}\n")


def test_retry_before_the_first_send_says_there_is_nothing_to_retry(tmp_path: Path, repo: Path) -> None:
    """digest retry with nothing sent yet exits as status and history do then (0) and says why."""
    cfg = str(_newsletter(tmp_path, repo))
    code, _, err = run("--config", cfg, "retry", "--yes")
    assert (code, run("--config", cfg, "status")[0]) == (0, 0)
    assert err.startswith("Nothing to do: ") and "nothing to retry" in err and "Error" not in err


def test_retry_of_an_edition_that_does_not_exist_names_it_and_the_known_ones(tmp_path: Path, repo: Path) -> None:
    """digest retry <typo> says 'unknown edition <typo>' and lists the editions sent."""
    cfg = str(_newsletter(tmp_path, repo))
    members = tmp_path / "members.csv"
    members.write_text("email\nann@example.org\n", encoding="utf-8")
    send = ["send", "--month", "2020-01", "--recipients", str(members), "--yes", "--skip-checks"]
    assert run("--config", cfg, *send)[0] == 0
    code, _, err = run("--config", cfg, "retry", "mayors-innovation-2020-13", "--yes")
    assert code == 1
    assert "unknown edition mayors-innovation-2020-13; editions sent: mayors-innovation-2020-01" in err


@pytest.mark.parametrize("flags, shown", [((), True), (("-q",), False)])
def test_unsubscribe_server_notices_reach_stderr_unless_quiet(
    tmp_path: Path, flags: tuple[str, ...], shown: bool
) -> None:
    """The endpoint's notices (a rejected token) are logged to stderr as plain lines; -q hides them."""
    import http.client
    import os
    import signal
    import sys
    from urllib.parse import urlsplit

    (tmp_path / "digest.toml").write_text(IDENTITY, encoding="utf-8")
    env = {**os.environ, "DIGEST_UNSUBSCRIBE_SECRET": "s" * 32}
    command = [sys.executable, "-m", "digest", *flags, "unsubscribe-server", "--port", "0"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = urlsplit(proc.stdout.readline().split()[3])
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        conn.request("POST", "/unsubscribe?token=forged")
        assert conn.getresponse().status == 400
        conn.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ("unsubscribe: rejected an invalid token (POST /unsubscribe)\n" in err) is shown, err
    assert "Traceback" not in err
