"""One renderer for every list and show command: a Rich table, JSON or CSV.

Core functions return plain dicts; commands pick columns and call ``render``. Data goes to
stdout, messages to stderr. Times become ISO 8601 with the configured zone's offset in JSON and
CSV, and a short local form in tables. CSV cells that a spreadsheet would run as a formula are
neutralised.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterable, Sequence

from ffctl.core.clock import iso, local

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    key: str
    header: str | None = None
    justify: str = "left"  # left | right | center
    style: str | None = None
    show: Callable[[Any], str] | None = None  # table-only rendering of the value

    @property
    def title(self) -> str:
        return self.header or self.key.replace("_", " ")


def resolve_format(fmt) -> str:
    if fmt is not None:
        return getattr(fmt, "value", fmt)
    return "table" if sys.stdout.isatty() else "csv"


def jsonable(value: Any, tz: str) -> Any:
    if isinstance(value, datetime):
        return iso(value, tz)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v, tz) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, tz) for v in value]
    return value


def dumps(value: Any, tz: str) -> str:
    return json.dumps(jsonable(value, tz), ensure_ascii=False, indent=2)


def safe_cell(value: Any, tz: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, set, frozenset)):
        value = ";".join(str(v) for v in value)
    elif isinstance(value, datetime):
        value = iso(value, tz)
    elif isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value)
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
        return "yes" if value else "no"
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
    empty: str = "Nothing to show.",
) -> None:
    """Print rows as a table, a JSON array or CSV, per ``fmt``."""
    kind = resolve_format(fmt)
    rows = list(rows)
    if kind == "json":
        print(dumps(rows, tz))
    elif kind == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        for row in rows:
            writer.writerow([safe_cell(row.get(c.key), tz) for c in columns])
    else:
        if not rows:
            message(empty)
            return
        console = get_console()
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, header_style="bold", show_lines=False)
        for c in columns:
            table.add_column(c.title, justify=c.justify, style=c.style, overflow="fold")
        for row in rows:
            # plain cells are data, not Rich markup: "[b2b]" must print as typed
            table.add_row(*[(c.show(row.get(c.key)) if c.show else Text(table_cell(row.get(c.key), tz)))
                            for c in columns])
        console.print(table)


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
    """A message for the person (stderr), never mixed into data; one message, one line."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


def warn(text: str) -> None:
    message(f"Warning: {text}")
