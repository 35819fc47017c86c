"""Order: the one module that knows the order of the stages (load -> choose -> render -> build -> send)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import Problem
from .models import Build, Item, LoadResult, Selection
from .personalize import sample_values
from .selection import SelectionOptions, require_items, resolve_window, select
from .startup import imports_frozen


@dataclass(frozen=True)
class Chosen:
    selection: Selection
    warnings: tuple[Problem, ...]


@dataclass(frozen=True)
class BuildOutcome:
    build: Build
    selection: Selection
    warnings: tuple[Problem, ...]
    seconds: float


def load_items(settings: Settings, loaded: LoadResult | None = None) -> tuple[tuple[Item, ...], tuple[Problem, ...]]:
    if loaded is None:
        from .content import load_content

        loaded = load_content(settings.path(settings.content_dir), settings)
    return loaded.items, tuple(loaded.warnings)


def apply_selection_settings(settings: Settings, opts: SelectionOptions) -> Settings:
    """Flags that are also settings (--tz, --upcoming-days) win over the config, as the top layer."""
    changes: dict[str, Any] = {}
    if opts.tz:
        changes["timezone"] = opts.tz
    if opts.upcoming_days is not None:
        changes["upcoming_days"] = opts.upcoming_days
    if not changes:
        return settings
    from .config import validate

    updated = dataclasses.replace(settings, **changes)
    validate(updated)
    return updated


def choose(
    settings: Settings, opts: SelectionOptions, *, allow_empty: bool = False, loaded: LoadResult | None = None
) -> Chosen:
    """The selection for `opts`, from `loaded` content or the content folder."""
    settings = apply_selection_settings(settings, opts)
    items, warnings = load_items(settings, loaded)
    window = resolve_window(opts, settings.timezone)
    selection = select(items, window, opts, settings.upcoming_days)
    if not allow_empty:
        require_items(selection, items)
    return Chosen(selection, warnings)


def build_edition(settings: Settings, opts: SelectionOptions, out_dir: Path | None) -> BuildOutcome:
    """Load, choose, render and write the build folder of the edition `opts` selects."""
    import time

    from .content import start_loading

    started = time.perf_counter()
    settings = apply_selection_settings(settings, opts)
    # On a folder's first build the content is parsed in a child process, where possible, while this
    # one imports the render stack and compiles the templates (content.start_loading, parallel.py).
    loading = start_loading(settings.path(settings.content_dir), settings)
    with imports_frozen("digest.render"):
        from .build import write_build
        from .preview import render_preview
        from .render import edition_id, prepare_templates, render
        from .unsubscribe_links import list_unsubscribe_headers

    prepare_templates(settings)
    chosen = choose(settings, opts, loaded=loading())
    edition = edition_id(settings, chosen.selection.window)
    rendered = render(chosen.selection, settings, edition=edition)
    sample = sample_values(settings, edition)
    headers = {"From": settings.sender, "To": f"{sample['name']} <{sample['email']}>", "Subject": rendered.subject}
    if settings.reply_to:
        headers["Reply-To"] = settings.reply_to
    headers.update(list_unsubscribe_headers(sample["unsubscribe_url"], settings.unsubscribe_mailto))
    page = render_preview(
        html=rendered.html,
        text=rendered.text,
        subject=rendered.subject,
        preheader=rendered.preheader,
        headers=headers,
        sample=sample,
    )
    # One folder per edition: the artifact a later send or retry reads stays put while other
    # months are previewed.
    folder = out_dir or settings.path(settings.build_dir) / edition
    built = write_build(folder, rendered, chosen.selection, settings, edition=edition, preview_html=page)
    return BuildOutcome(built, chosen.selection, chosen.warnings, time.perf_counter() - started)


def serve_preview(
    settings: Settings,
    opts: SelectionOptions,
    out_dir: Path | None,
    *,
    port: int,
    on_ready: Callable[[str], None] | None = None,
    on_rebuild: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the edition's preview on 127.0.0.1, rebuilt whenever content, templates or config change."""
    from .config import load_settings
    from .serve import serve

    config_file = settings.config_file

    def rebuild() -> Path:
        # Re-read the config too: editing digest.toml must show up like editing content.
        fresh = load_settings(config_file) if config_file else settings
        return build_edition(fresh, opts, out_dir).build.folder / "preview.html"

    watch = [settings.path(settings.content_dir), settings.path(settings.templates_dir)]
    if config_file:
        watch.append(config_file)
    serve(rebuild, watch, host="127.0.0.1", port=port, on_ready=on_ready, on_rebuild=on_rebuild, stop=stop)


@dataclass(frozen=True)
class CheckOutcome:
    build: Build
    results: tuple[Any, ...]  # checks.CheckResult

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.results)


def check_edition(
    settings: Settings, opts: SelectionOptions, from_build: Path | None, *, spamassassin: bool = True
) -> CheckOutcome:
    """Build (or read a build) and run every quality check over what a subscriber would get."""
    from . import checked
    from .build import read_build
    from .checks import check_build

    built = read_build(from_build) if from_build else build_edition(settings, opts, None).build
    spam = None if spamassassin else False
    results = check_build(built, settings, spamassassin=spam)
    checked.record(built, settings, results, spam)  # a send of this build need not check it again
    return CheckOutcome(built, tuple(results))


# --- send -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """What `digest send` (and `digest retry`) were asked to do."""

    opts: SelectionOptions
    from_build: Path | None = None
    recipients: Path | None = None
    to: tuple[str, ...] = ()
    backend: str | None = None
    dry_run: bool = False
    unknown: str = "stop"  # stop | resend | mark-sent
    allow_changed: bool = False
    if_new: bool = False
    skip_checks: bool = False
    retry_edition: str | None = None  # digest retry: send the failed recipients of this edition again
    spamassassin: bool = True
    worker: bool = False  # one of several runs sending the edition together (a PostgreSQL ledger)


@dataclass
class SendHooks:
    """How the CLI takes part: show notices, confirm a plan, and show progress."""

    notice: Callable[[str], None]
    confirm: Callable[[Any], bool]  # the send.SendPlan; False stops before anything is sent
    progress: Callable[[int], Any]  # total -> a context manager whose value has .update(n)


def _secret_for(settings: Settings, backend: str, list_send: bool, notice: Callable[[str], None]) -> bytes:
    import secrets

    from .unsubscribe_tokens import secret_from_env

    if list_send and backend != "outbox":
        return secret_from_env(required=True)
    secret = secret_from_env(required=False)
    if secret is None:
        # The outbox and test sends reach no subscriber, so they must not need a secret to try digest.
        notice(
            "Note: DIGEST_UNSUBSCRIBE_SECRET is not set; unsubscribe links in these messages use a throwaway key "
            "and will not verify. Set it before a real send."
        )
        secret = secrets.token_bytes(32)
    return secret


def _personalizer(settings: Settings, secret: bytes) -> Callable[[Any], Any]:
    from .deliver.base import Personal
    from .unsubscribe_links import Unsubscriber

    unsubscribe = Unsubscriber(settings, secret)  # checks the URL template and mailto once per run

    def personalize(recipient: Any) -> Personal:
        # view_url is the same for everyone: _send fills it into the build once (with_shared_values).
        url, headers = unsubscribe(recipient.email)
        values = {"name": recipient.name, "email": recipient.email, "unsubscribe_url": url}
        return Personal(recipient, values, headers)

    return personalize


def _build_for_send(settings: Settings, request: SendRequest, hooks: SendHooks) -> Build:
    from .build import read_build
    from .errors import CheckFailed

    from_build = request.from_build
    if from_build is None and request.retry_edition:
        from .ledger import lookup

        from_build = lookup.build_folder(settings.ledger_location(), request.retry_edition)
    if from_build:
        built = read_build(from_build)
    else:
        built = build_edition(settings, request.opts, None).build
        hooks.notice(f"Built {built.edition} -> {built.folder}")
    if request.skip_checks or request.dry_run:
        return built
    from .checked import check_once

    results = check_once(built, settings, spamassassin=None if request.spamassassin else False)
    failing = [r for r in results if r.status == "fail"]
    if failing:
        lines = "\n".join(r.line() for r in failing)
        raise CheckFailed(
            f"{built.edition} fails {len(failing)} quality check(s); nothing sent:\n{lines}\n"
            "Fix the digest (digest check shows every check), or send anyway with --skip-checks."
        )
    return built


def send_edition(settings: Settings, request: SendRequest, hooks: SendHooks) -> Any:
    """Build (or read) the edition, check it, and deliver it once to everyone on the list.

    Returns the send.SendReport, or None when --if-new found nothing new.
    """
    from . import suppressions
    from .deliver.registry import make_backend
    from .errors import EmptySelection, NoLedger, UsageError
    from .ledger import Ledger
    from .ledger.db import is_url
    from .personalize import view_url, with_shared_values
    from .recipients import list_digest, read_recipients, single_recipient
    from .send import execute_send, prepare_send

    if request.backend:
        settings = dataclasses.replace(settings, backend=request.backend)
        from .config import validate

        validate(settings)
    test = bool(request.to)
    retry = request.retry_edition is not None
    if test and request.recipients:
        raise UsageError("--to and --recipients cannot be combined: --to is a test send, --recipients the list")
    if not (test or request.recipients or retry):
        raise UsageError("say who gets it: --recipients FILE for the list, or --to ADDR for a test send")
    ledger_path = settings.ledger_location()
    if request.worker and test:
        raise UsageError("--worker shares the sending of a list (--recipients); a test send (--to) goes alone")
    if request.worker and not is_url(ledger_path):
        raise UsageError(
            f"--worker: several runs share an edition through a PostgreSQL ledger, and {ledger_path} is a SQLite "
            "file; set DIGEST_LEDGER_URL=postgresql://... (or send without --worker, one run at a time)"
        )

    if request.if_new and not test:
        try:
            chosen = choose(settings, request.opts)
        except EmptySelection as exc:
            hooks.notice(f"--if-new: {exc}")
            return None
        from .ledger import lookup

        sent = lookup.sent_item_ids(ledger_path, settings.slug)
        posted = {item.id for item in chosen.selection.posted}
        if sent is not None and posted <= sent:
            hooks.notice(
                f"--if-new: nothing new since the last edition sent ({len(posted)} posted item(s), all sent before); "
                "nothing to do."
            )
            return None

    built = _build_for_send(settings, request, hooks)
    built = with_shared_values(built, {"view_url": view_url(settings, built.edition)})
    backend = make_backend(settings.backend, settings, outbox_dir=settings.path(settings.outbox_dir))
    list_send = not test and not request.dry_run
    secret = _secret_for(settings, settings.backend, list_send, hooks.notice) if not request.dry_run else b"dry-run"
    personalize = _personalizer(settings, secret)
    unknown = request.unknown

    def run(ledger: Any, recipients: Any, key: str | None = None) -> Any:
        plan = prepare_send(
            built,
            backend,
            recipients,
            ledger=ledger,
            test=test,
            dry_run=request.dry_run,
            unknown=unknown,  # type: ignore[arg-type]
            allow_changed=request.allow_changed,
            retry_failed=retry,
            list_digest=key,
        )
        try:
            confirmed = plan.mode != "send" or plan.nothing_to_do or hooks.confirm(plan)
        except BaseException:  # Ctrl-C at the prompt: the run ends as declined, as a "no" would
            plan.cancel()
            raise
        if not confirmed:
            from .errors import DigestError

            plan.cancel()
            raise DigestError(f"Not confirmed; nothing sent. ({plan.summary()})")
        if ledger is not None and plan.mode == "send" and plan.to_send:
            from .archive import store_web_version

            store_web_version(ledger, built, settings)  # the web archive is rebuilt from the ledger alone
        with hooks.progress(plan.to_send) as bar:
            return execute_send(plan, personalize=personalize, progress=bar.update)

    if settings.backend == "outbox" and not request.dry_run:
        maildir = getattr(backend, "maildir", None)
        if callable(maildir):
            hooks.notice(f"Outbox: the Maildir {maildir(built)} (read it with: mutt -f {maildir(built)})")
    if test:
        return run(None, [single_recipient(addr) for addr in request.to])
    if request.dry_run:
        suppressed = suppressions.suppressed(settings)
        rows = read_recipients(request.recipients, suppressed=suppressed) if request.recipients else None
        try:
            ledger = Ledger.open_existing(ledger_path)
        except NoLedger:
            return run(None, rows)
        with ledger:
            return run(ledger, rows)
    lease = settings.worker_lease if request.worker else None
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock(built.newsletter, worker_lease=lease):
        if retry and request.retry_edition != built.edition:
            raise UsageError(
                f"digest retry {request.retry_edition}: the build is {built.edition}; "
                "give the same window (or --from-build) as the original send"
            )
        _settle(settings, ledger, built, backend, hooks.notice)
        suppressed = suppressions.suppressed(settings, ledger)
        rows = read_recipients(request.recipients, suppressed=suppressed) if request.recipients else None
        if retry:
            rows = suppressions.retry_list(ledger, built.edition, suppressed)
        key = list_digest(request.recipients) if request.worker and request.recipients else None
        try:
            return run(ledger, rows, key)
        finally:
            # After prepare_send began the edition: what --if-new and digest retry need later.
            ledger.record_build(
                built.edition, _posted_ids(built), str(built.folder.resolve()), content_hash=built.content_hash
            )


def _settle(settings: Settings, ledger: Any, built: Build, backend: Any, notice: Callable[[str], None]) -> None:
    """Before a send (lock held): what a dead run left in flight becomes unknown, stored events are applied,
    and the evidence there is (SendGrid events, the outbox's Maildir) settles what it can."""
    from .ledger.events import apply_stored
    from .settle import settle_unknown

    wait = settings.sendgrid.events_wait_hours
    ledger.recover_in_flight(built.edition)
    apply_stored(ledger)
    maildir = getattr(backend, "maildir", None)
    box = maildir(built) if callable(maildir) else settings.path(settings.outbox_dir) / built.edition
    settled = settle_unknown(ledger, built.edition, wait_hours=wait, maildir=box)
    if settled.total:
        notice(
            f"Settled {settled.total:,} recipients of {built.edition} whose outcome was unknown, by the evidence: "
            f"{settled.sent:,} sent, {settled.failed:,} failed, {settled.resend:,} never accepted (sent now)."
        )


def _posted_ids(built: Build) -> list[str]:
    selection = built.manifest.get("selection", {})
    posted = selection.get("posted", []) if isinstance(selection, dict) else []
    return [str(i) for i in posted]


# --- ledger views ---------------------------------------------------------------------------------


def latest_edition(settings: Settings) -> str:
    from .ledger import lookup

    return lookup.latest_edition(settings.ledger_location(), settings.slug)


def history(settings: Settings) -> list[Any]:
    from .ledger import lookup

    return lookup.history(settings.ledger_location(), settings.slug)


def status(settings: Settings, edition: str | None) -> dict[str, Any]:
    """`digest status [--json]`: JSON-ready, with the counts also under their own names."""
    from .ledger import Ledger, lookup
    from .ledger.events import evidence_counts

    location = settings.ledger_location()
    data = lookup.status(location, settings.slug, edition).to_dict()
    with Ledger.open_existing(location) as ledger:
        data["evidence"] = evidence_counts(ledger, data["edition"])
    return data


def reconcile(settings: Settings, events_file: Path) -> dict[str, int]:
    """`digest reconcile --events FILE`: store and apply a file of SendGrid events, as the webhook does."""
    from .events import read_events_file
    from .ledger import Ledger
    from .ledger.events import ingest

    events = read_events_file(events_file)
    with Ledger.open_store(settings.ledger_location()) as ledger:
        return ingest(ledger, events).to_dict()
