"""How deeply a TOML text nests, read without parsing it: a bound checked before tomllib runs.

tomllib recurses on arrays and inline tables and is quadratic on long dotted keys and
table headers (a 100,000-level dotted key fits in 1 MiB and costs a minute of a server
thread). A job definition nests a few levels, so anything deeper than ``MAX_DEPTH`` is
refused before parsing, in one linear pass.

The depth counted at any point is: the current table header's parts, the current key's
parts, and the open arrays and inline tables (with their own keys' parts). Strings and
comments are skipped; a quoted key part counts as one part. The count may exceed the depth
tomllib builds (it never falls short of it), which only matters near the bound.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "nesting_depth"]

MAX_DEPTH = 64


def nesting_depth(text: str, stop_above: int = MAX_DEPTH) -> int:
    """How deeply ``text`` nests, never less than the truth: above ``stop_above`` the scan
    stops (and says so by returning more); a text with few dots and brackets is not
    scanned (it cannot nest deeper than their number, which is returned)."""
    marks = 1 + sum(text.count(c) for c in ".[{")
    if marks <= stop_above:
        return marks
    return _Scan(text, stop_above).run()


class _Scan:
    def __init__(self, text: str, stop_above: int) -> None:
        self.text = text
        self.stop_above = stop_above
        self.i = 0
        self.best = 0
        self.header = 0  # parts of the current [table] header
        self.stack: list[tuple[str, int]] = []  # open '[' / '{' and the depth below each
        self.base = 0  # depth of the container the current key lives in
        self.parts = 0  # parts of the key being read (0: not in a key)
        self.in_key = True  # reading a key: at a line's start at the top, or inside {...}

    def note(self, depth: int) -> bool:
        if depth > self.best:
            self.best = depth
        return self.best > self.stop_above

    def run(self) -> int:
        text, n = self.text, len(self.text)
        line_start = True
        while self.i < n:
            ch = text[self.i]
            if ch in "\"'":
                self.skip_string()
                if self.in_key and self.parts == 0:
                    self.parts = 1
                    if self.note(self.base + 1):
                        break
                continue
            if ch == "#":
                end = text.find("\n", self.i)
                self.i = n if end < 0 else end
                continue
            if ch == "\n":
                if not self.stack:
                    self.in_key, self.parts, self.base, line_start = True, 0, self.header, True
                self.i += 1
                continue
            if ch in " \t\r":
                self.i += 1
                continue
            if line_start and not self.stack and ch == "[":
                if self.read_header():
                    break
                line_start = False
                continue
            line_start = False
            if self.in_key:
                if self.key_char(ch):
                    break
            elif self.value_char(ch):
                break
            self.i += 1
        return self.best

    def key_char(self, ch: str) -> bool:
        if ch == "=":
            self.in_key = False
            self.base += max(self.parts, 1)  # the value lives under the key's last part
            self.parts = 0
        elif ch == ".":
            self.parts += 1
        elif ch == "}" and self.stack:  # an empty inline table
            self.close()
        elif self.parts == 0:
            self.parts = 1
        return self.note(self.base + max(self.parts, 1))

    def value_char(self, ch: str) -> bool:
        if ch in "[{":
            self.stack.append((ch, self.base))
            self.base += 1
            if ch == "{":
                self.in_key, self.parts = True, 0
            return self.note(self.base)
        if ch in "]}":
            self.close()
        elif ch == "," and self.stack and self.stack[-1][0] == "{":
            self.in_key, self.parts = True, 0
            self.base = self.stack[-1][1] + 1
        return False

    def close(self) -> None:
        if self.stack:
            _, below = self.stack.pop()
            self.base = below
            # After a value inside an inline table, the table's next key follows a ','.
            self.in_key = False

    def read_header(self) -> bool:
        """``[a.b.c]`` or ``[[a.b.c]]``: the header's parts are the depth from here on."""
        text, n = self.text, len(self.text)
        self.i += 1
        parts = 1
        while self.i < n and text[self.i] not in "]\n":
            ch = text[self.i]
            if ch in "\"'":
                self.skip_string()
                continue
            if ch == ".":
                parts += 1
                if self.note(parts):
                    return True
            self.i += 1
        while self.i < n and text[self.i] == "]":
            self.i += 1
        self.header = self.base = parts
        self.in_key, self.parts = False, 0  # the rest of the line: nothing nests
        return self.note(parts)

    def skip_string(self) -> None:
        text, i = self.text, self.i
        quote = text[i]
        if text.startswith(quote * 3, i):
            end = text.find(quote * 3, i + 3)
            while quote == '"' and end > 0 and _escaped(text, end):
                end = text.find(quote * 3, end + 1)
            self.i = len(text) if end < 0 else end + 3
            while self.i < len(text) and text[self.i] == quote:  # """a"""" ends with quotes
                self.i += 1
            return
        j = i + 1
        while j < len(text) and text[j] != quote and text[j] != "\n":
            j += 2 if quote == '"' and text[j] == "\\" else 1
        self.i = j + 1


def _escaped(text: str, at: int) -> bool:
    """Whether the character at ``at`` follows an odd number of backslashes."""
    n = 0
    while at - n - 1 >= 0 and text[at - n - 1] == "\\":
        n += 1
    return n % 2 == 1
