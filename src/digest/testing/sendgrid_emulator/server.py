"""Test kit: a local SendGrid v3 mail/send emulator that the real `sendgrid` client talks to over HTTP.

It implements SendGrid's routing, auth, validation (the corrected OpenAPI request schema plus the rules a
schema cannot express), its status codes and error bodies, a rate limiter, scriptable faults, and an
inspection API under `/_emulator` that shows what each recipient got (docs/EMULATOR.md).

    with SendGridEmulator() as emu:
        sg = SendGridAPIClient(api_key=DEFAULT_API_KEY, host=emu.url)
        ...
        emu.messages(to="ann@example.com")

By hand: `python -m digest.testing.sendgrid_emulator --port 3030` (see docs/EMULATOR.md).
The request schema is MIT-licensed Twilio material (LICENSE-sendgrid-oai.txt beside this file).
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import http.server
import json
import logging
import math
import random
import re
import secrets
import string
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from email.message import Message
from importlib import resources
from typing import Any, Final

try:
    from jsonschema import Draft202012Validator, FormatChecker, validators
except ModuleNotFoundError as exc:  # only the [emulator] and [test] extras install it
    raise ModuleNotFoundError(
        "the SendGrid emulator needs jsonschema, which digest installs only with an extra: "
        "pip install 'digest[emulator]'",
        name=exc.name,
    ) from None

__all__ = ["DEFAULT_API_KEY", "Limits", "RateLimit", "SendGridEmulator"]

log = logging.getLogger(__name__)

DEFAULT_API_KEY: Final = "SG.test-key"
SEND_PATH: Final = "/v3/mail/send"
BATCH_PATH: Final = "/v3/mail/batch"
INSPECT_PATH: Final = "/_emulator"
SCHEMA_FILE: Final = "mail_send_request.corrected.schema.json"

HELP_BASE: Final = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
RESERVED_HEADERS: Final = frozenset(
    h.lower()
    for h in (
        "x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type", "Content-Transfer-Encoding",
        "To", "From", "Subject", "Reply-To", "CC", "BCC",
    )
)  # fmt: skip
# Headers on every /v3 answer, copied from a documented live 202.
SENDGRID_HEADERS: Final = (
    ("Access-Control-Allow-Origin", "https://sendgrid.api-docs.io"),
    ("Access-Control-Allow-Methods", "POST"),
    ("Access-Control-Allow-Headers", "Authorization, Content-Type, On-behalf-of, x-sg-elas-acl"),
    ("Access-Control-Max-Age", "600"),
    ("X-No-CORS-Reason", "https://sendgrid.com/docs/Classroom/Basics/API/cors.html"),
)
STATUS_MESSAGES: Final = {
    400: "Bad Request",
    401: "Permission denied, wrong credentials",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "content too large",
    415: "Invalid UTF8 in request",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}
AUTO_UNSUBSCRIBE_HOST: Final = "sendgrid.emulator.invalid"

JSON = Any  # a decoded JSON value; the request body is validated, not trusted, so it stays loosely typed
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Limits:
    """Account limits the request schema cannot express.

    Where SendGrid's own sources disagree the default is the stricter value: a client that
    passes the emulator also passes SendGrid. The 1000-personalization and 10-category caps live in the schema.
    """

    max_recipients: int = 1000  # to + cc + bcc over the whole request
    max_body_bytes: int = 30_000_000  # larger bodies get 413
    custom_args_max_bytes: int = 10_000  # merged message + personalization custom_args, compact UTF-8 JSON
    custom_args_max_keys: int = 100
    substitutions_max_bytes: int = 10_000  # per personalization, compact UTF-8 JSON
    substitutions_max_keys: int = 100
    send_at_max_ahead: float = 72 * 3600.0  # seconds
    reject_name_separators: bool = True  # to/cc/bcc names with ';' or ',' (documented, unconfirmed live)


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` mail/send requests per API key in each fixed `window` of seconds."""

    limit: int
    window: float = 60.0


@dataclass(frozen=True)
class _Config:
    """Everything `configure` changes. Replaced whole, so a request reads one consistent snapshot without a lock."""

    keys: frozenset[str]
    scopeless_keys: frozenset[str] = frozenset()  # known keys without the mail.send scope -> 403
    exhausted_keys: frozenset[str] = frozenset()  # known keys whose plan is out of credits -> 401
    verified_senders: frozenset[str] | None = None  # lower-cased addresses or "@domain"; None accepts any sender
    asm_groups: frozenset[int] | None = None  # None accepts any group id
    templates: frozenset[str] | None = None
    ip_pools: frozenset[str] | None = None
    rate_limit: RateLimit | None = None
    rate_limit_headers_on_success: bool = False  # live mail/send reportedly omits them on 2xx
    limits: Limits = Limits()

    def describe(self) -> dict[str, JSON]:
        def sorted_or_none(values: Iterable[Any] | None) -> list[Any] | None:
            return None if values is None else sorted(values)

        return {
            # Keys are shown masked: someone may start the emulator with a key that also works elsewhere.
            "keys": sorted(_mask(k) for k in self.keys),
            "scopeless_keys": sorted(_mask(k) for k in self.scopeless_keys),
            "exhausted_keys": sorted(_mask(k) for k in self.exhausted_keys),
            "verified_senders": sorted_or_none(self.verified_senders),
            "asm_groups": sorted_or_none(self.asm_groups),
            "templates": sorted_or_none(self.templates),
            "ip_pools": sorted_or_none(self.ip_pools),
            "rate_limit": None if self.rate_limit is None else asdict(self.rate_limit),
            "rate_limit_headers_on_success": self.rate_limit_headers_on_success,
            "limits": asdict(self.limits),
        }


def _mask(key: str) -> str:
    return key[:5] + "..." if len(key) > 8 else "***"


# --------------------------------------------------------------------------------------------------------------
# Errors in SendGrid's shape
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Err:
    message: str
    field: str | None = None
    help: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {"message": self.message, "field": self.field, "help": self.help}


# The anchors of SendGrid's errors page. A field's help link points at the longest of these that prefixes the
# field with indexes removed: the live API answers personalizations.0.to.0.email with #message.personalizations.to.
_HELP_ANCHORS: Final = frozenset(
    {
        "personalizations", "personalizations.bcc", "personalizations.cc", "personalizations.custom_args",
        "personalizations.headers", "personalizations.send_at", "personalizations.subject",
        "personalizations.substitutions", "personalizations.to", "asm.group_id", "asm.groups_to_display",
        "attachments.content", "attachments.content_id", "attachments.disposition", "attachments.filename",
        "attachments.type", "batch_id", "categories", "content", "content.type", "content.value", "from",
        "headers", "ip_pool_name", "reply_to", "send_at", "subject", "template_id",
    }
)  # fmt: skip


def _help(field_path: str) -> str:
    parts = [p for p in field_path.split(".") if not p.isdigit()]
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in _HELP_ANCHORS:
            return f"{HELP_BASE}#message.{candidate}"
    return f"{HELP_BASE}#message.{'.'.join(parts)}"


def _err(message: str, path: str | Path) -> _Err:
    field_path = path if isinstance(path, str) else ".".join(str(p) for p in path)
    return _Err(message, field_path, _help(field_path))


def _error_body(errors: Iterable[_Err]) -> bytes:
    return json.dumps({"errors": [e.as_json() for e in errors]}).encode()


# --------------------------------------------------------------------------------------------------------------
# Messages. Verbatim where a live answer or SendGrid's errors page gives one; the few
# rules SendGrid documents without wording get a message in the same style (docs/EMULATOR.md lists them).
# --------------------------------------------------------------------------------------------------------------

_EG = '{"email": "example@example.com"} or {"email": "example@example.com", "name": "Example Recipient"}'
M_PERSONALIZATIONS_REQUIRED: Final = (
    "The personalizations field is required and must have at least one personalization."
)
M_TO_REQUIRED: Final = (
    "The to array is required for all personalization objects, and must have at least one email object with a "
    "valid email address."
)
M_FROM_REQUIRED: Final = (
    "The from object must be provided for every email send. It is an object that requires the email parameter, "
    f"but may also contain a name parameter. e.g. {_EG}"
)
M_TOO_MANY_PERSONALIZATIONS: Final = (
    "The personalization block is limited to {limit} personalizations per API request. You have provided {n} "
    "personalizations. Please consider splitting this into multiple requests and resending your request."
)
M_TOO_MANY_RECIPIENTS: Final = "There is a limit of {limit} total recipients (to + cc + bcc) per request."
M_DUPLICATE: Final = (
    "Each email address in the personalization block should be unique between to, cc, and bcc. We found the first "
    "duplicate instance of [{email}] in the {where} field."
)
M_SUBJECT_EMPTY: Final = "The subject of your email must be a string at least one character in length."
M_SUBJECT_REQUIRED: Final = (
    "The subject is required. You can get around this requirement if you use a template with a subject defined or "
    "if every personalization has a subject defined."
)
M_CONTENT_REQUIRED: Final = (
    "The content param is required unless you are using a transactional template and have defined a template_ID."
)
M_CONTENT_EMPTY: Final = (
    "There must be at least one defined content block. We typically suggest both text/plain and text/html blocks "
    "are included, but only one block is required."
)
M_CONTENT_ORDER: Final = (
    "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain "
    "needs to be first, followed by text/html, followed by any other content."
)
M_CONTENT_ONCE: Final = "If present, text/plain and text/html may only be provided once."
M_CATEGORIES_LIMIT: Final = (
    "There is a limit of {limit} categories for each email that is sent. You provided {n} categories."
)
M_SEND_AT_AHEAD: Final = "Scheduling more than 72 hours in advance is forbidden."
M_HEADER_VALUES_MESSAGE: Final = "The header values must be strings."
M_HEADER_VALUES_PERSONALIZATION: Final = "All values of the headers object must be strings."
M_HEADER_DUPLICATE: Final = "The headers cannot contain duplicate keys."
M_HEADER_KEY_MESSAGE: Final = "Header keys cannot contain non-ASCII characters and empty spaces."
M_HEADER_KEY_PERSONALIZATION: Final = "Header keys cannot contain non-ASCII characters or empty spaces."
M_HEADER_RESERVED_MESSAGE: Final = "Header can not be one of the reserved keys."
M_HEADER_RESERVED_PERSONALIZATION: Final = "Header cannot be one of the reserved keys."
M_CUSTOM_ARGS_VALUES: Final = "All values of custom arguments object must be strings"
M_CUSTOM_ARGS_EMPTY: Final = "custom_args cannot be empty."
M_CUSTOM_ARGS_SIZE: Final = (
    "The combined size of both global and personalization custom arguments may not exceed {limit:,} bytes per "
    "personalization."
)
M_CUSTOM_ARGS_KEYS: Final = (
    "The combined global and personalization custom arguments may not have more than {limit} keys per "
    "personalization. You provided {n}."
)
M_SUBSTITUTIONS_VALUES: Final = (
    "The substitution values must be an object of key/value pairs, where the values are all strings."
)
M_SUBSTITUTIONS_KEYS: Final = "You are limited to {limit} substitutions per personalization. You provided {n}."
M_SUBSTITUTIONS_SIZE: Final = (
    "The substitutions of a personalization may not exceed {limit:,} bytes. You provided {n:,} bytes."
)
M_SUBSTITUTIONS_DYNAMIC: Final = "Substitutions may not be used with dynamic templating"
M_ASM_GROUP: Final = "The ASM group ID must be a valid Group ID on your account. You provided {value}."
M_ASM_DISPLAY: Final = "All ASM groups to display must be valid ASM groups IDs on your account. You provided {value}."
M_TEMPLATE: Final = "The Template ID must be a valid template id for your account. You provided {value}."
M_IP_POOL: Final = "The IP Pool name must be a valid pool name for your account. You provided {value}."
M_BATCH: Final = "The batch_id must be a valid batch ID for your account. You provided {value}."
M_REPLY_TO_EXCLUSIVE: Final = "reply_to is mutually exclusive with reply_to_list."
M_REPLY_TO_LIST_UNIQUE: Final = "Each email address in the reply_to_list should be unique."
M_BYPASS_COMBINED: Final = (
    "bypass_list_management cannot be combined with bypass_spam_management, bypass_bounce_management or "
    "bypass_unsubscribe_management."
)
M_NAME_SEPARATORS: Final = "The {kind} name cannot contain ';' or ','."
M_ATTACHMENT_BASE64: Final = "The attachment content must be base64 encoded."
M_ATTACHMENT_CHARS: Final = {
    "filename": "The filename of your attachment cannot contain ';', ',', or CRLF characters.",
    "type": "The type cannot contain ';', ',', or CRLF characters.",
    "content_id": "The content ID of your attachment cannot contain ';', ',', or CRLF characters.",
}
M_CONTENT_TYPE_CHARS: Final = "Cannot contain ';', or CRLF characters."
M_UNVERIFIED_SENDER: Final = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved. "
    "Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see the Sender Identity "
    "requirements"
)

# Documented wording for a wrong type under mail_settings / tracking_settings (SendGrid's errors page).
_SETTING_TYPE_MESSAGES: Final = {
    **{
        f"mail_settings.{bypass}.enable": f"The {bypass.replace('_', ' ')} enable param should be a boolean value."
        for bypass in (
            "bypass_list_management", "bypass_spam_management", "bypass_bounce_management",
            "bypass_unsubscribe_management",
        )
    },
    "mail_settings.footer.enable": "The footer enable param should be a boolean value.",
    "mail_settings.footer.text": "The text/plain version of your footer should be a string.",
    "mail_settings.footer.html": "The text/html version of your footer should be a string.",
    "mail_settings.sandbox_mode.enable": "The sandbox mode enable param should be a boolean value.",
    "tracking_settings.click_tracking.enable": "The click tracking enable param should be a boolean value.",
    "tracking_settings.click_tracking.enable_text": "The click tracking enable text must be a boolean value.",
    "tracking_settings.open_tracking.enable": "The open tracking enable param should be a boolean value.",
    "tracking_settings.open_tracking.substitution_tag": "The open tracking substitution tag must be a string.",
    "tracking_settings.subscription_tracking.enable": (
        "The subscription tracking enable param should be a boolean value."
    ),
    "tracking_settings.subscription_tracking.text": (
        "The subscription tracking unsubscribe content for text/plain messages must be a string."
    ),
    "tracking_settings.subscription_tracking.html": (
        "The subscription tracking unsubscribe content for text/html messages must be a string."
    ),
    "tracking_settings.subscription_tracking.substitution_tag": (
        "The subscription tracking substitution tag must be a string value."
    ),
    "tracking_settings.ganalytics.enable": "The Google Analytics enable param must be a boolean value.",
    **{
        f"tracking_settings.ganalytics.{utm}": f"The Google Analytics {utm} must be a string value."
        for utm in ("utm_source", "utm_medium", "utm_term", "utm_content", "utm_campaign")
    },
}  # fmt: skip
_EMAIL_LABELS: Final = {"to": "To", "cc": "CC", "bcc": "BCC", "from": "From", "reply_to": "Reply-To"}
_MAPS: Final = {
    "headers": (M_HEADER_VALUES_MESSAGE, M_HEADER_VALUES_PERSONALIZATION),
    "custom_args": (M_CUSTOM_ARGS_VALUES, M_CUSTOM_ARGS_VALUES),
    "substitutions": (M_SUBSTITUTIONS_VALUES, M_SUBSTITUTIONS_VALUES),
}


# --------------------------------------------------------------------------------------------------------------
# JSON parsing
# --------------------------------------------------------------------------------------------------------------


class _DupDict(dict[str, Any]):
    """A JSON object that repeated a key. Go's decoder (SendGrid's) keeps the last one; for headers it is an error."""


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    return _DupDict(obj) if len(obj) != len(pairs) else obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN/Infinity; SendGrid's parser does not


def _parse_body(text: str) -> JSON:
    return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)


def _json_size(value: JSON) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _string_map_fits(value: dict[str, str], limit: int) -> bool:
    """Whether the compact UTF-8 JSON of a string map is at most `limit` bytes.

    Encoding a thousand small maps per request shows up in profiles, so first try a bound: no character takes more
    than 6 bytes (a \\u escape), each pair adds 6 (quotes, colon, comma), the braces 2. Only near the limit encode.
    """
    bound = 2 + sum(6 * (len(k) + len(v) + 1) for k, v in value.items())
    return bound <= limit or _json_size(value) <= limit


def _json_type(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is_int(value: JSON) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------------------------

# One '@', a local part without blanks or specials, a dotted domain. jsonschema's own "email" check only looks for
# an '@'; SendGrid rejects more than that, and the stricter side is the safe one for a test double.
_EMAIL_RE: Final = re.compile(
    r'[^@\s"(),:;<>\[\\\]\x00-\x1f\x7f]+@[^@\s.,;<>\x00-\x1f\x7f]+(\.[^@\s.,;<>\x00-\x1f\x7f]+)+'
)


def _is_email(instance: object) -> bool:
    return not isinstance(instance, str) or _EMAIL_RE.fullmatch(instance) is not None


def _is_strict_integer(_checker: object, instance: object) -> bool:
    # Go refuses 1.0 for an int field; jsonschema's default "integer" would accept it.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)

_Predicate = Callable[[Any], bool]
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})


def _compile_predicate(schema: Mapping[str, Any], formats: FormatChecker) -> _Predicate | None:
    """Turn a schema into a plain `is valid?` function, or None if it uses a keyword this does not handle.

    Why: jsonschema walks a 1000-personalization body one keyword object at a time, so the item schema is
    compiled once into closures with the same semantics (jsonschema's format checker, the strict integer rule).
    They only say "valid": an item they reject is re-validated by jsonschema, which words the errors. A test
    checks both agree.
    """
    checks: list[_Predicate] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS or keyword.startswith("x-"):
            continue
        check = _compile_keyword(schema, keyword, value, formats)
        if check is None:
            return None
        checks.append(check)
    if len(checks) == 1:
        return checks[0]
    return lambda x: all(check(x) for check in checks)


def _compile_keyword(schema: Mapping[str, Any], keyword: str, value: Any, formats: FormatChecker) -> _Predicate | None:
    if keyword == "type":
        names = (value,) if isinstance(value, str) else tuple(value)
        tests = tuple(_TYPE_TESTS[name] for name in names if name in _TYPE_TESTS)
        if len(tests) != len(names):
            return None
        return lambda x: any(test(x) for test in tests)
    if keyword == "properties":
        props: dict[str, _Predicate] = {}
        for name, sub in value.items():
            compiled = _compile_predicate(sub, formats)
            if compiled is None:
                return None
            props[name] = compiled
        items = tuple(props.items())
        return lambda x: not isinstance(x, dict) or all(name not in x or ok(x[name]) for name, ok in items)
    if keyword == "additionalProperties":
        if "patternProperties" in schema:
            return None
        known = frozenset(schema.get("properties", ()))
        if value is True:
            return lambda x: True
        if value is False:
            return lambda x: not isinstance(x, dict) or known.issuperset(x)
        extra = _compile_predicate(value, formats)
        if extra is None:
            return None
        return lambda x: not isinstance(x, dict) or all(k in known or extra(v) for k, v in x.items())
    if keyword == "required":
        need = tuple(value)
        return lambda x: not isinstance(x, dict) or all(name in x for name in need)
    if keyword == "items" and isinstance(value, Mapping):
        each = _compile_predicate(value, formats)
        if each is None:
            return None
        return lambda x: not isinstance(x, list) or all(each(item) for item in x)
    if keyword == "minItems":
        return lambda x: not isinstance(x, list) or len(x) >= value
    if keyword == "maxItems":
        return lambda x: not isinstance(x, list) or len(x) <= value
    if keyword == "minLength":
        return lambda x: not isinstance(x, str) or len(x) >= value
    if keyword == "maxLength":
        return lambda x: not isinstance(x, str) or len(x) <= value
    if keyword == "maxProperties":
        return lambda x: not isinstance(x, dict) or len(x) <= value
    if keyword == "format":
        return lambda x: formats.conforms(x, value)
    return None


_TYPE_TESTS: Final[dict[str, _Predicate]] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "integer": _is_int,
    "number": lambda x: isinstance(x, int | float) and not isinstance(x, bool),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


class _SchemaCheck:
    """The corrected request schema, compiled once and shared by every request (validators are stateless)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        _StrictValidator.check_schema(schema)
        formats = FormatChecker(formats=())
        formats.checks("email")(_is_email)
        top = copy.deepcopy(dict(schema))
        item_schema = top["properties"]["personalizations"].pop("items")
        self._top = _StrictValidator(top, format_checker=formats)
        self._item = _StrictValidator(item_schema, format_checker=formats)
        self.item_is_valid: _Predicate = _compile_predicate(item_schema, formats) or self._item.is_valid

    def errors(self, body: dict[str, Any]) -> list[_Err]:
        found: list[_Err] = []
        for error in self._top.iter_errors(body):
            found.extend(_translate(error, ()))
        personalizations = body.get("personalizations")
        if isinstance(personalizations, list):
            for n, item in enumerate(personalizations):
                if not self.item_is_valid(item):
                    for error in self._item.iter_errors(item):
                        found.extend(_translate(error, ("personalizations", n)))
        return found


def _pattern(path: Path) -> str:
    return ".".join("N" if isinstance(p, int) else p for p in path)


def _email_kind(path: Path) -> str:
    """'to', 'cc', 'bcc', 'from', 'reply_to' or 'reply_to_list' for a path ending in an address object's field."""
    names = [p for p in path[:-1] if isinstance(p, str)]
    return names[-1] if names else "email"


def _is_email_field(path: Path) -> bool:
    return _pattern(path) in {
        "from.email", "reply_to.email", "reply_to_list.N.email", "personalizations.N.from.email",
        "personalizations.N.to.N.email", "personalizations.N.cc.N.email", "personalizations.N.bcc.N.email",
    }  # fmt: skip


def _map_parent(path: Path) -> tuple[Path, str, bool] | None:
    """If `path` is a value inside headers/custom_args/substitutions: (map path, map name, personalization level)."""
    if len(path) == 2 and path[0] in _MAPS:
        return path[:1], str(path[0]), False
    if len(path) == 4 and path[0] == "personalizations" and path[2] in _MAPS:
        return path[:3], str(path[2]), True
    return None


def _translate(error: Any, prefix: Path) -> list[_Err]:
    """One jsonschema ValidationError -> SendGrid errors (a `required` error may name several missing fields)."""
    path: Path = prefix + tuple(error.absolute_path)
    keyword: str = error.validator
    value: Any = error.validator_value
    instance: Any = error.instance
    pattern = _pattern(path)
    if keyword == "required":
        missing = [name for name in value if isinstance(instance, dict) and name not in instance]
        return [_required(path + (name,)) for name in missing]
    if keyword == "type":
        parent = _map_parent(path)
        if parent is not None:
            map_path, name, personal = parent
            return [_err(_MAPS[name][personal], map_path)]
        special = _SETTING_TYPE_MESSAGES.get(pattern)
        expected = value if isinstance(value, str) else " or ".join(value)
        message = special or f"Invalid type. Expected: {expected}, given: {_json_type(instance)}."
        return [_err(message, path)]
    if pattern == "personalizations" and keyword == "minItems":
        return [_Err(M_PERSONALIZATIONS_REQUIRED, "personalizations", f"{HELP_BASE}#-Personalizations-Errors")]
    if pattern == "personalizations" and keyword == "maxItems":
        return [_err(M_TOO_MANY_PERSONALIZATIONS.format(limit=value, n=len(instance)), path)]
    if pattern == "personalizations.N.to" and keyword == "minItems":
        return [_err(M_TO_REQUIRED, path)]
    if pattern == "content" and keyword == "minItems":
        return [_err(M_CONTENT_EMPTY, path)]
    if pattern == "categories" and keyword == "maxItems":
        return [_err(M_CATEGORIES_LIMIT.format(limit=value, n=len(instance)), path)]
    if pattern == "categories" and keyword == "uniqueItems":
        dup = next((c for i, c in enumerate(instance) if c in instance[:i]), "")
        return [_err(f"The categories must be a unique list, and you have included {dup} more than once.", path)]
    if pattern == "reply_to_list" and keyword == "uniqueItems":
        return []  # the case-insensitive rule in _rules reports it once
    if pattern == "categories.N" and keyword == "maxLength":
        return [_err(f"Each category must not be longer than {value} characters. {instance} exceeds this limit", path)]
    if pattern == "categories.N" and keyword == "pattern":
        return [_err("Categories can not contain non-ASCII characters.", path)]
    if pattern == "asm.groups_to_display" and keyword == "maxItems":
        return [
            _err(f"There is a limit of {value} unsubscribe groups that can be displayed to a user at a time.", path)
        ]
    if pattern == "reply_to_list" and keyword == "maxItems":
        return [_err(f"There is a limit of {value} reply_to emails per mail/send request.", path)]
    if keyword in ("minLength", "maxLength"):
        return [_err(_length_message(path, keyword, value, instance), path)]
    if keyword == "format" and _is_email_field(path):
        return [_err(f"The {_email_kind(path)} email does not contain a valid address.", path)]
    if pattern == "attachments.N.disposition" and keyword == "enum":
        message = f'The disposition of your attachment can be either "inline" or "attachment". You provided {instance}.'
        return [_err(message, path)]
    if pattern == "personalizations.N.substitutions" and keyword == "maxProperties":
        return [_err(f"You are limited to {value:,} substitutions.", path)]
    if pattern == "" and keyword == "not":
        return [_err(M_REPLY_TO_EXCLUSIVE, "reply_to")]
    return [_err(f"The {pattern or 'request'} is invalid: {error.message}", path)]


def _required(path: Path) -> _Err:
    pattern = _pattern(path)
    if pattern == "personalizations":
        return _Err(M_PERSONALIZATIONS_REQUIRED, "personalizations", f"{HELP_BASE}#-Personalizations-Errors")
    if pattern == "from":
        return _err(M_FROM_REQUIRED, path)
    if pattern == "personalizations.N.to":
        return _err(M_TO_REQUIRED, path)
    if _is_email_field(path):
        return _err(f"The {_email_kind(path)} email parameter is required.", path)
    fixed = {
        "content.N.type": "A content type is required, this tells email clients how to display the email.",
        "content.N.value": "A content value is required, this is the content of the email you are sending.",
        "attachments.N.content": "The attachment content must be a string at least one character in length.",
        "attachments.N.filename": "filename is required.",
    }
    return _err(fixed.get(pattern, f"The {path[-1]} parameter is required."), path)


def _length_message(path: Path, keyword: str, limit: int, instance: str) -> str:
    pattern = _pattern(path)
    if pattern in ("subject", "personalizations.N.subject"):
        return M_SUBJECT_EMPTY
    if _is_email_field(path):
        kind = _email_kind(path)
        return f"The {_EMAIL_LABELS.get(kind, kind)} email exceeds the maximum total length of {limit} characters"
    fixed = {
        "content.N.type": "Your content type must be a string with length of at least one character.",
        "content.N.value": "The content value must be a string at least one character in length.",
        "attachments.N.content": "The attachment content must be a string at least one character in length.",
        "attachments.N.type": "The attachment type must be a string and at least one character in length.",
        "ip_pool_name": M_IP_POOL.format(value=instance),
    }
    if pattern in fixed:
        return fixed[pattern]
    bound = "at least" if keyword == "minLength" else "at most"
    return f"The {pattern} must be {bound} {limit} characters long."


# --------------------------------------------------------------------------------------------------------------
# The rules a schema cannot express
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RuleContext:
    limits: Limits
    now: float
    asm_groups: frozenset[int] | None
    templates: frozenset[str] | None
    ip_pools: frozenset[str] | None
    batches: frozenset[str] | None  # None until a batch was created through /v3/mail/batch


def _string_map(value: JSON) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _rules(body: dict[str, Any], ctx: _RuleContext) -> list[_Err]:
    errors: list[_Err] = []
    limits = ctx.limits
    template_id = body.get("template_id") if isinstance(body.get("template_id"), str) else None
    dynamic = template_id is not None and template_id.startswith("d-")
    if template_id is not None and ctx.templates is not None and template_id not in ctx.templates:
        errors.append(_err(M_TEMPLATE.format(value=template_id), "template_id"))

    message_args = body.get("custom_args")
    message_args_ok = _string_map(message_args)
    if isinstance(message_args, dict) and not message_args:
        errors.append(_err(M_CUSTOM_ARGS_EMPTY, "custom_args"))
    message_args_problem = (
        _custom_args_error(message_args, limits) if isinstance(message_args, dict) and message_args_ok else None
    )
    message_args_too_big = message_args_problem is not None
    if message_args_problem is not None:
        errors.append(_err(message_args_problem, "custom_args"))

    personalizations = body.get("personalizations")
    items = personalizations if isinstance(personalizations, list) else []
    recipients = 0
    every_has_subject = bool(items)
    for n, p in enumerate(items):
        if not isinstance(p, dict):
            every_has_subject = False
            continue
        base = f"personalizations.{n}"
        every_has_subject = every_has_subject and isinstance(p.get("subject"), str)
        recipients += _recipient_errors(p, base, limits, errors)
        if isinstance(p.get("headers"), dict):
            errors.extend(_header_errors(p["headers"], f"{base}.headers", personal=True))
        subs = p.get("substitutions")
        if isinstance(subs, dict):
            if dynamic:
                errors.append(_err(M_SUBSTITUTIONS_DYNAMIC, f"{base}.substitutions"))
            if len(subs) > limits.substitutions_max_keys:
                message = M_SUBSTITUTIONS_KEYS.format(limit=limits.substitutions_max_keys, n=len(subs))
                errors.append(_err(message, f"{base}.substitutions"))
            elif _string_map(subs) and not _string_map_fits(subs, limits.substitutions_max_bytes):
                message = M_SUBSTITUTIONS_SIZE.format(limit=limits.substitutions_max_bytes, n=_json_size(subs))
                errors.append(_err(message, f"{base}.substitutions"))
        args = p.get("custom_args")
        if isinstance(args, dict):
            if not args:
                errors.append(_err(M_CUSTOM_ARGS_EMPTY, f"{base}.custom_args"))
            elif _string_map(args) and (message_args_ok or message_args is None):
                # A too-big message level is reported once above, not again for every personalization.
                merged = {**(message_args or {}), **args} if not message_args_too_big else args
                problem = _custom_args_error(merged, limits)
                if problem:
                    errors.append(_err(problem, f"{base}.custom_args"))
        errors.extend(_send_at_errors(p.get("send_at"), f"{base}.send_at", ctx))
    if recipients > limits.max_recipients:
        errors.append(_err(M_TOO_MANY_RECIPIENTS.format(limit=limits.max_recipients), "personalizations"))

    if template_id is None and not isinstance(body.get("subject"), str) and not every_has_subject:
        errors.append(_err(M_SUBJECT_REQUIRED, "subject"))
    if "content" not in body:
        if template_id is None:
            errors.append(_err(M_CONTENT_REQUIRED, "content"))
    elif isinstance(body["content"], list):
        errors.extend(_content_errors(body["content"]))
    if isinstance(body.get("attachments"), list):
        errors.extend(_attachment_errors(body["attachments"]))
    if isinstance(body.get("headers"), dict):
        errors.extend(_header_errors(body["headers"], "headers", personal=False))
    reply_list = body.get("reply_to_list")
    if isinstance(reply_list, list):
        emails = [r["email"].lower() for r in reply_list if isinstance(r, dict) and isinstance(r.get("email"), str)]
        if len(set(emails)) != len(emails):
            errors.append(_err(M_REPLY_TO_LIST_UNIQUE, "reply_to_list"))
    errors.extend(_send_at_errors(body.get("send_at"), "send_at", ctx))
    errors.extend(_account_errors(body, ctx))
    errors.extend(_bypass_errors(body.get("mail_settings")))
    return errors


def _custom_args_error(args: dict[str, Any], limits: Limits) -> str | None:
    if len(args) > limits.custom_args_max_keys:
        return M_CUSTOM_ARGS_KEYS.format(limit=limits.custom_args_max_keys, n=len(args))
    if not _string_map_fits(args, limits.custom_args_max_bytes):
        return M_CUSTOM_ARGS_SIZE.format(limit=limits.custom_args_max_bytes)
    return None


def _recipient_errors(p: dict[str, Any], base: str, limits: Limits, errors: list[_Err]) -> int:
    """Duplicates (case-insensitive, first one only, like SendGrid) and names; returns the recipient count."""
    count = 0
    seen: set[str] = set()
    duplicate_found = False
    for kind in ("to", "cc", "bcc"):
        addresses = p.get(kind)
        if not isinstance(addresses, list):
            continue
        count += len(addresses)
        for m, address in enumerate(addresses):
            if not isinstance(address, dict):
                continue
            email = address.get("email")
            if isinstance(email, str) and not duplicate_found:
                folded = email.lower()
                if folded in seen:
                    duplicate_found = True
                    errors.append(
                        _Err(
                            M_DUPLICATE.format(email=email, where=f"{base}.{kind}"),
                            base,
                            f"{HELP_BASE}#message.recipient-errors",
                        )
                    )
                seen.add(folded)
            name = address.get("name")
            if limits.reject_name_separators and isinstance(name, str) and (";" in name or "," in name):
                errors.append(_err(M_NAME_SEPARATORS.format(kind=kind), f"{base}.{kind}.{m}.name"))
    return count


_HEADER_KEY_RE: Final = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no blanks


def _header_errors(headers: dict[str, Any], where: str, *, personal: bool) -> list[_Err]:
    found: list[str] = []
    seen: set[str] = set()
    duplicate = isinstance(headers, _DupDict)
    for key in headers:
        folded = key.lower()
        if _HEADER_KEY_RE.fullmatch(key) is None:
            found.append(M_HEADER_KEY_PERSONALIZATION if personal else M_HEADER_KEY_MESSAGE)
        if folded in RESERVED_HEADERS:
            found.append(M_HEADER_RESERVED_PERSONALIZATION if personal else M_HEADER_RESERVED_MESSAGE)
        duplicate = duplicate or folded in seen
        seen.add(folded)
    if duplicate:
        found.append(M_HEADER_DUPLICATE)
    return [_err(message, where) for message in dict.fromkeys(found)]


def _send_at_errors(value: JSON, where: str, ctx: _RuleContext) -> list[_Err]:
    if _is_int(value) and value > ctx.now + ctx.limits.send_at_max_ahead:
        return [_err(M_SEND_AT_AHEAD, where)]
    return []


def _content_errors(content: list[Any]) -> list[_Err]:
    errors: list[_Err] = []
    types: list[str | None] = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if isinstance(kind, str):
            if any(c in kind for c in ";\r\n"):
                errors.append(_err(M_CONTENT_TYPE_CHARS, f"content.{i}.type"))
            types.append(kind.strip().lower())
        else:
            types.append(None)
    plain = [i for i, t in enumerate(types) if t == "text/plain"]
    html = [i for i, t in enumerate(types) if t == "text/html"]
    if len(plain) > 1 or len(html) > 1:
        errors.append(_err(M_CONTENT_ONCE, "content"))
    # text/plain first; only AMP may sit between it and text/html (Google's order, which SendGrid supports).
    misplaced_plain = bool(plain) and plain[0] != 0
    misplaced_html = bool(html) and any(t not in ("text/plain", "text/x-amp-html") for t in types[: html[0]])
    if misplaced_plain or misplaced_html:
        errors.append(_err(M_CONTENT_ORDER, "content"))
    return errors


def _is_base64(text: str) -> bool:
    try:
        # Go's StdEncoding skips CR/LF, so MIME-wrapped base64 is fine; everything else must be the alphabet.
        base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _attachment_errors(attachments: list[Any]) -> list[_Err]:
    errors: list[_Err] = []
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, dict):
            continue
        content = attachment.get("content")
        if isinstance(content, str) and content and not _is_base64(content):
            errors.append(_err(M_ATTACHMENT_BASE64, f"attachments.{i}.content"))
        for key, message in M_ATTACHMENT_CHARS.items():
            value = attachment.get(key)
            if isinstance(value, str) and any(c in value for c in ";,\r\n"):
                errors.append(_err(message, f"attachments.{i}.{key}"))
    return errors


def _account_errors(body: dict[str, Any], ctx: _RuleContext) -> list[_Err]:
    errors: list[_Err] = []
    asm = body.get("asm")
    if isinstance(asm, dict) and ctx.asm_groups is not None:
        group = asm.get("group_id")
        if _is_int(group) and group not in ctx.asm_groups:
            errors.append(_err(M_ASM_GROUP.format(value=group), "asm.group_id"))
        shown = asm.get("groups_to_display")
        if isinstance(shown, list):
            unknown = [g for g in shown if _is_int(g) and g not in ctx.asm_groups]
            if unknown:
                errors.append(_err(M_ASM_DISPLAY.format(value=unknown), "asm.groups_to_display"))
    pool = body.get("ip_pool_name")
    if isinstance(pool, str) and 2 <= len(pool) <= 64 and ctx.ip_pools is not None and pool not in ctx.ip_pools:
        errors.append(_err(M_IP_POOL.format(value=pool), "ip_pool_name"))
    batch = body.get("batch_id")
    if isinstance(batch, str) and ctx.batches is not None and batch not in ctx.batches:
        errors.append(_err(M_BATCH.format(value=batch), "batch_id"))
    return errors


def _enabled(settings: JSON, name: str) -> bool:
    section = settings.get(name) if isinstance(settings, dict) else None
    return isinstance(section, dict) and section.get("enable") is True


def _bypass_errors(mail_settings: JSON) -> list[_Err]:
    others = ("bypass_spam_management", "bypass_bounce_management", "bypass_unsubscribe_management")
    if _enabled(mail_settings, "bypass_list_management") and any(_enabled(mail_settings, o) for o in others):
        return [_err(M_BYPASS_COMBINED, "mail_settings.bypass_list_management")]
    return []


def _unverified_sender(body: dict[str, Any], senders: frozenset[str]) -> str | None:
    """The field of the first `from` that is not a verified sender (an address, or "@domain" for a whole domain)."""
    candidates = [("from", body["from"])]
    candidates += [
        (f"personalizations.{n}.from", p["from"]) for n, p in enumerate(body["personalizations"]) if "from" in p
    ]
    for where, sender in candidates:
        email = str(sender["email"]).lower()
        if email not in senders and "@" + email.rpartition("@")[2] not in senders:
            return where
    return None


def _dedupe(errors: list[_Err]) -> list[_Err]:
    return list(dict.fromkeys(errors))


# --------------------------------------------------------------------------------------------------------------
# What each recipient got, derived on demand from the one stored request
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Accepted:
    message_id: str
    raw: bytes  # the request body, kept once; per-recipient views are derived when inspected
    accepted_at: float
    recipients: frozenset[str]  # lower-cased to/cc/bcc, so the `to` filter can skip a request without parsing it
    recipient_count: int
    categories: tuple[str, ...]
    on_behalf_of: str | None


def _substituter(substitutions: Mapping[str, Any]) -> Callable[[str], str]:
    """Replace every tag in one pass, longest tag first, so a value that contains a tag is not substituted again."""
    tags = sorted((k for k, v in substitutions.items() if k and isinstance(v, str)), key=len, reverse=True)
    if not tags:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(tag) for tag in tags))
    return lambda text: pattern.sub(lambda m: str(substitutions[m.group(0)]), text)


def _merge_headers(message: Mapping[str, str], personal: Mapping[str, str]) -> dict[str, str]:
    merged = dict(message)
    for key, value in personal.items():
        for existing in [k for k in merged if k.lower() == key.lower()]:
            del merged[existing]  # a personalization header overrides the message-level one, whatever its case
        merged[key] = value
    return merged


def _derive(
    accepted: _Accepted,
    body: dict[str, Any],
    *,
    to: str | None,
    custom_args: Mapping[str, str] | None,
    include_content: bool,
) -> Iterator[dict[str, JSON]]:
    message_headers = body.get("headers") or {}
    message_args = body.get("custom_args") or {}
    tracking = body.get("tracking_settings") or {}
    auto_unsubscribe = _enabled(tracking, "subscription_tracking")
    for n, p in enumerate(body["personalizations"]):
        merged_args = {**message_args, **(p.get("custom_args") or {})}
        if custom_args and any(merged_args.get(k) != v for k, v in custom_args.items()):
            continue
        recipients = [(kind, address) for kind in ("to", "cc", "bcc") for address in p.get(kind) or ()]
        chosen = [(r, kind, a) for r, (kind, a) in enumerate(recipients) if to is None or a["email"].lower() == to]
        if not chosen:
            continue
        substitutions = p.get("substitutions") or {}
        substitute = _substituter(substitutions)
        subject = p.get("subject", body.get("subject"))
        headers = _merge_headers(message_headers, p.get("headers") or {})
        if auto_unsubscribe and not any(k.lower() == "list-unsubscribe" for k in headers):
            # SendGrid adds both when subscription tracking is on.
            headers["List-Unsubscribe"] = (
                f"<https://{AUTO_UNSUBSCRIBE_HOST}/lu/unsubscribe?mid={accepted.message_id}&p={n}>"
            )
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        view: dict[str, JSON] = {
            "message_id": accepted.message_id,
            "personalization": n,
            "to": p.get("to", []),
            "cc": p.get("cc", []),
            "bcc": p.get("bcc", []),
            "from": p.get("from", body.get("from")),
            "reply_to": body.get("reply_to"),
            "reply_to_list": body.get("reply_to_list"),
            "subject": substitute(subject) if isinstance(subject, str) else None,
            "headers": headers,
            "custom_args": merged_args,
            "substitutions": substitutions,
            "dynamic_template_data": p.get("dynamic_template_data"),
            "template_id": body.get("template_id"),
            "categories": body.get("categories", []),
            "asm": body.get("asm"),
            "send_at": p.get("send_at", body.get("send_at")),
            "batch_id": body.get("batch_id"),
            "ip_pool_name": body.get("ip_pool_name"),
            "mail_settings": body.get("mail_settings"),
            "tracking_settings": body.get("tracking_settings"),
            "attachments": body.get("attachments", []),
            "on_behalf_of": accepted.on_behalf_of,
            "accepted_at": accepted.accepted_at,
        }
        if include_content:
            content = [{"type": b["type"], "value": substitute(b["value"])} for b in body.get("content") or ()]
            view["content"] = content
            view["text"] = next((b["value"] for b in content if b["type"].lower() == "text/plain"), None)
            view["html"] = next((b["value"] for b in content if b["type"].lower() == "text/html"), None)
        for r, kind, address in chosen:
            yield {
                **view,
                "email": address["email"],
                "name": address.get("name"),
                "recipient_type": kind,
                "sg_message_id": f"{accepted.message_id}.emulator.{n}.{r}",
            }


# --------------------------------------------------------------------------------------------------------------
# Request log, faults, replies
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Record:
    id: int
    received_at: float
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body_bytes: int
    status: int = 0
    message_id: str | None = None
    response: bytes = b""
    fault: dict[str, JSON] | None = None
    dropped: bool = False

    def as_json(self, include_body: bool) -> dict[str, JSON]:
        try:
            response = json.loads(self.response) if self.response else None
        except ValueError:
            response = self.response.decode("utf-8", "replace")
        return {
            "id": self.id,
            "received_at": self.received_at,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.raw.decode("utf-8", "replace") if include_body else None,
            "body_bytes": self.body_bytes,
            "status": self.status,
            "message_id": self.message_id,
            "response": response,
            "fault": self.fault,
            "dropped": self.dropped,
        }


@dataclass
class _Fault:
    """A scripted answer for the next `count` mail/send requests, or for a random `rate` share of them."""

    status: int | None = None
    message: str | None = None
    delay: float = 0.0
    drop: bool = False
    # Wait this long *before* storing; a client gone by then (killed mid-request) is never stored.
    hold: float = 0.0
    reset_in: float | None = None  # 429 only: X-RateLimit-Reset = now + reset_in
    count: int = 1
    rate: float | None = None
    seed: int | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> _Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault field(s) {sorted(unknown)}; use {sorted(known)}")
        fault = cls(**spec)
        if fault.status is None and not fault.drop and not fault.delay and not fault.hold:
            raise ValueError("a fault needs a status, a delay, a hold or drop")
        if not isinstance(fault.hold, int | float) or fault.hold < 0:
            raise ValueError(f"hold must be a number of seconds >= 0 (got {fault.hold!r})")
        if fault.status is not None and (not _is_int(fault.status) or not 400 <= fault.status <= 599):
            raise ValueError(f"fault status must be an integer 400..599 (got {fault.status!r})")
        if fault.status is not None and fault.drop:
            raise ValueError("a fault either answers with a status or drops the connection, not both")
        if not isinstance(fault.delay, int | float) or fault.delay < 0:
            raise ValueError(f"delay must be a number of seconds >= 0 (got {fault.delay!r})")
        if not _is_int(fault.count) or fault.count < 1:
            raise ValueError(f"count must be an integer >= 1 (got {fault.count!r})")
        if fault.rate is not None and not (isinstance(fault.rate, int | float) and 0 <= fault.rate <= 1):
            raise ValueError(f"rate must be a number 0..1 (got {fault.rate!r})")
        return fault

    def as_json(self) -> dict[str, JSON]:
        # hold is newer than the other fields: shown only when set, so earlier listings read as before.
        return {k: v for k, v in asdict(self).items() if v is not None and (k != "hold" or v)}


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    message_id: str | None = None


def _error_reply(status: int, errors: Iterable[_Err], headers: list[tuple[str, str]] | None = None) -> _Reply:
    return _Reply(status, _error_body(errors), headers or [])


def _status_reply(status: int, message: str | None = None) -> _Reply:
    return _error_reply(status, [_Err(message or STATUS_MESSAGES.get(status, "error"))])


def _json_reply(status: int, payload: JSON) -> _Reply:
    return _Reply(status, json.dumps(payload).encode())


def _rate_headers(limit: int, remaining: int, reset: float) -> list[tuple[str, str]]:
    return [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(math.ceil(reset))),
    ]


def _new_message_id() -> str:
    # 16 random bytes, base64url without padding: 22 characters, like SendGrid's X-Message-Id.
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def _new_batch_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


# --------------------------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------------------------


class SendGridEmulator:
    """SendGrid v3 mail/send on 127.0.0.1, with a Python mirror of its `/_emulator` inspection API.

    `keys` are the accepted API keys; `scopeless_keys` are known but lack mail.send (403); `exhausted_keys` are
    out of credits (401). `verified_senders`, `asm_groups`, `templates`, `ip_pools` of None accept any value;
    otherwise only those (a sender may be "@domain"). `credits` counts recipients left on the plan (None: no
    limit). `clock` and `id_factory` make time and X-Message-Id deterministic in tests.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Iterable[str] = (DEFAULT_API_KEY,),
        scopeless_keys: Iterable[str] = (),
        exhausted_keys: Iterable[str] = (),
        credits: int | None = None,
        verified_senders: Iterable[str] | None = None,
        asm_groups: Iterable[int] | None = None,
        templates: Iterable[str] | None = None,
        ip_pools: Iterable[str] | None = None,
        rate_limit: RateLimit | None = None,
        rate_limit_headers_on_success: bool = False,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] = _new_message_id,
        schema: Mapping[str, Any] | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._clock = clock
        self._new_id = id_factory
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._check = _SchemaCheck(schema) if schema is not None else _default_check()
        self._config = _Config(keys=frozenset())
        self._credits = credits
        self._config = self._changed_config(
            {
                "keys": keys,
                "scopeless_keys": scopeless_keys,
                "exhausted_keys": exhausted_keys,
                "verified_senders": verified_senders,
                "asm_groups": asm_groups,
                "templates": templates,
                "ip_pools": ip_pools,
                "rate_limit": rate_limit,
                "rate_limit_headers_on_success": rate_limit_headers_on_success,
                "limits": limits or Limits(),
            }
        )
        self._signer: Any = None
        self._faults: list[_Fault] = []
        self._random_faults: list[tuple[_Fault, random.Random]] = []
        self._clear_state()

    def _clear_state(self) -> None:
        self._records: list[_Record] = []
        self._accepted: list[_Accepted] = []
        self._parsed: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._windows: dict[str, list[float]] = {}
        self._batches: set[str] = set()
        self._counts = {
            "requests": 0, "accepted": 0, "sandbox": 0, "recipients": 0, "dropped": 0, "faults": 0, "cut_off": 0
        }  # fmt: skip
        self._by_status: dict[str, int] = {}

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> SendGridEmulator:
        """Bind and serve in a background thread. Returns self, so `emu = SendGridEmulator().start()` works."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._requested_port), _Handler)
        server.emulator = self
        self._server = server
        # stop() waits up to one poll interval for the serving loop to notice; tests start and stop a lot.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="sendgrid-emulator", daemon=True
        )
        self._thread.start()
        log.info("SendGrid emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Delayed answers still pending are cut short."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the by-hand entry point)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> SendGridEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """What to pass as `host=` to SendGridAPIClient (no trailing slash, or the client asks for //v3/...)."""
        return f"http://{self._host}:{self.port}"

    # ---- inspection, Python side (mirrors /_emulator) ------------------------------------------------------

    def messages(
        self,
        to: str | None = None,
        *,
        message_id: str | None = None,
        category: str | None = None,
        custom_args: Mapping[str, str] | None = None,
        include_content: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, JSON]]:
        """One dict per recipient (to, cc and bcc) of every accepted request, oldest first.

        `to` matches any of to/cc/bcc case-insensitively; `custom_args` must all match the merged custom_args.
        Content comes with the personalization's substitutions applied (`text`, `html`, `content`).
        """
        with self._lock:
            accepted = list(self._accepted)
        wanted = to.lower() if to else None
        found: list[dict[str, JSON]] = []
        skipped = 0
        for request in accepted:
            if message_id is not None and request.message_id != message_id:
                continue
            if category is not None and category not in request.categories:
                continue
            if wanted is not None and wanted not in request.recipients:
                continue
            views = _derive(
                request, self._body(request), to=wanted, custom_args=custom_args, include_content=include_content
            )
            for view in views:
                if skipped < offset:
                    skipped += 1
                    continue
                found.append(view)
                if limit is not None and len(found) >= limit:
                    return found
        return found

    def requests(self, *, include_body: bool = True) -> list[dict[str, JSON]]:
        """Every /v3 request: method, path, headers (Authorization redacted), body, status, message id, fault."""
        with self._lock:
            records = list(self._records)
        return [r.as_json(include_body) for r in records]

    def stats(self) -> dict[str, JSON]:
        """Counts of /v3 requests, accepted (202), sandbox (200), recipients accepted, drops, faults, by status."""
        with self._lock:
            return {**self._counts, "by_status": dict(self._by_status), "credits": self._credits}

    def reset(self) -> None:
        """Forget messages, requests, stats, rate-limit windows, batches and pending faults. Configuration stays."""
        with self._lock:
            self._clear_state()
            self._faults.clear()
            self._random_faults.clear()

    def add_fault(
        self,
        status: int | None = None,
        *,
        count: int = 1,
        message: str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        reset_in: float | None = None,
        rate: float | None = None,
        seed: int | None = None,
        hold: float = 0.0,
    ) -> None:
        """Script the next `count` mail/send requests (faults queue up in order).

        `status`: answer with it and SendGrid's JSON error body (`message` overrides the text; a 429 with
        `reset_in` also carries X-RateLimit-* headers). `delay`: handle the request normally, answer after that many
        seconds. `drop`: handle and store it normally, then close the connection without answering (the lost 202).
        `hold`: wait that many seconds before storing; a client that went away meanwhile (killed while its request
        was on the wire) is not stored, as SendGrid never gets a request that is cut off.
        With `rate` (0..1) the fault instead hits that random share of all later requests, reproducibly with `seed`;
        several random faults are drawn in the order added, the first that hits answers.
        """
        spec: dict[str, Any] = {"status": status, "count": count, "message": message, "delay": delay, "drop": drop}
        spec.update(reset_in=reset_in, rate=rate, seed=seed, hold=hold)
        self._add_fault(_Fault.parse(spec))

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            if fault.rate is not None:
                self._random_faults.append((fault, random.Random(fault.seed)))
            else:
                self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._random_faults.clear()

    def faults(self) -> list[dict[str, JSON]]:
        """Pending scripted faults, then the random faults (in the order they are drawn)."""
        with self._lock:
            pending = [f.as_json() for f in self._faults]
            pending += [fault.as_json() for fault, _ in self._random_faults]
        return pending

    def config(self) -> dict[str, JSON]:
        with self._lock:
            return {**self._config.describe(), "credits": self._credits}

    def configure(self, **changes: Any) -> dict[str, JSON]:
        """Change keys, scopeless_keys, exhausted_keys, credits, verified_senders, asm_groups, templates, ip_pools,
        rate_limit (RateLimit, {"limit", "window"} or None), rate_limit_headers_on_success, limits (Limits or a
        dict of fields to change). Lists replace; None means "accept any" where allowed. Returns the new config."""
        with self._lock:
            self._config = self._changed_config(changes)
            if "credits" in changes:
                self._credits = _optional_int(changes["credits"], "credits")
            if "rate_limit" in changes:
                self._windows.clear()
        return self.config()

    def _changed_config(self, changes: Mapping[str, Any]) -> _Config:
        settable = {f.name for f in fields(_Config)} | {"credits"}
        unknown = set(changes) - settable
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; use {sorted(settable)}")
        new: dict[str, Any] = {}
        for name in ("keys", "scopeless_keys", "exhausted_keys"):
            if name in changes:
                new[name] = _string_set(changes[name], name)
        for name in ("verified_senders", "templates", "ip_pools"):
            if name in changes:
                values = changes[name]
                folded = values if name != "verified_senders" or values is None else [str(v).lower() for v in values]
                new[name] = None if values is None else _string_set(folded, name)
        if "asm_groups" in changes:
            groups = changes["asm_groups"]
            if groups is not None and not all(_is_int(g) for g in groups):
                raise ValueError("asm_groups must be a list of integers or null")
            new["asm_groups"] = None if groups is None else frozenset(groups)
        if "rate_limit" in changes:
            new["rate_limit"] = _rate_limit(changes["rate_limit"])
        if "rate_limit_headers_on_success" in changes:
            new["rate_limit_headers_on_success"] = bool(changes["rate_limit_headers_on_success"])
        if "limits" in changes:
            limits = changes["limits"]
            if not isinstance(limits, Limits):
                if not isinstance(limits, Mapping):
                    raise ValueError("limits must be an object of Limits fields")
                allowed = {f.name for f in fields(Limits)}
                if set(limits) - allowed:
                    raise ValueError(f"unknown limit(s) {sorted(set(limits) - allowed)}; use {sorted(allowed)}")
                limits = replace(self._config.limits, **limits)
            new["limits"] = limits
        return replace(self._config, **new)

    # ---- Event Webhook (testing/sendgrid_events.py) -------------------------------------------------------

    @property
    def webhook_signer(self) -> Any:
        """The key pair this emulator signs events with (sendgrid_events.Signer); `.public_key` is the text to
        give the receiver as DIGEST_SENDGRID_WEBHOOK_KEY."""
        with self._lock:
            if self._signer is None:
                from ..sendgrid_events import Signer

                self._signer = Signer()
            return self._signer

    def events(self, *, bounce_rate: float = 0.0, spam_rate: float = 0.0, seed: int = 0) -> list[dict[str, JSON]]:
        """The events SendGrid would post about every request accepted so far (answered or not), oldest first:
        processed, then delivered or (a `bounce_rate` share) a hard bounce, and a `spam_rate` share of spam
        reports. The same arguments give the same events."""
        from ..sendgrid_events import request_events

        with self._lock:
            accepted = list(self._accepted)
        rng = random.Random(seed)
        out: list[dict[str, JSON]] = []
        for request in accepted:
            body = json.loads(request.raw)
            out += request_events(
                body, request.message_id, request.accepted_at, rng, bounce_rate=bounce_rate, spam_rate=spam_rate
            )
        return out

    def deliver_events(self, url: str, *, bounce_rate: float = 0.0, spam_rate: float = 0.0, seed: int = 0) -> list[int]:
        """POST `events(...)` to a webhook URL, signed with `webhook_signer`, in SendGrid-sized batches;
        returns the HTTP status of each post."""
        from ..sendgrid_events import post

        events = self.events(bounce_rate=bounce_rate, spam_rate=spam_rate, seed=seed)
        return post(url, events, self.webhook_signer)

    def write_events(
        self, path: str | Any, *, lines: bool = False, bounce_rate: float = 0.0, spam_rate: float = 0.0, seed: int = 0
    ) -> int:
        """Write `events(...)` to a file (the JSON array, or one per line with `lines`); returns how many."""
        from pathlib import Path

        from ..sendgrid_events import write

        events = self.events(bounce_rate=bounce_rate, spam_rate=spam_rate, seed=seed)
        write(Path(path), events, lines=lines)
        return len(events)

    def create_batch(self) -> str:
        """What POST /v3/mail/batch does: a new batch id. Once one exists, a mail's batch_id must be known."""
        batch_id = _new_batch_id()
        with self._lock:
            self._batches.add(batch_id)
        return batch_id

    # ---- request handling ----------------------------------------------------------------------------------

    def _body(self, accepted: _Accepted) -> dict[str, Any]:
        """The parsed request body, from a small cache: inspection often asks about the same recent requests."""
        with self._lock:
            cached = self._parsed.get(accepted.message_id)
            if cached is not None:
                self._parsed.move_to_end(accepted.message_id)
                return cached
        body: dict[str, Any] = json.loads(accepted.raw)
        with self._lock:
            self._parsed[accepted.message_id] = body
            while len(self._parsed) > 8:
                self._parsed.popitem(last=False)
        return body

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if self._faults:
                fault = self._faults[0]
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.pop(0)
                return replace(fault, count=1)
            for fault, rng in self._random_faults:  # in the order added; the first that hits answers
                if rng.random() < (fault.rate or 0.0):
                    return fault
        return None

    def _handle_send(self, handler: _Handler) -> None:
        received = self._clock()
        config = self._config
        raw, size = handler.read_body(config.limits.max_body_bytes)
        fault = self._take_fault()
        if fault is not None and fault.hold:
            self._stopping.wait(fault.hold)
            if handler.client_gone():
                with self._lock:
                    self._counts["cut_off"] += 1
                handler.close_connection = True
                return
        if fault is not None and fault.status is not None:
            reply = self._fault_reply(fault, received, config)
        elif raw is None:
            reply = _status_reply(413)
        else:
            try:
                reply = self._process_send(handler.headers, raw, received, config)
            except Exception:  # the client must still get SendGrid's JSON shape, never a traceback page
                log.exception("emulator failed on a mail/send request")
                reply = _status_reply(500)
        record = self._record(handler, raw or b"", size, reply, fault)
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        if fault is not None and fault.drop:
            with self._lock:
                record.dropped = True
                self._counts["dropped"] += 1
            handler.close_connection = True
            return
        handler.send_reply(reply)

    def _fault_reply(self, fault: _Fault, now: float, config: _Config) -> _Reply:
        status = fault.status or 500
        headers: list[tuple[str, str]] = []
        if status == 429 and fault.reset_in is not None:
            limit = config.rate_limit.limit if config.rate_limit else 1
            headers = _rate_headers(limit, 0, now + fault.reset_in)
        return _error_reply(status, [_Err(fault.message or STATUS_MESSAGES.get(status, "error"))], headers)

    def _process_send(self, headers: Message, raw: bytes, now: float, config: _Config) -> _Reply:
        key, refusal = self._authorize(headers.get("Authorization"), config)
        if refusal is not None:
            return refusal
        limited, rate_headers = self._rate_check(key, now, config)
        if limited is not None:
            return limited
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _status_reply(415)
        try:
            body = _parse_body(text)
        except (ValueError, RecursionError):
            return _error_reply(400, [_Err("Bad Request")])
        if not isinstance(body, dict):
            return _error_reply(400, [_Err("Bad Request")])
        with self._lock:
            batches = frozenset(self._batches) if self._batches else None
        context = _RuleContext(config.limits, now, config.asm_groups, config.templates, config.ip_pools, batches)
        errors = _dedupe(self._check.errors(body) + _rules(body, context))
        if errors:
            return _error_reply(400, errors, rate_headers)
        if config.verified_senders is not None:
            where = _unverified_sender(body, config.verified_senders)
            if where is not None:
                return _error_reply(403, [_Err(M_UNVERIFIED_SENDER, where)])
        if _enabled(body.get("mail_settings"), "sandbox_mode"):
            return _Reply(200, b"", rate_headers, content_type="text/plain; charset=utf-8")
        message_id = self._new_id()
        self._store(body, raw, message_id, now, headers.get("On-Behalf-Of"))
        reply_headers = [("X-Message-Id", message_id), *rate_headers]
        return _Reply(202, b"", reply_headers, content_type="text/plain; charset=utf-8", message_id=message_id)

    def _authorize(self, authorization: str | None, config: _Config) -> tuple[str, _Reply | None]:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "", _status_reply(401, "Permission denied, wrong credentials")
        if token not in config.keys | config.scopeless_keys | config.exhausted_keys:
            return token, _status_reply(401, "The provided authorization grant is invalid, expired, or revoked")
        if token in config.scopeless_keys:
            return token, _status_reply(403, "access forbidden")
        with self._lock:
            out_of_credits = self._credits is not None and self._credits <= 0
        if token in config.exhausted_keys or out_of_credits:
            return token, _status_reply(401, "Maximum credits exceeded")
        return token, None

    def _rate_check(self, key: str, now: float, config: _Config) -> tuple[_Reply | None, list[tuple[str, str]]]:
        rule = config.rate_limit
        if rule is None:
            return None, []
        with self._lock:
            window = self._windows.get(key)
            if window is None or now >= window[0] + rule.window:
                window = self._windows[key] = [now, 0]
            reset = window[0] + rule.window
            allowed = window[1] < rule.limit
            if allowed:
                window[1] += 1
            remaining = rule.limit - int(window[1])
        if not allowed:
            return _error_reply(429, [_Err(STATUS_MESSAGES[429])], _rate_headers(rule.limit, 0, reset)), []
        if config.rate_limit_headers_on_success:
            return None, _rate_headers(rule.limit, remaining, reset)
        return None, []

    def _store(self, body: dict[str, Any], raw: bytes, message_id: str, now: float, on_behalf_of: str | None) -> None:
        emails: set[str] = set()
        count = 0
        for p in body["personalizations"]:
            for kind in ("to", "cc", "bcc"):
                for address in p.get(kind) or ():
                    emails.add(address["email"].lower())
                    count += 1
        categories = tuple(body.get("categories") or ())
        accepted = _Accepted(message_id, raw, now, frozenset(emails), count, categories, on_behalf_of)
        with self._lock:
            self._accepted.append(accepted)
            self._counts["recipients"] += count
            if self._credits is not None:
                self._credits = max(0, self._credits - count)

    def _record(self, handler: _Handler, raw: bytes, size: int, reply: _Reply, fault: _Fault | None) -> _Record:
        headers = {k: ("[REDACTED]" if k.lower() == "authorization" else v) for k, v in handler.headers.items()}
        status_key = str(reply.status)
        with self._lock:
            record = _Record(
                id=len(self._records) + 1,
                received_at=self._clock(),
                method=handler.command,
                path=handler.path,
                headers=headers,
                raw=raw,
                body_bytes=size,
                status=reply.status,
                message_id=reply.message_id,
                response=reply.body,
                fault=fault.as_json() if fault is not None else None,
            )
            self._records.append(record)
            self._counts["requests"] += 1
            self._counts["accepted"] += reply.status == 202
            self._counts["sandbox"] += reply.status == 200
            self._counts["faults"] += fault is not None
            self._by_status[status_key] = self._by_status.get(status_key, 0) + 1
        return record

    def _reply_and_record(self, handler: _Handler, reply: _Reply, raw: bytes = b"", size: int = 0) -> None:
        self._record(handler, raw, size, reply, None)
        handler.send_reply(reply)

    def _handle_v3(self, handler: _Handler, path: str) -> None:
        """Everything under /v3 except a POST to mail/send: batches, 405 and 404, all in SendGrid's JSON shape."""
        method = handler.command
        is_batch_item = path.startswith(BATCH_PATH + "/") and path.count("/") == 4
        allowed = {SEND_PATH: "POST", BATCH_PATH: "POST"}.get(path, "GET" if is_batch_item else None)
        raw, size = handler.read_body(self._config.limits.max_body_bytes)
        if allowed is None:
            return self._reply_and_record(handler, _status_reply(404), raw or b"", size)
        if method != allowed:  # SendGrid answers a wrong method before looking at credentials
            return self._reply_and_record(handler, _status_reply(405), raw or b"", size)
        _, refusal = self._authorize(handler.headers.get("Authorization"), self._config)
        if refusal is not None:
            return self._reply_and_record(handler, refusal, raw or b"", size)
        if path == BATCH_PATH:
            return self._reply_and_record(
                handler, _json_reply(201, {"batch_id": self.create_batch()}), raw or b"", size
            )
        batch_id = path.rsplit("/", 1)[1]
        with self._lock:
            known = batch_id in self._batches
        reply = _json_reply(200, {"batch_id": batch_id}) if known else _status_reply(404)
        return self._reply_and_record(handler, reply, raw or b"", size)

    def _handle_inspect(self, handler: _Handler, path: str, query: str) -> None:
        raw, _ = handler.read_body(self._config.limits.max_body_bytes)
        try:
            reply = self._inspect(handler.command, path[len(INSPECT_PATH) :].strip("/"), query, raw or b"")
        except ValueError as exc:
            reply = _error_reply(400, [_Err(str(exc))])
        handler.send_reply(reply)

    def _inspect(self, method: str, route: str, query: str, raw: bytes) -> _Reply:
        params = urllib.parse.parse_qs(query)

        def one(name: str) -> str | None:
            values = params.get(name)
            return values[-1] if values else None

        routes = {"": {"GET"}, "messages": {"GET", "DELETE"}, "requests": {"GET"}, "faults": {"GET", "POST", "DELETE"}}
        routes.update({"config": {"GET", "POST"}, "stats": {"GET"}})
        if route not in routes:
            return _status_reply(404)
        if method not in routes[route]:
            return _status_reply(405)
        if route == "":
            return _json_reply(200, {"endpoints": _ENDPOINTS})
        if route == "messages" and method == "GET":
            args: dict[str, str] = {}
            for pair in params.get("custom_arg", []):
                name, _, value = pair.partition("=")
                args[name] = value
            found = self.messages(
                one("to"),
                message_id=one("message_id"),
                category=one("category"),
                custom_args=args or None,
                include_content=(one("include_content") or "true").lower() not in ("0", "false", "no"),
                limit=_optional_int(one("limit"), "limit"),
                offset=_optional_int(one("offset"), "offset") or 0,
            )
            return _json_reply(200, {"count": len(found), "messages": found})
        if route == "messages":
            self.reset()
            return _json_reply(200, {"reset": True})
        if route == "requests":
            include = (one("include_body") or "true").lower() not in ("0", "false", "no")
            return _json_reply(200, {"requests": self.requests(include_body=include)})
        if route == "stats":
            return _json_reply(200, self.stats())
        if route == "faults":
            if method == "POST":
                specs = _load_json_object_or_list(raw)
                parsed = [_Fault.parse(spec) for spec in specs]  # all valid before any is queued
                for fault in parsed:
                    self._add_fault(fault)
                return _json_reply(201, {"faults": self.faults()})
            if method == "DELETE":
                self.clear_faults()
            return _json_reply(200, {"faults": self.faults()})
        if method == "POST":
            changes = _load_json_object_or_list(raw)
            if len(changes) != 1:
                raise ValueError("POST /_emulator/config takes one JSON object")
            return _json_reply(200, self.configure(**changes[0]))
        return _json_reply(200, self.config())


_ENDPOINTS: Final = [
    "POST /v3/mail/send",
    "POST /v3/mail/batch",
    "GET /v3/mail/batch/{batch_id}",
    "GET /_emulator/messages?to=&message_id=&category=&custom_arg=key=value&include_content=&limit=&offset=",
    "DELETE /_emulator/messages",
    "GET /_emulator/requests?include_body=",
    "GET|POST|DELETE /_emulator/faults",
    "GET|POST /_emulator/config",
    "GET /_emulator/stats",
]


@functools.cache
def _default_check() -> _SchemaCheck:
    """The packaged schema, compiled once per process: tests start many emulators."""
    return _SchemaCheck(_load_schema())


def _load_schema() -> dict[str, Any]:
    text = resources.files("digest.testing.sendgrid_emulator").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _load_json_object_or_list(raw: bytes) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError("expected a JSON object or a list of objects")
    return items


def _string_set(values: Any, name: str) -> frozenset[str]:
    if isinstance(values, str) or not isinstance(values, Iterable) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a list of strings")
    return frozenset(values)


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer (got {value!r})") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0 (got {number})")
    return number


def _rate_limit(value: Any) -> RateLimit | None:
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, Mapping):
        rule = RateLimit(**value)
    elif isinstance(value, tuple | list) and len(value) == 2:
        rule = RateLimit(int(value[0]), float(value[1]))
    else:
        raise ValueError('rate_limit must be {"limit": N, "window": seconds} or null')
    if not _is_int(rule.limit) or rule.limit < 0 or not rule.window > 0:
        raise ValueError("rate_limit needs an integer limit >= 0 and a window > 0 seconds")
    return rule


# --------------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients with Connection: close; a short backlog turns into 1 s SYN retries
    emulator: SendGridEmulator


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that want it; Connection: close is honoured
    timeout = 60  # frees the thread of an idle keep-alive connection
    server: _Server

    def version_string(self) -> str:
        return "nginx"  # what SendGrid's edge answers with

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        emulator = self.server.emulator
        try:
            if parts.path == SEND_PATH and self.command == "POST":
                emulator._handle_send(self)
            elif parts.path == INSPECT_PATH or parts.path.startswith(INSPECT_PATH + "/"):
                emulator._handle_inspect(self, parts.path, parts.query)
            else:
                emulator._handle_v3(self, parts.path)
        except OSError as exc:  # the client went away (e.g. it timed out during a delay fault)
            log.debug("client connection lost: %s", exc)
            self.close_connection = True

    def client_gone(self) -> bool:
        """Whether the client closed its end (after its whole request was read, so EOF means it went away)."""
        import select
        import socket

        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def read_body(self, limit: int) -> tuple[bytes | None, int]:
        """The request body and its size; None (body read and discarded) when it is larger than `limit`."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length <= limit:
            return self.rfile.read(length), length
        # Read it all anyway: a client that is still sending would otherwise see a reset instead of the 413.
        left = length
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return None, length

    def _read_chunked(self, limit: int) -> tuple[bytes | None, int]:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            chunk = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if chunk == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            data = self.rfile.read(chunk)
            self.rfile.readline(1024)
            size += len(data)
            if size <= limit:
                parts.append(data)
        return (b"".join(parts) if size <= limit else None), size

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed HTTP never reaches the routes; it too gets SendGrid's JSON shape, not the stdlib's HTML page.
        self.close_connection = True
        self.send_reply(_status_reply(code, STATUS_MESSAGES.get(code) or message or "error"))

    def send_reply(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        for name, value in SENDGRID_HEADERS:
            self.send_header(name, value)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)
