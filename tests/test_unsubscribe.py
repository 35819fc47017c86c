"""Unsubscribe: tokens, headers, the suppression file, and the one-click endpoint over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from _factories import make_settings

from digest.config import Settings
from digest.errors import BadToken, ConfigError
from digest.recipients import load_suppressions
from digest.suppressions import add_to_file
from digest.unsubscribe import app_from_env, make_app, make_wsgi_server, server_url
from digest.unsubscribe_links import (
    ONE_CLICK,
    Unsubscriber,
    format_unsubscribe_url,
    list_unsubscribe_headers,
    mailto_uri,
    recipient_unsubscribe,
    unsubscribe_url,
)
from digest.unsubscribe_tokens import (
    OLD_SECRETS_VAR,
    SECRET_VAR,
    make_token,
    old_secrets_from_env,
    secret_from_env,
    verify_token,
)

SECRET = b"test-secret-0123456789abcdef-xyz"
EMAIL = "Ann.Example@Example.org"


def _flip(text: str, index: int) -> str:
    """The same text with one base64url character changed."""
    swap = "B" if text[index] == "A" else "A"
    return text[:index] + swap + text[index + 1 :]


# --- tokens -------------------------------------------------------------------------------------


def test_token_round_trip_normalises_the_address() -> None:
    """A token verifies back to the case-folded address and the list id."""
    token = make_token(EMAIL, "mayors-innovation", SECRET)
    assert verify_token(token, SECRET) == ("ann.example@example.org", "mayors-innovation")
    assert make_token("  ann.example@EXAMPLE.org ", "mayors-innovation", SECRET) == token


def test_token_is_url_safe_and_opaque() -> None:
    """Tokens use only URL-safe characters, and neither the text nor its decoded bytes show the address."""
    token = make_token(EMAIL, "mayors-innovation", SECRET)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"example" not in raw.lower() and b"mayors" not in raw and "example" not in token.lower()
    assert len(raw) >= 16 + 32  # the 16-byte synthetic IV (the tag), then the padded ciphertext


def test_token_length_shows_the_address_length_only_to_16_bytes() -> None:
    """Addresses of nearby lengths give tokens of one length (the payload is padded)."""
    lengths = {len(make_token(f"{'a' * n}@example.org", "mayors-innovation", SECRET)) for n in range(3, 8)}
    assert len(lengths) == 1


def v1_token(email: str, list_id: str, secret: bytes) -> str:
    """A token in the first format (base64url payload '.' HMAC), as sends before the opaque tokens made them."""
    payload = b"\n".join((b"v1", email.strip().casefold().encode(), list_id.encode()))
    mac = hmac.new(secret, b"digest-unsubscribe\x00" + payload, hashlib.sha256).digest()[:16]
    return ".".join(base64.urlsafe_b64encode(x).rstrip(b"=").decode() for x in (payload, mac))


# Made by the code that sent them (before the opaque tokens), with SECRET and OLD_V1_SECRET.
SENT_V1 = "djEKYW5uLmV4YW1wbGVAZXhhbXBsZS5vcmcKbWF5b3JzLWlubm92YXRpb24.eWbqn2z9rWFGklY067-Hgw"
SENT_V1_OLD = "djEKYm9iQGV4YW1wbGUub3JnCm1heW9ycy1pbm5vdmF0aW9u.8bQ3DRH6WsYglAWdsNQ6Ug"
OLD_V1_SECRET = b"old-secret-0123456789abcdef-old"


def test_tokens_already_sent_in_the_first_format_still_verify() -> None:
    """Links sent before the opaque tokens keep working, with the secret that signed them."""
    assert v1_token(EMAIL, "mayors-innovation", SECRET) == SENT_V1
    assert verify_token(SENT_V1, SECRET) == ("ann.example@example.org", "mayors-innovation")
    assert verify_token(SENT_V1_OLD, OLD_V1_SECRET) == ("bob@example.org", "mayors-innovation")
    with pytest.raises(BadToken):
        verify_token(SENT_V1_OLD, SECRET)


def test_every_flipped_character_is_rejected() -> None:
    """Changing any one character of an opaque token (the last one included) fails."""
    token = make_token(EMAIL, "mayors-innovation", SECRET)
    for index in range(len(token)):
        with pytest.raises(BadToken):
            verify_token(_flip(token, index), SECRET)


@pytest.mark.parametrize("part", [0, 1])
def test_every_flipped_character_of_a_first_format_token_is_rejected(part: int) -> None:
    """Changing any one character of a v1 token's payload or MAC (the last one included) fails."""
    pieces = SENT_V1.split(".")
    for index in range(len(pieces[part])):
        changed = list(pieces)
        changed[part] = _flip(pieces[part], index)
        with pytest.raises(BadToken):
            verify_token(".".join(changed), SECRET)


def test_non_canonical_base64_spelling_is_rejected() -> None:
    """Changing only the unused low bits of the MAC's last character (same bytes) still fails."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = SENT_V1
    last = alphabet.index(token[-1])
    assert last % 16 == 0  # 16 MAC bytes: the last character carries 2 data bits and 4 zero bits
    with pytest.raises(BadToken):
        verify_token(token[:-1] + alphabet[last + 1], SECRET)


def test_payload_moved_to_another_list_is_rejected() -> None:
    """A v1 token's MAC does not cover another list id or another address."""
    token = v1_token(EMAIL, "mayors-innovation", SECRET)
    other = v1_token(EMAIL, "other-list", SECRET)
    forged = other.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(BadToken):
        verify_token(forged, SECRET)
    someone = v1_token("bob@example.org", "mayors-innovation", SECRET)
    with pytest.raises(BadToken):
        verify_token(someone.split(".")[0] + "." + token.split(".")[1], SECRET)


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b.c", "....", "djE.", ".abc", "djE=.abc", "d j E.abc", "x" * 5000 + ".a"]
)
def test_malformed_tokens_are_rejected(token: str) -> None:
    """Garbage, padding and oversize tokens raise BadToken, never another exception."""
    with pytest.raises(BadToken):
        verify_token(token, SECRET)


def test_another_secret_is_rejected() -> None:
    """A token made with one secret does not verify with another."""
    token = make_token(EMAIL, "mayors-innovation", SECRET)
    with pytest.raises(BadToken) as err:
        verify_token(token, b"another-secret-of-enough-length")
    assert "not valid" in str(err.value)
    assert "example" not in str(err.value).lower()


def test_make_token_refuses_non_addresses() -> None:
    """No token is made for something that is not an address or with an empty secret."""
    with pytest.raises(ValueError):
        make_token("not-an-address", "l", SECRET)
    with pytest.raises(ValueError):
        make_token("a@b.org\nx", "l", SECRET)
    with pytest.raises(ValueError):
        make_token("a@b.org", "l", b"")


# --- the secret ---------------------------------------------------------------------------------


def test_missing_secret_for_a_list_send_names_the_variable_and_the_fix() -> None:
    """A required secret that is not set raises a ConfigError saying how to make one."""
    with pytest.raises(ConfigError) as err:
        secret_from_env({}, required=True)
    message = str(err.value)
    assert SECRET_VAR in message
    assert "secrets.token_urlsafe(32)" in message


def test_missing_secret_is_none_when_not_required() -> None:
    """Previews and test sends get None instead of an error."""
    assert secret_from_env({}, required=False) is None
    assert secret_from_env({SECRET_VAR: "  "}, required=False) is None


def test_short_secret_is_refused_without_echoing_it() -> None:
    """A secret under 16 bytes is refused, and the message does not repeat it."""
    with pytest.raises(ConfigError) as err:
        secret_from_env({SECRET_VAR: "hunter2"}, required=False)
    assert "hunter2" not in str(err.value)
    assert "too short" in str(err.value)


def test_secret_is_read_as_bytes() -> None:
    """A good secret comes back as UTF-8 bytes, surrounding whitespace dropped."""
    secret = secret_from_env({SECRET_VAR: " abcdefghijklmnopqrstuvwxyz \n"}, required=True)
    assert secret == b"abcdefghijklmnopqrstuvwxyz"


# --- URLs and headers ---------------------------------------------------------------------------


def test_unsubscribe_url_fills_the_template_with_a_verifiable_token() -> None:
    """The URL follows settings.unsubscribe_url and its token names the recipient and the list."""
    settings = make_settings(base_url="https://news.example.org/")
    url = unsubscribe_url(settings, EMAIL, SECRET)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "news.example.org", "/unsubscribe")
    token = parts.query.removeprefix("token=")
    assert verify_token(token, SECRET) == ("ann.example@example.org", settings.slug)


def test_unsubscribe_url_may_carry_the_quoted_email() -> None:
    """A template with {email} gets the normalised, URL-quoted address."""
    settings = make_settings(unsubscribe_url="{base_url}/u?e={email}&t={token}")
    url = unsubscribe_url(settings, "a+b@example.org", SECRET)
    assert url.startswith("https://example.org/u?e=a%2Bb@example.org&t=")


def test_bad_unsubscribe_template_is_a_config_error() -> None:
    """An unknown key in the template names the setting and the allowed keys."""
    settings = make_settings(unsubscribe_url="{base_url}/unsubscribe?id={recipient}")
    with pytest.raises(ConfigError) as err:
        format_unsubscribe_url(settings, token="t")
    assert "unsubscribe_url" in str(err.value)
    assert "{token}" in str(err.value)


def test_headers_have_one_https_uri_and_the_mailto() -> None:
    """List-Unsubscribe holds the https URI first, then the mailto; the Post header is exact."""
    headers = list_unsubscribe_headers("https://example.org/unsubscribe?token=abc", "unsubscribe@example.org")
    assert headers == {
        "List-Unsubscribe": "<https://example.org/unsubscribe?token=abc>, "
        "<mailto:unsubscribe@example.org?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert list_unsubscribe_headers("https://x.org/u?token=a")["List-Unsubscribe"] == "<https://x.org/u?token=a>"


def test_mailto_keeps_an_explicit_query() -> None:
    """A configured mailto with its own subject is used as given."""
    assert mailto_uri("mailto:leave@x.org?subject=stop") == "mailto:leave@x.org?subject=stop"
    assert mailto_uri("") == ""
    with pytest.raises(ConfigError):
        mailto_uri("not an address")


@pytest.mark.parametrize("url", ["http://example.org/u?token=a", "ftp://example.org/u", "/unsubscribe?token=a"])
def test_non_https_one_click_url_is_refused(url: str) -> None:
    """RFC 8058 needs https: anything else is a ConfigError that says how to fix it."""
    with pytest.raises(ConfigError) as err:
        list_unsubscribe_headers(url)
    assert "https" in str(err.value)


def test_loopback_http_is_allowed_only_for_local_tests() -> None:
    """http://127.0.0.1 passes by default (local server) and fails when loopback is not allowed."""
    assert list_unsubscribe_headers("http://127.0.0.1:8025/unsubscribe?token=a")["List-Unsubscribe-Post"] == ONE_CLICK
    with pytest.raises(ConfigError):
        list_unsubscribe_headers("http://127.0.0.1:8025/unsubscribe?token=a", allow_loopback=False)
    with pytest.raises(ConfigError):
        list_unsubscribe_headers("http://127.0.0.1.example.org/unsubscribe?token=a")


def test_recipient_unsubscribe_gives_url_and_headers() -> None:
    """Delivery gets the body URL and headers whose https URI is that same URL."""
    settings = make_settings(unsubscribe_mailto="unsubscribe@example.org")
    url, headers = recipient_unsubscribe(settings, EMAIL, SECRET)
    assert headers["List-Unsubscribe"].startswith(f"<{url}>, <mailto:")


@pytest.mark.parametrize(
    ("template", "mailto"),
    [
        ("{base_url}/unsubscribe?token={token}", ""),
        ("{base_url}/u/{token}?who={email}&keep={{braces}}", "unsubscribe@example.org"),
        ("{base_url}/u?t={token!s}&e={email:>5}", "mailto:leave@example.org?subject=stop"),  # str.format path
    ],
)
def test_unsubscriber_gives_what_recipient_unsubscribe_gives(template: str, mailto: str) -> None:
    """The per-run signer (checks once, signs per recipient) returns the same URL and headers as the
    one-off function for every template shape, including {email}, literal braces and format specs."""
    settings = make_settings(unsubscribe_url=template, unsubscribe_mailto=mailto, base_url="https://x.example.org/{a}/")
    unsubscribe = Unsubscriber(settings, SECRET)
    for address in (EMAIL, " b+c@example.org ", "zoë@exämple.org", "o'neil@example.org"):
        assert unsubscribe(address) == recipient_unsubscribe(settings, address, SECRET)
    url, _ = unsubscribe(EMAIL)
    assert make_token(EMAIL, settings.slug, SECRET) in url


def test_unsubscriber_refuses_a_bad_template_or_mailto_before_any_recipient() -> None:
    """A non-https URL, an unknown field or a bad mailto is a ConfigError when the run starts."""
    for changes in (
        {"base_url": "http://example.org"},
        {"unsubscribe_url": "{base_url}/u?t={tokn}"},
        {"unsubscribe_mailto": "not an address"},
    ):
        with pytest.raises(ConfigError):
            Unsubscriber(make_settings(**changes), SECRET)
    with pytest.raises(ValueError, match="not an email address"):
        Unsubscriber(make_settings(), SECRET)("no-at-sign")


# --- suppression file ---------------------------------------------------------------------------


def test_add_suppression_creates_the_file_and_is_idempotent(tmp_path: Path) -> None:
    """The first add writes a header and the address; a second add in another case writes nothing."""
    path = tmp_path / "sub" / "suppressions.csv"
    assert add_to_file(path, "Ann@Example.org") is True
    assert add_to_file(path, "ann@example.ORG ") is False
    assert path.read_text() == "email\nann@example.org\n"
    assert load_suppressions(path) == frozenset({"ann@example.org"})


def test_add_suppression_appends_to_a_hand_edited_file(tmp_path: Path) -> None:
    """A file without a final newline or header still gets one clean line per address."""
    path = tmp_path / "suppressions.csv"
    path.write_text("bob@example.org")
    assert add_to_file(path, "ann@example.org") is True
    assert path.read_text() == "bob@example.org\nann@example.org\n"
    assert load_suppressions(path) == frozenset({"bob@example.org", "ann@example.org"})


def test_concurrent_adds_write_each_address_once(tmp_path: Path) -> None:
    """Threads adding overlapping addresses leave each address exactly once."""
    path = tmp_path / "suppressions.csv"
    addresses = [f"user{n % 20}@example.org" for n in range(80)]
    threads = [threading.Thread(target=add_to_file, args=(path, a)) for a in addresses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert lines[0] == "email"
    assert sorted(lines[1:]) == sorted({a for a in addresses})


def test_add_suppression_refuses_non_addresses(tmp_path: Path) -> None:
    """Something that is not one address is never written."""
    for bad in ("", "nobody", "a@b.org,c@d.org", "a@b.org\nc@d.org"):
        with pytest.raises(ValueError):
            add_to_file(tmp_path / "s.csv", bad)
    assert not (tmp_path / "s.csv").exists() or load_suppressions(tmp_path / "s.csv") == frozenset()


# --- the endpoint over real HTTP ----------------------------------------------------------------


@dataclasses.dataclass
class Server:
    host: str
    port: int
    settings: Settings
    suppressions: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def token(self, email: str = EMAIL) -> str:
        return make_token(email, self.settings.slug, SECRET)


def _serve(settings: Settings, suppressions: Path, old_secrets: tuple[bytes, ...] = ()) -> Iterator[Server]:
    server = make_wsgi_server(make_app(settings, SECRET, suppressions, old_secrets=old_secrets), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        url = urlsplit(server_url(server))
        assert url.hostname and url.port
        yield Server(url.hostname, url.port, settings, suppressions)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = make_settings(tmp_path, name="Mayors <Innovation> & Co")
    yield from _serve(settings, tmp_path / "suppressions.csv")


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_one_click_post_unsubscribes_at_once_without_redirect(server: Server) -> None:
    """RFC 8058 POST: 200, no Location, and the address is in the suppression file right away."""
    status, headers, body = server.request("POST", f"/unsubscribe?token={server.token()}", ONE_CLICK.encode(), FORM)
    assert status == 200
    assert "location" not in headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b"unsubscribed" in body
    assert load_suppressions(server.suppressions) == frozenset({"ann.example@example.org"})


def test_one_click_post_as_multipart_with_token_in_the_form(server: Server) -> None:
    """A multipart body is accepted, and a token given only in the form is used."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="token"\r\n\r\n{server.token()}\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    status, _, _ = server.request(
        "POST", "/unsubscribe", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 200
    assert "ann.example@example.org" in load_suppressions(server.suppressions)


def test_double_post_is_idempotent(server: Server) -> None:
    """Posting twice answers 200 twice and records the address once."""
    for _ in range(2):
        status, _, _ = server.request("POST", f"/unsubscribe?token={server.token()}", ONE_CLICK.encode(), FORM)
        assert status == 200
    assert server.suppressions.read_text().splitlines() == ["email", "ann.example@example.org"]


def test_get_shows_one_button_and_changes_nothing(server: Server) -> None:
    """GET (what link scanners do) shows a form posting the token back, and unsubscribes no one."""
    token = server.token()
    status, headers, body = server.request("GET", f"/unsubscribe?token={token}")
    page = body.decode()
    assert status == 200
    assert '<form method="post"' in page
    assert page.count("<button") == 1
    assert f'value="{token}"' in page
    assert '<html lang="en" dir="ltr">' in page
    assert "Mayors &lt;Innovation&gt; &amp; Co" in page and "<Innovation>" not in page
    assert "http" not in page.replace("http-equiv", "")  # no external resources
    assert headers["referrer-policy"] == "no-referrer"
    assert not server.suppressions.exists()


def test_the_button_form_unsubscribes(server: Server) -> None:
    """Submitting the GET page's form (its action and fields) unsubscribes the address."""
    _, _, body = server.request("GET", f"/unsubscribe?token={server.token()}")
    page = body.decode()
    action = page.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    status, _, _ = server.request("POST", "/unsubscribe" + action, b"List-Unsubscribe=One-Click", FORM)
    assert status == 200
    assert "ann.example@example.org" in load_suppressions(server.suppressions)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_token_is_400_and_reveals_nothing(server: Server, method: str) -> None:
    """A tampered token gets a 400 page with no address and no reason beyond 'not valid'."""
    token = server.token()
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    status, _, body = server.request(method, f"/unsubscribe?token={tampered}", ONE_CLICK.encode(), FORM)
    page = body.decode()
    assert status == 400
    assert "not valid" in page
    assert "@" not in page and "example" not in page.lower() and tampered not in page
    assert not server.suppressions.exists()


def test_missing_token_and_other_list_are_400(server: Server) -> None:
    """No token, or a valid token of another list, is refused the same way."""
    assert server.request("POST", "/unsubscribe", ONE_CLICK.encode(), FORM)[0] == 400
    other = make_token(EMAIL, "another-list", SECRET)
    assert server.request("POST", f"/unsubscribe?token={other}", ONE_CLICK.encode(), FORM)[0] == 400
    assert not server.suppressions.exists()


def test_health_other_paths_and_methods(server: Server) -> None:
    """/healthz answers GET and HEAD; unknown paths 404; PUT on the endpoint 405."""
    assert server.request("GET", "/healthz")[0] == 200
    status, _, body = server.request("HEAD", "/healthz")
    assert (status, body) == (200, b"")
    assert server.request("GET", "/admin")[0] == 404
    status, headers, _ = server.request("PUT", f"/unsubscribe?token={server.token()}", b"")
    assert status == 405 and "POST" in headers["allow"]


def test_unwritable_suppression_file_is_503_not_200(tmp_path: Path) -> None:
    """When the address cannot be recorded the endpoint never claims success."""
    (tmp_path / "suppressions.csv").mkdir()
    for server in _serve(make_settings(tmp_path), tmp_path / "suppressions.csv"):
        status, _, _ = server.request("POST", f"/unsubscribe?token={server.token()}", ONE_CLICK.encode(), FORM)
        assert status == 503


def test_log_has_the_address_but_never_the_token(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Each unsubscribe is logged with the address; the token appears in no log record."""
    token = server.token()
    with caplog.at_level(logging.INFO, logger="digest.unsubscribe"):
        server.request("POST", f"/unsubscribe?token={token}", ONE_CLICK.encode(), FORM)
        server.request("GET", f"/unsubscribe?token={token}x")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ann.example@example.org" in text
    assert token not in text


OLD_SECRET = b"the-secret-before-rotation-0123456"


def test_after_a_rotation_links_signed_with_an_old_secret_still_unsubscribe(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The endpoint accepts the current secret and every old one, logs the use of an old one (never
    the token), and still refuses a token no secret of its own signed."""
    settings = make_settings(tmp_path)
    for server in _serve(settings, tmp_path / "s.csv", old_secrets=(b"another-old-secret-abcdefghijk", OLD_SECRET)):
        old_token = make_token("old@example.org", settings.slug, OLD_SECRET)
        with caplog.at_level(logging.INFO, logger="digest.unsubscribe"):
            status, _, _ = server.request("POST", f"/unsubscribe?token={old_token}", ONE_CLICK.encode(), FORM)
        assert status == 200
        log_text = "\n".join(r.getMessage() for r in caplog.records)
        assert "old secret number 2" in log_text and old_token not in log_text
        status, _, _ = server.request("POST", f"/unsubscribe?token={SENT_V1_OLD}", ONE_CLICK.encode(), FORM)
        assert status == 400  # a first-format token of a secret the endpoint was not given
        status, _, _ = server.request("POST", f"/unsubscribe?token={server.token('new@example.org')}", b"", FORM)
        assert status == 200
        forged = make_token("eve@example.org", settings.slug, b"a-secret-nobody-gave-the-endpoint")
        status, _, _ = server.request("POST", f"/unsubscribe?token={forged}", ONE_CLICK.encode(), FORM)
        assert status == 400
    assert load_suppressions(tmp_path / "s.csv") == frozenset({"old@example.org", "new@example.org"})


def test_old_secrets_are_read_from_the_environment_and_checked_without_echoing_them() -> None:
    assert old_secrets_from_env({}) == ()
    two = {OLD_SECRETS_VAR: f" {OLD_SECRET.decode()}, second-old-secret-0123456789\n"}
    assert old_secrets_from_env(two) == (OLD_SECRET, b"second-old-secret-0123456789")
    with pytest.raises(ConfigError) as err:
        old_secrets_from_env({OLD_SECRETS_VAR: f"{OLD_SECRET.decode()},tiny-old"})
    assert OLD_SECRETS_VAR in str(err.value) and "number 2" in str(err.value) and "tiny-old" not in str(err.value)


def test_template_without_token_query_is_refused(tmp_path: Path) -> None:
    """The built-in server needs the token in ?token=; another template is a ConfigError."""
    settings = make_settings(tmp_path, unsubscribe_url="{base_url}/u/{token}")
    with pytest.raises(ConfigError) as err:
        make_app(settings, SECRET, tmp_path / "s.csv")
    assert "?token={token}" in str(err.value)


def test_app_from_env_reads_config_and_secret(tmp_path: Path) -> None:
    """app_from_env builds the app from DIGEST_CONFIG and the secret, writing to suppression_file."""
    config = tmp_path / "digest.toml"
    config.write_text(
        'name = "City"\nsender = "City <n@x.org>"\nslug = "city-news"\n'
        'suppression_file = "data/unsub.csv"\nbase_url = "https://x.org/news"\n'
    )
    env = {"DIGEST_CONFIG": str(config), SECRET_VAR: SECRET.decode(), OLD_SECRETS_VAR: OLD_SECRET.decode()}
    server = make_wsgi_server(app_from_env(env), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        url = urlsplit(server_url(server))
        token = make_token("zoe@example.org", "city-news", SECRET)
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        # The template's own path (/news/unsubscribe) works as well as a proxy-stripped /unsubscribe.
        conn.request("POST", f"/news/unsubscribe?token={token}", ONE_CLICK, FORM)
        assert conn.getresponse().status == 200
        conn.close()
        old_token = make_token("yan@example.org", "city-news", OLD_SECRET)  # signed before a rotation
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        conn.request("POST", f"/unsubscribe?token={old_token}", ONE_CLICK, FORM)
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert load_suppressions(tmp_path / "data" / "unsub.csv") == frozenset({"zoe@example.org", "yan@example.org"})


SERVE_SCRIPT = """
import signal
import sys
# A shell's background job starts with SIGINT ignored; a terminal's Ctrl+C would raise KeyboardInterrupt.
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from _factories import make_settings
from digest.unsubscribe import make_app, serve
settings = make_settings(Path(sys.argv[1]))
serve(make_app(settings, sys.argv[2].encode(), Path(sys.argv[1]) / "s.csv"), port=0,
      on_ready=lambda url: print(url, flush=True))
print("stopped", flush=True)
"""


def test_serve_reports_its_url_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """serve() hands the bound URL to on_ready, answers requests, and returns cleanly on SIGINT."""
    tests = Path(__file__).parent
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(tmp_path), SECRET.decode()],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tests,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    try:
        assert proc.stdout is not None
        url = urlsplit(proc.stdout.readline().strip())
        assert url.scheme == "http" and url.hostname == "127.0.0.1" and url.port
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_app_from_env_without_secret_fails_clearly(tmp_path: Path) -> None:
    """Without the secret the server does not start, and says which variable to set."""
    config = tmp_path / "digest.toml"
    config.write_text(f'name = "S"\nsender = "S <s@x.org>"\nslug = "s-{uuid.uuid4().hex[:6]}"\n')
    with pytest.raises(ConfigError) as err:
        app_from_env({"DIGEST_CONFIG": str(config)})
    assert SECRET_VAR in str(err.value)
