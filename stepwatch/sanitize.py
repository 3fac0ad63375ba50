"""The one sanitizer for every string from a server that the CLI prints: a terminal must
show it, never obey it. C0 and C1 control characters (but newline and tab), DEL and the
bidirectional overrides are shown escaped (``\\x1b``, ``\\u202e``), and the result is a rich
``Text``, so ``[bold]`` or ``[link=...]`` in data is shown as typed, never as markup."""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text

__all__ = ["printable", "safe"]

# C0 but \t and \n; DEL and C1; bidi embeddings, overrides and isolates (a line that reads
# one way and says another).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character written out as an escape."""
    return _UNSAFE.sub(_escape, text)


def safe(text: str, style: str | Style = "", **kw: object) -> Text:
    """A server's string as rich text: no markup, no control characters."""
    return Text(printable(text), style=style, **kw)  # type: ignore[arg-type]
