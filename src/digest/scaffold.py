"""Init: scaffold a new newsletter folder (config, one example item, the default templates)."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import DigestError

_HERE = Path(__file__).parent
_EXAMPLE = _HERE / "scaffold" / "content" / "example.md"


@dataclass(frozen=True)
class Scaffolded:
    """What `digest init` made: the files, and the month of the example item (what a first preview shows)."""

    created: tuple[Path, ...]
    month: str  # YYYY-MM


def init_newsletter(folder: Path, today: dt.date) -> Scaffolded:
    """Create digest.toml, content/ with one example item dated `today` and templates/; never overwrite anything."""
    example = folder / "content" / f"{today.isoformat()}-welcome.md"
    plan: list[tuple[Path, Path]] = [(_HERE / "scaffold" / "digest.toml", folder / "digest.toml"), (_EXAMPLE, example)]
    templates = _HERE / "templates"
    for source in sorted(templates.iterdir()):
        if source.is_file() and not source.name.startswith("."):
            plan.append((source, folder / "templates" / source.name))
    existing = [str(target) for _, target in plan if target.exists()]
    if existing:
        raise DigestError(
            f"{folder}: would overwrite {', '.join(existing)}; nothing was created. "
            "Choose an empty folder, or move those files away first."
        )
    month = today.isoformat()[:7]
    for source, target in plan:
        target.parent.mkdir(parents=True, exist_ok=True)
        if source == _EXAMPLE:
            # Dated today, so the first preview of this month's digest has an item to show.
            text = source.read_text(encoding="utf-8").replace("{date}", today.isoformat()).replace("{month}", month)
            target.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(source, target)
    return Scaffolded(tuple(target for _, target in plan), month)
