"""A page of a list query: at most ``limit`` rows, and how many matched when the page was cut.

A list reads ``limit + 1`` rows; only when that extra row comes back does it count the matches,
so a list that fits on its page pays no second query.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session


def fetch_page(session: Session, stmt: sa.Select, limit: int) -> tuple[Sequence[sa.Row], bool]:
    """The first ``limit`` rows of ``stmt`` (0: all of them) and whether more matched."""
    if not limit:
        return session.execute(stmt).all(), False
    rows = session.execute(stmt.limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def count_matches(session: Session, stmt: sa.Select, **of: sa.ColumnElement) -> dict[str, int]:
    """How many rows ``stmt`` matches (``total``) and, per keyword, how many of them meet that clause.

    Same FROM and WHERE as the list, one aggregate query; the list's columns, order and limit are dropped.
    """
    counts = [sa.func.count().label("total")]
    counts += [sa.func.count(sa.case((clause, 1))).label(name) for name, clause in of.items()]
    query = stmt.with_only_columns(*counts, maintain_column_froms=True).order_by(None).limit(None)
    return {name: int(value or 0) for name, value in session.execute(query).one()._mapping.items()}
