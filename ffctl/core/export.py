"""``export events``: the orders' audit trail as a process-mining event log (SPEC 9.7).

Three formats, each written as it is read (a streamed cursor: a server-side one on PostgreSQL,
SQLite's own stepping), so memory stays bounded whatever the size of the store:

- ``csv``: one row per event: case_id (the order), activity, timestamp, resource (the actor),
  node, detail; in the order the events were written.
- ``xes``: IEEE XES, one trace per order (case = order), its events in time order, with
  concept:name, time:timestamp, org:resource and, where the event is a step of a node visit,
  lifecycle:transition (entered: start, completed: complete, skipped: autoskip, ...).
- ``ocel``: OCEL 2.0 JSON: objects of types order, order_line, sku and shipment (lines name
  their order and SKU, shipments their order), and the events, each linked to its order and,
  where the event is about them, to the order's lines and SKUs (created, allocated, shipped,
  cancelled) and its shipment (shipped, delivered).

The events are those of orders (the timeline vocabulary); ``period`` selects the orders created
in it, with their whole trail, as the reports do. An event's activity is its kind, followed by
its node when it has one (``entered credit_review``), the same in every format. Times are ISO
8601 in the configured zone with their offset, to the millisecond, formatted by the database.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from ffctl.core.csvio import _FORMULA_START, is_formula
from ffctl.core.kpi import Period, _Sql
from ffctl.i18n import _

FORMATS = ("ocel", "xes", "csv")
CSV_COLUMNS = ("case_id", "activity", "timestamp", "resource", "node", "detail")
LINE_EVENTS = ("created", "allocated", "shipped", "cancelled")  # events about the order's lines
SHIPMENT_EVENTS = ("shipped", "delivered")
#: XES lifecycle transitions (the standard lifecycle model) of the events that are one.
LIFECYCLE = {
    "entered": "start",
    "completed": "complete",
    "auto_approved": "complete",
    "rejected": "ate_abort",
    "auto_rejected": "ate_abort",
    "skipped": "autoskip",
    "held": "suspend",
    "released": "resume",
    "cancelled": "pi_abort",
}
BATCH = 2000  # rows a fetch brings: bounded memory, few round trips


#: An event's activity in every format: its kind, and its node when it has one (in SQL: the
#: database puts it together as it reads the row).
ACTIVITY_SQL = "CASE WHEN e.node IS NULL OR e.node = '' THEN e.event ELSE e.event || ' ' || e.node END"


def shipments_sql() -> str:
    """The shipments as rows (shipment_id, order_id, shipped_at, carrier, tracking): an order may
    ship in several parts (SPEC 9.2), each its own shipment."""
    return "SELECT shipment_id, order_id, shipped_at, carrier, tracking FROM shipment"


_PARAM = re.compile(r":(tz|start|end|lo|hi)\b")  # the queries' parameters, in psycopg's style on PostgreSQL


class _Query:
    """The period's orders and the SQL around them, on either backend."""

    cursors = 0  # server-side cursors opened: each gets its own name

    def __init__(self, session: Session, tz: str, now, period: Period) -> None:
        self.s, self.period = session, period
        self.sql = _Sql(session, tz, now)
        if not self.sql.sqlite:
            # the reports' PostgreSQL settings (no JIT); on SQLite their page cache and mmap would
            # count a whole-table scan in this process's memory, and a scan in order needs neither
            self.sql.tune()
        self.params: dict[str, Any] = {"tz": tz}
        bounds = []
        if period.start is not None:
            bounds.append("o.created_at >= :start")
            self.params["start"] = period.start
        if period.end is not None:
            bounds.append("o.created_at < :end")
            self.params["end"] = period.end
        self.orders_where = " AND ".join(bounds) or "1 = 1"

    def of_orders(self, alias: str) -> tuple[str, str]:
        """(join, condition) keeping rows of ``alias`` (with an order_id) of the period's orders."""
        if self.orders_where == "1 = 1":
            return "", f"{alias}.order_id IS NOT NULL"
        return f" JOIN orders o ON o.order_id = {alias}.order_id", self.orders_where

    def stream(self, sql: str, extra: dict[str, Any] | None = None) -> Iterator[tuple]:
        """The rows of ``sql`` (named parameters :tz, :start, :end, and :lo, :hi from ``extra``), fetched ``BATCH`` at a time
        through the driver's own cursor: a server-side (named) one on PostgreSQL, SQLite's
        stepping statement (per-row SQLAlchemy processing cost more than the rest of an export)."""
        params = {k: v for k, v in {**self.params, **(extra or {})}.items() if f":{k}" in sql}
        params = {
            k: v.astimezone(timezone.utc).replace(tzinfo=None) if isinstance(v, datetime) else v
            for k, v in params.items()
        }
        raw: Any = self.s.connection().connection.driver_connection
        if self.sql.sqlite:
            params = {
                k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for k, v in params.items()
            }  # as UTCDateTime stores them: text order is time order
            cursor = raw.execute(sql, params)
        else:
            _Query.cursors += 1
            cursor = raw.cursor(name=f"ffctl_export_{_Query.cursors}")
            cursor.itersize = BATCH
            cursor.execute(_PARAM.sub(r"%(\1)s", sql), params)
        try:
            while rows := cursor.fetchmany(BATCH):
                yield from rows
        finally:
            cursor.close()

    def events(self, order: str) -> Iterator[tuple]:
        """(id, time, event, activity, actor, node, detail, order_id) of the period's order events."""
        join, cond = self.of_orders("e")
        return self.stream(
            f"SELECT e.id, {self.sql.local_iso('e.at')}, e.event, {ACTIVITY_SQL}, e.actor, e.node, e.detail, e.order_id "
            f"FROM event e{join} WHERE {cond} ORDER BY {order}"
        )


# --- writing -----------------------------------------------------------------------------------


def export_events(session: Session, fmt: str, out: Path | str, *, tz: str, now, period: Period = Period()) -> dict:
    """Write the event log to ``out`` ('-': stdout); returns what was written:
    ``{"format", "events", "cases", "objects": {type: count}}``.

    A file is written under a temporary name beside it and renamed when complete, so a failed
    export leaves no half a log where a complete one is expected.
    """
    if fmt not in FORMATS:
        raise ValueError(_("unknown format {fmt!r}").format(fmt=fmt))
    q = _Query(session, tz, now, period)
    writer: Callable[[_Query, IO[str]], dict] = {"csv": _csv, "xes": _xes, "ocel": _ocel}[fmt]
    if str(out) == "-":
        import sys

        summary = writer(q, sys.stdout)
        sys.stdout.flush()
        return {"format": fmt, **summary}
    target = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            summary = writer(q, f)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"format": fmt, **summary}


_RISKY = frozenset(_FORMULA_START)  # the first characters is_formula looks at (a cheap test first)


def _cell(value: str | None) -> str:
    """A text cell: a spreadsheet must not run it as a formula when the file is opened."""
    if not value:
        return ""
    return "'" + value if value[0] in _RISKY and is_formula(value) else value


#: Characters that make a CSV field quoted (RFC 4180: the delimiter, the quote, line breaks).
_CSV_SPECIAL = (",", '"', "\n", "\r")
CHUNK = 20_000  # event ids per query of the CSV export: one string of their lines comes back
_UNIT, _RECORD = "\x1f", "\x1e"  # ASCII's unit and record separators: fields and lines as the database joins them


def _quote(value: str | None) -> str:
    """A CSV field: quoted (quotes doubled) when it holds a character of ``_CSV_SPECIAL``."""
    if not value:
        return ""
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in _CSV_SPECIAL) else value


def _csv(q: _Query, f: IO[str]) -> dict:
    """The database joins each chunk of ``CHUNK`` event ids into one string (fields joined by
    ``_UNIT``, lines by ``_RECORD``) and flags a chunk with a cell a spreadsheet could run as a
    formula (its first character; ``_cell`` decides); per event Python then does nothing
    (fetching each row cost more than the rest of the export). A chunk with no character that
    needs quoting and no stray separator becomes CSV by two replaces; any other is read again
    row by row and each field written by ``_cell`` and ``_quote``."""
    f.write(",".join(CSV_COLUMNS) + "\n")
    join, cond = q.of_orders("e")
    sqlite = q.sql.sqlite
    if sqlite and join:
        join = join.replace(" JOIN ", " CROSS JOIN ", 1)  # SQLite: events outer, in id order
    first = "unicode({})" if sqlite else "ascii({})"
    codes = ", ".join(str(ord(c)) for c in _FORMULA_START)
    risky = " OR ".join(f"{first.format(c)} IN ({codes})" for c in ("e.order_id", "e.actor", "e.node", "e.detail"))
    unit, record = (
        (f"char({ord(_UNIT)})", f"char({ord(_RECORD)})") if sqlite else (f"chr({ord(_UNIT)})", f"chr({ord(_RECORD)})")
    )
    fields = ["e.order_id", ACTIVITY_SQL, q.sql.local_iso("e.at"), "e.actor", "e.node", "e.detail"]
    if sqlite:  # one printf beats ten concatenations; a NULL prints as nothing
        line = f"printf('{_UNIT.join(['%s'] * len(fields))}', {', '.join(fields)})"
        lines = f"group_concat({line}, {record})"  # 3.40 has no ORDER BY here: it joins in the order it reads, by id
    else:
        line = f" || {unit} || ".join(f"COALESCE({c}, '')" for c in fields)
        lines = f"string_agg({line}, {record} ORDER BY e.id)"
    where = f"e.id >= :lo AND e.id < :hi AND {cond}"
    chunk = f"SELECT {lines}, COUNT(*), MAX(CASE WHEN {risky} THEN 1 ELSE 0 END) FROM event e{join} WHERE {where}"
    by_row = (
        f"SELECT e.order_id, {ACTIVITY_SQL}, {q.sql.local_iso('e.at')}, e.actor, e.node, e.detail "
        f"FROM event e{join} WHERE {where} ORDER BY e.id"
    )
    lo, hi = next(q.stream("SELECT MIN(id), MAX(id) FROM event"))
    events = 0
    for start in range(lo or 0, (hi or -1) + 1, CHUNK):
        bounds = {"lo": start, "hi": start + CHUNK}
        text, n, flagged = next(q.stream(chunk, bounds))
        if not n:
            continue
        events += n
        if (
            not flagged
            and text.count(_UNIT) == (len(fields) - 1) * n
            and text.count(_RECORD) == n - 1
            and not any(c in text for c in _CSV_SPECIAL)
        ):
            f.write(text.replace(_UNIT, ",").replace(_RECORD, "\n") + "\n")
            continue
        for order_id, name, time, actor, node, detail in q.stream(by_row, bounds):
            f.write(
                ",".join(
                    (
                        _quote(_cell(order_id)),
                        _quote(name),
                        time,
                        _quote(_cell(actor)),
                        _quote(_cell(node)),
                        _quote(_cell(detail)),
                    )
                )
                + "\n"
            )
    return {"events": events, "cases": _count_cases(q), "objects": {}}


def _count_cases(q: _Query) -> int:
    """The orders the log has events of (counted by the database: the ids are not kept here)."""
    join, cond = q.of_orders("e")
    return int(next(q.stream(f"SELECT COUNT(DISTINCT e.order_id) FROM event e{join} WHERE {cond}"))[0])


# XML 1.0 cannot carry most control characters, not even escaped
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}
_XML_SPECIAL = re.compile('[&<>"\n\r\t]')


def _attr(value: str) -> str:
    return _XML_SPECIAL.sub(lambda m: _XML_ESCAPES[m.group()], _NOT_XML.sub("\ufffd", value))


XES_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1.0" xes.features="nested-attributes" xmlns="http://www.xes-standard.org/">
<extension name="Concept" prefix="concept" uri="http://www.xes-standard.org/concept.xesext"/>
<extension name="Time" prefix="time" uri="http://www.xes-standard.org/time.xesext"/>
<extension name="Organizational" prefix="org" uri="http://www.xes-standard.org/org.xesext"/>
<extension name="Lifecycle" prefix="lifecycle" uri="http://www.xes-standard.org/lifecycle.xesext"/>
<global scope="trace"><string key="concept:name" value="__INVALID__"/></global>
<global scope="event"><string key="concept:name" value="__INVALID__"/><date key="time:timestamp" value="1970-01-01T00:00:00.000+00:00"/></global>
<classifier name="Activity" keys="concept:name"/>
<string key="concept:name" value="ffctl audit trail"/>
"""


def _xes(q: _Query, f: IO[str]) -> dict:
    f.write(XES_HEAD)
    events = cases = 0
    current = None
    for _id, time, event, name, actor, node, detail, order_id in q.events("e.order_id, e.at, e.id"):
        if order_id != current:
            if current is not None:
                f.write("</trace>\n")
            f.write(f'<trace><string key="concept:name" value="{_attr(order_id)}"/>\n')
            current = order_id
            cases += 1
        parts = [
            f'<event><string key="concept:name" value="{_attr(name)}"/>'
            f'<date key="time:timestamp" value="{time}"/><string key="org:resource" value="{_attr(actor)}"/>'
            f'<string key="event" value="{event}"/>'
        ]
        if event in LIFECYCLE:
            parts.append(f'<string key="lifecycle:transition" value="{LIFECYCLE[event]}"/>')
        if node:
            parts.append(f'<string key="node" value="{_attr(node)}"/>')
        if detail:
            parts.append(f'<string key="detail" value="{_attr(detail)}"/>')
        parts.append("</event>\n")
        f.write("".join(parts))
        events += 1
    if current is not None:
        f.write("</trace>\n")
    f.write("</log>\n")
    return {"events": events, "cases": cases, "objects": {}}


# --- OCEL 2.0 ----------------------------------------------------------------------------------

STATIC = "1970-01-01T00:00:00Z"  # OCEL 2.0's time of an attribute value that never changed
OBJECT_TYPES = [
    {
        "name": "order",
        "attributes": [{"name": n, "type": "string"} for n in ("customer", "channel", "region", "workflow", "status")],
    },
    {
        "name": "order_line",
        "attributes": [
            {"name": "line_no", "type": "integer"},
            {"name": "sku", "type": "string"},
            {"name": "qty", "type": "integer"},
        ],
    },
    {"name": "sku", "attributes": [{"name": "name", "type": "string"}, {"name": "category", "type": "string"}]},
    {
        "name": "shipment",
        "attributes": [
            {"name": "carrier", "type": "string"},
            {"name": "tracking", "type": "string"},
            {"name": "shipped_at", "type": "time"},
        ],
    },
]
EVENT_ATTRIBUTES = [{"name": n, "type": "string"} for n in ("event", "node", "actor", "detail")]


def order_oid(order_id: str) -> str:
    return f"order:{order_id}"


def line_oid(order_id: str, line_no: int) -> str:
    return f"line:{order_id}/{line_no}"


def sku_oid(sku: str) -> str:
    return f"sku:{sku}"


def shipment_oid(shipment_id: str) -> str:
    return f"shipment:{shipment_id}"


def _attrs(**values: Any) -> list[dict]:
    return [{"name": k, "time": STATIC, "value": v} for k, v in values.items() if v is not None]


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dump(value: Any) -> str:
    return _JSON.encode(value)


class _Array:
    """A JSON array written as it grows: elements are encoded ``BATCH`` at a time (one call of the
    C encoder for many small objects), one per line."""

    def __init__(self, f: IO[str], key: str, first: bool = False) -> None:
        self.f, self.n = f, 0
        self.pending: list[str] = []
        f.write(("" if first else ",\n") + f'"{key}":[')

    def add(self, value: Any) -> None:
        self.pending.append(value)
        if len(self.pending) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.f.write(("\n" if self.n == 0 else ",\n") + _JSON.encode(self.pending)[1:-1])
            self.n += len(self.pending)
            self.pending = []

    @property
    def total(self) -> int:
        return self.n + len(self.pending)

    def close(self) -> None:
        self._flush()
        self.f.write("]")


def _ocel(q: _Query, f: IO[str]) -> dict:
    f.write("{")
    _Array(f, "objectTypes", first=True)
    for t in OBJECT_TYPES:
        f.write(("" if t is OBJECT_TYPES[0] else ",") + _dump(t))
    f.write("]")
    counts = {}
    objects = _Array(f, "objects")
    join, cond = q.of_orders("x")
    for order_id, customer, channel, region, workflow, status in q.stream(
        f"SELECT o.order_id, o.customer, o.channel, o.region, o.workflow, o.status FROM orders o WHERE {q.orders_where}"
    ):
        objects.add(
            {
                "id": order_oid(order_id),
                "type": "order",
                "attributes": _attrs(
                    customer=customer, channel=channel, region=region, workflow=workflow, status=status
                ),
            }
        )
    counts["order"] = objects.total
    for order_id, line_no, sku, qty in q.stream(
        f"SELECT x.order_id, x.line_no, x.sku, x.qty FROM order_line x{join} WHERE {cond}"
    ):
        objects.add(
            {
                "id": line_oid(order_id, line_no),
                "type": "order_line",
                "attributes": _attrs(line_no=line_no, sku=sku, qty=qty),
                "relationships": [
                    {"objectId": order_oid(order_id), "qualifier": "part of"},
                    {"objectId": sku_oid(sku), "qualifier": "item"},
                ],
            }
        )
    counts["order_line"] = objects.total - counts["order"]
    seen = objects.total
    for sku, name, category in q.stream(
        "SELECT p.sku, p.name, p.category FROM product p WHERE p.sku IN "
        f"(SELECT x.sku FROM order_line x{join} WHERE {cond})"
    ):
        objects.add({"id": sku_oid(sku), "type": "sku", "attributes": _attrs(name=name, category=category)})
    counts["sku"], seen = objects.total - seen, objects.total
    for shipment_id, order_id, shipped_at, carrier, tracking in q.stream(
        f"SELECT x.shipment_id, x.order_id, {q.sql.local_iso('x.shipped_at')}, x.carrier, x.tracking "
        f"FROM ({shipments_sql()}) x{join} WHERE {cond}"
    ):
        objects.add(
            {
                "id": shipment_oid(shipment_id),
                "type": "shipment",
                "attributes": _attrs(carrier=carrier, tracking=tracking, shipped_at=shipped_at),
                "relationships": [{"objectId": order_oid(order_id), "qualifier": "ships"}],
            }
        )
    counts["shipment"] = objects.total - seen
    objects.close()

    events = _Array(f, "events")
    types: set[str] = set()
    join, cond = q.of_orders("e")
    lines = ", ".join(f"'{e}'" for e in LINE_EVENTS)
    shipped = ", ".join(f"'{e}'" for e in SHIPMENT_EVENTS)
    # one row per (event, line, shipment) it links to; the rows of an event come together (by id)
    rows = q.stream(
        f"SELECT e.id, {q.sql.local_iso('e.at')}, e.event, {ACTIVITY_SQL}, e.actor, e.node, e.detail, e.order_id, "
        "l.line_no, l.sku, "
        f"sh.shipment_id FROM event e{join} "
        f"LEFT JOIN order_line l ON l.order_id = e.order_id AND e.event IN ({lines}) "
        # a shipped event is about the shipment that left at its time; a delivery about all of them
        f"LEFT JOIN ({shipments_sql()}) sh ON sh.order_id = e.order_id AND e.event IN ({shipped}) "
        "AND (e.event <> 'shipped' OR sh.shipped_at = e.at) "
        f"WHERE {cond} ORDER BY e.id, l.line_no"
    )
    pending: dict | None = None
    links: dict[str, str] = {}
    for event_id, time, event, name, actor, node, detail, order_id, line_no, sku, shipment_id in rows:
        if pending is None or pending["id"] != f"e{event_id}":
            if pending is not None:
                events.add(_finish(pending, links))
            types.add(name)
            pending = {
                "id": f"e{event_id}",
                "type": name,
                "time": time,
                "attributes": [
                    {"name": k, "value": v}
                    for k, v in (("event", event), ("node", node), ("actor", actor), ("detail", detail))
                    if v is not None
                ],
            }
            links = {order_oid(order_id): "order"}
        if line_no is not None:
            links[line_oid(order_id, line_no)] = "line"
            links[sku_oid(sku)] = "sku"
        if shipment_id is not None:
            links[shipment_oid(shipment_id)] = "shipment"
    if pending is not None:
        events.add(_finish(pending, links))
    events.close()
    event_types = [{"name": name, "attributes": EVENT_ATTRIBUTES} for name in sorted(types)]
    f.write(',\n"eventTypes":' + _dump(event_types) + "}\n")
    return {"events": events.total, "cases": counts["order"], "objects": counts}


def _finish(event: dict, links: dict[str, str]) -> dict:
    event["relationships"] = [{"objectId": oid, "qualifier": qualifier} for oid, qualifier in links.items()]
    return event
