"""Init: scaffold a new newsletter folder (config, one example item, the default templates)."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import DigestError

_HERE = Path(__file__).parent


def init_newsletter(folder: Path) -> list[Path]:
    """Create digest.toml, content/ with one example item and templates/; never overwrite anything."""
    plan: list[tuple[Path, Path]] = [
        (_HERE / "scaffold" / "digest.toml", folder / "digest.toml"),
        (_HERE / "scaffold" / "content" / "example.md", folder / "content" / "2020-01-15-welcome.md"),
    ]
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
    created = []
    for source, target in plan:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        created.append(target)
    return created
