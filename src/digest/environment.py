"""Environment: a DIGEST_* variable digest does not read is most likely a misspelt one, so say which.

Only a name close to a known one is reported: CI and other tools may set DIGEST_* variables of their own.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Callable, Mapping
from typing import Any

PREFIX = "DIGEST_"
# Read where they are used, not as settings (tests/test_environment.py keeps this list complete).
OTHER_VARIABLES = ("DIGEST_CONFIG", "DIGEST_NO_CACHE", "DIGEST_UNSUBSCRIBE_OLD_SECRETS", "DIGEST_CHROMIUM")

log = logging.getLogger(__name__)


def misspelt(
    env: Mapping[str, str], recognised: Callable[[Mapping[str, str]], object], settings: Any, also: tuple[str, ...]
) -> dict[str, str]:
    """{variable: the known variable it is close to} for each DIGEST_* variable nothing reads.

    `recognised(env)` is the settings' own reading of the environment (truthy when it takes a variable);
    `settings` gives the names to suggest; `also` are variables read elsewhere (secrets).
    """
    unread = [var for var in env if var.upper().startswith(PREFIX) and not _read(var, recognised, also)]
    if not unread:
        return {}
    known = {name for name in _setting_variables(settings) if recognised({name: "x"})} | {*also, *OTHER_VARIABLES}
    suffixes = {name[len(PREFIX) :]: name for name in known}
    found = {}
    for var in unread:
        close = difflib.get_close_matches(var[len(PREFIX) :].upper(), suffixes, n=1, cutoff=0.8)
        if close:
            found[var] = suffixes[close[0]]
    return found


def warn_misspelt(
    env: Mapping[str, str], recognised: Callable[[Mapping[str, str]], object], settings: Any, also: tuple[str, ...]
) -> None:
    """Log a warning, with the likely intended name, for each misspelt DIGEST_* variable (never its value)."""
    for var, meant in misspelt(env, recognised, settings, also).items():
        log.warning("%s is not a variable digest reads and is ignored; did you mean %s?", var, meant)


def _read(var: str, recognised: Callable[[Mapping[str, str]], object], also: tuple[str, ...]) -> bool:
    return var in OTHER_VARIABLES or var in also or bool(recognised({var: "x"}))


def _setting_variables(settings: Any) -> set[str]:
    """DIGEST_<FIELD> for each setting and DIGEST_<TABLE>_<FIELD> for each field of a nested table."""
    names = set()
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value):
            names |= {f"{PREFIX}{field.name}_{sub.name}".upper() for sub in dataclasses.fields(value)}
        else:
            names.add(f"{PREFIX}{field.name}".upper())
    return names
