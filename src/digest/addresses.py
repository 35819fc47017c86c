"""Addresses: the one key that makes two spellings of an address one person (ledger, list, suppressions)."""

from __future__ import annotations


def normalize_email(email: str) -> str:
    """Trimmed and case-folded: the key recipients are de-duplicated, suppressed and recorded by.

    Domains are case-insensitive by RFC 5321, and every provider we send through (SendGrid included)
    treats local parts case-insensitively too; a suppression that missed "Ann@x.org" because the list
    says "ann@x.org" would be far worse than folding a local part no real mailbox distinguishes.
    """
    return email.strip().casefold()


def split_address(email_norm: str) -> tuple[str, str]:
    """(local part, domain) of a normalised address, split at its last @ (a quoted local part may hold one)."""
    local, _, domain = email_norm.rpartition("@")
    return (local, domain) if local else (domain, "")
