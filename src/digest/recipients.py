"""Recipients: a CSV streamed row by row into validated, de-duplicated `Recipient`s (bad rows reported, not fatal).

Memory does not grow with the list except for the de-duplication index, which keeps a 64-bit hash
of each address (Python's own string hash, SipHash keyed per process; plus the 4-byte line it was on)
in flat arrays at a load of 1/4 to 1/2: 24-48 bytes per address. Measured at a million rows
(benchmarks/prepare_1m.py): 24 MiB, 36 MiB while the last doubling copies, against 107 MB for a Python
`set` of the address strings.
Two different addresses share a 64-bit hash with probability ~n²/2⁶⁵ (3·10⁻⁸ at a million rows);
the loser would be reported as a duplicate, never silently dropped.

Validation: email-validator (syntax only, no DNS) costs ~30 µs per address, 30 s per million rows.
A strict regular expression accepts the common plain-ASCII shape in ~1 µs; it accepts a subset of
what email-validator accepts (tests/test_recipients.py checks the agreement), and everything it does
not accept (non-ASCII, quoted, odd domains, and all invalid input) goes to email-validator, which
decides and words the reason. Measured: ~6 µs per row end to end, 6 s for a million rows.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from .addresses import normalize_email
from .errors import RecipientsError
from .models import Recipient

EMAIL_HEADERS = frozenset({"email", "e-mail", "email address", "e-mail address", "email_address", "mail"})
NAME_HEADERS = frozenset({"name", "full name", "full_name"})
FIRST_HEADERS = frozenset({"first name", "first_name", "firstname", "given name"})
LAST_HEADERS = frozenset({"last name", "last_name", "lastname", "surname", "family name"})

_FIX = "the file needs a header line naming the columns (at least 'email', optionally 'name'), one recipient per line"

# Plain ASCII addresses that email-validator is sure to accept unchanged (apart from the domain's case).
# Anything with a leading/trailing/double dot, quotes, '--' (IDNA rules), a numeric TLD or a special-use
# TLD falls through to email-validator.
# The address is split at its last '@'; the local part may hold no '@', so the split is the same as a
# regular expression over the whole address would make.
_FAST_LOCAL = re.compile(r"[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*")
_FAST_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63})")
# A list names few domains many times: each one's verdict (lowercased, or "" when email-validator must
# decide) is kept, up to this many domains.
_DOMAIN_CACHE = 10_000
_domains: dict[str, str] = {}
_MASK64 = (1 << 64) - 1
_SPECIAL_TLDS = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})
# RFC 2142 mailbox names email-validator lowercases; mirrored so both paths normalise alike.
_CASELESS_MAILBOXES = frozenset(
    {
        "info",
        "marketing",
        "sales",
        "support",
        "abuse",
        "noc",
        "security",
        "postmaster",
        "hostmaster",
        "usenet",
        "news",
        "webmaster",
        "www",
        "uucp",
        "ftp",
    }
)


@dataclass(frozen=True)
class RowProblem:
    """A row that was skipped: its line in the file, the address as written, and why."""

    line: int
    email: str
    reason: str
    kind: str = "invalid"  # invalid | duplicate | suppressed (send.py tallies by it)

    def __str__(self) -> str:
        shown = f" ({self.email})" if self.email else ""
        return f"line {self.line}{shown}: {self.reason}"


def _fast_domain(domain: str) -> str:
    """The domain lowercased if the fast path may take it, else ""; remembered (see _DOMAIN_CACHE)."""
    m = _FAST_DOMAIN.fullmatch(domain)
    lowered = domain.lower() if m and len(domain) <= 253 and m.group(1).lower() not in _SPECIAL_TLDS else ""
    if len(_domains) < _DOMAIN_CACHE:
        _domains[domain] = lowered
    return lowered


def normalize_address(address: str) -> str:
    """Validate one address; return its normal form (domain lowercased, Unicode NFC) or raise ValueError.

    The ValueError message is email-validator's own explanation ("An email address cannot end with a period.").
    """
    address = address.strip()
    if len(address) <= 254 and "--" not in address:
        local, _, domain = address.rpartition("@")
        if len(local) <= 64 and _FAST_LOCAL.fullmatch(local):
            lowered = _domains.get(domain)
            if lowered is None:
                lowered = _fast_domain(domain)
            if lowered:
                if local.lower() in _CASELESS_MAILBOXES:
                    local = local.lower()
                return f"{local}@{lowered}"
    # Imported here: the fast path above takes nearly every real address, and email-validator costs
    # 20 ms of start-up that `digest build` (which only needs this module's suppression reader) skips.
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


class _Seen:
    """An insert-only set of 64-bit string hashes in flat arrays (open addressing, linear probing).

    `add` returns 0 for a new key, or the line number where the key was first seen.
    """

    def __init__(self, capacity: int = 1 << 12):
        self._mask = capacity - 1
        self._keys = array("Q", (0,)) * capacity
        self._lines = array("I", (0,)) * capacity
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: str, line: int) -> int:
        # 0 marks an empty slot, so a hash of 0 is stored as 1 (one more 2⁻⁶⁴ of collision).
        h = (hash(key) & _MASK64) or 1
        keys, mask = self._keys, self._mask
        i = h & mask
        while True:
            slot = keys[i]
            if slot == 0:
                break
            if slot == h:
                return int(self._lines[i])
            i = (i + 1) & mask
        keys[i] = h
        self._lines[i] = line
        self._count += 1
        if self._count * 2 > mask:  # keep the load under 1/2 so probes stay short
            self._grow()
        return 0

    def _grow(self) -> None:
        old_keys, old_lines = self._keys, self._lines
        capacity = (self._mask + 1) * 2
        self._mask = capacity - 1
        self._keys = array("Q", (0,)) * capacity
        self._lines = array("I", (0,)) * capacity
        keys, lines, mask = self._keys, self._lines, self._mask
        for h, line in zip(old_keys, old_lines, strict=True):
            if h:
                i = h & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = h
                lines[i] = line


@dataclass(frozen=True)
class _Columns:
    email: int
    name: int | None
    first: int | None
    last: int | None
    others: tuple[tuple[int, str], ...]
    delimiter: str


def _clean(value: str) -> str:
    """Collapse whitespace, newlines included: a name must never carry a line break into a header."""
    return " ".join(value.split())


def _scan(path: Path) -> None:
    """Check the whole file is readable UTF-8 before anything is yielded (~1 GB/s: cheap next to parsing)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    line = lines_before + chunk.count(b"\n", 0, exc.start) + 1
                    raise RecipientsError(
                        f"{path}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8 (in Excel: 'CSV UTF-8')"
                    ) from None
                lines_before += chunk.count(b"\n")
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise RecipientsError(
                    f"{path}:{lines_before + 1}: not UTF-8 text (the file ends inside a character); save it as UTF-8"
                ) from None
    except FileNotFoundError:
        raise RecipientsError(f"{path}: recipients file not found; check the path (--recipients)") from None
    except IsADirectoryError:
        raise RecipientsError(f"{path}: is a folder, not a recipients CSV file; name the file itself") from None
    except PermissionError:
        raise RecipientsError(f"{path}: cannot be read (permission denied); fix its permissions") from None


def _first_lines(path: Path, wanted: int) -> list[str]:
    """Up to `wanted` non-blank lines from the top of the file (BOM removed)."""
    found: list[str] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for raw in fh:
            if raw.strip():
                found.append(raw)
                if len(found) == wanted:
                    break
    return found


def _columns(path: Path, header: list[str], delimiter: str) -> _Columns:
    names = [h.strip().lower() for h in header]

    def find(wanted: frozenset[str]) -> int | None:
        return next((i for i, n in enumerate(names) if n in wanted), None)

    email = find(EMAIL_HEADERS)
    if email is None:
        shown = ",".join(header)[:80]
        hint = " (it looks like an address: the header line is missing)" if "@" in shown else ""
        raise RecipientsError(f"{path}:1: no 'email' column in the header {shown!r}{hint}; {_FIX}")
    name, first, last = find(NAME_HEADERS), find(FIRST_HEADERS), find(LAST_HEADERS)
    used = {i for i in (email, name, first, last) if i is not None}
    others = tuple((i, h.strip()) for i, h in enumerate(header) if i not in used and h.strip())
    return _Columns(email, name, first, last, others, delimiter)


def _delimiter(first_line: str) -> str:
    """Comma, unless the header plainly uses ';' or a tab (spreadsheets in some locales export those)."""
    if "," in first_line:
        return ","
    for candidate in (";", "\t"):
        if candidate in first_line:
            return candidate
    return ","


def list_digest(path: Path) -> str | None:
    """The list file's digest: the same on every machine given a copy, so --worker runs know it is one list.
    None when the file cannot be read (read_recipients then says why)."""
    try:
        with path.open("rb") as fh:
            return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def read_recipients(
    path: Path, *, suppressed: Callable[[str], bool] | frozenset[str] = frozenset()
) -> Iterator[Recipient | RowProblem]:
    """Stream the recipients CSV: a Recipient per good row, a RowProblem per skipped row, in file order.

    The whole-file problems (missing, not UTF-8, empty, no email column) raise RecipientsError here,
    before anything is yielded. `suppressed` is a set of case-folded addresses or a predicate given
    the case-folded address. Line numbers are the file's own (header = line 1).
    """
    _scan(path)
    top = _first_lines(path, 2)
    if not top:
        raise RecipientsError(f"{path}: the recipients file is empty; {_FIX}")
    delimiter = _delimiter(top[0])
    with path.open(encoding="utf-8-sig", newline="") as fh:
        try:
            header = next(csv.reader(fh, delimiter=delimiter))
        except (csv.Error, StopIteration) as exc:
            raise RecipientsError(f"{path}:1: cannot read the header line ({exc}); {_FIX}") from None
    columns = _columns(path, header, delimiter)
    if len(top) == 1:
        raise RecipientsError(f"{path}: has a header line but no recipients; add one recipient per line")
    is_suppressed: Callable[[str], bool] = suppressed.__contains__ if isinstance(suppressed, frozenset) else suppressed
    return _stream(path, columns, is_suppressed)


def _stream(path: Path, columns: _Columns, is_suppressed: Callable[[str], bool]) -> Iterator[Recipient | RowProblem]:
    seen = _Seen()
    email_i, name_i, first_i, last_i, others = columns.email, columns.name, columns.first, columns.last, columns.others
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=columns.delimiter)
        try:
            next(reader)  # the header, checked by read_recipients
            start = reader.line_num
            for row in reader:
                line = start + 1  # where this record starts, even if a quoted field spans lines
                start = reader.line_num
                width = len(row)
                raw = row[email_i].strip() if email_i < width else ""
                if not raw:
                    if any(cell.strip() for cell in row):
                        yield RowProblem(line, "", "no email address in this row")
                    continue  # a blank line
                try:
                    email = normalize_address(raw)
                except ValueError as exc:
                    yield RowProblem(line, raw, f"not a valid email address: {exc}")
                    continue
                key = email.casefold()  # normalize_email: `email` is stripped already
                first_line = seen.add(key, line)
                if first_line:
                    yield RowProblem(line, raw, f"duplicate of line {first_line}", "duplicate")
                    continue
                if is_suppressed(key):
                    yield RowProblem(line, raw, "suppressed (unsubscribed or on the suppression list)", "suppressed")
                    continue
                if name_i is not None:
                    name = " ".join(row[name_i].split()) if name_i < width else ""  # _clean
                else:
                    parts = [row[i] for i in (first_i, last_i) if i is not None and i < width]
                    name = _clean(" ".join(parts))
                fields = tuple((label, row[i]) for i, label in others if i < width) if others else ()
                yield Recipient(email, name, line, fields)
        except csv.Error as exc:
            raise RecipientsError(
                f"{path}:{reader.line_num}: cannot read the CSV ({exc}); check the quoting around this line"
            ) from None
        except UnicodeDecodeError:
            raise RecipientsError(
                f"{path}: not UTF-8 text (the file changed while reading?); save it as UTF-8"
            ) from None


def load_suppressions(path: Path) -> frozenset[str]:
    """The suppression list as case-folded addresses; a missing file is an empty list.

    Accepts the format unsubscribe.py writes (optional 'email' header, one address per line, '#'
    comments) and CSV exports whose header names an email column (SendGrid, Mailchimp).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return frozenset()
    except UnicodeDecodeError:
        raise RecipientsError(f"{path}: the suppression list is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise RecipientsError(f"{path}: cannot read the suppression list ({exc.strerror}); fix the path") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return frozenset()
    rows = csv.reader(lines)
    column = 0
    out: set[str] = set()
    for n, row in enumerate(rows):
        if not row:
            continue
        if n == 0:
            names = [c.strip().lower() for c in row]
            found = next((i for i, c in enumerate(names) if c in EMAIL_HEADERS), None)
            if found is not None:
                column = found
                continue
        if column < len(row):
            address = row[column].strip().strip('"')
            if "@" in address:
                out.add(normalize_email(address))
    return frozenset(out)


def single_recipient(addr: str) -> Recipient:
    """The one recipient of a test send (--to): `ann@x.org` or `Ann <ann@x.org>`, validated."""
    name, address = ("", addr.strip())
    if "<" in addr:
        name, address = parseaddr(addr)
    try:
        email = normalize_address(address)
    except ValueError as exc:
        raise RecipientsError(
            f"--to {addr!r}: not a valid email address ({exc}); give one address such as ann@example.org"
        ) from None
    return Recipient(email=email, name=_clean(name), line=0)
