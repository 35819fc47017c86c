"""Order: the one module that knows the order of the stages (load -> choose -> render -> build -> send)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import Problem
from .models import Build, Item, Selection
from .personalize import sample_values
from .selection import SelectionOptions, require_items, resolve_window, select
from .startup import imports_frozen

if TYPE_CHECKING:
    from .content import LoadResult


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
        require_items(selection)
    return Chosen(selection, warnings)


def selection_json(selection: Selection) -> dict[str, Any]:
    w = selection.window
    rows = []
    for chosen in selection.items:
        item = chosen.item
        row: dict[str, Any] = {
            "id": item.id,
            "title": item.title,
            "subtitle": item.subtitle,
            "date": item.date.isoformat(),
            "kind": item.kind,
            "tags": list(item.tags),
            "url": item.url,
            "reason": chosen.reason,
            "why": _why(chosen.reason, item, selection),
            "source": str(item.source),
        }
        if item.event:
            row["event"] = {
                "start": item.event.start.isoformat(),
                "end": item.event.end.isoformat() if item.event.end else None,
                "when": item.event.when,
                "place": item.event.place,
            }
        rows.append(row)
    return {
        "window": {"since": w.since.isoformat(), "until": w.until.isoformat(), "tz": w.tz, "label": w.label},
        "upcoming_until": selection.upcoming_until.isoformat(),
        "filters": selection.filters,
        "count": len(selection),
        "posted": len(selection.posted),
        "upcoming": len(selection.upcoming),
        "items": rows,
    }


def _why(reason: str, item: Item, selection: Selection) -> str:
    if reason == "posted":
        return f"posted {item.date.isoformat()}, in the window"
    start = item.event.start.isoformat() if item.event else "?"
    days = (selection.upcoming_until - selection.window.until).days
    return f"upcoming event on {start}, within {days} days after the window"


def selection_table(selection: Selection) -> list[str]:
    w = selection.window
    lines = [
        f"Window {w.since.isoformat()} .. {w.until.isoformat()} ({w.tz}): {len(selection.posted)} posted, "
        f"{len(selection.upcoming)} upcoming event(s) until {selection.upcoming_until.isoformat()}"
    ]
    if not len(selection):
        lines.append("No items selected.")
        return lines
    width = min(60, max(len(c.item.title) for c in selection.items))
    lines.append(f"{'DATE':<10}  {'KIND':<8}  {'TITLE':<{width}}  WHY")
    for chosen in selection.items:
        item = chosen.item
        title = item.title if len(item.title) <= width else item.title[: width - 1] + "…"
        lines.append(
            f"{item.date.isoformat():<10}  {item.kind:<8}  {title:<{width}}  {_why(chosen.reason, item, selection)}"
        )
    return lines


def build(settings: Settings, opts: SelectionOptions, out_dir: Path | None) -> BuildOutcome:
    import time

    from .content import start_loading

    started = time.perf_counter()
    settings = apply_selection_settings(settings, opts)
    # On a folder's first build the content is parsed in a child process, where possible, while this
    # one imports the render stack and compiles the templates (content.start_loading, parallel.py).
    loading = start_loading(settings.path(settings.content_dir), settings)
    with imports_frozen("digest.render"):
        from . import build as build_mod
        from .preview import render_preview
        from .render import edition_id, prepare_templates, render
        from .unsubscribe import list_unsubscribe_headers

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
    built = build_mod.write_build(folder, rendered, chosen.selection, settings, edition=edition, preview_html=page)
    return BuildOutcome(built, chosen.selection, chosen.warnings, time.perf_counter() - started)


def build_summary(outcome: BuildOutcome) -> str:
    b = outcome.build
    sizes = b.manifest.get("sizes", {})
    html_bytes = sizes.get("html_bytes", len(b.html.encode())) if isinstance(sizes, dict) else len(b.html.encode())
    sel = outcome.selection
    return (
        f"Built {b.edition}: {len(sel.posted)} posted + {len(sel.upcoming)} upcoming item(s), "
        f"HTML {html_bytes:,} bytes, in {outcome.seconds * 1000:.0f} ms -> {b.folder}"
    )


def serve(
    settings: Settings,
    opts: SelectionOptions,
    out_dir: Path | None,
    *,
    port: int,
    on_ready: Callable[[str], None] | None = None,
    on_rebuild: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    from .config import load_settings
    from .serve import serve as serve_forever

    config_file = settings.config_file

    def rebuild() -> Path:
        # Re-read the config too: editing digest.toml must show up like editing content.
        fresh = load_settings(config_file) if config_file else settings
        return build(fresh, opts, out_dir).build.folder / "preview.html"

    watch = [settings.path(settings.content_dir), settings.path(settings.templates_dir)]
    if config_file:
        watch.append(config_file)
    serve_forever(rebuild, watch, host="127.0.0.1", port=port, on_ready=on_ready, on_rebuild=on_rebuild, stop=stop)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CheckOutcome:
    build: Build
    results: tuple[Any, ...]  # checks.CheckResult

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.results)

    def lines(self) -> list[str]:
        return [r.line() for r in self.results]

    def summary(self) -> str:
        counts = {s: sum(1 for r in self.results if r.status == s) for s in ("pass", "warn", "fail", "skip")}
        verdict = "FAILED: fix the failing checks before sending" if self.failed else "all checks passed"
        detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"{self.build.edition}: {verdict} ({detail})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "edition": self.build.edition,
            "folder": str(self.build.folder),
            "failed": self.failed,
            "checks": [r.to_dict() for r in self.results],
        }


def check(
    settings: Settings, opts: SelectionOptions, from_build: Path | None, *, spamassassin: bool = True
) -> CheckOutcome:
    """Build (or read a build) and run every quality check over what a subscriber would get."""
    from .build import read_build
    from .checks import check_build

    built = read_build(from_build) if from_build else build(settings, opts, None).build
    results = check_build(built, settings, spamassassin=None if spamassassin else False)
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


@dataclass
class SendHooks:
    """How the CLI takes part: show notices, confirm a plan, and show progress."""

    notice: Callable[[str], None]
    confirm: Callable[[Any], bool]  # the send.SendPlan; False stops before anything is sent
    progress: Callable[[int], Any]  # total -> a context manager whose value has .update(n)


def _secret_for(settings: Settings, backend: str, list_send: bool, notice: Callable[[str], None]) -> bytes:
    import secrets

    from .unsubscribe import secret_from_env

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
    from .unsubscribe import Unsubscriber

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
        built = build(settings, request.opts, None).build
        hooks.notice(f"Built {built.edition} -> {built.folder}")
    if request.skip_checks or request.dry_run:
        return built
    from .checks import check_build

    results = check_build(built, settings, spamassassin=None if request.spamassassin else False)
    failing = [r for r in results if r.status == "fail"]
    if failing:
        lines = "\n".join(r.line() for r in failing)
        raise CheckFailed(
            f"{built.edition} fails {len(failing)} quality check(s); nothing sent:\n{lines}\n"
            "Fix the digest (digest check shows every check), or send anyway with --skip-checks."
        )
    return built


def send(settings: Settings, request: SendRequest, hooks: SendHooks) -> Any:
    """Build (or read) the edition, check it, and deliver it once to everyone on the list.

    Returns the send.SendReport, or None when --if-new found nothing new.
    """
    from .deliver.registry import make_backend
    from .errors import EmptySelection, NoLedger, UsageError
    from .ledger import Ledger
    from .personalize import view_url, with_shared_values
    from .recipients import load_suppressions, read_recipients, single_recipient
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

    def run(ledger: Any, recipients: Any) -> Any:
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
        with hooks.progress(plan.to_send) as bar:
            return execute_send(plan, personalize=personalize, progress=bar.update)

    if settings.backend == "outbox" and not request.dry_run:
        maildir = getattr(backend, "maildir", None)
        if callable(maildir):
            hooks.notice(f"Outbox: the Maildir {maildir(built)} (read it with: mutt -f {maildir(built)})")
    if test:
        return run(None, [single_recipient(addr) for addr in request.to])
    suppressed = load_suppressions(settings.path(settings.suppression_file))
    rows = read_recipients(request.recipients, suppressed=suppressed) if request.recipients else None
    if request.dry_run:
        try:
            ledger = Ledger.open_existing(ledger_path)
        except NoLedger:
            return run(None, rows)
        with ledger:
            return run(ledger, rows)
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock(built.newsletter):
        if retry and request.retry_edition != built.edition:
            raise UsageError(
                f"digest retry {request.retry_edition}: the build is {built.edition}; "
                "give the same window (or --from-build) as the original send"
            )
        try:
            return run(ledger, rows)
        finally:
            # After prepare_send began the edition: what --if-new and digest retry need later.
            ledger.record_build(
                built.edition, _posted_ids(built), str(built.folder.resolve()), content_hash=built.content_hash
            )


def _posted_ids(built: Build) -> list[str]:
    selection = built.manifest.get("selection", {})
    posted = selection.get("posted", []) if isinstance(selection, dict) else []
    return [str(i) for i in posted]


def write_report(path: Path, report: Any) -> None:
    import json
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temp, path)


# --- ledger views ---------------------------------------------------------------------------------


def latest_edition(settings: Settings) -> str:
    from .ledger import lookup

    return lookup.latest_edition(settings.ledger_location(), settings.slug)


def history(settings: Settings) -> list[Any]:
    from .ledger import lookup

    return lookup.history(settings.ledger_location(), settings.slug)


def status(settings: Settings, edition: str | None) -> dict[str, Any]:
    """`digest status [--json]`: JSON-ready, with the counts also under their own names."""
    from .ledger import lookup

    return lookup.status(settings.ledger_location(), settings.slug, edition).to_dict()
