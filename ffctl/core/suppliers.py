"""Suppliers (`supplier list` / `show`): QC pass rates, delivery delays, inspection exemption.

The rule engine's ``supplier`` kind (``ffctl.core.rules``) freezes exemptions from the same ranked
batches (:func:`ranked_batches`), so the numbers a user reads are the ones the rule judged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core.errors import NotFound
from ffctl.core.models import QcBatch, Supplier
from ffctl.core.store import is_postgresql
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config

SUPPLIERS = Supplier.__table__
QC = QcBatch.__table__

#: The window of `supplier list` when the config has no supplier rule.
DEFAULT_WINDOW = 10
LAST_N = 3  # qc_pass_rate_last3


def _delay_days(session: Session) -> sa.ColumnElement:
    """received_at - promised_at in days (fractional), per backend."""
    if is_postgresql(session):
        return sa.extract("epoch", QC.c.received_at - QC.c.promised_at) / 86400.0
    return sa.func.julianday(QC.c.received_at) - sa.func.julianday(QC.c.promised_at)


def ranked_batches(session: Session, *, suppliers=None) -> sa.Subquery:
    """QC batches numbered newest first per supplier (rn = 1 is the latest inspection)."""
    rn = sa.func.row_number().over(partition_by=QC.c.supplier, order_by=(QC.c.inspected_at.desc(), QC.c.id.desc()))
    query = sa.select(
        QC.c.supplier,
        QC.c.batch_id,
        QC.c.sku,
        QC.c.inspected_at,
        QC.c.passed,
        QC.c.total,
        QC.c.promised_at,
        QC.c.received_at,
        _delay_days(session).label("delay_days"),
        rn.label("rn"),
    )
    if suppliers is not None:
        query = query.where(QC.c.supplier.in_(suppliers))
    return query.subquery("ranked")


def supplier_window(cfg: Config) -> int:
    """The delay window: the first supplier rule's window_batches, else 10."""
    for rule in getattr(cfg, "rules", ()):
        if rule.kind == "supplier":
            return int(rule.params.get("window_batches") or DEFAULT_WINDOW)
    return DEFAULT_WINDOW


def _supplier_stats(session: Session, window: int, suppliers=None) -> dict[str, dict]:
    r = ranked_batches(session, suppliers=suppliers)
    last = r.c.rn <= LAST_N
    in_window = r.c.rn <= window
    query = (
        sa.select(
            r.c.supplier,
            sa.func.sum(sa.case((last, r.c.passed), else_=0)).label("passed"),
            sa.func.sum(sa.case((last, r.c.total), else_=0)).label("total"),
            sa.func.avg(sa.case((in_window, r.c.delay_days))).label("avg_delay"),
            sa.func.sum(sa.case((in_window, 1), else_=0)).label("n_window"),
            sa.func.count().label("batches"),
        )
        .where(r.c.rn <= max(LAST_N, window))
        .group_by(r.c.supplier)
    )
    out = {}
    for s in session.execute(query):
        out[s.supplier] = {
            "qc_pass_rate_last3": round(s.passed / s.total, 4) if s.total else None,
            "avg_delay_days": round(float(s.avg_delay), 2) if s.avg_delay is not None else None,
            "window_batches": int(s.n_window),
        }
    return out


def _supplier_base(s, stats: dict | None) -> dict:
    stats = stats or {}
    return {
        "supplier": s.supplier,
        "name": s.name,
        "inspection_exempt": bool(s.inspection_exempt),
        "qc_pass_rate_last3": stats.get("qc_pass_rate_last3"),
        "avg_delay_days": stats.get("avg_delay_days"),
        "exempt_frozen_at": s.exempt_frozen_at,
        "exempt_frozen_reason": s.exempt_frozen_reason,
    }


def list_suppliers(session: Session, cfg: Config) -> list[dict]:
    stats = _supplier_stats(session, supplier_window(cfg))
    rows = session.execute(sa.select(SUPPLIERS).order_by(SUPPLIERS.c.supplier))
    return [_supplier_base(s, stats.get(s.supplier)) for s in rows]


def show_supplier(session: Session, cfg: Config, supplier: str) -> dict:
    """A supplier's numbers, its recent batches and why its exemption was frozen."""
    s = session.execute(sa.select(SUPPLIERS).where(SUPPLIERS.c.supplier == supplier)).first()
    if s is None:
        raise NotFound(
            _("no supplier {supplier!r}").format(supplier=supplier),
            hint=_("`ffctl supplier list` shows the suppliers."),
        )
    window = supplier_window(cfg)
    out = _supplier_base(s, _supplier_stats(session, window, [supplier]).get(supplier))
    out["window_batches"] = window
    r = ranked_batches(session, suppliers=[supplier])
    out["batches"] = [
        {
            "batch_id": b.batch_id,
            "sku": b.sku,
            "inspected_at": b.inspected_at,
            "passed": b.passed,
            "total": b.total,
            "pass_rate": round(b.passed / b.total, 4) if b.total else None,
            "promised_at": b.promised_at,
            "received_at": b.received_at,
            "delay_days": round(float(b.delay_days), 2),
        }
        for b in session.execute(sa.select(r).where(r.c.rn <= max(window, LAST_N)).order_by(r.c.rn))
    ]
    from ffctl.core.models import Event

    ev = Event.__table__
    out["history"] = [
        {"at": e.at, "event": e.event, "actor": e.actor, "detail": e.detail}
        for e in session.execute(
            sa.select(ev.c.at, ev.c.event, ev.c.actor, ev.c.detail)
            .where(ev.c.subject == f"supplier:{supplier}")
            .order_by(ev.c.id)
        )
    ]
    return out
