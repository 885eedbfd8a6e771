"""What the stock modules share: their tables and how they look keys up in parts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from ffctl.core.models import Allocation, Order, OrderLine, Receipt, Stock, StockMove, Task
from ffctl.core.store import is_postgresql

STOCK = Stock.__table__
LINE = OrderLine.__table__
ALLOC = Allocation.__table__
ORDERS = Order.__table__
RECEIPT = Receipt.__table__
TASK = Task.__table__
MOVE = StockMove.__table__
UNSERVED = LINE.c.qty - LINE.c.cancelled - LINE.c.allocated  # a line's units neither reserved, shipped nor cancelled

IN_CHUNK = 900  # values per IN (...) list on reads


def _chunks(items: Sequence, size: int = IN_CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _parts(session: Session, items: Sequence) -> Iterable[Sequence]:
    """Key lists to look up: all at once on PostgreSQL (one array parameter), IN-sized chunks on SQLite."""
    if is_postgresql(session):
        return [items] if len(items) else []
    return _chunks(items)
