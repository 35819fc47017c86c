"""Whole-process `digest build` of the 47 shipped items against the official MJML 5 CLI compiling
the same email.mjml, side by side in one run, plus where digest's time goes.

    .venv/bin/python benchmarks/build_vs_mjml.py [--rounds 11] [--mjml PATH] [--also SCRIPT] [--base DIR]

Run it with the interpreter of the installation to measure: the README's commands install digest into
.venv, so `.venv/bin/python` times `.venv/bin/digest`. `--also /other/bin/digest` times a second
installation in the same rounds (for example one whose interpreter loads slow site hooks).
`--base DIR` times another checkout of digest (say an older commit, `git archive REV | tar -x -C DIR`,
with its own `DIR/.venv`) building its own folder (`DIR/digest.toml`, templates, content), warm, cold
and first, in the same rounds: the way to tell a regression from the host's load.
Before timing, digest's own modules are byte-compiled (`compileall`), as `pip install` does for a
regular install; an editable install compiles them on first import, except where
PYTHONDONTWRITEBYTECODE is set (it is on the machine BENCHMARKS.md was measured on), and then every
run would compile ~10,000 lines of source again.

Goal (issue 3): our whole build, process start included, takes less than half the time of mjml's
compile alone. Rounds interleave the commands, in an order that rotates from round to round, so
machine noise hits all alike; the ratio of medians is the figure to read. Needs the official CLI:
`npm i --prefix .tools mjml@5` (scripts/test installs it).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WINDOW = ["--since", "2012-01-01", "--until", "2020-03-31"]


def find_mjml(explicit: str | None) -> str:
    for candidate in (explicit, str(REPO / ".tools/node_modules/.bin/mjml"), os.environ.get("DIGEST_MJML_BIN")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("mjml")
    if not found:
        sys.exit("official mjml not found: npm i --prefix .tools mjml@5")
    return found


def digest_command() -> list[str]:
    """The installed console script, as a user runs it (falls back to python -m digest)."""
    script = Path(sys.executable).with_name("digest")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "digest"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> tuple[float, float]:
    """Wall time and CPU time (user+sys of the process and the children it waited for)."""
    cpu, started = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started, _children_cpu() - cpu


def line(label: str, runs: list[tuple[float, float]], mjml: float) -> str:
    walls = [wall for wall, _ in runs]
    a, cpu = statistics.median(walls), statistics.median(c for _, c in runs)
    return (
        f"digest build, whole process, {label}: median {a * 1000:.0f} ms "
        f"(min {min(walls) * 1000:.0f}, max {max(walls) * 1000:.0f}), CPU {cpu * 1000:.0f} ms; "
        f"ratio to mjml {a / mjml:.2f} (goal < 0.50)"
    )


def per_round(ours: list[tuple[float, float]], base: list[tuple[float, float]], which: int) -> str:
    ratios = sorted(a[which] / b[which] for a, b in zip(ours, base, strict=True))
    return f"{statistics.median(ratios):.2f} (min {ratios[0]:.2f}, max {ratios[-1]:.2f})"


PHASES = r"""
import time, json, sys, gc
t = {}
s = time.perf_counter()
gc.disable()  # as digest.__main__.run does around the imports (startup.imports_frozen)
import digest.cli, digest.pipeline, digest.content, digest.selection
gc.freeze(); gc.enable()
t["import cli, settings, content (no parsers)"] = time.perf_counter() - s; s = time.perf_counter()
from pathlib import Path
from digest.config import load_settings
from digest.content import start_loading
from digest.selection import SelectionOptions, resolve_window, select, require_items
from digest.personalize import HTML_TOKENS, TEXT_TOKENS, sample_values
import datetime as dt
settings = load_settings(Path("digest.toml"))
loading = start_loading(settings.path(settings.content_dir), settings)
t["settings; content from the cache, or a child started to parse it"] = time.perf_counter() - s
s = time.perf_counter()
from digest.startup import imports_frozen
with imports_frozen("digest.render"):  # as pipeline.build_edition imports them
    import digest.render, digest.inline, digest.build, digest.message, digest.preview, digest.unsubscribe
from digest import render as r
t["import render stack (jinja2, mjml, premailer, lxml)"] = time.perf_counter() - s; s = time.perf_counter()
r.prepare_templates(settings)
t["load templates (compiling them, cold)"] = time.perf_counter() - s; s = time.perf_counter()
loaded = loading()
t["wait for the content (cold: the child's parse)"] = time.perf_counter() - s; s = time.perf_counter()
opts = SelectionOptions(since=dt.date(2012, 1, 1), until=dt.date(2020, 3, 31))
sel = require_items(select(loaded.items, resolve_window(opts, settings.timezone), opts, settings.upcoming_days))
edition = r.edition_id(settings, sel.window)
env = r.make_environment(settings)
tagged = r._tagged(sel, r.utm_for(settings, edition))
base = r._context(tagged, settings, edition)
subject = r._one_line(r._render_template(env, r.SUBJECT_TEMPLATE, base, settings))
pre = r._one_line(r._render_template(env, r.PREHEADER_TEMPLATE, {**base, "subject": subject}, settings))
shared = {**base, "subject": subject, "preheader": pre}
source = r._render_template(env, r.HTML_TEMPLATE, {**shared, "placeholders": HTML_TOKENS}, settings)
t["select; render subject, preheader, MJML source (jinja)"] = time.perf_counter() - s; s = time.perf_counter()
compiled = r.compile_mjml(source)
t["mjml-python compile"] = time.perf_counter() - s; s = time.perf_counter()
html = digest.inline.inline_css(compiled)
t["premailer inline"] = time.perf_counter() - s; s = time.perf_counter()
text = r._tidy_text(r._render_template(env, r.TEXT_TEMPLATE, {**shared, "placeholders": TEXT_TOKENS}, settings))
t["text part (jinja)"] = time.perf_counter() - s; s = time.perf_counter()
from digest.models import Rendered
rendered = Rendered(subject=subject, preheader=pre, mjml=source, html=html, text=text)
page = digest.preview.render_preview(html=html, text=text, subject=subject, preheader=pre, headers={},
                                     sample=sample_values(settings, edition))
import tempfile
sample_message, mime = digest.build.sample_message, []  # the .eml is built inside write_build: time it there
def timed_sample_message(*args, **kwargs):
    s0 = time.perf_counter(); out = sample_message(*args, **kwargs); mime.append(time.perf_counter() - s0)
    return out
digest.build.sample_message = timed_sample_message
digest.build.write_build(Path(tempfile.mkdtemp()), rendered, sel, settings, edition=edition, preview_html=page)
t["preview page + write build folder (manifest, 6 files)"] = time.perf_counter() - s - sum(mime)
t["MIME (the .eml, with the sample recipient's headers)"] = sum(mime)
print(json.dumps(t))
sys.stdout.flush()
import os
os._exit(0)  # as digest.__main__.run ends
"""


def phases(rounds: int, cold: bool) -> dict[str, float]:
    """Median per phase over fresh processes (imports are only honest in a new interpreter)."""
    env = {**os.environ, "DIGEST_NO_CACHE": "1"} if cold else dict(os.environ)
    runs: dict[str, list[float]] = {}
    for _ in range(rounds):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", PHASES],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        total = time.perf_counter() - started
        timings = json.loads(out.stdout)
        timings["interpreter start + exit (rest)"] = total - sum(timings.values())
        for key, value in timings.items():
            runs.setdefault(key, []).append(value)
    return {key: statistics.median(values) for key, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--mjml", help="path to the official mjml CLI")
    parser.add_argument("--also", help="another installed digest console script, timed in the same rounds (warm)")
    parser.add_argument("--base", type=Path, help="another checkout with its own .venv, building its own folder")
    parser.add_argument("--no-breakdown", action="store_true", help="skip where the time goes")
    args = parser.parse_args()
    mjml = find_mjml(args.mjml)
    compileall.compile_dir(str(REPO / "src" / "digest"), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    build_cmd = [*digest_command(), "build", *WINDOW, "--out", str(work / "build")]
    also_cmd = [args.also, "build", *WINDOW, "--out", str(work / "build-also")] if args.also else None
    print(f"digest: {build_cmd[0]}" + (f"; also: {args.also}" if args.also else ""))
    subprocess.run(build_cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)  # warm the disk cache
    source = work / "build" / "email.mjml"
    mjml_cmd = [mjml, str(source), "-o", str(work / "mjml.html")]
    timed(mjml_cmd)
    # Warm: the content and compiled-template caches hold this folder (every run after the first).
    # Cold: caches off (DIGEST_NO_CACHE=1). First: caches on but empty (a new XDG_CACHE_HOME each
    # round), as on a machine that never ran digest: cold plus writing the caches.
    cold_env = {**os.environ, "DIGEST_NO_CACHE": "1"}
    kinds = ("warm caches", "cold, DIGEST_NO_CACHE=1", "first, an empty cache folder")
    trees = [("", REPO, build_cmd)]
    if args.base:
        base = args.base.resolve()
        compileall.compile_dir(str(base / "src" / "digest"), quiet=1)
        base_cmd = [str(base / ".venv/bin/digest"), "build", *WINDOW, "--out", str(work / "build-base")]
        print(f"base: {base_cmd[0]}, building {base / 'digest.toml'}")
        timed(base_cmd, cwd=base)
        trees.append((f"base {base}, ", base, base_cmd))
    times: dict[str, list[tuple[float, float]]] = {}
    theirs: list[tuple[float, float]] = []
    if also_cmd:
        timed(also_cmd)
    for n in range(args.rounds):
        runs: list[tuple[list[tuple[float, float]], list[str], dict[str, str] | None, Path]] = [
            (theirs, mjml_cmd, None, REPO)
        ]
        for prefix, cwd, cmd in trees:
            first_env = {**os.environ, "XDG_CACHE_HOME": str(work / f"empty-cache-{len(runs)}-{n}")}
            for kind, env in zip(kinds, (None, cold_env, first_env), strict=True):
                runs.append((times.setdefault(prefix + kind, []), cmd, env, cwd))
        if also_cmd:
            runs.append((times.setdefault(f"warm, {args.also}", []), also_cmd, None, REPO))
        # The order rotates every round: a command timed right after another one (mjml's Node process,
        # say) can run slower or faster for it, and every command should take every place equally often.
        shift = n % len(runs)
        for samples, cmd, env, cwd in runs[shift:] + runs[:shift]:
            samples.append(timed(cmd, env, cwd))
    b = statistics.median(wall for wall, _ in theirs)
    version = subprocess.run([mjml, "--version"], capture_output=True, text=True).stdout.split()
    print(f"email.mjml: {source.stat().st_size:,} bytes; rounds: {args.rounds} (interleaved)")
    print(
        f"mjml CLI {' '.join(version[-1:])} compile only: median {b * 1000:.0f} ms "
        f"(min {min(theirs)[0] * 1000:.0f}, max {max(theirs)[0] * 1000:.0f}), "
        f"CPU {statistics.median(cpu for _, cpu in theirs) * 1000:.0f} ms"
    )
    for label, samples in times.items():
        print(line(label, samples, b))
    if args.base:
        for kind in kinds:
            ours, base_runs = times[kind], times[f"{trees[1][0]}{kind}"]
            print(
                f"this tree / base, {kind}, per round: wall {per_round(ours, base_runs, 0)}; "
                f"CPU {per_round(ours, base_runs, 1)}"
            )
    for label, cold in (("cold: caches off, the content parsed in a child process", True), ("warm", False)):
        if args.no_breakdown:
            break
        print(f"\nwhere digest's time goes, {label} (median of fresh processes, in the order they run):")
        breakdown = phases(max(5, args.rounds // 2), cold)
        total = sum(breakdown.values())
        for key, value in breakdown.items():
            print(f"  {key:<66} {value * 1000:7.1f} ms  {value / total:5.1%}")
        print(f"  {'total':<66} {total * 1000:7.1f} ms")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
