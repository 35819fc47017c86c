"""README.md's command blocks run as written: every fenced block tagged `sh` is a bash script run here.

The convention: a block tagged `sh` must run as written, in order, in one copy of the repository's
newsletter (digest.toml, content/, templates/, examples/, plus a members.csv of three people), with the venv's
bin first on PATH and no DIGEST_* or SENDGRID_* variable except those the block sets itself. A block
that cannot run here (a crontab line, a unit file, a workflow, output, commands that need a real
account or run this very test suite) is tagged `cron`, `ini`, `yaml`, `text` or `console` instead.
A failing block is reported by its line in README.md, with its output.

The SendGrid rehearsal also runs in a fresh venv with `pip install '.[emulator]'`, as a user would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MEMBERS = "email,name\nada@example.org,Ada Lovelace\ngrace@example.org,Grace Hopper\nalan@example.org,\n"
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence in README.md
    tag: str
    script: str


def blocks(text: str) -> list[Block]:
    """Every fenced block of `text` with its tag and the line of its opening fence."""
    return [Block(text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in FENCE.finditer(text)]


SH_BLOCKS = [b for b in blocks(README.read_text(encoding="utf-8")) if b.tag == "sh"]
REHEARSAL = next((b for b in SH_BLOCKS if "digest.testing.sendgrid_emulator" in b.script), None)


def clean_env(bin_dir: Path) -> dict[str, str]:
    """This environment without digest's or SendGrid's variables, with `bin_dir` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


def run_block(block: Block, cwd: Path, env: dict[str, str], timeout: float = 240) -> None:
    """Run `block` with bash -e; fail with its README line and output. Whatever it left running is stopped."""
    log = cwd / f".readme-{block.line}.log"
    with open(log, "wb") as out:  # a file, not a pipe: a server left running would hold a pipe open
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", block.script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a background server it starts is stopped below
        )
        try:
            code: int | str = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = f"did not finish in {timeout:.0f} s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if code != 0:
        said = f"exited {code}" if isinstance(code, int) else code
        output = log.read_text(encoding="utf-8", errors="replace")
        pytest.fail(f"README.md:{block.line}: the sh block {said}; output:\n{output}")


def newsletter(folder: Path) -> Path:
    """A copy of the repository's newsletter files in `folder`, with a members.csv."""
    shutil.copytree(REPO / "content", folder / "content")
    shutil.copytree(REPO / "templates", folder / "templates")
    shutil.copytree(REPO / "examples", folder / "examples")  # the sample feeds `digest import` reads
    shutil.copy(REPO / "digest.toml", folder / "digest.toml")
    (folder / "members.csv").write_text(MEMBERS, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One newsletter copy that every block runs in, in README order, as a reader following it would."""
    return newsletter(tmp_path_factory.mktemp("readme"))


def test_readme_has_sh_blocks_and_tags_every_block() -> None:
    """The README has runnable blocks, and every fenced block says what it is (no bare ``` fences)."""
    assert len(SH_BLOCKS) >= 3
    untagged = [b.line for b in blocks(README.read_text(encoding="utf-8")) if not b.tag]
    assert untagged == [], f"README.md lines {untagged}: tag these blocks (sh, console, text, ...)"


@pytest.mark.parametrize("block", SH_BLOCKS, ids=[f"README.md:{b.line}" for b in SH_BLOCKS])
def test_sh_block_runs_as_written(block: Block, folder: Path) -> None:
    """The sh block at this line of README.md runs as written (exit 0) in the newsletter copy."""
    run_block(block, folder, clean_env(Path(sys.executable).parent))


@pytest.mark.slow
def test_sendgrid_rehearsal_in_a_fresh_venv(tmp_path: Path) -> None:
    """`pip install '.[emulator]'` into a new venv, then the README's SendGrid rehearsal runs with it."""
    assert REHEARSAL is not None, "README.md has no sh block running digest.testing.sendgrid_emulator"
    source = tmp_path / "source"  # a copy: pip builds in the source folder, which must not be the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{source}[emulator]"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    run_block(REHEARSAL, newsletter(tmp_path / "news"), clean_env(bin_dir))


def test_a_failing_block_is_reported_by_its_line(tmp_path: Path) -> None:
    """A block that fails names its README line and shows its output."""
    [block] = blocks("# x\n\n```sh\necho reached\nfalse\necho not reached\n```\n")
    with pytest.raises(pytest.fail.Exception, match=r"README.md:3: the sh block exited 1; output:\nreached\n$"):
        run_block(block, tmp_path, clean_env(Path(sys.executable).parent))
