"""A notice's two forms: its text as plain body and as HTML.

The texts in ``bot/notices.py`` mark each command `like this`. Readers of
the plain body (bridges, notifications) get the text without the marks;
clients get HTML with each command in ``<code>``, so a command stands out and
can be copied whole. Pure, like the texts: tested without a homeserver.
"""

from __future__ import annotations

import html
import re
from typing import Final

import attrs

# A command in a text: one line, between backticks.
_COMMAND: Final = re.compile(r"`([^`\n]+)`")


@attrs.frozen
class Rendered:
    """A notice as the bot posts it: ``body`` for plain-text readers and
    bridges, ``html`` (``org.matrix.custom.html``) for clients."""

    body: str
    html: str


def rendered(text: str) -> Rendered:
    """``text`` without its command marks, and as HTML with each command in
    ``<code>``; a stray backtick stays as it is in both."""
    lines = []
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        # The help's indentation would collapse in HTML.
        indent = "&nbsp;" * (len(line) - len(stripped))
        parts, last = [indent], 0
        for match in _COMMAND.finditer(stripped):
            parts.append(html.escape(stripped[last : match.start()], quote=False))
            parts.append(f"<code>{html.escape(match.group(1), quote=False)}</code>")
            last = match.end()
        parts.append(html.escape(stripped[last:], quote=False))
        lines.append("".join(parts))
    return Rendered(_COMMAND.sub(r"\1", text), "<br>".join(lines))
