"""Web checks: the edition's page in the web archive (where it goes, nothing personal left on it)."""

from __future__ import annotations

from ..config import Settings
from ..models import Build
from ..personalize import view_url
from .outcome import CheckResult, fail, ok


def check_web(build: Build, settings: Settings) -> list[CheckResult]:
    """The edition's page in the web archive: where it goes, and that nothing personal is left on it."""
    from ..archive import leftover_placeholders, site_path

    url = view_url(settings, build.edition)
    results = []
    if site_path(settings, url) is None:
        results.append(
            CheckResult(
                "web-page",
                "warn",
                f"view_url {url} is not under base_url {settings.base_url}, so digest archive makes no page for "
                'it and "View in browser" leads nowhere it publishes; set view_url = "{base_url}/digest/{edition}"',
            )
        )
    left = leftover_placeholders(build, settings)
    if left:
        results.append(
            fail(
                "web-placeholders",
                f"the edition's public web page would carry the recipient placeholder(s) {', '.join(left)}; mark the "
                'element that holds it class="personal" in the template (the web page leaves those out)',
            )
        )
    else:
        results.append(ok("web-placeholders", "the web archive's page carries no recipient placeholder"))
    return results
