"""The notification outbox: rows written in the transaction of the event that causes them.

Recipients are names from the config: a role (expands to its members), a user, or an order
field naming a person (``order.sales_rep``). Each person gets one row per channel they can be
reached on (email, webhook), or one ``log`` row when they have none. ``dedupe_key`` makes a
notification exactly-once: the same key for the same person and channel is never queued twice.
Delivery (``ffctl notify send``) is core/notify.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.models import Notification, Order
from ffctl.core.store import insert_or_ignore


def resolve_people(session: Session, cfg, recipients: Iterable[str], *, order_id: str | None = None) -> list[str]:
    """Names (roles, users, order.sales_rep) to distinct user names, in order."""
    people: list[str] = []
    for name in recipients:
        if name.startswith("order."):
            if order_id is None:
                continue
            field = name.split(".", 1)[1]
            column = getattr(Order, field, None)
            if column is None:
                continue
            value = session.execute(sa.select(column).where(Order.order_id == order_id)).scalar()
            found = (value,) if value else ()
        elif name in cfg.roles:
            found = cfg.roles[name].members
        else:
            found = (name,)
        for person in found:
            if person not in people:
                people.append(person)
    return people


def channels_for(cfg, person: str) -> list[str]:
    user = cfg.users.get(person)
    chans = []
    if user is not None and user.email:
        chans.append("email")
    if user is not None and user.webhook:
        chans.append("webhook")
    return chans or ["log"]


def queue(
    session: Session,
    cfg,
    recipients: Iterable[str],
    *,
    subject: str,
    body: str,
    at: datetime,
    priority: str = "normal",
    order_id: str | None = None,
    dedupe_key: str | None = None,
) -> int:
    """Queue one notification per person and channel; returns how many rows were written."""
    rows = notification_rows(session, cfg, recipients, subject=subject, body=body, at=at, priority=priority,
                             order_id=order_id, dedupe_key=dedupe_key)
    if dedupe_key:
        return insert_or_ignore(session, Notification, rows, ["dedupe_key"])
    if rows:
        session.execute(sa.insert(Notification), rows)
    return len(rows)


def notification_rows(
    session: Session,
    cfg,
    recipients: Iterable[str],
    *,
    subject: str,
    body: str,
    at: datetime,
    priority: str = "normal",
    order_id: str | None = None,
    dedupe_key: str | None = None,
) -> list[dict]:
    """The outbox rows ``queue`` writes (one per person and channel), without writing them."""
    rows = []
    for person in resolve_people(session, cfg, recipients, order_id=order_id):
        for channel in channels_for(cfg, person):
            rows.append(
                {
                    "recipient": person,
                    "channel": channel,
                    "subject": subject,
                    "body": body,
                    "priority": priority,
                    "order_id": order_id,
                    "dedupe_key": f"{dedupe_key}|{person}|{channel}" if dedupe_key else None,
                    "status": "pending",
                    "attempts": 0,
                    "created_at": at,
                    "next_attempt_at": at,
                }
            )
    return rows


def insert_rows(session: Session, rows: list[dict]) -> int:
    """Write many outbox rows in a few statements, skipping dedupe keys already queued.

    For set-based callers (the sweep); returns how many rows were written.
    """
    if not rows:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = Notification.__table__
    # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
    stmt = insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(table.c.id)
    return len(session.execute(stmt, rows).all())
