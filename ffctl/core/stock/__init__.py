"""Stock: the one owner of on hand, reservations and available-to-promise.

Every write to ``stock.allocated``, ``order_line.allocated`` and ``allocation`` happens here.
The invariant is *allocated never exceeds on hand*, and it holds under any number of
concurrent ffctl processes on both backends:

- the database refuses it (CHECK ``allocated <= on_hand`` on ``stock``);
- writers lock the stock rows they touch in primary-key order (``SELECT ... ORDER BY id FOR
  UPDATE`` on PostgreSQL; on SQLite the write transaction is already exclusive) and write
  with conditional updates (``... WHERE on_hand - allocated >= :q``), checking the row count;
- lock order: a writer that locks an order row (ship, cancel, workflow moves) does so before
  it locks stock; ``allocate`` locks its stock first and then takes orders with ``SKIP
  LOCKED``, so it never waits on an order someone else holds: no cycle, no deadlock.

Available-to-promise (ATP) for a SKU is a time-phased schedule: on the command clock's local
date, ``on_hand - allocated`` minus the unallocated quantity of open (and held) orders;
then each open receipt adds its quantity on its expected date (an overdue receipt counts
today). Subtracting open demand means two orders never get promised the same units.

The modules:

    availability.py  stock levels and available-to-promise (read only)
    moves.py         locking stock rows; counts, adjustments, receipts
    reservations.py  an order's reservations: release, ship, cancel line units; deliveries
    allocation.py    ``allocate``: reserve stock for the orders waiting at an allocation node
    common.py        the tables and key lookups they share
"""

from ffctl.core.stock.allocation import allocate, allocation_nodes
from ffctl.core.stock.availability import atp, promise_dates, stock_rows
from ffctl.core.stock.moves import adjust, apply_counts, receive
from ffctl.core.stock.reservations import (
    LineShipment,
    ShippedStock,
    cancel_line_units,
    deliver,
    deliver_many,
    lock_for_orders,
    release_order,
)

__all__ = [
    "LineShipment",
    "ShippedStock",
    "adjust",
    "allocate",
    "allocation_nodes",
    "apply_counts",
    "atp",
    "cancel_line_units",
    "deliver",
    "deliver_many",
    "lock_for_orders",
    "promise_dates",
    "receive",
    "release_order",
    "stock_rows",
]
