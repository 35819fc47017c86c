"""Validation against the corrected OpenAPI request schema (jsonschema), with errors worded as SendGrid's."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Mapping
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

from .body import Path, is_int, json_type
from .replies import HELP_BASE, Err, err
from .wording import (
    EMAIL_LABELS,
    M_CATEGORIES_LIMIT,
    M_CONTENT_EMPTY,
    M_FROM_REQUIRED,
    M_IP_POOL,
    M_PERSONALIZATIONS_REQUIRED,
    M_REPLY_TO_EXCLUSIVE,
    M_SUBJECT_EMPTY,
    M_TO_REQUIRED,
    M_TOO_MANY_PERSONALIZATIONS,
    MAPS,
    SETTING_TYPE_MESSAGES,
)

SCHEMA_FILE: Final = "mail_send_request.corrected.schema.json"


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
    "integer": is_int,
    "number": lambda x: isinstance(x, int | float) and not isinstance(x, bool),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


class SchemaCheck:
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

    def errors(self, body: dict[str, Any]) -> list[Err]:
        found: list[Err] = []
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
    if len(path) == 2 and path[0] in MAPS:
        return path[:1], str(path[0]), False
    if len(path) == 4 and path[0] == "personalizations" and path[2] in MAPS:
        return path[:3], str(path[2]), True
    return None


def _translate(error: Any, prefix: Path) -> list[Err]:
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
            return [err(MAPS[name][personal], map_path)]
        special = SETTING_TYPE_MESSAGES.get(pattern)
        expected = value if isinstance(value, str) else " or ".join(value)
        message = special or f"Invalid type. Expected: {expected}, given: {json_type(instance)}."
        return [err(message, path)]
    if pattern == "personalizations" and keyword == "minItems":
        return [Err(M_PERSONALIZATIONS_REQUIRED, "personalizations", f"{HELP_BASE}#-Personalizations-Errors")]
    if pattern == "personalizations" and keyword == "maxItems":
        return [err(M_TOO_MANY_PERSONALIZATIONS.format(limit=value, n=len(instance)), path)]
    if pattern == "personalizations.N.to" and keyword == "minItems":
        return [err(M_TO_REQUIRED, path)]
    if pattern == "content" and keyword == "minItems":
        return [err(M_CONTENT_EMPTY, path)]
    if pattern == "categories" and keyword == "maxItems":
        return [err(M_CATEGORIES_LIMIT.format(limit=value, n=len(instance)), path)]
    if pattern == "categories" and keyword == "uniqueItems":
        dup = next((c for i, c in enumerate(instance) if c in instance[:i]), "")
        return [err(f"The categories must be a unique list, and you have included {dup} more than once.", path)]
    if pattern == "reply_to_list" and keyword == "uniqueItems":
        return []  # the case-insensitive rule in rule_errors reports it once
    if pattern == "categories.N" and keyword == "maxLength":
        return [err(f"Each category must not be longer than {value} characters. {instance} exceeds this limit", path)]
    if pattern == "categories.N" and keyword == "pattern":
        return [err("Categories can not contain non-ASCII characters.", path)]
    if pattern == "asm.groups_to_display" and keyword == "maxItems":
        return [err(f"There is a limit of {value} unsubscribe groups that can be displayed to a user at a time.", path)]
    if pattern == "reply_to_list" and keyword == "maxItems":
        return [err(f"There is a limit of {value} reply_to emails per mail/send request.", path)]
    if keyword in ("minLength", "maxLength"):
        return [err(_length_message(path, keyword, value, instance), path)]
    if keyword == "format" and _is_email_field(path):
        return [err(f"The {_email_kind(path)} email does not contain a valid address.", path)]
    if pattern == "attachments.N.disposition" and keyword == "enum":
        message = f'The disposition of your attachment can be either "inline" or "attachment". You provided {instance}.'
        return [err(message, path)]
    if pattern == "personalizations.N.substitutions" and keyword == "maxProperties":
        return [err(f"You are limited to {value:,} substitutions.", path)]
    if pattern == "" and keyword == "not":
        return [err(M_REPLY_TO_EXCLUSIVE, "reply_to")]
    return [err(f"The {pattern or 'request'} is invalid: {error.message}", path)]


def _required(path: Path) -> Err:
    pattern = _pattern(path)
    if pattern == "personalizations":
        return Err(M_PERSONALIZATIONS_REQUIRED, "personalizations", f"{HELP_BASE}#-Personalizations-Errors")
    if pattern == "from":
        return err(M_FROM_REQUIRED, path)
    if pattern == "personalizations.N.to":
        return err(M_TO_REQUIRED, path)
    if _is_email_field(path):
        return err(f"The {_email_kind(path)} email parameter is required.", path)
    fixed = {
        "content.N.type": "A content type is required, this tells email clients how to display the email.",
        "content.N.value": "A content value is required, this is the content of the email you are sending.",
        "attachments.N.content": "The attachment content must be a string at least one character in length.",
        "attachments.N.filename": "filename is required.",
    }
    return err(fixed.get(pattern, f"The {path[-1]} parameter is required."), path)


def _length_message(path: Path, keyword: str, limit: int, instance: str) -> str:
    pattern = _pattern(path)
    if pattern in ("subject", "personalizations.N.subject"):
        return M_SUBJECT_EMPTY
    if _is_email_field(path):
        kind = _email_kind(path)
        return f"The {EMAIL_LABELS.get(kind, kind)} email exceeds the maximum total length of {limit} characters"
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


@functools.cache
def default_check() -> SchemaCheck:
    """The packaged schema, compiled once per process: tests start many emulators."""
    return SchemaCheck(load_schema())


def load_schema() -> dict[str, Any]:
    text = resources.files("digest.testing.sendgrid_emulator").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
