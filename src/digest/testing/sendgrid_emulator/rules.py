"""The rules a schema cannot express: limits, duplicates, headers, content order, attachments, the account's
known ids, and which sender is verified."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from .account import Limits
from .body import JSON, DupDict, enabled, is_int, json_size, string_map, string_map_fits
from .replies import HELP_BASE, Err, err
from .wording import (
    M_ASM_DISPLAY,
    M_ASM_GROUP,
    M_ATTACHMENT_BASE64,
    M_ATTACHMENT_CHARS,
    M_BATCH,
    M_BYPASS_COMBINED,
    M_CONTENT_ONCE,
    M_CONTENT_ORDER,
    M_CONTENT_REQUIRED,
    M_CONTENT_TYPE_CHARS,
    M_CUSTOM_ARGS_EMPTY,
    M_CUSTOM_ARGS_KEYS,
    M_CUSTOM_ARGS_SIZE,
    M_DUPLICATE,
    M_HEADER_DUPLICATE,
    M_HEADER_KEY_MESSAGE,
    M_HEADER_KEY_PERSONALIZATION,
    M_HEADER_RESERVED_MESSAGE,
    M_HEADER_RESERVED_PERSONALIZATION,
    M_IP_POOL,
    M_NAME_SEPARATORS,
    M_REPLY_TO_LIST_UNIQUE,
    M_SEND_AT_AHEAD,
    M_SUBJECT_REQUIRED,
    M_SUBSTITUTIONS_DYNAMIC,
    M_SUBSTITUTIONS_KEYS,
    M_SUBSTITUTIONS_SIZE,
    M_TEMPLATE,
    M_TOO_MANY_RECIPIENTS,
)

RESERVED_HEADERS: Final = frozenset(
    h.lower()
    for h in (
        "x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type", "Content-Transfer-Encoding",
        "To", "From", "Subject", "Reply-To", "CC", "BCC",
    )
)  # fmt: skip


@dataclass(frozen=True)
class RuleContext:
    limits: Limits
    now: float
    asm_groups: frozenset[int] | None
    templates: frozenset[str] | None
    ip_pools: frozenset[str] | None
    batches: frozenset[str] | None  # None until a batch was created through /v3/mail/batch


def rule_errors(body: dict[str, Any], ctx: RuleContext) -> list[Err]:
    errors: list[Err] = []
    limits = ctx.limits
    template_id = body.get("template_id") if isinstance(body.get("template_id"), str) else None
    dynamic = template_id is not None and template_id.startswith("d-")
    if template_id is not None and ctx.templates is not None and template_id not in ctx.templates:
        errors.append(err(M_TEMPLATE.format(value=template_id), "template_id"))

    message_args = body.get("custom_args")
    message_args_ok = string_map(message_args)
    if isinstance(message_args, dict) and not message_args:
        errors.append(err(M_CUSTOM_ARGS_EMPTY, "custom_args"))
    message_args_problem = (
        _custom_args_error(message_args, limits) if isinstance(message_args, dict) and message_args_ok else None
    )
    message_args_too_big = message_args_problem is not None
    if message_args_problem is not None:
        errors.append(err(message_args_problem, "custom_args"))

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
                errors.append(err(M_SUBSTITUTIONS_DYNAMIC, f"{base}.substitutions"))
            if len(subs) > limits.substitutions_max_keys:
                message = M_SUBSTITUTIONS_KEYS.format(limit=limits.substitutions_max_keys, n=len(subs))
                errors.append(err(message, f"{base}.substitutions"))
            elif string_map(subs) and not string_map_fits(subs, limits.substitutions_max_bytes):
                message = M_SUBSTITUTIONS_SIZE.format(limit=limits.substitutions_max_bytes, n=json_size(subs))
                errors.append(err(message, f"{base}.substitutions"))
        args = p.get("custom_args")
        if isinstance(args, dict):
            if not args:
                errors.append(err(M_CUSTOM_ARGS_EMPTY, f"{base}.custom_args"))
            elif string_map(args) and (message_args_ok or message_args is None):
                # A too-big message level is reported once above, not again for every personalization.
                merged = {**(message_args or {}), **args} if not message_args_too_big else args
                problem = _custom_args_error(merged, limits)
                if problem:
                    errors.append(err(problem, f"{base}.custom_args"))
        errors.extend(_send_at_errors(p.get("send_at"), f"{base}.send_at", ctx))
    if recipients > limits.max_recipients:
        errors.append(err(M_TOO_MANY_RECIPIENTS.format(limit=limits.max_recipients), "personalizations"))

    if template_id is None and not isinstance(body.get("subject"), str) and not every_has_subject:
        errors.append(err(M_SUBJECT_REQUIRED, "subject"))
    if "content" not in body:
        if template_id is None:
            errors.append(err(M_CONTENT_REQUIRED, "content"))
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
            errors.append(err(M_REPLY_TO_LIST_UNIQUE, "reply_to_list"))
    errors.extend(_send_at_errors(body.get("send_at"), "send_at", ctx))
    errors.extend(_account_errors(body, ctx))
    errors.extend(_bypass_errors(body.get("mail_settings")))
    return errors


def _custom_args_error(args: dict[str, Any], limits: Limits) -> str | None:
    if len(args) > limits.custom_args_max_keys:
        return M_CUSTOM_ARGS_KEYS.format(limit=limits.custom_args_max_keys, n=len(args))
    if not string_map_fits(args, limits.custom_args_max_bytes):
        return M_CUSTOM_ARGS_SIZE.format(limit=limits.custom_args_max_bytes)
    return None


def _recipient_errors(p: dict[str, Any], base: str, limits: Limits, errors: list[Err]) -> int:
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
                        Err(
                            M_DUPLICATE.format(email=email, where=f"{base}.{kind}"),
                            base,
                            f"{HELP_BASE}#message.recipient-errors",
                        )
                    )
                seen.add(folded)
            name = address.get("name")
            if limits.reject_name_separators and isinstance(name, str) and (";" in name or "," in name):
                errors.append(err(M_NAME_SEPARATORS.format(kind=kind), f"{base}.{kind}.{m}.name"))
    return count


_HEADER_KEY_RE: Final = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no blanks


def _header_errors(headers: dict[str, Any], where: str, *, personal: bool) -> list[Err]:
    found: list[str] = []
    seen: set[str] = set()
    duplicate = isinstance(headers, DupDict)
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
    return [err(message, where) for message in dict.fromkeys(found)]


def _send_at_errors(value: JSON, where: str, ctx: RuleContext) -> list[Err]:
    if is_int(value) and value > ctx.now + ctx.limits.send_at_max_ahead:
        return [err(M_SEND_AT_AHEAD, where)]
    return []


def _content_errors(content: list[Any]) -> list[Err]:
    errors: list[Err] = []
    types: list[str | None] = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if isinstance(kind, str):
            if any(c in kind for c in ";\r\n"):
                errors.append(err(M_CONTENT_TYPE_CHARS, f"content.{i}.type"))
            types.append(kind.strip().lower())
        else:
            types.append(None)
    plain = [i for i, t in enumerate(types) if t == "text/plain"]
    html = [i for i, t in enumerate(types) if t == "text/html"]
    if len(plain) > 1 or len(html) > 1:
        errors.append(err(M_CONTENT_ONCE, "content"))
    # text/plain first; only AMP may sit between it and text/html (Google's order, which SendGrid supports).
    misplaced_plain = bool(plain) and plain[0] != 0
    misplaced_html = bool(html) and any(t not in ("text/plain", "text/x-amp-html") for t in types[: html[0]])
    if misplaced_plain or misplaced_html:
        errors.append(err(M_CONTENT_ORDER, "content"))
    return errors


def _is_base64(text: str) -> bool:
    try:
        # Go's StdEncoding skips CR/LF, so MIME-wrapped base64 is fine; everything else must be the alphabet.
        base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _attachment_errors(attachments: list[Any]) -> list[Err]:
    errors: list[Err] = []
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, dict):
            continue
        content = attachment.get("content")
        if isinstance(content, str) and content and not _is_base64(content):
            errors.append(err(M_ATTACHMENT_BASE64, f"attachments.{i}.content"))
        for key, message in M_ATTACHMENT_CHARS.items():
            value = attachment.get(key)
            if isinstance(value, str) and any(c in value for c in ";,\r\n"):
                errors.append(err(message, f"attachments.{i}.{key}"))
    return errors


def _account_errors(body: dict[str, Any], ctx: RuleContext) -> list[Err]:
    errors: list[Err] = []
    asm = body.get("asm")
    if isinstance(asm, dict) and ctx.asm_groups is not None:
        group = asm.get("group_id")
        if is_int(group) and group not in ctx.asm_groups:
            errors.append(err(M_ASM_GROUP.format(value=group), "asm.group_id"))
        shown = asm.get("groups_to_display")
        if isinstance(shown, list):
            unknown = [g for g in shown if is_int(g) and g not in ctx.asm_groups]
            if unknown:
                errors.append(err(M_ASM_DISPLAY.format(value=unknown), "asm.groups_to_display"))
    pool = body.get("ip_pool_name")
    if isinstance(pool, str) and 2 <= len(pool) <= 64 and ctx.ip_pools is not None and pool not in ctx.ip_pools:
        errors.append(err(M_IP_POOL.format(value=pool), "ip_pool_name"))
    batch = body.get("batch_id")
    if isinstance(batch, str) and ctx.batches is not None and batch not in ctx.batches:
        errors.append(err(M_BATCH.format(value=batch), "batch_id"))
    return errors


def _bypass_errors(mail_settings: JSON) -> list[Err]:
    others = ("bypass_spam_management", "bypass_bounce_management", "bypass_unsubscribe_management")
    if enabled(mail_settings, "bypass_list_management") and any(enabled(mail_settings, o) for o in others):
        return [err(M_BYPASS_COMBINED, "mail_settings.bypass_list_management")]
    return []


def unverified_sender(body: dict[str, Any], senders: frozenset[str]) -> str | None:
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


def dedupe(errors: list[Err]) -> list[Err]:
    return list(dict.fromkeys(errors))
