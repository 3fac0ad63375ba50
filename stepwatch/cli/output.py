"""Where the CLI's output goes and in what form, as gh does it.

On a terminal: rich tables and colour. On a pipe or a file: no colour, no truncation, one
record per line, fields separated by tabs, each in full (a tab or newline inside a field is
written as ``\\t`` / ``\\n``), and a final newline. With ``--json``: the proto's JSON mapping
(lowerCamelCase names), one object for a one-shot command, one object per line for a
stream. Notes for the person (``showing 100 of 165``) go to stderr, so a pipe holds data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from stepwatch.sanitize import printable, safe

__all__ = ["Cell", "Output", "field_text"]

Cell = Text | str


def field_text(cell: Cell) -> str:
    """One field of a record: its plain text, control characters escaped, on one line."""
    text = cell.plain if isinstance(cell, Text) else cell
    return printable(text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n"))


@dataclass
class Output:
    console: Console = field(default_factory=Console)
    errors: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    json: bool = False

    @property
    def tty(self) -> bool:
        return self.console.is_terminal

    def message(self, msg: Message) -> None:
        """One proto object (a one-shot command's answer) as JSON."""
        self._write(json_format.MessageToJson(msg, indent=2) + "\n")

    def json_line(self, msg: Message) -> None:
        """One object of a stream, on one line, flushed: a reader sees it as it happens."""
        self._write(json_format.MessageToJson(msg, indent=None) + "\n")
        self.console.file.flush()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Cell]],
              title: str | None = None) -> None:
        """Rows as a table on a terminal, as tab-separated records elsewhere (no header:
        the columns are the command's documented order)."""
        if self.tty:
            table = Table(*columns, title=title)
            for row in rows:
                table.add_row(*(c if isinstance(c, Text) else safe(c) for c in row))
            self.console.print(table)
        else:
            self.records(rows)

    def records(self, rows: Sequence[Sequence[Cell]]) -> None:
        self._write("".join("\t".join(field_text(c) for c in row) + "\n" for row in rows))

    def show(self, renderable: RenderableType) -> None:
        self.console.print(renderable)

    def line(self, text: Cell) -> None:
        """One line for a person or a script: styled on a terminal, plain elsewhere."""
        if self.tty:
            self.console.print(text if isinstance(text, Text) else safe(text), highlight=False,
                               soft_wrap=True)
        else:
            self._write(printable(text.plain if isinstance(text, Text) else text) + "\n")

    def note(self, text: str, style: str = "dim") -> None:
        """A word for the person (stderr): never mixed into the data on stdout."""
        self.errors.print(safe(text, style), highlight=False)

    def _write(self, text: str) -> None:
        self.console.file.write(text)
