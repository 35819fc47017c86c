"""Preview: the built email as one self-contained page (desktop and phone side by side, text part, headers)."""

from __future__ import annotations

import os
import re
import sys
from html import escape
from pathlib import Path

from .personalize import fill

DESKTOP_WIDTH = 800
MOBILE_WIDTH = 375

# The page is opened from disk or served by `digest serve`; it must not fetch anything, so its style
# and its one script are inline. The script only sizes each frame to its email (same-origin srcdoc);
# without it the frames still work, with a scrollbar of their own.
_STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --paper: #f0f4f8; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       color: var(--ink); background: var(--paper); }
header, main { padding: 16px 24px; }
header { background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 8px; color: var(--muted); font-weight: 600; }
.inbox { margin: 0 0 12px; color: var(--muted); overflow-wrap: anywhere; }
.inbox strong { color: var(--ink); }
dl.headers { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0;
             font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
dl.headers dt { font-weight: 600; }
dl.headers dd { margin: 0; overflow-wrap: anywhere; }
.note { font-size: 13px; color: var(--muted); margin: 8px 0 0; }
.views { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.view { flex: none; max-width: 100%; }
.view iframe { display: block; max-width: 100%; height: 900px; border: 1px solid var(--line);
               background: #fff; box-shadow: 0 1px 4px rgba(0, 0, 0, .08); }
.text { margin-top: 24px; }
.text pre { margin: 0; padding: 16px; max-width: 80ch; background: #fff; border: 1px solid var(--line);
            white-space: pre-wrap; overflow-wrap: anywhere; font: 13px/1.5 ui-monospace, Menlo, Consolas, monospace; }
"""

_FIT_SCRIPT = """
for (const frame of document.querySelectorAll('iframe.email')) {
  const fit = () => {
    const doc = frame.contentDocument;
    if (doc && doc.documentElement) frame.style.height = doc.documentElement.scrollHeight + 2 + 'px';
  };
  frame.addEventListener('load', () => { fit(); setTimeout(fit, 300); setTimeout(fit, 1500); });
}
"""

_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


def render_preview(
    *,
    html: str,
    text: str,
    subject: str,
    preheader: str,
    headers: dict[str, str],
    sample: dict[str, str],
) -> str:
    """The preview page: placeholders filled with `sample` values, so it reads like a delivered message."""
    email_html = _links_open_outside(fill(html, sample))
    email_text = fill(text, sample)
    subject = fill(subject, sample)
    preheader = fill(preheader, sample)
    filled_headers = {name: fill(value, sample) for name, value in headers.items()}
    sender = filled_headers.get("From", "")
    recipient = " ".join(
        part for part in (sample.get("name", ""), f"<{sample['email']}>" if sample.get("email") else "") if part
    )

    header_rows = "\n".join(
        f"<dt>{escape(name)}:</dt><dd>{escape(value)}</dd>" for name, value in filled_headers.items()
    )
    frames = "\n".join(
        _frame(email_html, width, label) for width, label in ((DESKTOP_WIDTH, "Desktop"), (MOBILE_WIDTH, "Phone"))
    )
    lang = _lang_of(html)
    return f"""<!DOCTYPE html>
<html lang="{escape(lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Preview: {escape(subject)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>{escape(subject)}</h1>
<p class="inbox" aria-label="How an inbox lists it"><strong>{escape(_display_name(sender))}</strong>
 &mdash; {escape(subject)} &mdash; {escape(preheader)}</p>
<section aria-labelledby="headers-title">
<h2 id="headers-title">Headers</h2>
<dl class="headers">
{header_rows}
</dl>
</section>
<p class="note">Placeholders are filled with sample values{f" for {escape(recipient)}" if recipient else ""};
each recipient gets their own.</p>
</header>
<main>
<section aria-labelledby="html-title">
<h2 id="html-title">HTML part at {DESKTOP_WIDTH} and {MOBILE_WIDTH} pixels wide</h2>
<div class="views">
{frames}
</div>
</section>
<section class="text" aria-labelledby="text-title">
<h2 id="text-title">Plain-text part</h2>
<pre>{escape(email_text)}</pre>
</section>
</main>
<script>{_FIT_SCRIPT}</script>
</body>
</html>
"""


def _frame(email_html: str, width: int, label: str) -> str:
    # srcdoc: one file, and each frame is a real viewport of its width for the email's media queries.
    # The sandbox stops the email's scripts; same-origin lets the page size the frame, popups open links.
    # Frames are border-box with a 1px border: width + 2 makes the viewport inside exactly `width`.
    return (
        f'<figure class="view" style="width:{width + 2}px;margin:0">\n'
        f'<figcaption><h3 style="font-size:13px;margin:0 0 6px">{label}, {width} px</h3></figcaption>\n'
        f'<iframe class="email" title="The email at {width} pixels wide ({label.lower()})" width="{width}" '
        f'style="width:{width + 2}px" sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox" '
        f'srcdoc="{escape(email_html, quote=True)}"></iframe>\n'
        "</figure>"
    )


def _links_open_outside(email_html: str) -> str:
    """A link clicked in a frame should open a tab, not replace the email inside the frame."""
    base = '<base target="_blank">'
    match = _HEAD.search(email_html)
    if match:
        return email_html[: match.end()] + base + email_html[match.end() :]
    return base + email_html


def _lang_of(email_html: str) -> str:
    match = re.search(r"<html[^>]*\slang=\"([A-Za-z0-9-]+)\"", email_html, re.IGNORECASE)
    return match.group(1) if match else "en"


def _display_name(sender: str) -> str:
    """'Mayors Innovation Project <news@example.org>' -> 'Mayors Innovation Project', as inboxes show it."""
    name = sender.split("<", 1)[0].strip().strip('"')
    return name or sender


def open_in_browser(path: Path) -> bool:
    """Open the page in the desktop's browser; False when there is none (the caller prints the path anyway)."""
    # With no display, webbrowser falls back to console browsers (lynx, w3m) that take over the terminal
    # and block until quit; nobody asked for that, so only $BROWSER or a desktop session counts.
    desktop = sys.platform in {"darwin", "win32"} or any(
        os.environ.get(var) for var in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    )
    if not desktop:
        return False
    import webbrowser  # here, not at the top: ~4 ms that a build that opens nothing need not pay

    try:
        return webbrowser.open(path.resolve().as_uri())
    except webbrowser.Error:
        return False
