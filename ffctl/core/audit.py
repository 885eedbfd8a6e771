"""The one writer of the audit trail.

Every state change, by a person or a sweep, goes through ``record``: the effective time is
the command clock (``--now``), ``wall_at`` the real time it was written. Events are never
updated or deleted (a trigger refuses it).
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.models import Event

EVENTS = frozenset(
    """created entered completed rejected skipped allocated at_risk breached reminded escalated
    notified auto_approved auto_rejected held released flagged unflagged shipped delivered cancelled
    updated stock_adjusted stock_counted received requisition_drafted requisition_approved
    requisition_rejected exemption_frozen""".split()
)


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
        sa.insert(Event).values(
            at=at,
            wall_at=datetime.now(timezone.utc),
            actor=actor,
            event=event,
            order_id=order_id,
            task_id=task_id,
            node=node,
            subject=subject,
            detail=detail,
        )
    )


def record_many(session: Session, rows: list[dict]) -> None:
    """Append many events at once (set-based callers: imports, sweeps, rules).

    Each row has the keyword arguments of ``record``.
    """
    if not rows:
        return
    wall = datetime.now(timezone.utc)
    for row in rows:
        if row["event"] not in EVENTS:
            raise ValueError(f"unknown audit event {row['event']!r}")
    keys = ("order_id", "task_id", "node", "subject", "detail")
    session.execute(
        sa.insert(Event),
        [{"wall_at": wall, **{k: None for k in keys}, **row} for row in rows],
    )
