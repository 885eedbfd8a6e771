"""One renderer for every list and show command: a Rich table, JSON or CSV.

Core functions return plain dicts; commands pick columns and call ``render``. Data goes to
stdout, messages to stderr. Times become ISO 8601 with the configured zone's offset in JSON and
CSV, and a short local form in tables. CSV cells that a spreadsheet would run as a formula are
neutralised.

Data is never markup and never a terminal instruction: a plain cell is a ``Text`` of the value
with control characters taken out (``core/text.printable``); a ``show`` function or a command's
own layout that mixes styling with data puts each value in through ``safe`` (escaped markup,
no controls), so a region ``[/]`` or ``[link=...]`` prints as typed and ``ESC]0;…`` never
reaches the terminal.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import islice
from json.encoder import encode_basestring  # the C encoder of a str, as json.dumps(ensure_ascii=False) uses
from typing import Any

from ffctl.core.clock import iso, jsonable, local  # noqa: F401  (jsonable: the commands' JSON form)
from ffctl.core.text import printable
from ffctl.i18n import _

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_INF = float("inf")
_PLAIN = {str, int, float, bool, type(None)}  # what write_many hands the C encoder as it is


@dataclass(frozen=True)
class Column:
    key: str
    header: str | None = None
    justify: str = "left"  # left | right | center
    style: str | None = None
    show: Callable[[Any], str] | None = None  # table-only rendering of the value
    narrow_drop: int = 0  # on a terminal too narrow for every column: left out 1st, 2nd, ... (0: never)

    @property
    def title(self) -> str:
        """The header a table shows, in the current language (JSON and CSV keep ``key``)."""
        return _(self.header or self.key.replace("_", " "))


def safe(value: Any) -> str:
    """A data value to put inside Rich markup: printed as typed, with no control characters."""
    from rich.markup import escape

    return escape(printable("" if value is None else str(value)))


def data_text(value: Any):
    """A data value as a Rich ``Text`` (never parsed as markup), with no control characters."""
    from rich.text import Text

    return Text(printable("" if value is None else str(value)))


def resolve_format(fmt) -> str:
    if fmt is not None:
        return getattr(fmt, "value", fmt)
    return "table" if sys.stdout.isatty() else "csv"


def dumps(value: Any, tz: str) -> str:
    return json.dumps(jsonable(value, tz), ensure_ascii=False, indent=2)


class RowStream:
    """JSON or CSV written a row at a time to ``out`` (stdout by default), as sqlite-utils'
    ``output_rows`` does: a JSON array opened on the first row and closed by ``close``, CSV row by
    row. ``render`` writes through it; a command whose rows arrive by callback (``allocate``) feeds
    it directly. With ``envelope=(key, head)`` the JSON is an object: ``head``'s keys, then the
    rows under ``key`` one a line, then the keys given to ``close`` (known once the rows are out).
    """

    def __init__(
        self, columns: Sequence[Column], kind: str, *, tz: str, out=None, envelope: tuple[str, dict] | None = None
    ) -> None:
        self.kind, self.tz, self.rows = kind, tz, 0
        self.out = out if out is not None else sys.stdout
        self.keys = [c.key for c in columns]
        self.envelope = envelope
        # nested one level in an envelope; a plain array lays each row out as json.dumps(indent=2) would
        self.pad, self.indent = ("    ", None) if envelope else ("  ", 2)
        self._encoder: json.JSONEncoder | None = None  # write_many's
        self.batch = 1000
        if kind == "csv":
            self.writer = csv.writer(self.out, lineterminator="\n")
            self.writer.writerow(self.keys)
        elif envelope is not None:
            key, head = envelope
            self.out.write((dumps(head, tz)[:-2] + "," if head else "{") + "\n  " + json.dumps(key) + ": ")

    def write(self, row: dict) -> None:
        if self.kind == "csv":
            self.writer.writerow([safe_cell(row.get(k), self.tz) for k in self.keys])
        else:
            text = self._flat(row) if self.indent else None
            if text is None:
                text = json.dumps(jsonable(row, self.tz), ensure_ascii=False, indent=self.indent)
                if self.indent:
                    text = text.replace("\n", "\n" + self.pad)
            self.out.write(("," if self.rows else "[") + "\n" + self.pad + text)
        self.rows += 1

    def write_many(self, rows: Iterable[dict]) -> None:
        """``write`` each row. An indented JSON array's rows of plain values go a thousand at a time
        through json's C encoder with the row layout in its item separator (one call per batch, not per row)."""
        if self.kind == "csv" or not self.indent:
            for row in rows:
                self.write(row)
            return
        it = iter(rows)
        while batch := list(islice(it, self.batch)):
            if not self._plain(batch):
                for row in batch:
                    self.write(row)
                continue
            if self._encoder is None:
                self._encoder = json.JSONEncoder(ensure_ascii=False, separators=(",\n    ", ": "))
            # "[{...},\n    {...}]": a newline is never inside an encoded string, so "},\n    {" is a row boundary
            text = self._encoder.encode(batch)[2:-2].replace("},\n    {", "\n  },\n  {\n    ")
            self.out.write(("," if self.rows else "[") + "\n  {\n    " + text + "\n  }")
            self.rows += len(batch)

    @staticmethod
    def _plain(batch: list[dict]) -> bool:
        """Whether json's C encoder writes ``batch`` as json.dumps(indent=2) would, but for the
        layout: no empty row, str keys, and plain values or empty lists and objects ("[]", "{}")."""
        keys: set[type] = set()
        values: set[type] = set()
        for row in batch:  # map() and set.update: the types are collected in C
            if not row:
                return False
            keys.update(map(type, row))
            values.update(map(type, row.values()))
        if keys != {str}:
            return False
        nested = values - _PLAIN
        if not nested <= {list, dict}:
            return False
        return not nested or not any(type(v) in nested and v for row in batch for v in row.values())

    def _flat(self, row: dict) -> str | None:
        """A row of plain values laid out as json.dumps(indent=2) would, without json's pure-Python
        indenting encoder (a 45,000-row report spent most of its time there); None for a nested value."""
        parts = []
        for key, value in row.items():
            kind = type(value)
            if kind is str:
                text = encode_basestring(value)
            elif value is None:
                text = "null"
            elif kind is bool:
                text = "true" if value else "false"
            elif kind is int:
                text = int.__repr__(value)
            elif kind is float:
                text = json.dumps(value) if value != value or value in (_INF, -_INF) else float.__repr__(value)
            elif kind is datetime or kind is date:
                text = encode_basestring(jsonable(value, self.tz))
            else:
                return None
            if type(key) is not str:
                return None
            parts.append(encode_basestring(key) + ": " + text)
        if not parts:
            return None
        inner = ",\n" + self.pad + "  "
        return "{\n" + self.pad + "  " + inner.join(parts) + "\n" + self.pad + "}"

    def close(self, tail: dict | None = None) -> None:
        if self.kind == "csv":
            return
        self.out.write(("\n" + self.pad[:-2] + "]") if self.rows else "[]")
        if self.envelope is not None:
            self.out.write(("," + dumps(tail, self.tz)[1:]) if tail else "\n}")
        self.out.write("\n")


def safe_cell(value: Any, tz: str) -> str:
    if value is None:
        return ""
    if type(value) is int:  # the common cell: never a formula (even "-5"), never a control
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        value = ";".join(str(v) for v in value)
    elif isinstance(value, datetime):
        value = iso(value, tz)
    elif isinstance(value, bool):
        value = "true" if value else "false"
    text = printable(str(value), keep_newlines=True)  # CSV quotes a newline; an ESC would reach the terminal
    if text.startswith(FORMULA_PREFIXES) and not _is_number(text):
        text = "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def table_cell(value: Any, tz: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return local(value, tz).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def render(
    rows: Iterable[dict],
    columns: Sequence[Column],
    fmt,
    *,
    tz: str = "UTC",
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """Print rows as a table, a JSON array or CSV, per ``fmt``.

    JSON and CSV are written as ``rows`` yields them (``RowStream``), so an iterator keeps memory
    bounded; a table needs every row for its widths."""
    kind = resolve_format(fmt)
    if kind in ("json", "csv"):
        stream = RowStream(columns, kind, tz=tz)
        if isinstance(rows, Sequence):  # all in memory already: a batch at a time
            stream.write_many(rows)
        else:  # an iterator's rows go out as they come
            for row in rows:
                stream.write(row)
        stream.close()
    else:
        rows = list(rows)
        if not rows:
            message(empty if empty is not None else _("Nothing to show."))
            return
        # plain cells are data, not Rich markup: "[b2b]" must print as typed; a show function's
        # markup puts its data in through safe(), and no control character survives either way
        cells = [
            [(_shown(c.show(row.get(c.key))) if c.show else data_text(table_cell(row.get(c.key), tz))) for c in columns]
            for row in rows
        ]

        droppable = sorted((c.narrow_drop, i) for i, c in enumerate(columns) if c.narrow_drop)
        layouts = [("ruled", 0), ("compact", 0), ("narrow", 0)] + [("narrow", k + 1) for k in range(len(droppable))]

        def build(layout: tuple[str, int]):
            style, dropped = layout
            hidden = {i for _, i in droppable[:dropped]}
            compact = style != "ruled"
            table = new_table(compact, title=title)
            for i, c in enumerate(columns):
                if i in hidden:
                    continue
                # narrow: numeric headers ("on hold") take two lines; compact: the first column (the
                # row's id: order, SKU, task) is never folded; the other cells fold if they must
                header = c.title.replace(" ", "\n") if style == "narrow" and c.justify == "right" else c.title
                table.add_column(header, justify=c.justify, style=c.style, overflow="fold", no_wrap=compact and i == 0)
            for row in cells:
                table.add_row(*(cell for i, cell in enumerate(row) if i not in hidden))
            return table

        _style, dropped = print_fitted(build, layouts)
        say_not_shown([columns[i].title for _, i in droppable[:dropped]])


def pad(text: str, width: int) -> str:
    """``text`` left-justified to ``width`` terminal cells: a Chinese character takes two, so
    ``str.ljust`` and ``f"{text:<{width}}"`` (which count characters) misalign a column of it."""
    from rich.cells import cell_len

    return text + " " * max(0, width - cell_len(text))


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes (the width to align on, not ``len``)."""
    from rich.cells import cell_len

    return cell_len(text)


def _shown(cell: Any) -> Any:
    return printable(cell) if isinstance(cell, str) else cell


def say_not_shown(names: Sequence[str]) -> None:
    """Tell the person which columns a narrow terminal left out of a table (nothing if none)."""
    if names:
        message(
            _(
                "Not shown, for the terminal's width: {columns} (a wider terminal or --format csv shows every column)."
            ).format(columns=", ".join(names))
        )


def say_cut(shown: int, total: int, what: str) -> None:
    """Tell the person a list stopped at --limit, in every format: how many of how many match.

    ``what`` names the rows for ``total`` (``ngettext("order", "orders", total)``); nothing is said
    when every match was shown.
    """
    if total > shown:
        message(
            _("Showing {shown:,} of {total:,} {what}; --limit 0 for all.").format(shown=shown, total=total, what=what)
        )


def new_table(compact: bool, **kwargs):
    """A Rich table in ffctl's style; ``compact`` drops the vertical rules and edge padding."""
    from rich import box
    from rich.table import Table

    kwargs.setdefault("header_style", "bold")
    kwargs.setdefault("title_justify", "left")
    if compact:
        kwargs.update(box=box.SIMPLE_HEAVY, collapse_padding=True, pad_edge=False)
    return Table(**kwargs)


def print_fitted(build: Callable[[Any], Any], layouts: Sequence[Any] = (False, True)) -> Any:
    """Print ``build(layout)`` for the first of ``layouts`` that fits the terminal and return that
    layout. A compact table (``pad_edge=False``) also fits when its columns can share the width
    with no word cut; when none fits, the last layout is printed and Rich folds what it must. The
    default layouts: the normal table, else the compact one, so that on an 80-column terminal an
    order id or node name stays whole instead of being folded or cut to ``credit_revi…``.
    """
    from rich.measure import Measurement

    console = get_console()
    wide = console.options.update_width(10_000)
    for n, layout in enumerate(layouts, 1):
        table = build(layout)
        natural = Measurement.get(console, wide, table).maximum
        if natural <= console.width:
            break
        if table.pad_edge is False and _share_width(console, wide, table, natural, last=n == len(layouts)):
            break
    console.print(table)
    return layout


def _share_width(console, wide, table, natural: int, *, last: bool) -> bool:
    """Narrow ``table`` to the terminal by shrinking its widest columns first, none below its
    longest word, so that words wrap whole ("2026-10-27" over "12:25") instead of Rich's even cut
    through every column ("2026-10-" over "27 12:25"). False when even the longest words do not
    fit; for the ``last`` layout, columns are first brought to one space apart (as ps and ls -l
    have them), and what still does not fit is left to Rich's folding.
    """
    from rich.measure import Measurement

    spans = []
    for column in table.columns:
        cells = [column.header, *column.cells]
        most = max(Measurement.get(console, wide, c).maximum for c in cells)
        spans.append((most if column.no_wrap else max(Measurement.get(console, wide, c).minimum for c in cells), most))
    least_total, most_total = sum(least for least, _ in spans), sum(most for _, most in spans)
    room = console.width - (natural - most_total)
    if least_total > room and last and table.padding[1]:
        table.padding = (0, 0)
        room = console.width - (Measurement.get(console, wide, table).maximum - most_total)
    if least_total > room:
        return False

    def used(level: int) -> int:
        return sum(max(least, min(most, level)) for least, most in spans)

    level = max(most for _least, most in spans)
    while level > 1 and used(level) > room:  # the highest cap that fits; a few hundred steps at most
        level -= 1
    for column, (least, most) in zip(table.columns, spans):
        if not column.no_wrap:
            column.width = max(least, min(most, level))
    return True


def render_object(obj: dict, fmt, *, tz: str, table: Callable[[dict], None]) -> None:
    """A show command: JSON object, or the command's own table layout (CSV: one row)."""
    kind = resolve_format(fmt)
    if kind == "json":
        print(dumps(obj, tz))
    elif kind == "csv":
        flat = {k: v for k, v in obj.items() if not isinstance(v, (list, dict))}
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(flat.keys())
        writer.writerow([safe_cell(v, tz) for v in flat.values()])
    else:
        table(obj)


def get_console():
    """A Rich console for stdout, made per command so it sees the current terminal width."""
    from rich.console import Console

    return Console(soft_wrap=False)


def message(text: str) -> None:
    """A message for the person (stderr), never mixed into data; one message, one line. Written
    as it is: a Rich console (33 ms to import) added nothing to an unstyled, unwrapped line."""
    stream = sys.stderr
    stream.write(printable(text, keep_newlines=True) + "\n")
    stream.flush()


def warn(text: str) -> None:
    message(_("Warning: {text}").format(text=text))
