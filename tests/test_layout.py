"""The package's shape: imports go one way, and only the command line knows click."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import digest

PACKAGE = Path(digest.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every digest module `name` imports, at the top or inside a function."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            # `from .pkg import mod` imports the module; the package is only a dependency for its own names.
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known]
            names = len(submodules) < len(node.names)
            candidates = [*submodules, *([target] if names else [])]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        out.update(c for c in candidates if c in known and c != name)
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph`, or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_module_imports_one_that_imports_it_back() -> None:
    """No import cycle among digest's modules, counting imports inside functions too."""
    modules = {name: path for name, path in _modules().items() if not name.startswith("digest.testing")}
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycle(graph) == []


def test_only_the_command_line_imports_click() -> None:
    """Core modules return values; click is imported by the command line (cli.py, cli_*.py) and the test kit's only."""
    allowed = {"digest.cli", "digest.testing.cli"} | {name for name in _modules() if name.startswith("digest.cli_")}
    users = {
        name
        for name, path in _modules().items()
        if "import click" in path.read_text(encoding="utf-8") or "from click" in path.read_text(encoding="utf-8")
    }
    assert users <= allowed


def test_pipeline_functions_do_not_shadow_module_names() -> None:
    """pipeline's functions (build_edition, send_edition, ...) can be imported beside the modules they use."""
    import digest.pipeline

    modules = {name.rsplit(".", 1)[-1] for name in _modules()}
    clashes = {name for name in vars(digest.pipeline) if callable(getattr(digest.pipeline, name)) and name in modules}
    assert clashes == set()


def test_backend_names_are_written_once() -> None:
    """The list of backends is one tuple (deliver.BACKENDS), used by the config check, --backend and the registry."""
    from digest.cli_options import delivery_options
    from digest.deliver import BACKENDS

    spelled = [n for n, p in _modules().items() if '"outbox", "smtp", "sendgrid"' in p.read_text(encoding="utf-8")]
    assert spelled == ["digest.deliver"]

    @delivery_options
    def command() -> None: ...

    choice = next(p for p in command.__click_params__ if p.name == "backend")  # type: ignore[attr-defined]
    assert tuple(choice.type.choices) == BACKENDS


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((PACKAGE.parent.parent / "pyproject.toml").read_text(encoding="utf-8"))


# What each runtime dependency is imported as, where the names differ.
_IMPORT_NAMES = {
    "mjml-python": "mjml",
    "PyYAML": "yaml",
    "markdown-it-py": "markdown_it",
    "python-dateutil": "dateutil",
    "email-validator": "email_validator",
    "recurring-ical-events": "recurring_ical_events",
}


def test_the_version_is_written_once() -> None:
    """pyproject.toml takes the version from digest.__version__ instead of repeating it."""
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "digest.__version__"}


def test_every_declared_dependency_is_imported() -> None:
    """Each runtime dependency in pyproject.toml is imported somewhere in the package (none declared for nothing)."""
    import re

    sources = "\n".join(path.read_text(encoding="utf-8") for path in _modules().values())
    for requirement in _pyproject()["project"]["dependencies"]:
        dist = re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0]
        module = _IMPORT_NAMES.get(dist, dist.lower().replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.M), f"{dist} is declared but never imported"


def test_the_package_says_it_is_typed() -> None:
    """py.typed ships with the package, so mypy checks code that imports digest against its annotations."""
    assert (PACKAGE / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["digest"]


def test_the_architecture_map_names_every_module_and_only_real_ones() -> None:
    """docs/ARCHITECTURE.md names each module of the package, and every module it names exists."""
    import re

    text = (PACKAGE.parent.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w/]+\.py)`", text))
    files = [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent == PACKAGE]
    missing = sorted(str(p.relative_to(PACKAGE)) for p in files if not {p.name, str(p.relative_to(PACKAGE))} & named)
    assert missing == []
    real = {p.name for p in PACKAGE.rglob("*.py")} | {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    assert sorted(n for n in named if n not in real and not n.startswith("tests/")) == []


def test_modules_over_500_lines_are_the_ones_the_architecture_note_explains() -> None:
    """A module longer than 500 lines is named, with its reason, under "Module size" in docs/ARCHITECTURE.md."""
    import re

    text = (PACKAGE.parent.parent / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    note = text.split("## Module size", 1)[1].split("\n## ", 1)[0]
    explained = set(re.findall(r"^\| `([\w/]+\.py)` \|", note, re.M))
    long = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if len(p.read_text(encoding="utf-8").splitlines()) > 500
    }
    assert long - explained == set(), "split these modules or say why in docs/ARCHITECTURE.md"
