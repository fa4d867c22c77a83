"""Tables that fit the terminal without breaking names mid-word.

Rich wraps a cell only at spaces, and when a table is wider than the terminal it narrows
the widest columns with no regard for the longest word in them: at 80 columns a method
came out as "Deepfa/kes" and a video file name was cut. Here a name (`Name`) may break
only where a reader would (after `_ - / .`, or between the words of a CamelCase name), and
`print_table` sets column widths that never go under a column's longest unbreakable piece,
narrowing the widest columns first.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable, TypeVar

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

T = TypeVar("T")

#: where a name may break: after a separator (`_ - / .` or a space)
_SEPARATORS = re.compile(r"(?<=[_\-/.\s])(?=.)")
#: and, when the table is narrow, where a lower-case letter meets a capital (CamelCase)
_CAMEL = re.compile(r"(?<=[_\-/.\s])(?=.)|(?<=[a-z])(?=[A-Z])")


class Name:
    """A name (a file, a method, a path) as a table cell: wraps after its separators, and
    between the words of a CamelCase name once `camel` is set (`fit_columns` sets it when
    the table does not fit otherwise); a single piece wider than the column is the only
    thing folded mid-word."""

    def __init__(self, text: str, style: str = "") -> None:
        self.text = text
        self.style = style
        self.camel = False

    @property
    def pieces(self) -> list[str]:
        return [p for p in (_CAMEL if self.camel else _SEPARATORS).split(self.text) if p] or [""]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        longest = max(Text(p).cell_len for p in self.pieces)
        return Measurement(longest, Text(self.text).cell_len).with_maximum(options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = max(1, options.max_width)
        lines: list[str] = []
        line = ""
        for piece in self.pieces:
            if line and Text(line + piece).cell_len > width:
                lines.append(line)
                line = piece
            else:
                line += piece
        lines.append(line)
        yield Text("\n".join(lines), style=self.style, overflow="fold")

    def __str__(self) -> str:
        return self.text


def names(values: Iterable[object]) -> list[Name]:
    return [Name("-" if v is None else str(v)) for v in values]


def print_table(table: Table, console: Console) -> None:
    """`console.print(table)` with widths that fit the console and keep names whole."""
    fit_columns(table, console, console.width)
    console.print(table)


def fit_columns(table: Table, console: Console, width: int) -> None:
    """Fix the column widths of a table wider than `width`: each column between its
    minimum (the longest piece it cannot break: a word, a `Name` piece, a whole no_wrap
    cell) and its natural width, one cell off the widest column at a time. CamelCase names
    break into their words only when the table does not fit otherwise; a table whose
    minimums alone do not fit is left to rich."""
    lows, highs, room = _widths(table, console, width)
    if sum(highs) <= room:
        return
    if sum(lows) > room:
        for cell in (c for column in table.columns for c in column.cells if isinstance(c, Name)):
            cell.camel = True
        lows, highs, room = _widths(table, console, width)
        if sum(lows) > room:
            return
    widths = list(highs)
    while sum(widths) > room:
        i = max((i for i in range(len(widths)) if widths[i] > lows[i]), key=lambda i: widths[i])
        widths[i] -= 1
    for column, w in zip(table.columns, widths):
        column.width = w


def fits(table: Table, console: Console, width: int) -> bool:
    """Whether every column of `table` can keep its words whole within `width`."""
    lows, _, room = _widths(table, console, width)
    return sum(lows) <= room


def print_in_parts(make: Callable[[list[T]], Table], columns: list[T], console: Console) -> None:
    """A table of a label column and many value columns, as several tables one under the
    other when one would not fit: `make(part)` builds the table (label column included) of
    a run of `columns` (whatever describes one, e.g. a header and its cells); each part
    takes as many as fit with their names whole."""
    part: list[T] = []
    for column in columns:
        if part and not fits(make([*part, column]), console, console.width):
            print_table(make(part), console)
            part = []
        part.append(column)
    if part or not columns:
        print_table(make(part), console)


def _widths(table: Table, console: Console, width: int) -> tuple[list[int], list[int], int]:
    """Each column's minimum and natural content width, and the room the columns have."""
    columns = table.columns
    options = console.options.update_width(width)
    _, right, _, left = Padding.unpack(table.padding)
    borders = ((2 if table.show_edge else 0) + len(columns) - 1) if table.box else 0
    lows, highs = [], []
    for column in columns:
        sizes = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
        high = max(m.maximum for m in sizes)
        lows.append(high if column.no_wrap else max(m.minimum for m in sizes))
        highs.append(high)
    return lows, highs, width - borders - (left + right) * len(columns)
