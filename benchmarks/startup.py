"""`digest --version` and `digest --help`, whole processes, this install and optionally another checkout's.

    .venv/bin/python benchmarks/startup.py [--rounds 30] [--base DIR]

Both commands should cost little more than importing click: they load only cli.py and the few modules
it needs (tests/test_imports.py says which). `--base DIR` times another checkout's `DIR/.venv/bin/digest`
in the same rounds (see build_vs_mjml.py). Rounds interleave the commands in a rotating order; each
figure is a median of wall time and of CPU time (user+sys), the steadier one on a loaded host.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--base", type=Path, help="another checkout with its own .venv")
    args = parser.parse_args()
    scripts = [("this install", str(Path(sys.executable).with_name("digest")))]
    if args.base:
        scripts.append((f"base {args.base}", str(args.base.resolve() / ".venv/bin/digest")))
    commands = [
        (f"{label}: digest {flag}", [script, flag]) for label, script in scripts for flag in ("--version", "--help")
    ]
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in commands}
    for n in range(args.rounds):
        shift = n % len(commands)
        for label, cmd in commands[shift:] + commands[:shift]:
            cpu, started = _cpu(), time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            samples[label].append((time.perf_counter() - started, _cpu() - cpu))
    for label, runs in samples.items():
        wall, cpu = sorted(w for w, _ in runs), sorted(c for _, c in runs)
        print(
            f"{label:<60} wall {statistics.median(wall) * 1000:6.1f} ms ({wall[0] * 1000:.0f}-{wall[-1] * 1000:.0f}), "
            f"CPU {statistics.median(cpu) * 1000:6.1f} ms ({cpu[0] * 1000:.0f}-{cpu[-1] * 1000:.0f})"
        )


if __name__ == "__main__":
    main()
