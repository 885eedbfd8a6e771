"""The import kinds: master data, stock counts, receipts, shipments, deliveries, qc, and the
``KINDS`` table that names them all (orders: ``orders.py``). Adding a kind is adding a row."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from ffctl.core import csvio
from ffctl.core.bulk import among
from ffctl.core.errors import FfctlError
from ffctl.core.imports.orders import (
    ORDER_COLUMNS,
    ORDER_OPTIONAL,
    ORDER_SHARED,
    Orders,
    order_check,
    order_parsers,
)
from ffctl.core.imports.pipeline import (
    NEW,
    REJECTED,
    UNCHANGED,
    UPDATED,
    Context,
    Handler,
    Kind,
    Record,
    existing_rows,
    positions,
)
from ffctl.core.models import Customer, Order, Product, QcBatch, Receipt, Stock, Supplier
from ffctl.core.stock.reservations import DELIVERY_ISSUES
from ffctl.i18n import _

# --- master data and other keyed rows ---------------------------------------------------------


class Upsert(Handler):
    """Rows keyed by ``key`` are inserted, or updated with the values the file gives (an empty
    cell, or a column the file lacks, leaves the stored value as it is)."""

    def __init__(self, model, defaults: dict, times: Sequence[str] = (), guard=None) -> None:
        self.table = model.__table__
        self.defaults = defaults
        self.times = frozenset(times)
        self.guard = guard  # (stored row, changes) -> (changes, reason or None, refused)
        self.grown: Counter[str] = Counter()  # rows inserted per table (refresh_statistics)

    def apply(self, session, ctx, kind, records, write):
        key_cols = kind.key
        values_of = []
        for record in records:
            row = dict(zip(kind.columns, record.first))
            for col in self.times:
                if row.get(col) is not None:
                    row[col] = csvio.from_stored(row[col])
            values_of.append(row)
        keys = [row[key_cols[0]] if len(key_cols) == 1 else tuple(row[c] for c in key_cols) for row in values_of]
        existing = existing_rows(session, self.table, key_cols, keys, lock=write)
        inserts, updates, outcomes = [], [], []
        fields = [c for c in kind.columns if c not in key_cols and c in ctx.present]
        for key, row in zip(keys, values_of):
            given = {c: row[c] for c in fields if row[c] is not None}
            current = existing.get(key)
            if current is None:
                # every dict has every column: executemany needs one shape
                inserts.append(
                    {**{c: None for c in kind.columns}, **self.defaults, **{c: row[c] for c in key_cols}, **given}
                )
                outcomes.append((NEW, None))
                continue
            changes = {c: v for c, v in given.items() if current[c] != v}
            note = None
            if self.guard and changes:
                changes, note, refused = self.guard(current, changes)
                if refused:
                    outcomes.append((REJECTED, note))
                    continue
            if not changes:
                outcomes.append((UNCHANGED, note))
                continue
            updates.append((key, changes))
            outcomes.append((UPDATED, note))
        if write:
            if inserts:
                session.execute(sa.insert(self.table), inserts)
                self.grown[self.table.name] += len(inserts)
            cols = [self.table.c[c] for c in key_cols]
            for key, changes in updates:
                key_values = (key,) if len(key_cols) == 1 else key
                cond = sa.and_(*[col == value for col, value in zip(cols, key_values)])
                session.execute(sa.update(self.table).where(cond).values(**changes))
        return outcomes


def _supplier_guard(current, changes):
    if changes.get("inspection_exempt") is True and current["exempt_frozen_at"] is not None:
        changes = {k: v for k, v in changes.items() if k != "inspection_exempt"}
        reason = current["exempt_frozen_reason"] or _("quality rule")
        return (
            changes,
            (
                _("supplier {supplier}: inspection exemption stays frozen ({reason}); it was not set back").format(
                    supplier=current["supplier"], reason=reason
                )
            ),
            False,
        )
    return changes, None, False


def _receipt_guard(current, changes):
    if current["status"] == "received":
        return (
            changes,
            (
                _("receipt {receipt_id} ({sku}, {warehouse}) was already received: it can no longer change").format(
                    receipt_id=current["receipt_id"], sku=current["sku"], warehouse=current["warehouse"]
                )
            ),
            True,
        )
    return changes, None, False


def _product_parsers(ctx: Context) -> dict:
    return {
        "sku": csvio.text_value,
        "name": csvio.text_value,
        "category": csvio.text_value,
        "safety_stock": csvio.non_negative_int,
        "reorder_qty": csvio.positive_int,
        "supplier": csvio.known(ctx.suppliers, _("supplier"), _("not in suppliers; import suppliers first")),
        "lead_time_days": csvio.non_negative_int,
        "custom": csvio.boolean,
    }


def _customer_parsers(ctx: Context) -> dict:
    return {
        "customer": csvio.text_value,
        "name": csvio.text_value,
        "tier": csvio.text_value,
        "region": csvio.first_seen(ctx.spellings["region"]),
        "credit_limit": csvio.non_negative_number,
        "sales_rep": csvio.text_value,
    }


def _supplier_parsers(ctx: Context) -> dict:
    return {"supplier": csvio.text_value, "name": csvio.text_value, "inspection_exempt": csvio.boolean}


def _receipt_parsers(ctx: Context) -> dict:
    return {
        "receipt_id": csvio.text_value,
        "sku": csvio.known(ctx.skus, _("SKU"), _("not in products; import products first")),
        "warehouse": csvio.text_value,
        "qty": csvio.positive_int,
        "expected_at": csvio.time_parser(ctx.tz),
        "supplier": csvio.known(ctx.suppliers, _("supplier"), _("not in suppliers; import suppliers first")),
    }


QC_COLUMNS = ("supplier", "batch_id", "inspected_at", "passed", "total", "promised_at", "received_at")
QC_OPTIONAL = ("sku",)


def _qc_parsers(ctx: Context) -> dict:
    when = csvio.time_parser(ctx.tz)
    return {
        "supplier": csvio.known(ctx.suppliers, _("supplier"), _("not in suppliers; import suppliers first")),
        "batch_id": csvio.text_value,
        "inspected_at": when,
        "passed": csvio.non_negative_int,
        "total": csvio.positive_int,
        "promised_at": when,
        "received_at": when,
        "sku": csvio.known(ctx.skus, _("SKU"), _("not in products; import products first")),
    }


QC_AT = positions(QC_COLUMNS + QC_OPTIONAL)


def _qc_check(ctx: Context):
    def check(values: tuple):
        if values[QC_AT.passed] > values[QC_AT.total]:
            return [("passed", _("is more than total ({value})").format(value=values[QC_AT.total]))]
        return None

    return check


# --- stock counts, shipments, deliveries -------------------------------------------------------

STOCK_COLUMNS = ("sku", "warehouse", "on_hand")
COUNT_AT = positions(STOCK_COLUMNS)


class StockCounts(Handler):
    """A counted on_hand per (sku, warehouse), applied through the stock module as an adjustment."""

    def apply(self, session, ctx, kind, records, write):
        rows = [record.first for record in records]
        keys = [(r[COUNT_AT.sku], r[COUNT_AT.warehouse]) for r in rows]
        existing = existing_rows(session, Stock.__table__, ("sku", "warehouse"), keys, lock=write)
        outcomes: list[tuple[str, str | None]] = []
        counts = []
        for key, row in zip(keys, rows):
            current = existing.get(key)
            on_hand = row[COUNT_AT.on_hand]
            if current is None:
                outcomes.append((NEW, None))
            elif current["on_hand"] == on_hand:
                outcomes.append((UNCHANGED, None))
                continue
            elif on_hand < current["allocated"]:
                outcomes.append(
                    (
                        REJECTED,
                        _(
                            "count {on_hand} for {value} in {value2} is below the {allocated} allocated to orders; release "
                            "them first"
                        ).format(on_hand=on_hand, value=key[0], value2=key[1], allocated=current["allocated"]),
                    )
                )
                continue
            else:
                outcomes.append((UPDATED, None))
            counts.append((key[0], key[1], on_hand))
        if write and counts:
            from ffctl.core import stock

            stock.apply_counts(session, counts, at=ctx.now, actor=ctx.actor)
        return outcomes


class _PerOrder(Handler):
    """Records applied one order at a time through the stock module (which owns the rules: what
    may ship, what counts as the same shipment again), each in a savepoint, so that a refused
    order is rejected alone and the rest of the batch goes in."""

    @staticmethod
    def order_of(record: Record) -> str:
        return record.key

    def apply(self, session, ctx, kind, records, write):
        ids = [self.order_of(r) for r in records]
        known = set(
            session.scalars(
                sa.select(Order.__table__.c.order_id).where(
                    among(session, Order.__table__.c.order_id, sorted(set(ids)))
                )
            )
        )
        outcomes: list[tuple[str, str | None]] = []
        if write and self.locks_stock:  # take the batch's orders and stock rows at once: no deadlock cycles
            from ffctl.core import stock

            stock.lock_for_orders(session, [o for o in ids if o in known])
        for record, order_id in zip(records, ids):
            if order_id not in known:
                outcomes.append(
                    (
                        REJECTED,
                        _("unknown order {order_id!r} (not in orders; import orders first)").format(order_id=order_id),
                    )
                )
                continue
            if not write:
                outcomes.append((NEW, None))
                continue
            try:
                with session.begin_nested():
                    recorded = self.do(session, ctx, record)
                outcomes.append((NEW, None) if recorded else (UNCHANGED, None))
            except FfctlError as exc:
                outcomes.append((REJECTED, exc.message))
        return outcomes

    locks_stock = False  # whether ``do`` moves stock (shipments consume reservations)

    def do(self, session, ctx, record: Record) -> bool:
        raise NotImplementedError


SHIPMENT_COLUMNS = ("order_id",)
SHIPMENT_OPTIONAL = ("shipped_at", "carrier", "tracking", "line_no", "sku", "qty", "shipment_id")
SHIP_AT = positions(SHIPMENT_COLUMNS + SHIPMENT_OPTIONAL)


def _shipment_group(values: tuple) -> str | None:
    """A row's shipment: its shipment_id, else its order, time, carrier and tracking (SPEC 9.2)."""
    order_id = values[SHIP_AT.order_id]
    if order_id is None:
        return None
    if values[SHIP_AT.shipment_id] is not None:
        return f"{order_id}\x1f{values[SHIP_AT.shipment_id]}"
    return "\x1f".join(
        (
            order_id,
            "",
            *(
                "" if values[i] is None else str(values[i])
                for i in (SHIP_AT.shipped_at, SHIP_AT.carrier, SHIP_AT.tracking)
            ),
        )
    )


class Shipments(Handler):
    """One record per shipment; what its rows say left moves stock. A batch is one
    ``shipping.Shipper``: the store read once, each shipment checked and planned in memory in file
    order (a refused one is rejected alone), all written set-based; planning writes nothing."""

    def apply(self, session, ctx, kind, records, write):
        from ffctl.core import shipping

        requests: list = []
        for record in records:
            v = record.first
            picks = [
                (r[SHIP_AT.line_no], r[SHIP_AT.sku], r[SHIP_AT.qty])
                for _, _, r in record.rows
                if r[SHIP_AT.line_no] is not None
            ]
            if picks and not any(q for _l, _s, q in picks):
                requests.append(
                    _("shipment of order {value}: every row ships 0 units; nothing left").format(
                        value=v[SHIP_AT.order_id]
                    )
                )
                continue
            at = csvio.from_stored(v[SHIP_AT.shipped_at]) if v[SHIP_AT.shipped_at] is not None else ctx.now
            requests.append(
                shipping.ShipmentRequest(
                    v[SHIP_AT.order_id],
                    at,
                    v[SHIP_AT.carrier],
                    v[SHIP_AT.tracking],
                    picks=picks or None,
                    shipment_id=v[SHIP_AT.shipment_id],
                )
            )
        shipper = shipping.Shipper(
            session, ctx.cfg, [r for r in requests if not isinstance(r, str)], actor=ctx.actor, write=write, many=True
        )
        outcomes: list[tuple[str, str | None]] = []
        for request in requests:
            if isinstance(request, str):
                outcomes.append((REJECTED, request))
            elif not shipper.known(request.order_id):
                outcomes.append(
                    (
                        REJECTED,
                        _("unknown order {order_id!r} (not in orders; import orders first)").format(
                            order_id=request.order_id
                        ),
                    )
                )
            else:
                try:
                    outcomes.append((NEW, None) if shipper.plan(request) is not None else (UNCHANGED, None))
                except FfctlError as exc:
                    outcomes.append((REJECTED, exc.message))
        if write:
            shipper.write()
        return outcomes


def _shipment_parsers(ctx: Context) -> dict:
    return {
        "order_id": csvio.text_value,
        "shipped_at": csvio.time_parser(ctx.tz),
        "carrier": csvio.text_value,
        "tracking": csvio.text_value,
        "line_no": csvio.positive_int,
        "sku": csvio.text_value,  # a wrong SKU picked is what pick accuracy measures: not checked
        "qty": csvio.non_negative_int,
        "shipment_id": csvio.text_value,
    }


def _shipment_check(ctx: Context):
    def check(values: tuple):
        if values[SHIP_AT.line_no] is None and (values[SHIP_AT.qty] is not None or values[SHIP_AT.sku] is not None):
            return [("line_no", _("missing: a row with sku or qty names the order line it ships (line_no)"))]
        if values[SHIP_AT.line_no] is not None and values[SHIP_AT.qty] is None:
            return [("qty", _("missing: how many units of the line left in this shipment"))]
        return None

    return check


DELIVERY_COLUMNS = ("order_id", "delivered_at")
DELIVERY_AT = positions(DELIVERY_COLUMNS + ("issue",))


class Deliveries(_PerOrder):
    def do(self, session, ctx, record):
        from ffctl.core import stock

        v = record.first
        return stock.deliver(
            session,
            ctx.cfg,
            record.key,
            at=csvio.from_stored(v[DELIVERY_AT.delivered_at]),
            actor=ctx.actor,
            issue=v[DELIVERY_AT.issue],
        )


def _delivery_parsers(ctx: Context) -> dict:
    return {
        "order_id": csvio.text_value,
        "delivered_at": csvio.time_parser(ctx.tz),
        "issue": csvio.one_of(DELIVERY_ISSUES),
    }


RETURN_COLUMNS = ("order_id", "line_no", "qty", "reason", "returned_at")
RETURN_AT = positions(RETURN_COLUMNS + ("warehouse",))


class Returns(_PerOrder):
    """One record per return line (order, line, time, reason: the natural key), recorded through
    ``returns.record_return``, which refuses more than the line shipped less what came back."""

    locks_stock = True

    @staticmethod
    def order_of(record: Record) -> str:
        return record.first[RETURN_AT.order_id]

    def do(self, session, ctx, record):
        from ffctl.core import returns

        v = record.first
        done = returns.record_return(
            session,
            ctx.cfg,
            v[RETURN_AT.order_id],
            [(v[RETURN_AT.line_no], v[RETURN_AT.qty])],
            reason=v[RETURN_AT.reason],
            at=csvio.from_stored(v[RETURN_AT.returned_at]),
            actor=ctx.actor,
            restock=v[RETURN_AT.warehouse],
        )
        return done is not None


def _return_parsers(ctx: Context) -> dict:
    return {
        "order_id": csvio.text_value,
        "line_no": csvio.positive_int,
        "qty": csvio.positive_int,
        "reason": csvio.text_value,
        "returned_at": csvio.time_parser(ctx.tz),
        "warehouse": csvio.text_value,
    }


# --- the kinds ---------------------------------------------------------------------------------

# Examples (``import KIND --template --example``): one small business, each kind's rows naming the
# rows of the kinds before it, so that importing them in this order works (tests do it).
EXAMPLES = {
    "suppliers": (
        ("SUP-01", "华东五金有限公司", "yes"),
        ("SUP-02", "Acme Components", "no"),
        ("SUP-03", "深圳电子", "否"),
    ),
    "products": (
        ("SKU-001", "27 inch monitor", "electronics", "10", "50", "SUP-02", "7", "no"),
        ("SKU-002", "不锈钢螺丝 M6", "hardware", "500", "2000", "SUP-01", "3", ""),
        ("SKU-003", "定制机柜", "custom", "0", "", "SUP-03", "20", "是"),
    ),
    "customers": (
        ("CUST-01", "北京科技有限公司", "gold", "华北", "500000", "oscar"),
        ("CUST-02", "Pacific Trading Ltd", "silver", "east", "80,000", ""),
        ("CUST-03", "广州贸易", "", "华南", "", "oscar"),
    ),
    "stock": (("SKU-001", "WH-SH", "40"), ("SKU-002", "WH-SH", "3000"), ("SKU-003", "WH-GZ", "2")),
    "receipts": (
        ("PO-1001", "SKU-001", "WH-SH", "100", "2026-03-10", "SUP-02"),
        ("PO-1002", "SKU-002", "WH-SH", "5000", "2026/03/10 14:00", "SUP-01"),
        ("PO-1003", "SKU-003", "WH-GZ", "5", "2026-03-20T09:00:00+08:00", "SUP-03"),
    ),
    "orders": (
        ("SO-1001", "1", "CUST-01", "SKU-001", "2", "b2b", "", "1299.00", "2026-03-02 09:30", "2026-03-05", "high", ""),
        ("SO-1002", "1", "CUST-02", "SKU-002", "200", "web", "east", "0.35", "2026/03/02 10:15", "", "normal", "oscar"),
        (
            "SO-1003",
            "1",
            "CUST-03",
            "SKU-003",
            "1",
            "b2b",
            "",
            "8,800.00",
            "2026-03-03T08:00:00+08:00",
            "2026-03-20",
            "2",
            "",
        ),
    ),
    "shipments": (
        ("SO-1001", "2026-03-04 16:00", "SF Express", "SF1234567890", "1", "SKU-001", "2", "SHP-1"),
        ("SO-1002", "2026/03/05 11:20", "顺丰速运", "SF1234567891", "", "", "", ""),
        ("SO-1003", "2026-03-18 09:00", "", "", "1", "SKU-003", "1", ""),
    ),
    "deliveries": (
        ("SO-1001", "2026-03-06 10:00", ""),
        ("SO-1002", "2026-03-07 15:30", "damaged"),
        ("SO-1003", "2026/03/19", ""),
    ),
    "returns": (
        ("SO-1001", "1", "1", "damaged", "2026-03-09 11:00", ""),
        ("SO-1002", "1", "20", "wrong_size", "2026/03/10 09:30", "WH-SH"),
        ("SO-1003", "1", "1", "changed_mind", "2026-03-20 14:00", ""),
    ),
    "qc": (
        ("SUP-01", "B-2026-031", "2026-03-11 09:00", "4980", "5000", "2026-03-10", "2026-03-10 15:00", "SKU-002"),
        ("SUP-02", "B-2026-032", "2026-03-12 10:00", "98", "100", "2026-03-10", "2026-03-12 08:30", "SKU-001"),
        ("SUP-03", "B-2026-033", "2026-03-21 14:00", "5", "5", "2026-03-20", "2026-03-21 11:00", ""),
    ),
}

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "products",
            "products",
            ("sku", "name"),
            ("category", "safety_stock", "reorder_qty", "supplier", "lead_time_days", "custom"),
            _product_parsers,
            lambda: Upsert(Product, {"safety_stock": 0, "custom": False}),
            key=("sku",),
            example=EXAMPLES["products"],
        ),
        Kind(
            "customers",
            "customers",
            ("customer", "name"),
            ("tier", "region", "credit_limit", "sales_rep"),
            _customer_parsers,
            lambda: Upsert(Customer, {}),
            key=("customer",),
            spelled=("region",),
            example=EXAMPLES["customers"],
        ),
        Kind(
            "suppliers",
            "suppliers",
            ("supplier", "name"),
            ("inspection_exempt",),
            _supplier_parsers,
            lambda: Upsert(Supplier, {"inspection_exempt": False}, guard=_supplier_guard),
            key=("supplier",),
            example=EXAMPLES["suppliers"],
        ),
        Kind(
            "stock",
            "counts",
            STOCK_COLUMNS,
            (),
            lambda ctx: {
                "sku": csvio.known(ctx.skus, _("SKU"), _("not in products; import products first")),
                "warehouse": csvio.text_value,
                "on_hand": csvio.non_negative_int,
            },
            StockCounts,
            key=("sku", "warehouse"),
            refusable=lambda ctx: True,
            example=EXAMPLES["stock"],
        ),
        Kind(
            "receipts",
            "receipt lines",
            ("receipt_id", "sku", "warehouse", "qty", "expected_at"),
            ("supplier",),
            _receipt_parsers,
            lambda: Upsert(Receipt, {"status": "open"}, times=("expected_at",), guard=_receipt_guard),
            key=("receipt_id", "sku", "warehouse"),
            refusable=lambda ctx: True,
            example=EXAMPLES["receipts"],
        ),
        Kind(
            "orders",
            "orders",
            ORDER_COLUMNS,
            ORDER_OPTIONAL,
            order_parsers,
            Orders,
            key=("order_id",),
            sub="line_no",
            shared=ORDER_SHARED,
            row_check=order_check,
            refusable=lambda ctx: ctx.update,
            spelled=("channel", "region"),
            backfills=True,
            example=EXAMPLES["orders"],
        ),
        Kind(
            "shipments",
            "shipments",
            SHIPMENT_COLUMNS,
            SHIPMENT_OPTIONAL,
            _shipment_parsers,
            Shipments,
            key=("order_id",),
            sub="line_no",
            group=_shipment_group,
            shared=("shipped_at", "carrier", "tracking"),
            row_check=_shipment_check,
            refusable=lambda ctx: True,
            abort_in_one=True,
            example=EXAMPLES["shipments"],
        ),
        Kind(
            "deliveries",
            "deliveries",
            DELIVERY_COLUMNS,
            ("issue",),
            _delivery_parsers,
            Deliveries,
            key=("order_id",),
            refusable=lambda ctx: True,
            plan_by_rollback=True,
            one="delivery",
            example=EXAMPLES["deliveries"],
        ),
        Kind(
            "returns",
            "return lines",
            RETURN_COLUMNS,
            ("warehouse",),
            _return_parsers,
            Returns,
            key=("order_id", "line_no", "returned_at", "reason"),
            refusable=lambda ctx: True,
            plan_by_rollback=True,
            example=EXAMPLES["returns"],
        ),
        Kind(
            "qc",
            "qc batches",
            QC_COLUMNS,
            QC_OPTIONAL,
            _qc_parsers,
            lambda: Upsert(QcBatch, {}, times=("inspected_at", "promised_at", "received_at")),
            key=("supplier", "batch_id"),
            row_check=_qc_check,
            one="qc batch",
            example=EXAMPLES["qc"],
        ),
    )
}


def template(kind: str, *, example: bool = False) -> Iterator[list[str]]:
    """The rows of a CSV template for ``kind``: its header (required columns first), and with
    ``example`` three example rows."""
    spec = KINDS[kind]
    yield list(spec.columns)
    if example:
        for row in spec.example:
            yield list(row)
