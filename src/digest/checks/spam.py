"""Spam check: SpamAssassin's local rules score the message as sent (row 26)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

from .outcome import CheckResult, fail, ok

SPAM_LIMIT = 2.0  # house limit under `spamassassin -L`; the default spam cut-off is 5.0 (row 26)
SPAM_TIMEOUT = 60.0
# Rules that say the message looks like an image-only or mismatched-parts mail (row 26).
SPAM_BANNED_PREFIXES = ("MPART_ALT_DIFF", "MIME_HTML_ONLY", "HTML_IMAGE_ONLY_", "HTML_SHORT_LINK_IMG_")
SPAM_BANNED_EXACT = frozenset({"HTML_IMAGE_RATIO_02"})


def parse_spam_status(output: bytes) -> tuple[float, list[str]] | None:
    """(score, rules) from the X-Spam-Status header spamassassin -t writes; None if it is absent."""
    head = output.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    match = re.search(rb"^X-Spam-Status:(.*(?:\n[ \t].*)*)", head, re.MULTILINE | re.IGNORECASE)
    if not match:
        return None
    value = re.sub(r"\s+", " ", match.group(1).decode("utf-8", errors="replace"))
    score = re.search(r"score=(-?\d+(?:\.\d+)?)", value)
    tests = re.search(r"tests=(.*?)(?: autolearn=| version=|$)", value)
    if not score:
        return None
    rules = [t.strip() for t in (tests.group(1) if tests else "").split(",") if t.strip() and t.strip() != "none"]
    return float(score.group(1)) + 0.0, rules  # + 0.0 turns SpamAssassin's "-0.0" into 0.0


def check_spamassassin(eml: bytes, *, timeout: float = SPAM_TIMEOUT, binary: str | None = None) -> CheckResult:
    """Row 26: `spamassassin -L -t` (local rules only) score <= 2.0 and no image/parts-mismatch rule."""
    exe = binary or shutil.which("spamassassin")
    if not exe:
        return CheckResult("spamassassin", "skip", "spamassassin is not installed (apt-get install spamassassin)")
    started = time.perf_counter()
    try:
        proc = subprocess.run([exe, "-L", "-t"], input=eml, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return fail("spamassassin", f"spamassassin gave no answer within {timeout:g} s; run it by hand to see why")
    except OSError as exc:
        return fail("spamassassin", f"spamassassin could not run ({exc})")
    parsed = parse_spam_status(proc.stdout)
    if parsed is None:
        err = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return fail("spamassassin", f"no X-Spam-Status in spamassassin's output ({err[-1] if err else 'no message'})")
    score, rules = parsed
    shown = [r for r in rules if r not in {"NO_RECEIVED", "NO_RELAYS"}]
    banned = [r for r in rules if r in SPAM_BANNED_EXACT or r.startswith(SPAM_BANNED_PREFIXES)]
    seconds = time.perf_counter() - started
    detail = f"score {score:.1f} (limit {SPAM_LIMIT:.1f}) in {seconds:.1f} s: {', '.join(shown) or 'no rules'}"
    if banned:
        return fail("spamassassin", f"{detail}; banned rule(s) {', '.join(banned)}: more text, fewer images", score)
    if score > SPAM_LIMIT:
        return fail("spamassassin", f"{detail}; above the limit: see the rules above", score)
    return ok("spamassassin", detail, score)
