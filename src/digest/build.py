"""Build: write and read the build folder — render once, send many.

A build folder holds one edition:

- `email.html`, `email.txt`: the send template, with placeholder tokens (personalize.py) that
  delivery fills per recipient;
- `email.eml`: a realistic sample message (tokens filled with the preview's sample recipient, the
  one-click unsubscribe headers a list send carries), so mail clients and SpamAssassin can judge
  exactly what a subscriber gets; it is never sent;
- `email.mjml`: the MJML the HTML came from (for `mjml --validate` and debugging);
- `preview.html`: the side-by-side preview, when one was made;
- `manifest.json`: what was built, from what, and the content hash that sends and the ledger
  trust (format in docs/ARCHITECTURE.md).

Writing replaces these files one by one (temp file, fsync, os.replace), manifest last, and removes a
`preview.html` left from an earlier build that this one did not make. Other files in the folder are
never touched: the folder may be one the user also keeps notes in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import __version__
from .config import Settings
from .css import style_bytes
from .errors import BuildError
from .ics import event_record
from .message import list_id, sample_message
from .models import Build, Rendered, Selection

HTML_FILE = "email.html"
TEXT_FILE = "email.txt"
EML_FILE = "email.eml"
MJML_FILE = "email.mjml"
PREVIEW_FILE = "preview.html"
MANIFEST_FILE = "manifest.json"
OUR_FILES = (HTML_FILE, TEXT_FILE, EML_FILE, MJML_FILE, PREVIEW_FILE, MANIFEST_FILE)
MANIFEST_FORMAT = 1
_REQUIRED = ("edition", "newsletter", "period", "content_hash", "subject", "preheader", "sender", "reply_to")


def content_hash(subject: str, html: str, text: str) -> str:
    """ "sha256:<hex>" over subject, HTML and text: what the ledger pins an edition to."""
    digest = hashlib.sha256("\n".join((subject, html, text)).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def _file_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    # Readers see the old file or the new one; no fsync, as read_build refuses a file torn by a crash.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _manifest(
    rendered: Rendered, selection: Selection, settings: Settings, edition: str, files: dict[str, bytes]
) -> dict[str, Any]:
    window = selection.window
    return {
        "format": MANIFEST_FORMAT,
        "edition": edition,
        "newsletter": settings.slug,
        "period": window.label,
        "window": {
            "since": window.since.isoformat(),
            "until": window.until.isoformat(),
            "tz": window.tz,
            "label": window.label,
        },
        "selection": {
            "posted": [item.id for item in selection.posted],
            "upcoming": [item.id for item in selection.upcoming],
            "filters": selection.filters,
        },
        # The event items' calendar facts: the web archive writes their .ics files from these.
        "events": [
            record.to_json()
            for chosen in selection.items
            if (record := event_record(chosen.item, online=settings.words.online)) is not None
        ],
        "content_hash": content_hash(rendered.subject, rendered.html, rendered.text),
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "sender": settings.sender,
        "reply_to": settings.reply_to,
        "list_id": list_id(settings),
        "sizes": {
            "html_bytes": len(files[HTML_FILE]),
            "text_bytes": len(files[TEXT_FILE]),
            "eml_bytes": len(files[EML_FILE]),
            "mjml_bytes": len(files[MJML_FILE]),
            "style_bytes": style_bytes(rendered.html),
        },
        # Per-file hashes let read_build say *which* file was edited after the build.
        "files": {name: _file_hash(data) for name, data in files.items()},
        "built_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "digest_version": __version__,
    }


def write_build(
    out_dir: Path,
    rendered: Rendered,
    selection: Selection,
    settings: Settings,
    *,
    edition: str,
    preview_html: str | None = None,
) -> Build:
    """Write the edition's build folder (replacing an earlier build there) and return it as read back."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BuildError(f"{out_dir}: is a file, not a folder; choose another --out folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BuildError(f"{out_dir}: cannot create the build folder ({exc.strerror}); choose another --out") from None
    built = Build(
        folder=out_dir,
        edition=edition,
        newsletter=settings.slug,
        period=selection.window.label,
        content_hash=content_hash(rendered.subject, rendered.html, rendered.text),
        subject=rendered.subject,
        preheader=rendered.preheader,
        html=rendered.html,
        text=rendered.text,
        sender=settings.sender,
        reply_to=settings.reply_to,
        manifest={},
        list_id=list_id(settings),
    )
    files: dict[str, bytes] = {
        HTML_FILE: rendered.html.encode("utf-8"),
        TEXT_FILE: rendered.text.encode("utf-8"),
        EML_FILE: sample_message(built, settings),
        MJML_FILE: rendered.mjml.encode("utf-8"),
    }
    if preview_html is not None:
        files[PREVIEW_FILE] = preview_html.encode("utf-8")
    manifest = _manifest(rendered, selection, settings, edition, files)
    try:
        for name, data in files.items():
            _write_atomic(out_dir / name, data)
        if preview_html is None:
            (out_dir / PREVIEW_FILE).unlink(missing_ok=True)  # it would show the previous edition
        body = json.dumps(manifest, indent=2, ensure_ascii=False, default=str) + "\n"
        _write_atomic(out_dir / MANIFEST_FILE, body.encode("utf-8"))
    except OSError as exc:
        raise BuildError(
            f"{out_dir}: cannot write the build ({exc.strerror}); check the folder's permissions and free space"
        ) from None
    # As read_build would return it.
    return dataclasses.replace(built, manifest=json.loads(json.dumps(manifest, default=str)))


def _read_text(folder: Path, name: str, fix: str) -> str:
    path = folder / name
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # newline="": hash the bytes as written
            return handle.read()
    except FileNotFoundError:
        raise BuildError(f"{folder}: {name} is missing, so the build is incomplete; {fix}") from None
    except UnicodeDecodeError:
        raise BuildError(f"{path}: not UTF-8 text, so the build is corrupt; {fix}") from None
    except OSError as exc:
        raise BuildError(f"{path}: cannot be read ({exc.strerror}); {fix}") from None


def read_build(folder: Path) -> Build:
    """Read a build folder back and check it is whole and unedited; BuildError says what is wrong and the fix."""
    folder = Path(folder)
    fix = f"run 'digest build --out {folder}' again"
    if not folder.is_dir():
        raise BuildError(f"{folder}: no build folder here; run 'digest build --out {folder}' first")
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BuildError(f"{folder}: not a build folder (no {MANIFEST_FILE}); run 'digest build --out {folder}' first")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildError(f"{manifest_path}: not valid JSON ({exc}), so the build is corrupt; {fix}") from None
    if not isinstance(manifest, dict):
        raise BuildError(f"{manifest_path}: not a build manifest (expected a JSON object); {fix}")
    wrong = [key for key in _REQUIRED if not isinstance(manifest.get(key), str)]
    if wrong:
        raise BuildError(f"{manifest_path}: missing or not text: {', '.join(wrong)}; the build is corrupt; {fix}")
    html = _read_text(folder, HTML_FILE, fix)
    text = _read_text(folder, TEXT_FILE, fix)
    if content_hash(manifest["subject"], html, text) != manifest["content_hash"]:
        raise BuildError(
            f"{folder}: {_what_changed(manifest, html, text)} changed after the build (the content hash in "
            f"{MANIFEST_FILE} no longer matches), so it is not what was checked and previewed; edit the content "
            f"or templates rather than the built files (or undo the edit), then {fix}"
        )
    return Build(
        folder=folder,
        edition=manifest["edition"],
        newsletter=manifest["newsletter"],
        period=manifest["period"],
        content_hash=manifest["content_hash"],
        subject=manifest["subject"],
        preheader=manifest["preheader"],
        html=html,
        text=text,
        sender=manifest["sender"],
        reply_to=manifest["reply_to"],
        manifest=manifest,
        list_id=str(manifest.get("list_id") or ""),
    )


def _what_changed(manifest: dict[str, Any], html: str, text: str) -> str:
    files = manifest.get("files")
    known = files if isinstance(files, dict) else {}
    changed = [
        name
        for name, body in ((HTML_FILE, html), (TEXT_FILE, text))
        if isinstance(known.get(name), str) and known[name] != _file_hash(body.encode("utf-8"))
    ]
    return " and ".join(changed) if changed else f"{HTML_FILE}, {TEXT_FILE} or the subject in {MANIFEST_FILE}"
