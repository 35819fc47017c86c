"""Build: write and read the build folder — render once, send many; the MJML passes the official validator."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import shutil
import socket
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from _factories import golden_selection, make_settings

from digest import __version__
from digest.build import OUR_FILES, content_hash, read_build, write_build
from digest.config import Settings
from digest.errors import BuildError, DigestError
from digest.models import Build, Rendered, Selection
from digest.personalize import SAMPLE_EMAIL, SAMPLE_NAME, sample_values
from digest.render import render

REPO = Path(__file__).resolve().parent.parent
EDITION = "mayors-innovation-2020-01"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("newsletter"))


@pytest.fixture(scope="module")
def selection() -> Selection:
    return golden_selection()


@pytest.fixture(scope="module")
def rendered(settings: Settings, selection: Selection) -> Rendered:
    return render(selection, settings, edition=EDITION)


@pytest.fixture
def built(tmp_path: Path, rendered: Rendered, selection: Selection, settings: Settings) -> Build:
    return write_build(tmp_path / "out", rendered, selection, settings, edition=EDITION, preview_html="<p>preview</p>")


def _eml(folder: Path) -> EmailMessage:
    msg = email.message_from_bytes((folder / "email.eml").read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_writes_every_file(built: Build, rendered: Rendered) -> None:
    """The folder gets email.html/.txt/.eml/.mjml, preview.html and manifest.json; html/txt/mjml as rendered."""
    folder = built.folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUR_FILES)
    assert (folder / "email.html").read_bytes() == rendered.html.encode()
    assert (folder / "email.txt").read_bytes() == rendered.text.encode()
    assert (folder / "email.mjml").read_text(encoding="utf-8") == rendered.mjml
    assert (folder / "preview.html").read_text(encoding="utf-8") == "<p>preview</p>"


def test_manifest_has_the_documented_fields(built: Build, rendered: Rendered, settings: Settings) -> None:
    """manifest.json holds the fields of docs/ARCHITECTURE.md with the right values and sizes."""
    folder = built.folder
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["edition"] == EDITION and manifest["newsletter"] == "mayors-innovation"
    assert manifest["period"] == "2020-01"
    assert manifest["window"] == {
        "since": "2020-01-01",
        "until": "2020-01-31",
        "tz": "America/Chicago",
        "label": "2020-01",
    }
    assert manifest["selection"]["posted"][0] == "new-mayors-cohort-2020"
    assert manifest["selection"]["upcoming"] == ["summer-2020-annual-meeting", "data-driven-fire-department"]
    assert manifest["subject"] == rendered.subject and manifest["preheader"] == rendered.preheader
    assert (manifest["sender"], manifest["reply_to"]) == (settings.sender, settings.reply_to)
    assert manifest["sizes"] == {
        "html_bytes": len(rendered.html.encode()),
        "text_bytes": len(rendered.text.encode()),
        "eml_bytes": (folder / "email.eml").stat().st_size,
        "mjml_bytes": len(rendered.mjml.encode()),
        "style_bytes": manifest["sizes"]["style_bytes"],
    }
    assert 1_000 < manifest["sizes"]["style_bytes"] <= 16_384
    assert manifest["built_at"].endswith("Z") and manifest["digest_version"] == __version__
    assert built.manifest == manifest


def test_content_hash_covers_subject_html_and_text(built: Build, rendered: Rendered) -> None:
    """content_hash is "sha256:" + sha256(subject + "\\n" + html + "\\n" + text)."""
    expected = hashlib.sha256(f"{rendered.subject}\n{rendered.html}\n{rendered.text}".encode()).hexdigest()
    assert built.content_hash == content_hash(rendered.subject, rendered.html, rendered.text) == f"sha256:{expected}"
    assert content_hash(rendered.subject + "!", rendered.html, rendered.text) != built.content_hash


def test_html_and_text_keep_tokens_eml_is_a_filled_sample(built: Build, settings: Settings) -> None:
    """email.html/.txt keep the placeholders; email.eml is the sample recipient's message with none left."""
    folder = built.folder
    assert "%%unsubscribe_url%%" in (folder / "email.html").read_text(encoding="utf-8")
    assert "%%unsubscribe_url:text%%" in (folder / "email.txt").read_text(encoding="utf-8")
    msg = _eml(folder)
    assert msg["To"] == f"{SAMPLE_NAME} <{SAMPLE_EMAIL}>"
    text, html = (p.get_content() for p in msg.iter_parts())
    assert "%%" not in text and "%%" not in html
    url = sample_values(settings, built.edition)["unsubscribe_url"]
    assert url.startswith("https://example.org/unsubscribe?token=") and url in text
    assert f'href="{url}"' in html
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_sample_eml_without_https_still_builds(tmp_path: Path, rendered: Rendered, selection: Selection) -> None:
    """An http base_url leaves the one-click headers out of the sample (digest check reports it) but builds."""
    plain = make_settings(tmp_path, base_url="http://example.org")
    write_build(tmp_path / "out", rendered, selection, plain, edition=EDITION)
    assert "List-Unsubscribe" not in _eml(tmp_path / "out")


def test_rebuild_replaces_files_and_keeps_unrelated_ones(
    built: Build, rendered: Rendered, selection: Selection, settings: Settings
) -> None:
    """Building again replaces our files, drops a stale preview.html, leaves other files and no temp files."""
    folder = built.folder
    (folder / "notes.md").write_text("mine", encoding="utf-8")
    (folder / "email.html").write_text("old", encoding="utf-8")
    again = write_build(folder, rendered, selection, settings, edition=EDITION)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted({*OUR_FILES, "notes.md"} - {"preview.html"})
    assert (folder / "notes.md").read_text(encoding="utf-8") == "mine"
    assert (folder / "email.html").read_text(encoding="utf-8") == rendered.html
    assert read_build(folder).content_hash == again.content_hash


def test_read_build_round_trip(built: Build) -> None:
    """read_build returns the same Build that write_build returned."""
    assert read_build(built.folder) == built


def test_out_dir_that_is_a_file(tmp_path: Path, rendered: Rendered, selection: Selection, settings: Settings) -> None:
    """--out pointing at a file is a BuildError, not a traceback."""
    target = tmp_path / "file"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(BuildError, match="is a file, not a folder"):
        write_build(target, rendered, selection, settings, edition=EDITION)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: shutil.rmtree(f), r"no build folder here; run 'digest build --out .*' first"),
        (lambda f: (f / "manifest.json").unlink(), r"not a build folder \(no manifest.json\); run 'digest build --out"),
        (lambda f: (f / "manifest.json").write_text("{oops", encoding="utf-8"), r"manifest.json: not valid JSON"),
        (lambda f: (f / "manifest.json").write_text("[]", encoding="utf-8"), r"not a build manifest"),
        (lambda f: (f / "email.html").unlink(), r"email.html is missing, so the build is incomplete"),
        (lambda f: (f / "email.txt").write_bytes(b"\xff\xfe"), r"email.txt: not UTF-8 text"),
    ],
    ids=["no-folder", "no-manifest", "bad-json", "not-object", "no-html", "not-utf8"],
)
def test_read_build_missing_or_corrupt(built: Build, damage: object, message: str) -> None:
    """A missing or corrupt build is a BuildError naming the folder and saying to run digest build."""
    damage(built.folder)  # type: ignore[operator]
    with pytest.raises(BuildError, match=message) as err:
        read_build(built.folder)
    assert "digest build --out" in str(err.value) and isinstance(err.value, DigestError)


def test_read_build_missing_manifest_field(built: Build) -> None:
    """A manifest without a required field names the field."""
    path = built.folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["content_hash"]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BuildError, match="missing or not text: content_hash"):
        read_build(built.folder)


@pytest.mark.parametrize("name", ["email.html", "email.txt"])
def test_read_build_detects_edits_after_the_build(built: Build, name: str) -> None:
    """Editing email.html or email.txt after the build is refused, naming the file and the fix."""
    path = built.folder / name
    path.write_text(path.read_text(encoding="utf-8").replace("Unsubscribe", "Unsubscribe!"), encoding="utf-8")
    with pytest.raises(BuildError) as err:
        read_build(built.folder)
    message = str(err.value)
    assert f"{name} changed after the build" in message
    assert "edit the content or templates" in message and "digest build --out" in message


def test_read_build_detects_edited_subject(built: Build) -> None:
    """Editing the subject in manifest.json breaks the content hash too."""
    path = built.folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["subject"] = "Something else"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BuildError, match="or the subject in manifest.json changed after the build"):
        read_build(built.folder)


def test_build_never_touches_the_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, selection: Selection, settings: Settings
) -> None:
    """Render and write a whole build with every socket refused."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    built = write_build(
        tmp_path / "out", render(selection, settings, edition=EDITION), selection, settings, edition=EDITION
    )
    assert read_build(built.folder).subject == built.subject


# --- the official MJML 5 validator -----------------------------------------------------------------


def _mjml_binary() -> str | None:
    """<repo>/.tools/node_modules/.bin/mjml (installed by the test command), else $DIGEST_MJML_BIN, else PATH."""
    local = REPO / ".tools" / "node_modules" / ".bin" / "mjml"
    if local.is_file():
        return str(local)
    return os.environ.get("DIGEST_MJML_BIN") or shutil.which("mjml")


def _validate(binary: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, "--validate", str(path)], capture_output=True, text=True, timeout=120, check=False)


def test_email_mjml_passes_the_official_mjml_validator(built: Build, tmp_path: Path) -> None:
    """email.mjml validates with MJML 5 (`mjml --validate`), which does fail on an illegal attribute."""
    binary = _mjml_binary()
    if not binary:
        message = "official mjml not found: npm i --prefix .tools mjml@5, or set DIGEST_MJML_BIN"
        if os.environ.get("DIGEST_REQUIRE_MJML"):
            pytest.fail(message + " (DIGEST_REQUIRE_MJML is set, so this is a failure)")
        pytest.skip(message)
    good = _validate(binary, built.folder / "email.mjml")
    assert good.returncode == 0 and not (good.stdout + good.stderr).strip(), good.stdout + good.stderr
    # Prove the validator can fail here: MRML accepts an illegal attribute silently, MJML 5 must not.
    bad = tmp_path / "bad.mjml"
    source = (built.folder / "email.mjml").read_text(encoding="utf-8")
    bad.write_text(source.replace("<mj-text>", '<mj-text colour="red">', 1), encoding="utf-8")
    refused = _validate(binary, bad)
    assert refused.returncode != 0
    assert "Attribute colour is illegal" in refused.stdout + refused.stderr
