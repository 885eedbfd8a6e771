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
from ffctl.i18n import _

REQS = Requisition.__table__
REQUISITION_STATUSES = ("draft", "approved", "rejected")


def _requisition_row(r) -> dict:
    return {
        "id": r.id,
        "sku": r.sku,
        "qty": r.qty,
        "status": r.status,
        "created_at": r.created_at,
        "reason": r.reason,
        "supplier": r.supplier,
        "rule": r.rule,
        "decided_at": r.decided_at,
        "decided_by": r.decided_by,
    }


def list_requisitions(session: Session, *, status: str | None = None) -> list[dict]:
    if status is not None and status not in REQUISITION_STATUSES:
        raise UsageError(
            _("--status {status!r}: use one of {names}").format(status=status, names=", ".join(REQUISITION_STATUSES))
        )
    query = sa.select(REQS).order_by(REQS.c.id)
    if status is not None:
        query = query.where(REQS.c.status == status)
    return [_requisition_row(r) for r in session.execute(query)]


def decide_requisition(
    session: Session, req_id: int, *, approve: bool, at: datetime, actor: str, reason: str | None = None
) -> dict:
    """Approve or reject a draft requisition (a conditional UPDATE: two deciders cannot both win)."""
    status = "approved" if approve else "rejected"
    done = session.execute(  # type: ignore[attr-defined]  # an UPDATE/INSERT gives a CursorResult; Session.execute is typed Result
        sa.update(REQS)
        .where(REQS.c.id == req_id, REQS.c.status == "draft")
        .values(status=status, decided_at=at, decided_by=actor)
    ).rowcount
    row = session.execute(sa.select(REQS).where(REQS.c.id == req_id)).first()
    if row is None:
        raise NotFound(
            _("no requisition #{req_id}").format(req_id=req_id),
            hint=_("`ffctl requisition list` shows the requisitions."),
        )
    if not done:
        when = _(" by {user}").format(user=row.decided_by) if row.decided_by else ""
        raise Conflict(
            _("requisition #{req_id} is already {status}{when}; only drafts can be approved or rejected").format(
                req_id=req_id, status=row.status, when=when
            )
        )
    detail = _("requisition #{id}: {qty} x {sku}").format(id=req_id, qty=row.qty, sku=row.sku) + (
        _(" from {supplier}").format(supplier=row.supplier) if row.supplier else ""
    )
    if reason:
        detail += _("; reason: {reason}").format(reason=reason)
    audit.record(session, event=f"requisition_{status}", at=at, actor=actor, subject=f"sku:{row.sku}", detail=detail)
    return _requisition_row(row)
