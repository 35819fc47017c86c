"""The one error family: everything a user can cause is a DigestError, translated once in cli.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem at one place, with the fix: `path:line: message; fix`."""

    path: str
    line: int | None
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{where}: {self.message}"
        return f"{text}; {self.fix}" if self.fix else text


class DigestError(Exception):
    """Base of every error a user can cause. Its message is shown as is; exit code `exit_code`."""

    exit_code = 1


class ConfigError(DigestError):
    """digest.toml or a DIGEST_* variable is wrong."""


class UsageError(DigestError):
    """Options that do not fit together (exit 2, like click's own usage errors)."""

    exit_code = 2


class ContentError(DigestError):
    """The content folder has problems; all of them are listed at once."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None):
        self.problems = problems
        self.warnings = warnings or []
        count = len(problems)
        lines = "\n".join(str(p) for p in problems)
        # Warnings ride along: a user fixing the errors should see the unknown fields in the same pass.
        noted = "".join(f"\nwarning: {w}" for w in self.warnings)
        super().__init__(
            f"{lines}\n{count} problem{'s' if count != 1 else ''} in the content folder; nothing was built.{noted}"
        )

    def __reduce__(self) -> tuple[type[ContentError], tuple[list[Problem], list[Problem]]]:
        # Pickled by parallel.py (the folder may be parsed in a child process): rebuild from the
        # problems, not from the message, which is what Exception would pass back to __init__.
        return (ContentError, (self.problems, self.warnings))


class EmptySelection(DigestError):
    """No items in the window: a normal outcome with its own exit code, never an empty email."""

    exit_code = 3


class TemplateError(DigestError):
    """A template failed to render or compile."""


class BuildError(DigestError):
    """A build folder is missing, incomplete, corrupt, or was changed after it was built."""


class ArchiveError(DigestError):
    """The web archive cannot be written, or a stored web version cannot be read."""


class RecipientsError(DigestError):
    """The recipients file cannot be read at all (bad rows are skipped, not raised)."""


class DeliveryError(DigestError):
    """A backend could not deliver and the run must stop (bad key, bad request, server gone)."""


class BatchOutcomeUnknown(DeliveryError):
    """Raised by a backend: the request went out and no answer came, so the batch may or may not be delivered.

    The send loop marks such a batch `unknown` and never re-sends it on its own.
    """


class LedgerError(DigestError):
    """The ledger refuses (edition content changed, unknown outcomes to decide, bad schema, no ledger yet)."""


class NothingSentYet(LedgerError):
    """No edition of this newsletter was sent yet: `digest status` and `history` say so alike and exit 0."""


class NothingToRetry(NothingSentYet):
    """`digest retry` before the first send: nothing to do, so it exits 0 like `status` and `history` then."""

    exit_code = 0


class NoLedger(NothingSentYet):
    """The ledger file does not exist yet: nothing has been sent with this configuration."""


class EventsError(DigestError):
    """A file or post of SendGrid events cannot be read (not JSON, not events)."""


class WebhookKeyError(ConfigError):
    """DIGEST_SENDGRID_WEBHOOK_KEY is missing or is not a SendGrid verification key."""


class BadToken(DigestError):
    """An unsubscribe token is malformed, tampered with, or signed with another secret."""


class SuppressionError(DigestError):
    """A suppression cannot be added or removed as asked (not listed, in the file, a complaint without --yes)."""


class LockedError(DigestError):
    """Another run of the same newsletter holds the lock."""

    exit_code = 5


class PartialFailure(DigestError):
    """The run finished but some recipients failed or are unknown."""

    exit_code = 4


class ServeError(DigestError):
    """The preview server cannot start (port taken, bad host)."""


class CheckFailed(DigestError):
    """`digest check` found a failing check; sends refuse to go on."""

    exit_code = 6


class ImportWriteError(DigestError):
    """`digest import` cannot create the content folder or write its state file: a read-only folder, a full disk."""


class FeedError(DigestError):
    """One feed of `digest import` cannot be fetched or read; the other feeds are still imported."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")

    def __reduce__(self) -> tuple[type[FeedError], tuple[str, str]]:
        return (FeedError, (self.source, self.problem))
