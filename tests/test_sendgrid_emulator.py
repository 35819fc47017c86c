"""The SendGrid emulator, exercised through the real `sendgrid` client (and raw HTTP where the client cannot go)."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from _factories import fresh_python
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    HTTPError,
    InternalServerError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient

from digest.testing.sendgrid_emulator import DEFAULT_API_KEY, Limits, RateLimit, SendGridEmulator, schema, wording

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours HTTP(S)_PROXY even for 127.0.0.1 (CONTRACT.md section 5).
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def emu() -> Iterator[SendGridEmulator]:
    with SendGridEmulator(asm_groups=[42], clock=Clock()) as emulator:
        yield emulator


def client(emulator: SendGridEmulator, key: str = DEFAULT_API_KEY) -> SendGridAPIClient:
    return SendGridAPIClient(api_key=key, host=emulator.url)


def mail(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "ann@example.com", "name": "Ann"}]}],
        "from": {"email": "news@example.org", "name": "The Digest"},
        "subject": "March digest",
        "content": [{"type": "text/plain", "value": "Hello"}, {"type": "text/html", "value": "<p>Hello</p>"}],
    }
    body.update(overrides)
    return body


def send(emulator: SendGridEmulator, body: dict[str, Any], key: str = DEFAULT_API_KEY) -> Any:
    return client(emulator, key).client.mail.send.post(request_body=body)


def rejected(emulator: SendGridEmulator, body: dict[str, Any], error: type[HTTPError] = BadRequestsError) -> Any:
    with pytest.raises(error) as caught:
        send(emulator, body)
    return caught.value


def raw(
    emulator: SendGridEmulator, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def get_json(emulator: SendGridEmulator, path: str) -> Any:
    with urllib.request.urlopen(emulator.url + path, timeout=10) as response:
        return json.loads(response.read())


AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}", "Content-Type": "application/json"}


# ---- success -----------------------------------------------------------------------------------------------


def test_valid_mail_is_accepted_with_202_empty_body_and_message_id(emu: SendGridEmulator) -> None:
    """A valid request gets 202, an empty body, Content-Length 0 and a 22-char base64url X-Message-Id."""
    response = send(emu, mail())
    assert response.status_code == 202
    assert response.body == b""
    assert response.headers["Content-Length"] == "0"
    message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message_id)
    assert [m["message_id"] for m in emu.messages()] == [message_id]


def test_message_ids_differ_per_request(emu: SendGridEmulator) -> None:
    """Each accepted request gets its own X-Message-Id."""
    ids = {send(emu, mail()).headers["X-Message-Id"] for _ in range(5)}
    assert len(ids) == 5


def test_id_factory_and_clock_make_runs_deterministic() -> None:
    """Injected ids and clock show up in the stored message."""
    with SendGridEmulator(clock=Clock(), id_factory=lambda: "fixed-id-0000000000000") as emulator:
        assert send(emulator, mail()).headers["X-Message-Id"] == "fixed-id-0000000000000"
        assert emulator.messages()[0]["accepted_at"] == NOW


def test_sandbox_mode_answers_200_and_delivers_nothing(emu: SendGridEmulator) -> None:
    """mail_settings.sandbox_mode.enable=true validates, answers 200 and stores no message."""
    response = send(emu, mail(mail_settings={"sandbox_mode": {"enable": True}}))
    assert response.status_code == 200
    assert response.body == b""
    assert emu.messages() == []
    assert emu.stats()["sandbox"] == 1


def test_sandbox_mode_still_validates(emu: SendGridEmulator) -> None:
    """An invalid body in sandbox mode is still a 400."""
    rejected(emu, mail(subject="", mail_settings={"sandbox_mode": {"enable": True}}))


def test_same_address_in_two_personalizations_is_allowed(emu: SendGridEmulator) -> None:
    """Duplicates are only forbidden within one personalization."""
    body = mail(personalizations=[{"to": [{"email": "ann@example.com"}]}, {"to": [{"email": "ANN@example.com"}]}])
    assert send(emu, body).status_code == 202
    assert len(emu.messages(to="ann@example.com")) == 2


def test_amp_between_plain_and_html_and_other_types_after_are_accepted(emu: SendGridEmulator) -> None:
    """text/plain, text/x-amp-html, text/html, then anything else is a valid order."""
    content = [
        {"type": "text/plain", "value": "t"},
        {"type": "text/x-amp-html", "value": "<html amp4email></html>"},
        {"type": "text/html", "value": "<p>h</p>"},
        {"type": "text/calendar", "value": "BEGIN:VCALENDAR"},
    ]
    assert send(emu, mail(content=content)).status_code == 202


def test_per_personalization_subjects_replace_the_message_subject(emu: SendGridEmulator) -> None:
    """Without a message subject, every personalization having one is enough."""
    body = mail(personalizations=[{"to": [{"email": "a@example.com"}], "subject": "Just for a"}])
    del body["subject"]
    assert send(emu, body).status_code == 202
    assert emu.messages()[0]["subject"] == "Just for a"


def test_template_id_makes_subject_and_content_optional(emu: SendGridEmulator) -> None:
    """A template supplies subject and content."""
    body = mail(
        template_id="d-123", personalizations=[{"to": [{"email": "a@example.com"}], "dynamic_template_data": {"x": 1}}]
    )
    del body["subject"], body["content"]
    assert send(emu, body).status_code == 202
    assert emu.messages()[0]["dynamic_template_data"] == {"x": 1}


def test_a_full_size_digest_request_is_accepted(emu: SendGridEmulator) -> None:
    """1000 personalizations with 8 substitutions, 2 headers and ~100 KB of html go through and are stored."""
    names = ["name", "email", "unsubscribe_url", "view_url"]
    tags = [f"%%{n}%%" for n in names] + [f"%%{n}:text%%" for n in names]
    html = "<p>" + "x" * 100_000 + " ".join(tags[:4]) + "</p>"
    personalizations = [
        {
            "to": [{"email": f"reader{i}@example.com", "name": f"Reader {i}"}],
            "substitutions": {tag: f"{tag}-{i}" for tag in tags},
            "headers": {
                "List-Unsubscribe": f"<https://x.example/u/{i}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        }
        for i in range(1000)
    ]
    body = mail(
        personalizations=personalizations,
        content=[{"type": "text/plain", "value": " ".join(tags[4:])}, {"type": "text/html", "value": html}],
    )
    assert send(emu, body).status_code == 202
    assert emu.stats()["recipients"] == 1000
    [message] = emu.messages(to="reader999@example.com")
    assert message["html"].endswith("%%name%%-999 %%email%%-999 %%unsubscribe_url%%-999 %%view_url%%-999</p>")
    assert message["headers"]["List-Unsubscribe"] == "<https://x.example/u/999>"


def test_concurrent_clients_are_all_served(emu: SendGridEmulator) -> None:
    """Requests from several threads at once are all accepted and stored."""
    statuses: list[int] = []

    def worker(n: int) -> None:
        for i in range(5):
            body = mail(personalizations=[{"to": [{"email": f"t{n}-{i}@example.com"}]}])
            statuses.append(send(emu, body).status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * 40
    assert len(emu.messages(include_content=False)) == 40


def test_keep_alive_connection_serves_several_requests(emu: SendGridEmulator) -> None:
    """An HTTP/1.1 client may reuse its connection."""
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        for _ in range(2):
            connection.request("POST", "/v3/mail/send", body=json.dumps(mail()).encode(), headers=AUTH)
            response = connection.getresponse()
            response.read()
            assert response.status == 202
    finally:
        connection.close()


# ---- auth and routing --------------------------------------------------------------------------------------


def test_missing_authorization_is_401_wrong_credentials(emu: SendGridEmulator) -> None:
    """No Authorization header: 401 with SendGrid's 'wrong credentials' body."""
    status, headers, body = raw(emu, "POST", "/v3/mail/send", json.dumps(mail()).encode())
    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "errors": [{"message": "Permission denied, wrong credentials", "field": None, "help": None}]
    }


def test_unknown_key_is_401_invalid_grant(emu: SendGridEmulator) -> None:
    """A key the account does not have: 401 'invalid, expired, or revoked'."""
    with pytest.raises(UnauthorizedError) as caught:
        send(emu, mail(), key="SG.not-a-key")
    assert (
        caught.value.to_dict["errors"][0]["message"]
        == "The provided authorization grant is invalid, expired, or revoked"
    )


def test_key_without_mail_send_scope_is_403() -> None:
    """A known key lacking the mail.send scope gets 403 'access forbidden'."""
    with SendGridEmulator(scopeless_keys=["SG.read-only"]) as emulator, pytest.raises(ForbiddenError) as caught:
        send(emulator, mail(), key="SG.read-only")
    assert caught.value.to_dict["errors"][0]["message"] == "access forbidden"


def test_exhausted_credits_are_401_maximum_credits_exceeded() -> None:
    """Once the plan's credits are used up the next send is refused with 401."""
    with SendGridEmulator(credits=1) as emulator:
        assert send(emulator, mail()).status_code == 202
        with pytest.raises(UnauthorizedError) as caught:
            send(emulator, mail())
    assert caught.value.to_dict["errors"][0]["message"] == "Maximum credits exceeded"


def test_wrong_method_is_405_before_auth(emu: SendGridEmulator) -> None:
    """GET on mail/send answers 405 even with a bad key."""
    with pytest.raises(MethodNotAllowedError) as caught:
        client(emu, "SG.not-a-key").client.mail.send.get()
    assert caught.value.to_dict == {"errors": [{"message": "method not allowed", "field": None, "help": None}]}


def test_unknown_path_is_404_json(emu: SendGridEmulator) -> None:
    """An unknown /v3 path answers SendGrid's JSON 404."""
    with pytest.raises(NotFoundError) as caught:
        client(emu).client.mail.sned.post(request_body=mail())
    assert caught.value.to_dict["errors"][0]["message"] == "not found"


# ---- body problems -----------------------------------------------------------------------------------------


def test_malformed_json_is_400_bad_request(emu: SendGridEmulator) -> None:
    """A body that is not JSON gets the generic 'Bad Request' error."""
    status, headers, body = raw(emu, "POST", "/v3/mail/send", b'{"personalizations": [', AUTH)
    assert status == 400
    assert json.loads(body) == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}


@pytest.mark.parametrize("payload", [b"[]", b'"mail"', b"", b'{"send_at": NaN}'])
def test_json_that_is_not_an_object_is_400_bad_request(emu: SendGridEmulator, payload: bytes) -> None:
    """Arrays, strings, empty bodies and NaN are not a mail."""
    status, _, body = raw(emu, "POST", "/v3/mail/send", payload, AUTH)
    assert status == 400
    assert json.loads(body)["errors"][0]["message"] == "Bad Request"


def test_non_utf8_body_is_415(emu: SendGridEmulator) -> None:
    """Latin-1 bytes in the body: 415 'Invalid UTF8 in request'."""
    payload = json.dumps(mail(subject="caf\u00e9"), ensure_ascii=False).encode("latin-1")
    status, _, body = raw(emu, "POST", "/v3/mail/send", payload, AUTH)
    assert status == 415
    assert json.loads(body) == {"errors": [{"message": "Invalid UTF8 in request", "field": None, "help": None}]}


def test_body_over_the_size_limit_is_413() -> None:
    """A body above max_body_bytes (30 MB by default) gets 413 'content too large'."""
    with SendGridEmulator(limits=Limits(max_body_bytes=2_000)) as emulator:
        error = rejected(emulator, mail(content=[{"type": "text/plain", "value": "x" * 3_000}]), PayloadTooLargeError)
    assert error.to_dict["errors"][0]["message"] == "content too large"


def _many(n: int) -> list[dict[str, Any]]:
    return [{"to": [{"email": f"r{i}@example.com"}]} for i in range(n)]


def _no(key: str) -> dict[str, Any]:
    body = mail()
    del body[key]
    return body


INVALID = [
    pytest.param(
        _no("personalizations"), "personalizations", wording.M_PERSONALIZATIONS_REQUIRED, id="no-personalizations"
    ),
    pytest.param(
        mail(personalizations=[]), "personalizations", wording.M_PERSONALIZATIONS_REQUIRED, id="empty-personalizations"
    ),
    pytest.param(
        mail(personalizations=_many(1001)),
        "personalizations",
        "The personalization block is limited to 1000 personalizations per API request. You have provided 1001",
        id="1001-personalizations",
    ),
    pytest.param(
        mail(
            personalizations=[
                {
                    "to": [{"email": f"t{i}@example.com"} for i in range(600)],
                    "cc": [{"email": f"c{i}@example.com"} for i in range(401)],
                }
            ]
        ),
        "personalizations",
        "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
        id="1001-recipients",
    ),
    pytest.param(
        mail(personalizations=[{"to": [{"email": "ann@example.com"}], "bcc": [{"email": "Ann@Example.com"}]}]),
        "personalizations.0",
        "We found the first duplicate instance of [Ann@Example.com] in the personalizations.0.bcc field.",
        id="duplicate-in-personalization",
    ),
    pytest.param(
        mail(personalizations=[{"cc": [{"email": "a@example.com"}]}]),
        "personalizations.0.to",
        wording.M_TO_REQUIRED,
        id="no-to",
    ),
    pytest.param(
        mail(personalizations=[{"to": [{"name": "x"}]}]),
        "personalizations.0.to.0.email",
        "The to email parameter is required.",
        id="to-without-email",
    ),
    pytest.param(
        mail(personalizations=[{"to": [{"email": "not-an-address"}]}]),
        "personalizations.0.to.0.email",
        "does not contain a valid address",
        id="bad-email",
    ),
    pytest.param(
        mail(personalizations=[{"to": [{"email": ["a@example.com"]}]}]),
        "personalizations.0.to.0.email",
        "Invalid type. Expected: string, given: array.",
        id="email-array",
    ),
    pytest.param(_no("from"), "from", "The from object must be provided for every email send.", id="no-from"),
    pytest.param(
        mail(reply_to={"email": "r@example.com"}, reply_to_list=[{"email": "s@example.com"}]),
        "reply_to",
        wording.M_REPLY_TO_EXCLUSIVE,
        id="reply-to-and-list",
    ),
    pytest.param(_no("subject"), "subject", wording.M_SUBJECT_REQUIRED, id="no-subject"),
    pytest.param(mail(subject=""), "subject", wording.M_SUBJECT_EMPTY, id="empty-subject"),
    pytest.param(_no("content"), "content", wording.M_CONTENT_REQUIRED, id="no-content"),
    pytest.param(
        mail(content=[{"type": "text/html", "value": "<p>h</p>"}, {"type": "text/plain", "value": "t"}]),
        "content",
        wording.M_CONTENT_ORDER,
        id="html-before-plain",
    ),
    pytest.param(
        mail(
            content=[
                {"type": "text/plain", "value": "t"},
                {"type": "text/calendar", "value": "c"},
                {"type": "text/html", "value": "h"},
            ]
        ),
        "content",
        wording.M_CONTENT_ORDER,
        id="other-type-before-html",
    ),
    pytest.param(
        mail(content=[{"type": "text/plain", "value": "t"}, {"type": "text/plain", "value": "u"}]),
        "content",
        wording.M_CONTENT_ONCE,
        id="plain-twice",
    ),
    pytest.param(
        mail(content=[{"type": "text/plain", "value": ""}]),
        "content.0.value",
        "The content value must be a string at least one character",
        id="empty-value",
    ),
    pytest.param(
        mail(personalizations=[{"to": [{"email": "a@example.com"}], "headers": {"Subject": "x"}}]),
        "personalizations.0.headers",
        wording.M_HEADER_RESERVED_PERSONALIZATION,
        id="reserved-header-personalization",
    ),
    pytest.param(
        mail(headers={"reply-to": "x@example.com"}),
        "headers",
        wording.M_HEADER_RESERVED_MESSAGE,
        id="reserved-header-message",
    ),
    pytest.param(
        mail(headers={"X-Tag": "a", "x-tag": "b"}), "headers", wording.M_HEADER_DUPLICATE, id="duplicate-header"
    ),
    pytest.param(mail(headers={"X Tag": "a"}), "headers", wording.M_HEADER_KEY_MESSAGE, id="header-key-with-space"),
    pytest.param(
        mail(headers={"X-Count": 3}), "headers", wording.M_HEADER_VALUES_MESSAGE, id="header-value-not-string"
    ),
    pytest.param(
        mail(categories=[f"c{i}" for i in range(11)]),
        "categories",
        "There is a limit of 10 categories for each email that is sent. You provided 11 categories.",
        id="11-categories",
    ),
    pytest.param(
        mail(categories=["a", "a"]), "categories", "you have included a more than once", id="duplicate-category"
    ),
    pytest.param(
        mail(categories=["caf\u00e9"]),
        "categories.0",
        "Categories can not contain non-ASCII characters.",
        id="non-ascii-category",
    ),
    pytest.param(mail(send_at=int(NOW) + 72 * 3600 + 1), "send_at", wording.M_SEND_AT_AHEAD, id="send-at-beyond-72h"),
    pytest.param(
        mail(personalizations=[{"to": [{"email": "a@example.com"}], "send_at": int(NOW) + 73 * 3600}]),
        "personalizations.0.send_at",
        wording.M_SEND_AT_AHEAD,
        id="personal-send-at-beyond-72h",
    ),
    pytest.param(mail(send_at=1.5), "send_at", "Invalid type. Expected: integer, given: number.", id="send-at-float"),
    pytest.param(
        mail(custom_args="batch-1"),
        "custom_args",
        "Invalid type. Expected: object, given: string.",
        id="custom-args-string",
    ),
    pytest.param(mail(custom_args={"n": 1}), "custom_args", wording.M_CUSTOM_ARGS_VALUES, id="custom-args-value-int"),
    pytest.param(mail(custom_args={}), "custom_args", wording.M_CUSTOM_ARGS_EMPTY, id="custom-args-empty"),
    pytest.param(
        mail(personalizations=[{"to": [{"email": "a@example.com"}], "custom_args": {"k": "x" * 10_000}}]),
        "personalizations.0.custom_args",
        "may not exceed 10,000 bytes per personalization",
        id="custom-args-too-big",
    ),
    pytest.param(
        mail(
            personalizations=[
                {"to": [{"email": "a@example.com"}], "substitutions": {f"-k{i}-": "v" for i in range(101)}}
            ]
        ),
        "personalizations.0.substitutions",
        "You are limited to 100 substitutions per personalization. You provided 101.",
        id="101-substitutions",
    ),
    pytest.param(
        mail(personalizations=[{"to": [{"email": "a@example.com"}], "substitutions": {"-k-": "v" * 10_000}}]),
        "personalizations.0.substitutions",
        "may not exceed 10,000 bytes",
        id="substitutions-too-big",
    ),
    pytest.param(
        mail(
            template_id="d-abc", personalizations=[{"to": [{"email": "a@example.com"}], "substitutions": {"-n-": "x"}}]
        ),
        "personalizations.0.substitutions",
        wording.M_SUBSTITUTIONS_DYNAMIC,
        id="substitutions-with-dynamic-template",
    ),
    pytest.param(
        mail(asm={"group_id": 7}),
        "asm.group_id",
        "The ASM group ID must be a valid Group ID on your account. You provided 7.",
        id="unknown-asm-group",
    ),
    pytest.param(
        mail(asm={"group_id": 42, "groups_to_display": [42, 8]}),
        "asm.groups_to_display",
        "You provided [8].",
        id="unknown-group-to-display",
    ),
    pytest.param(
        mail(asm={"group_id": "42"}),
        "asm.group_id",
        "Invalid type. Expected: integer, given: string.",
        id="asm-group-string",
    ),
    pytest.param(
        mail(mail_settings={"sandbox_mode": {"enable": "true"}}),
        "mail_settings.sandbox_mode.enable",
        "The sandbox mode enable param should be a boolean value.",
        id="sandbox-enable-string",
    ),
    pytest.param(
        mail(tracking_settings={"click_tracking": {"enable": 1}}),
        "tracking_settings.click_tracking.enable",
        "The click tracking enable param should be a boolean value.",
        id="click-tracking-int",
    ),
    pytest.param(
        mail(mail_settings={"bypass_list_management": {"enable": True}, "bypass_spam_management": {"enable": True}}),
        "mail_settings.bypass_list_management",
        wording.M_BYPASS_COMBINED,
        id="bypass-combined",
    ),
    pytest.param(
        mail(attachments=[{"content": "not base64!", "filename": "a.txt"}]),
        "attachments.0.content",
        wording.M_ATTACHMENT_BASE64,
        id="attachment-not-base64",
    ),
    pytest.param(
        mail(attachments=[{"content": "aGk="}]),
        "attachments.0.filename",
        "filename is required.",
        id="attachment-without-filename",
    ),
    pytest.param(
        mail(attachments=[{"content": "aGk=", "filename": "a.txt", "disposition": "embedded"}]),
        "attachments.0.disposition",
        "You provided embedded.",
        id="attachment-disposition",
    ),
    pytest.param(
        mail(personalizations=[{"to": [{"email": "a@example.com", "name": "Smith, Ann"}]}]),
        "personalizations.0.to.0.name",
        "The to name cannot contain ';' or ','.",
        id="name-with-comma",
    ),
    pytest.param(
        mail(reply_to_list=[{"email": "r@example.com"}, {"email": "R@example.com"}]),
        "reply_to_list",
        wording.M_REPLY_TO_LIST_UNIQUE,
        id="reply-to-list-duplicate",
    ),
]


@pytest.mark.parametrize(("body", "field", "message"), INVALID)
def test_invalid_body_is_400_with_sendgrid_field_and_message(
    emu: SendGridEmulator, body: dict[str, Any], field: str, message: str
) -> None:
    """Each broken rule yields a 400 naming the dotted field, SendGrid's message and a help link."""
    error = rejected(emu, body)
    assert error.headers["Content-Type"] == "application/json"
    errors = error.to_dict["errors"]
    matching = [e for e in errors if e["field"] == field and message in e["message"]]
    assert matching, errors
    assert matching[0]["help"].startswith(HELP)
    assert emu.messages() == []


def test_help_links_follow_sendgrid_anchors(emu: SendGridEmulator) -> None:
    """Help links drop indexes and point at the errors-page table, as the live API does."""
    error = rejected(
        emu,
        mail(
            personalizations=[{"to": [{"name": "x"}], "cc": [{"email": "a@example.com"}, {"email": "A@example.com"}]}]
        ),
    )
    helps = {e["field"]: e["help"] for e in error.to_dict["errors"]}
    assert helps["personalizations.0.to.0.email"] == f"{HELP}#message.personalizations.to"
    assert helps["personalizations.0"] == f"{HELP}#message.recipient-errors"


def test_all_errors_come_back_in_one_response(emu: SendGridEmulator) -> None:
    """SendGrid reports as many problems as it can find at once."""
    body = mail(subject="", categories=[1], custom_args="x", personalizations=[{"to": [{"email": "a"}]}, {"to": []}])
    fields = {e["field"] for e in rejected(emu, body).to_dict["errors"]}
    assert {
        "subject",
        "categories.0",
        "custom_args",
        "personalizations.0.to.0.email",
        "personalizations.1.to",
    } <= fields


def test_duplicate_json_header_keys_are_rejected(emu: SendGridEmulator) -> None:
    """The same header key twice in the raw JSON is a duplicate, although Python's parser would keep one."""
    payload = json.dumps(mail())[:-1] + ', "headers": {"X-B": "1", "X-B": "2"}}'
    status, _, body = raw(emu, "POST", "/v3/mail/send", payload.encode(), AUTH)
    assert status == 400
    assert json.loads(body)["errors"][0]["message"] == wording.M_HEADER_DUPLICATE


def test_unverified_sender_is_403_on_from() -> None:
    """With verified senders configured, an unknown from address is 403 with field 'from'; a domain entry admits it."""
    with SendGridEmulator(verified_senders=["@example.org"]) as emulator:
        assert send(emulator, mail()).status_code == 202
        error = rejected(emulator, mail(**{"from": {"email": "someone@elsewhere.net"}}), ForbiddenError)
    assert error.to_dict["errors"] == [{"message": wording.M_UNVERIFIED_SENDER, "field": "from", "help": None}]


def test_template_ids_and_ip_pools_can_be_restricted() -> None:
    """Configured template ids and IP pools reject unknown ones."""
    with SendGridEmulator(templates=["d-known"], ip_pools=["transactional"]) as emulator:
        error = rejected(emulator, mail(template_id="d-unknown", ip_pool_name="marketing"))
    messages = {e["field"]: e["message"] for e in error.to_dict["errors"]}
    assert (
        messages["template_id"]
        == "The Template ID must be a valid template id for your account. You provided d-unknown."
    )
    assert messages["ip_pool_name"].endswith("You provided marketing.")


# ---- rate limit and faults ---------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_reset_headers() -> None:
    """Beyond N requests per window: 429, X-RateLimit-* headers with an epoch reset, a JSON body; then it reopens."""
    clock = Clock()
    with SendGridEmulator(rate_limit=RateLimit(limit=2, window=60), clock=clock) as emulator:
        send(emulator, mail())
        send(emulator, mail())
        error = rejected(emulator, mail(), TooManyRequestsError)
        assert error.headers["X-RateLimit-Limit"] == "2"
        assert error.headers["X-RateLimit-Remaining"] == "0"
        assert error.headers["X-RateLimit-Reset"] == str(int(NOW) + 60)
        assert error.to_dict == {"errors": [{"message": "too many requests", "field": None, "help": None}]}
        clock.now += 60
        assert send(emulator, mail()).status_code == 202


def test_rate_limit_counts_each_key_separately() -> None:
    """One key hitting its limit does not throttle another."""
    with SendGridEmulator(keys=["SG.a", "SG.b"], rate_limit=RateLimit(1, 60)) as emulator:
        send(emulator, mail(), key="SG.a")
        assert send(emulator, mail(), key="SG.b").status_code == 202
        with pytest.raises(TooManyRequestsError):
            send(emulator, mail(), key="SG.a")


def test_scripted_500_then_success(emu: SendGridEmulator) -> None:
    """A scripted 500 hits the next request only; the retry is accepted."""
    emu.add_fault(500)
    error = rejected(emu, mail(), InternalServerError)
    assert error.to_dict["errors"][0]["message"] == "internal server error"
    assert send(emu, mail()).status_code == 202
    assert [r["status"] for r in emu.requests()] == [500, 202]
    assert len(emu.messages()) == 1


def test_scripted_faults_run_in_order_and_count(emu: SendGridEmulator) -> None:
    """Faults queue: two 503s, then a custom 502, then normal service."""
    emu.add_fault(503, count=2)
    emu.add_fault(502, message="upstream hiccup")
    for _ in range(2):
        rejected(emu, mail(), ServiceUnavailableError)
    with pytest.raises(HTTPError) as caught:
        send(emu, mail())
    assert caught.value.status_code == 502
    assert caught.value.to_dict["errors"][0]["message"] == "upstream hiccup"
    assert send(emu, mail()).status_code == 202


def test_scripted_429_carries_reset_header_when_asked() -> None:
    """A 429 fault with reset_in sets X-RateLimit-Reset to now + reset_in."""
    with SendGridEmulator(clock=Clock()) as emulator:
        emulator.add_fault(429, reset_in=5)
        emulator.add_fault(429)
        first = rejected(emulator, mail(), TooManyRequestsError)
        second = rejected(emulator, mail(), TooManyRequestsError)
    assert first.headers["X-RateLimit-Reset"] == str(int(NOW) + 5)
    assert second.headers.get("X-RateLimit-Reset") is None


def test_delay_fault_trips_the_client_timeout(emu: SendGridEmulator) -> None:
    """A delayed answer makes a client with a short timeout raise TimeoutError; the request was still accepted."""
    emu.add_fault(delay=3)
    sg = client(emu)
    sg.client.timeout = 0.3
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sg.client.mail.send.post(request_body=mail())
    assert time.monotonic() - started < 2
    assert len(emu.messages()) == 1


def test_drop_fault_stores_the_mail_and_closes_without_answer(emu: SendGridEmulator) -> None:
    """'drop' accepts and stores the mail, then hangs up: the client sees a connection error (the lost 202)."""
    emu.add_fault(drop=True)
    with pytest.raises(ConnectionError):
        send(emu, mail())
    assert len(emu.messages()) == 1
    [record] = emu.requests()
    assert record["dropped"] is True and record["status"] == 202
    send(emu, mail())  # the naive retry: now the reader has it twice
    assert len(emu.messages(to="ann@example.com")) == 2


def test_random_faults_are_reproducible_with_a_seed() -> None:
    """rate+seed picks the same requests to fail as random.Random(seed) predicts."""
    rng = random.Random(7)
    expected = [500 if rng.random() < 0.5 else 202 for _ in range(12)]
    with SendGridEmulator() as emulator:
        emulator.add_fault(500, rate=0.5, seed=7)
        for _ in expected:
            with contextlib.suppress(InternalServerError):
                send(emulator, mail())
        seen = [r["status"] for r in emulator.requests()]
    assert seen == expected
    assert {202, 500} <= set(seen)


def test_bad_fault_specs_are_refused(emu: SendGridEmulator) -> None:
    """A fault needs something to do, and a status cannot also drop."""
    with pytest.raises(ValueError):
        emu.add_fault()
    with pytest.raises(ValueError):
        emu.add_fault(500, drop=True)
    with pytest.raises(ValueError):
        emu.add_fault(200)


# ---- what was delivered ------------------------------------------------------------------------------------


def test_substitutions_are_applied_per_recipient(emu: SendGridEmulator) -> None:
    """Each recipient's subject, text and html carry their own values; a value that looks like a tag stays as is."""
    people = [("ann@example.com", "Ann"), ("bob@example.com", "%%email%%")]
    body = mail(
        subject="Hi %%name:text%%",
        content=[
            {"type": "text/plain", "value": "Dear %%name:text%% <%%email:text%%>"},
            {"type": "text/html", "value": "<p>Dear %%name%% (%%email%%)</p>"},
        ],
        personalizations=[
            {
                "to": [{"email": email}],
                "substitutions": {"%%name%%": name, "%%name:text%%": name, "%%email%%": email, "%%email:text%%": email},
            }
            for email, name in people
        ],
    )
    send(emu, body)
    ann, bob = emu.messages(to="ann@example.com")[0], emu.messages(to="bob@example.com")[0]
    assert (ann["subject"], ann["text"], ann["html"]) == (
        "Hi Ann",
        "Dear Ann <ann@example.com>",
        "<p>Dear Ann (ann@example.com)</p>",
    )
    assert bob["html"] == "<p>Dear %%email%% (bob@example.com)</p>"


def test_messages_merge_headers_custom_args_and_overrides(emu: SendGridEmulator) -> None:
    """Personalization headers/custom_args/from/send_at override the message level; asm and categories carry over."""
    body = mail(
        headers={"X-Edition": "2026-03", "list-unsubscribe": "<mailto:u@example.org>"},
        custom_args={"edition": "2026-03", "batch": "1"},
        categories=["digest"],
        asm={"group_id": 42},
        send_at=int(NOW),
        personalizations=[
            {
                "to": [{"email": "a@example.com"}],
                "from": {"email": "editor@example.org"},
                "headers": {"List-Unsubscribe": "<https://x.example/u/a>"},
                "custom_args": {"batch": "2", "reader": "a"},
                "send_at": int(NOW) + 60,
            }
        ],
    )
    send(emu, body)
    [message] = emu.messages()
    assert message["headers"] == {"X-Edition": "2026-03", "List-Unsubscribe": "<https://x.example/u/a>"}
    assert message["custom_args"] == {"edition": "2026-03", "batch": "2", "reader": "a"}
    assert message["from"] == {"email": "editor@example.org"}
    assert message["send_at"] == int(NOW) + 60
    assert (message["categories"], message["asm"]) == (["digest"], {"group_id": 42})


def test_subscription_tracking_adds_one_click_unsubscribe_headers(emu: SendGridEmulator) -> None:
    """With subscription tracking on, SendGrid's List-Unsubscribe and List-Unsubscribe-Post appear."""
    send(emu, mail(tracking_settings={"subscription_tracking": {"enable": True}}))
    headers = emu.messages()[0]["headers"]
    assert headers["List-Unsubscribe"].startswith("<https://")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_message_filters_match_to_cc_bcc_id_category_and_custom_args(emu: SendGridEmulator) -> None:
    """messages() filters by recipient (any of to/cc/bcc), message id, category and custom_args."""
    first = send(
        emu,
        mail(
            categories=["digest"],
            personalizations=[
                {"to": [{"email": "a@example.com"}], "cc": [{"email": "b@example.com"}], "custom_args": {"k": "1"}},
                {"to": [{"email": "c@example.com"}], "bcc": [{"email": "d@example.com"}], "custom_args": {"k": "2"}},
            ],
        ),
    ).headers["X-Message-Id"]
    send(emu, mail(categories=["other"], personalizations=[{"to": [{"email": "A@example.com"}]}]))
    assert len(emu.messages()) == 5
    assert [m["recipient_type"] for m in emu.messages(to="B@EXAMPLE.com")] == ["cc"]
    assert [m["recipient_type"] for m in emu.messages(to="d@example.com")] == ["bcc"]
    assert len(emu.messages(to="a@example.com")) == 2
    assert {m["email"] for m in emu.messages(message_id=first)} == {
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    }
    assert {m["email"] for m in emu.messages(category="digest", custom_args={"k": "2"})} == {
        "c@example.com",
        "d@example.com",
    }
    assert emu.messages(category="nope") == []
    assert len(emu.messages(limit=2, offset=1)) == 2


def test_http_inspection_api_mirrors_python(emu: SendGridEmulator) -> None:
    """GET /_emulator/messages takes the same filters as messages()."""
    send(emu, mail(custom_args={"edition": "e1"}, categories=["digest"]))
    by_http = get_json(emu, "/_emulator/messages?to=ann@example.com&category=digest&custom_arg=edition=e1")
    assert by_http["count"] == 1
    assert by_http["messages"] == emu.messages(to="ann@example.com")
    assert get_json(emu, "/_emulator/messages?custom_arg=edition=e2")["count"] == 0
    assert "content" not in get_json(emu, "/_emulator/messages?include_content=false")["messages"][0]


def test_requests_log_redacts_the_api_key(emu: SendGridEmulator) -> None:
    """The request log keeps body, headers and status, never the key."""
    send(emu, mail())
    rejected(emu, mail(subject=""))
    log = get_json(emu, "/_emulator/requests")["requests"]
    assert [r["status"] for r in log] == [202, 400]
    assert log[0]["headers"]["Authorization"] == "[REDACTED]"
    assert DEFAULT_API_KEY not in json.dumps(log)
    assert json.loads(log[0]["body"]) == mail()
    assert log[1]["response"]["errors"][0]["field"] == "subject"


def test_stats_count_requests_by_status(emu: SendGridEmulator) -> None:
    """/_emulator/stats counts requests, accepted mails, recipients and statuses."""
    send(emu, mail(personalizations=[{"to": [{"email": "a@example.com"}], "cc": [{"email": "b@example.com"}]}]))
    rejected(emu, mail(subject=""))
    stats = get_json(emu, "/_emulator/stats")
    assert (stats["requests"], stats["accepted"], stats["recipients"]) == (2, 1, 2)
    assert stats["by_status"] == {"202": 1, "400": 1}


def test_delete_messages_resets_everything_but_config(emu: SendGridEmulator) -> None:
    """DELETE /_emulator/messages forgets messages, requests and stats."""
    send(emu, mail())
    status, _, _ = raw(emu, "DELETE", "/_emulator/messages")
    assert status == 200
    assert emu.messages() == [] and emu.requests() == [] and emu.stats()["requests"] == 0
    assert emu.config()["asm_groups"] == [42]


def test_faults_can_be_scripted_over_http(emu: SendGridEmulator) -> None:
    """POST /_emulator/faults queues faults from JSON; bad specs are a 400."""
    status, _, body = raw(emu, "POST", "/_emulator/faults", json.dumps([{"status": 503, "count": 2}]).encode())
    assert status == 201 and json.loads(body)["faults"] == [{"status": 503, "delay": 0.0, "drop": False, "count": 2}]
    for _ in range(2):
        rejected(emu, mail(), ServiceUnavailableError)
    assert send(emu, mail()).status_code == 202
    status, _, _ = raw(emu, "POST", "/_emulator/faults", b'{"status": 503, "drop": true}')
    assert status == 400


def test_config_can_be_changed_over_http(emu: SendGridEmulator) -> None:
    """POST /_emulator/config changes account settings for later requests; unknown settings are a 400."""
    rejected(emu, mail(asm={"group_id": 5}))
    status, _, body = raw(
        emu, "POST", "/_emulator/config", b'{"asm_groups": [5], "limits": {"substitutions_max_keys": 150}}'
    )
    assert status == 200
    assert json.loads(body)["limits"]["substitutions_max_keys"] == 150
    assert send(emu, mail(asm={"group_id": 5})).status_code == 202
    assert get_json(emu, "/_emulator/config")["keys"] == ["SG.te..."]
    status, _, _ = raw(emu, "POST", "/_emulator/config", b'{"colour": "blue"}')
    assert status == 400


def test_batch_ids_are_created_and_then_checked(emu: SendGridEmulator) -> None:
    """POST /v3/mail/batch gives a batch id; GET knows it; a mail with an unknown batch id is then refused."""
    sg = client(emu)
    created = sg.client.mail.batch.post()
    assert created.status_code == 201
    batch_id = json.loads(created.body)["batch_id"]
    assert sg.client.mail.batch._(batch_id).get().status_code == 200
    with pytest.raises(NotFoundError):
        sg.client.mail.batch._("nope").get()
    assert send(emu, mail(batch_id=batch_id)).status_code == 202
    rejected(emu, mail(batch_id="nope"))


# ---- the schema fast path ----------------------------------------------------------------------------------


def _mutations(rng: random.Random) -> Iterator[Any]:
    good = {
        "to": [{"email": "a@example.com", "name": "A"}],
        "cc": [{"email": "c@example.com"}],
        "subject": "s",
        "headers": {"X-A": "1"},
        "substitutions": {"-n-": "v"},
        "custom_args": {"k": "v"},
        "send_at": 1,
        "from": {"email": "f@example.com"},
        "dynamic_template_data": {"any": [1, None]},
    }
    yield good
    odd_values: list[Any] = [
        None,
        True,
        1,
        1.0,
        1.5,
        "",
        "x",
        "a@b.c",
        "x" * 321 + "@e.com",
        [],
        [{}],
        {},
        {"email": 1},
        [{"email": "many@example.com"}] * 1001,  # beyond the cc/bcc maxItems
    ]
    paths = [
        ("to",), ("to", 0), ("to", 0, "email"), ("to", 0, "name"), ("cc",), ("cc", 0, "email"), ("subject",),
        ("headers",), ("headers", "X-A"), ("substitutions", "-n-"), ("custom_args", "k"), ("send_at",),
        ("from",), ("from", "email"), ("bcc",), ("dynamic_template_data",), ("unknown",),
    ]  # fmt: skip
    for _ in range(600):
        item = json.loads(json.dumps(good))
        path = rng.choice(paths)
        target = item
        for step in path[:-1]:
            target = target[step]
        if rng.random() < 0.15 and isinstance(target, dict):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = rng.choice(odd_values)
        yield item
    yield from odd_values


def test_compiled_personalization_check_agrees_with_jsonschema() -> None:
    """The fast personalization check says valid exactly when jsonschema does, over 600+ mutated items."""
    check = schema.SchemaCheck(schema.load_schema())
    compared = 0
    for item in _mutations(random.Random(3)):
        assert check.item_is_valid(item) == check._item.is_valid(item), item
        compared += 1
    assert compared > 600
    assert check.item_is_valid != check._item.is_valid  # the compiled path is in use, not the fallback


# ---- by hand -----------------------------------------------------------------------------------------------


def test_module_runs_by_hand_and_prints_how_to_use_it() -> None:
    """`python -m digest.testing.sendgrid_emulator --port 0` serves and prints the URL and the digest settings."""
    process = subprocess.Popen(
        [sys.executable, "-m", "digest.testing.sendgrid_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        assert "DIGEST_SENDGRID_HOST=" in process.stdout.readline() + process.stdout.readline()
        response = SendGridAPIClient(api_key=DEFAULT_API_KEY, host=url).client.mail.send.post(request_body=mail())
        assert response.status_code == 202
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_without_jsonschema_the_command_names_the_extra() -> None:
    """Without jsonschema, `python -m digest.testing.sendgrid_emulator` says to install digest[emulator]: exit 1,
    no traceback; importing the emulator raises the same message."""
    blocked = "import sys; sys.modules['jsonschema'] = None; "
    run = fresh_python(
        blocked + "import runpy; runpy.run_module('digest.testing.sendgrid_emulator', run_name='__main__')"
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "pip install 'digest[emulator]'" in run.stderr
    imported = fresh_python(blocked + "from digest.testing.sendgrid_emulator import SendGridEmulator")
    assert "ModuleNotFoundError" in imported.stderr and "digest[emulator]" in imported.stderr


def test_the_command_line_loads_the_emulator_once() -> None:
    """`python -m` runs __main__.py beside the server: the server module is imported once, not also as __main__."""
    code = (
        "import runpy, sys; sys.argv = ['x', '--help']\n"
        "try:\n    runpy.run_module('digest.testing.sendgrid_emulator', run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('digest.testing')))"
    )
    run = fresh_python(code)
    assert run.returncode == 0, run.stderr
    loaded = run.stdout.strip().splitlines()[-1]
    assert "digest.testing.sendgrid_emulator.server'" in loaded
    assert "__main__" not in loaded


def test_malformed_http_gets_a_json_error_too(emu: SendGridEmulator) -> None:
    """Even requests the HTTP layer rejects are answered in SendGrid's JSON shape, not an HTML page."""
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as connection:
        connection.sendall(b"BREW /v3/mail/send HTTP/1.1\r\nHost: x\r\n\r\n")
        response = http.client.HTTPResponse(connection)
        response.begin()
        assert response.status == 501
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.read())["errors"][0]["field"] is None
