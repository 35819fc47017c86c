"""Settings: defaults <- digest.toml <- DIGEST_* environment <- flags; errors name the file and the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _factories import FRENCH_MONTHS

from digest.config import load_settings
from digest.errors import ConfigError

IDENTITY = {"name": '"T"', "slug": '"t"', "sender": '"T <t@example.org>"'}


def write(tmp_path: Path, text: str, *, identity: bool = True) -> Path:
    """A digest.toml of `text`, plus the keys every newsletter sets (name, slug, sender) that it lacks."""
    if identity:
        text = "".join(f"{k} = {v}\n" for k, v in IDENTITY.items() if not re.search(rf"(?m)^{k}\s*=", text)) + text
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_root_is_a_newsletter(repo: Path) -> None:
    """The shipped digest.toml loads and points at the shipped content and templates."""
    s = load_settings(repo / "digest.toml", env={})
    assert s.name == "Mayors Innovation Project"
    assert s.path(s.content_dir) == repo / "content"
    assert [sec.id for sec in s.sections] == ["featured", "upcoming", "news", "events"]


def test_layers_file_then_env_then_flags(tmp_path: Path) -> None:
    """Each layer overrides the one below it."""
    cfg = write(tmp_path, 'name = "From file"\ntimezone = "UTC"\n[smtp]\nhost = "file.example"\n')
    s = load_settings(cfg, env={})
    assert (s.name, s.timezone, s.smtp.host) == ("From file", "UTC", "file.example")
    env = {"DIGEST_NAME": "From env", "DIGEST_SMTP_HOST": "env.example", "DIGEST_SMTP_PORT": "2525"}
    s = load_settings(cfg, env=env)
    assert (s.name, s.smtp.host, s.smtp.port) == ("From env", "env.example", 2525)
    s = load_settings(cfg, env=env, overrides={"name": "From flag", "backend": None})
    assert s.name == "From flag" and s.backend == "outbox"


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    """content_dir = "posts" means <config folder>/posts, wherever digest runs from."""
    cfg = write(tmp_path, 'content_dir = "posts"\n')
    s = load_settings(cfg, env={}, cwd=Path("/"))
    assert s.path(s.content_dir) == tmp_path / "posts"


def test_secrets_are_not_settings(tmp_path: Path) -> None:
    """DIGEST_SMTP_PASSWORD and friends never become part of Settings."""
    s = load_settings(write(tmp_path, ""), env={"DIGEST_SMTP_PASSWORD": "hunter2", "DIGEST_UNSUBSCRIBE_SECRET": "x"})
    assert "hunter2" not in repr(s)


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = \n", "not valid TOML"),
        ('colour = "red"\n', "unknown setting 'colour'"),
        ('timezone = "Mars/Olympus"\n', "unknown time zone"),
        ('upcoming_days = "soon"\n', "'upcoming_days' must be a whole number"),
        ('primary_color = "blue"\n', "must be a colour"),
        ('[smtp]\nsecurity = "tls"\n', "starttls, ssl or none"),
        ('[[sections]]\nid = "x"\n', "needs an 'id' and a 'title'"),
        ('[words]\nmonths = ["jan", "feb"]\n', "months must list the 12 month names"),
        ('[words]\nposted = "Publié le {day}"\n', "uses {day}; it may use {date}"),
        ('[words]\nposted = "Publié le {date.year}"\n', "uses {date.year}; it may use {date}"),
        ('[words]\nunsubscribe = "Se {désabonner}"\n', "it may use no values"),
        ('[words]\ndate = "{day} {month"\n', "is not a valid phrase"),
        ('[words]\nunsubscribe_link = "x"\n', "unknown setting 'unsubscribe_link'"),
    ],
)
def test_bad_config_names_file_and_fix(tmp_path: Path, text: str, message: str) -> None:
    """Every config problem names the file and says what to do."""
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert message in str(err.value)
    assert str(cfg) in str(err.value)


def test_missing_explicit_config(tmp_path: Path) -> None:
    """--config pointing nowhere says so and suggests digest init."""
    with pytest.raises(ConfigError, match="digest init"):
        load_settings(tmp_path / "nope.toml", env={})


PARTIAL_FRENCH = (
    f"[words]\nmonths = {json.dumps(FRENCH_MONTHS, ensure_ascii=False)}\n"
    'date = "{day} {month} {year}"\nrange_in_month = "{day} – {end_day} {month} {year}"\n'
)


def test_words_come_from_the_words_table_and_the_environment(tmp_path: Path) -> None:
    """[words] replaces the fixed words one by one; DIGEST_WORDS_<NAME> overrides one from the environment."""
    s = load_settings(write(tmp_path, PARTIAL_FRENCH + 'unsubscribe = "Se désabonner"\n'), env={})
    assert s.words.months[7] == "août" and s.words.date == "{day} {month} {year}"
    assert s.words.unsubscribe == "Se désabonner" and s.words.when == "When"  # the rest stays English
    assert s.words.count("new_items", 1, period="mai 2020") == "1 new item from mai 2020"
    assert s.words.count("new_items", 3, period="mai 2020") == "3 new items from mai 2020"
    s = load_settings(write(tmp_path, PARTIAL_FRENCH), env={"DIGEST_WORDS_UNSUBSCRIBE": "Désinscription"})
    assert s.words.unsubscribe == "Désinscription"
    with pytest.raises(ConfigError, match=r"^environment \(DIGEST_\*\): \[words\] posted"):  # names its layer
        load_settings(write(tmp_path, PARTIAL_FRENCH), env={"DIGEST_WORDS_POSTED": "Publié {day}"})


@pytest.mark.parametrize("missing", ["name", "slug", "sender"])
def test_a_newsletter_must_name_itself_and_its_sender(tmp_path: Path, missing: str) -> None:
    """Without its own name, slug or sender a digest.toml is refused (never sent as the sample's newsletter)."""
    text = "".join(f"{k} = {v}\n" for k, v in IDENTITY.items() if k != missing)
    cfg = write(tmp_path, text, identity=False)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert str(cfg) in str(err.value) and f"missing '{missing}'" in str(err.value)
    assert "Mayors" not in str(err.value)


def test_the_identity_may_come_from_the_environment(tmp_path: Path) -> None:
    """DIGEST_NAME, DIGEST_SLUG and DIGEST_SENDER fill the keys a digest.toml leaves out."""
    cfg = write(tmp_path, "", identity=False)
    env = {"DIGEST_NAME": "E", "DIGEST_SLUG": "e", "DIGEST_SENDER": "E <e@example.org>"}
    assert load_settings(cfg, env=env).sender == "E <e@example.org>"


def test_outside_a_newsletter_folder_says_where_it_looked(tmp_path: Path) -> None:
    """With no digest.toml, the error says none was found, where it looked, and how to make one."""
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, cwd=tmp_path)
    message = str(err.value)
    assert f"no digest.toml found: looked for {tmp_path.resolve() / 'digest.toml'}" in message
    assert "--config" in message and "digest init" in message


@pytest.mark.parametrize(
    "text, message",
    [
        ('timzone = "UTC"\n', "unknown setting 'timzone'; did you mean 'timezone'?"),
        ('[smtp]\nhots = "x"\n', "[smtp]: unknown setting 'hots'; did you mean 'host'?"),
        ("[sendgrid]\nbatchsize = 10\n", "[sendgrid]: unknown setting 'batchsize'; did you mean 'batch_size'?"),
        ('[words]\nmonth = ["x"]\n', "[words]: unknown setting 'month'; did you mean 'months'?"),
        ('[[sections]]\nid = "a"\ntitle = "A"\nkind = ["news"]\n', "unknown keys ['kind']; did you mean 'kinds'?"),
    ],
)
def test_config_typos_get_a_suggestion_from_their_own_table(tmp_path: Path, text: str, message: str) -> None:
    """A misspelt key is answered with the closest key of the same table."""
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(cfg, env={})


def test_a_templates_dir_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    """templates_dir naming a missing folder is refused with the path; the default may be absent."""
    cfg = write(tmp_path, 'templates_dir = "my-templates"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert str(tmp_path / "my-templates") in str(err.value) and "templates_dir" in str(err.value)
    assert load_settings(write(tmp_path, 'templates_dir = "templates"\n'), env={}).name == "T"
    (tmp_path / "my-templates").mkdir()
    assert load_settings(write(tmp_path, 'templates_dir = "my-templates"\n'), env={}).name == "T"


def test_a_password_in_ledger_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """ledger_url with a password: the error names digest.toml and its line and the fix, never the password."""
    path = write(tmp_path, 'backend = "outbox"\nledger_url = "postgresql://digest:s3cr3t-pw@db.example.org/news"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}:5: ledger_url holds a password")
    assert "PGPASSWORD" in message and "DIGEST_LEDGER_URL" in message and "s3cr3t" not in message


def test_ledger_url_without_a_password_and_the_lease_are_settings(tmp_path: Path) -> None:
    """A URL without a password is taken as is (PG* variables give the rest); DIGEST_WORKER_LEASE sets the lease."""
    path = write(tmp_path, 'ledger_url = "postgresql://digest@db.example.org/news"\n')
    s = load_settings(path, env={"DIGEST_WORKER_LEASE": "20"})
    assert s.ledger_location() == "postgresql://digest@db.example.org/news" and s.worker_lease == 20.0
    with pytest.raises(ConfigError, match="'worker_lease' must be at least 1 second"):
        load_settings(path, env={"DIGEST_WORKER_LEASE": "0.5"})
