"""The one writer of the audit trail.

Every state change, by a person or a sweep, goes through ``record``: the effective time is
the command clock (``--now``), ``wall_at`` the real time it was written, ``actor`` who the
command acted as (``--as``: advisory) and ``login`` the operating-system login that ran it.
Events are never updated, deleted, replaced or truncated (triggers refuse it: 0002, 0005).
Set-based writers append through ``record_many``/``prepare_many``, or collect ``EventRows`` (the
same check, as rows ready for COPY: workflow entry, the import's bulk path).
"""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.bulk import CopyRows, Rows, insert_rows, time_texts
from ffctl.core.models import Event, UTCDateTime
from ffctl.core.store import is_postgresql

EVENTS = frozenset(
    """created entered completed rejected skipped allocated at_risk breached reminded escalated
    notified auto_approved auto_rejected held released flagged unflagged shipped delivered cancelled
    updated stock_adjusted stock_counted received requisition_drafted requisition_approved
    requisition_rejected exemption_frozen forecast line_cancelled returned""".split()
)


@functools.cache
def login() -> str | None:
    """The operating-system login running this process (None where there is none)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry and no LOGNAME/USER in some containers
        return None


def stamp(actor: str, wall: object) -> dict:
    """The columns every event of one write shares: its wall time, actor and login."""
    return {"wall_at": wall, "actor": actor, "login": login()}


_INSERT = sa.insert(Event.__table__)  # built once: its compiled form is reused by every record()


def record(
    session: Session,
    *,
    event: str,
    at: datetime,
    actor: str,
    order_id: str | None = None,
    task_id: int | None = None,
    node: str | None = None,
    subject: str | None = None,
    detail: str | None = None,
) -> None:
    """Append one audit event in the caller's transaction."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")
    session.execute(
        _INSERT,
        {
            "at": at,
            **stamp(actor, datetime.now(timezone.utc)),
            "event": event,
            "order_id": order_id,
            "task_id": task_id,
            "node": node,
            "subject": subject,
            "detail": detail,
        },
    )


def record_many(session: Session, rows: list[dict]) -> None:
    """Append many events at once (set-based callers: imports, sweeps, rules).

    Each row has the keyword arguments of ``record``.
    """
    if not rows:
        return
    wall = datetime.now(timezone.utc)
    _check(rows)
    if len(rows) >= BULK_ROWS:
        _bulk_write(session, rows, wall)
        return
    keys = ("order_id", "task_id", "node", "subject", "detail")
    session.execute(
        sa.insert(Event.__table__),
        [{"wall_at": wall, "login": login(), **{k: None for k in keys}, **row} for row in rows],
    )


BULK_ROWS = 200  # from this many events on, write through the driver (COPY / executemany)
_COLUMNS = ("at", "wall_at", "actor", "event", "order_id", "task_id", "node", "subject", "detail", "login")


def _check(rows: list[dict]) -> None:
    for row in rows:
        _known(row["event"])


def _known(event: str) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}")


def _values(rows: list[dict], wall: datetime, time: Callable[[Any], Any] | None = None):
    """The event rows as ``_COLUMNS`` tuples; ``time`` formats the two times (SQLite's stored text)."""
    who = login()
    written = wall if time is None else time(wall)
    return (
        (
            r["at"] if time is None else time(r["at"]),
            written,
            r["actor"],
            r["event"],
            r.get("order_id"),
            r.get("task_id"),
            r.get("node"),
            r.get("subject"),
            r.get("detail"),
            who,
        )
        for r in rows
    )


class PreparedEvents:
    """Events checked (and on PostgreSQL formatted for COPY) now, appended by ``write`` later."""

    def __init__(self, rows: list[dict], *, postgresql: bool) -> None:
        _check(rows)
        self.rows, self.copy = rows, None
        if postgresql and rows:
            self.copy = CopyRows("event", _COLUMNS, _values(rows, datetime.now(timezone.utc)))
            self.rows = []

    def write(self, session: Session) -> None:
        if self.copy is not None:
            self.copy.write(session)
        else:
            record_many(session, self.rows)


class EventRows(Rows):
    """Events of one writer (one actor, one wall time) as rows for ``bulk.insert_rows`` or COPY
    (``formatted()``): the bulk form of ``record_many`` for planners that build thousands of
    events. Times are given as stored text; ``add`` checks the event against the vocabulary."""

    COLUMNS = ("at", "event", "order_id", "node", "detail")

    def __init__(self, actor: str, wall: str) -> None:
        super().__init__("event", self.COLUMNS, {**stamp(actor, wall), "task_id": None, "subject": None})
        self.wall = wall

    def add(self, at: str, event: str, order_id: str | None, node: str | None, detail: str | None) -> None:
        _known(event)
        self.rows.append((at, event, order_id, node, detail))


def prepare_many(rows: list[dict], *, postgresql: bool) -> PreparedEvents:
    """``record_many`` in two steps (``allocate`` plans on one thread and writes on another): the
    events checked, and on PostgreSQL formatted, now; ``.write(session)`` appends them."""
    return PreparedEvents(rows, postgresql=postgresql)


def _bulk_write(session: Session, rows: list[dict], wall: datetime) -> None:
    """Many events without per-row SQLAlchemy processing: COPY on PostgreSQL, the driver's
    executemany on SQLite (times stored as naive UTC, exactly as ``UTCDateTime`` stores them)."""
    if is_postgresql(session):
        insert_rows(session, "event", _COLUMNS, _values(rows, wall))
        return
    insert_rows(session, "event", _COLUMNS, _values(rows, wall, time_texts()))


# --- the timeline never runs backwards (SPEC 9.1) ----------------------------------------------
# A command that changes an order records it at its clock; a clock earlier than the order's
# latest event would put effects before their causes (a node completed before the order was
# created, a negative confirmation time). Single-order commands lock the order and then call
# ``refuse_earlier``; set-based paths leave such orders out with ``later_event`` in their query
# (sweeps, rules) or skip them by ``later_events`` per chunk (allocation, imports). Equal times
# are fine: one command writes several events at its clock.

EVENTS_TABLE = Event.__table__
_STORED = UTCDateTime()


def later_event(order_id, at):
    """SQL condition: the order (a column or a value) has an event later than ``at``."""
    e = EVENTS_TABLE.c
    return sa.exists().where(e.order_id == order_id, e.at > at)


def later_events(session: Session, order_ids: list[str], at: datetime) -> dict[str, tuple[datetime, str]]:
    """``{order_id: (at, event)}`` of the latest event of each order among ``order_ids`` that has
    one later than ``at``: set-based, by the order index (one statement on PostgreSQL)."""
    from ffctl.core.bulk import keyed

    e = EVENTS_TABLE.c
    found: dict[str, tuple[datetime, str]] = {}
    if is_postgresql(session):  # one array parameter
        for order_id, when, event in session.execute(
            sa.select(e.order_id, e.at, e.event)
            .where(keyed(session, e.order_id, order_ids), e.at > at)
            .order_by(e.order_id, e.at, e.id)
        ):
            found[order_id] = (when, event)  # the latest wins
        return found
    # SQLite: IN lists through the driver (allocate checks every order it locks: SQLAlchemy's
    # handling of 900 parameters a statement was most of the cost)
    raw: Any = session.connection().connection.driver_connection
    stamp = time_texts()(at)
    for start in range(0, len(order_ids), 900):
        part = order_ids[start : start + 900]
        for order_id, when, event in raw.execute(
            f"SELECT order_id, at, event FROM event WHERE order_id IN ({','.join('?' * len(part))}) AND at > ? "
            "ORDER BY order_id, at, id",
            [*part, stamp],
        ):
            found[order_id] = (_STORED.process_result_value(when, None), event)
    return found


def earlier_message(order_id: str, at: datetime, latest: tuple[datetime, str], tz: str) -> str:
    from ffctl.core.clock import shown
    from ffctl.i18n import _

    return _(
        "order {order}: the clock {now} is earlier than its latest event ({event} at {latest}); its "
        "timeline cannot run backwards, nothing was changed"
    ).format(order=order_id, now=shown(at, tz), event=latest[1], latest=shown(latest[0], tz))


def refuse_earlier(session: Session, order_id: str, at: datetime, tz: str) -> None:
    """Refuse (exit 1) to change ``order_id`` at ``at`` when it has an event later than that.

    Call it with the order row locked, before writing: the caller's transaction then writes nothing.
    """
    refuse_earlier_many(session, [(order_id, at)], tz)


def refuse_earlier_many(session: Session, changes: Sequence[tuple[str, datetime]], tz: str) -> None:
    """``refuse_earlier`` for many changes ``(order_id, at)``, in one read (each order's latest
    event after the earliest ``at``): the first change, in their order, whose order has a later
    event is refused."""
    if not changes:
        return
    later = later_events(session, list(dict.fromkeys(o for o, _at in changes)), min(at for _o, at in changes))
    for order_id, at in changes:
        latest = later.get(order_id)
        if latest is not None and latest[0] > at:
            raise earlier_conflict(order_id, at, latest, tz)


def earlier_conflict(order_id: str, at: datetime, latest: tuple[datetime, str], tz: str):
    """The refusal of a change at ``at`` to an order whose latest event (``later_events``) is later."""
    from ffctl.core.errors import Conflict
    from ffctl.i18n import _

    return Conflict(
        earlier_message(order_id, at, latest, tz),
        hint=_("Give a --now at or after that time, or leave --now out to use the current time."),
    )
