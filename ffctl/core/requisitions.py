"""Purchase requisitions (`requisition list` / `approve` / `reject`): drafted by the rule engine's
``stock_below`` kind (``ffctl.core.rules``), decided here by people.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import audit
from ffctl.core.errors import Conflict, NotFound, UsageError
from ffctl.core.models import Requisition

REQS = Requisition.__table__
REQUISITION_STATUSES = ("draft", "approved", "rejected")


def _requisition_row(r) -> dict:
    return {"id": r.id, "sku": r.sku, "qty": r.qty, "status": r.status, "created_at": r.created_at,
            "reason": r.reason, "supplier": r.supplier, "rule": r.rule, "decided_at": r.decided_at,
            "decided_by": r.decided_by}


def list_requisitions(session: Session, *, status: str | None = None) -> list[dict]:
    if status is not None and status not in REQUISITION_STATUSES:
        raise UsageError(f"--status {status!r}: use one of {', '.join(REQUISITION_STATUSES)}")
    query = sa.select(REQS).order_by(REQS.c.id)
    if status is not None:
        query = query.where(REQS.c.status == status)
    return [_requisition_row(r) for r in session.execute(query)]


def decide_requisition(session: Session, req_id: int, *, approve: bool, at: datetime, actor: str,
                       reason: str | None = None) -> dict:
    """Approve or reject a draft requisition (a conditional UPDATE: two deciders cannot both win)."""
    status = "approved" if approve else "rejected"
    done = session.execute(
        sa.update(REQS).where(REQS.c.id == req_id, REQS.c.status == "draft")
        .values(status=status, decided_at=at, decided_by=actor)
    ).rowcount
    row = session.execute(sa.select(REQS).where(REQS.c.id == req_id)).first()
    if row is None:
        raise NotFound(f"no requisition #{req_id}", hint="`ffctl requisition list` shows the requisitions.")
    if not done:
        when = f" by {row.decided_by}" if row.decided_by else ""
        raise Conflict(f"requisition #{req_id} is already {row.status}{when}; only drafts can be approved or rejected")
    detail = f"requisition #{req_id}: {row.qty} x {row.sku}" + (f" from {row.supplier}" if row.supplier else "")
    if reason:
        detail += f"; reason: {reason}"
    audit.record(session, event=f"requisition_{status}", at=at, actor=actor, subject=f"sku:{row.sku}", detail=detail)
    return _requisition_row(row)
