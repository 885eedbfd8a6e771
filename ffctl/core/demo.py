"""A realistic demo store, built and run through the real code paths.

``build_demo`` writes a config and CSV files into a folder, imports them, then simulates
``days`` days of business hour by hour with the command clock: orders arrive and are imported,
reviewers and warehouse staff complete their nodes with realistic (sometimes late) delays,
allocation runs, receipts arrive, orders are held and released, sweeps run at their simulated
times (escalating what is late and running the rules), orders ship with a few pick errors and
are delivered with a few issues. Randomness is seeded, so a demo is reproducible.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ffctl.core.errors import Conflict
from ffctl.core.files import private_folder, write_private
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ffctl.core.config import Config
    from ffctl.core.store import Store

REGIONS = ["华东", "华南", "华北", "西南", "east"]
CHANNELS = ["b2b", "b2c", "marketplace"]
CATEGORIES = ["紧固件", "轴承", "电机", "传感器", "custom"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
COMPANY = ["贸易有限公司", "机械厂", "电子科技", "Trading Co.", "Industrial Ltd"]
PRODUCT_WORDS = ["六角螺栓", "深沟球轴承", "步进电机", "温度传感器", "定制支架", "Hex bolt", "Servo motor"]
SALES_REPS = ["oscar"]
ISSUES = ["wrong_item", "short", "late", "damaged", "wrong_address", "documents"]


@dataclass
class DemoResult:
    directory: Path
    config_path: Path
    db_url: str
    orders: int
    days: int
    now: datetime
    counts: dict = field(default_factory=dict)


def _write_csv(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_private(path, buffer.getvalue(), exclusive=True, encoding=encoding, newline="")
    return path


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)


def write_masters(
    folder: Path, rng: random.Random, *, start: datetime, days: int, n_orders: int
) -> tuple[dict[str, Path], list, list]:
    """Suppliers, products, customers, stock and receipts as the CSV files a user would import
    (and the product and customer rows, which the orders are planned from)."""
    files: dict[str, Path] = {}
    suppliers = [(f"S{i:02d}", f"{rng.choice(SURNAMES)}氏{rng.choice(COMPANY)}", "true") for i in range(1, 7)]
    files["suppliers"] = _write_csv(
        folder / "suppliers.csv", ["supplier", "name", "inspection_exempt"], [list(s) for s in suppliers]
    )
    n_products = max(20, min(300, n_orders // 10))
    products = []
    for i in range(1, n_products + 1):
        category = CATEGORIES[i % len(CATEGORIES)]
        products.append(
            [
                f"SKU-{i:04d}",
                f"{rng.choice(PRODUCT_WORDS)} {i}",
                category,
                rng.choice([10, 20, 40]),
                rng.choice([50, 100, 200]),
                suppliers[i % len(suppliers)][0],
                rng.choice([3, 5, 7, 14]),
                "true" if category == "custom" else "false",
            ]
        )
    files["products"] = _write_csv(
        folder / "products.csv",
        ["sku", "name", "category", "safety_stock", "reorder_qty", "supplier", "lead_time_days", "custom"],
        products,
    )
    customers = []
    for i in range(1, max(30, n_orders // 8) + 1):
        customers.append(
            [
                f"C{i:05d}",
                _name(rng) + rng.choice(COMPANY),
                rng.choice(["A", "B", "C"]),
                rng.choice(REGIONS),
                rng.choice([50000, 100000, 500000]),
                rng.choice(SALES_REPS),
            ]
        )
    files["customers"] = _write_csv(
        folder / "customers.csv", ["customer", "name", "tier", "region", "credit_limit", "sales_rep"], customers
    )
    stock = []
    for p in products:
        for wh in ("SH-01", "GZ-01"):
            stock.append([p[0], wh, rng.choice([0, 30, 120, 300, 600, 900])])
    files["stock"] = _write_csv(folder / "stock.csv", ["sku", "warehouse", "on_hand"], stock)
    receipts = []
    for i in range(1, n_products + 1):
        p = products[rng.randrange(len(products))]
        expected = start + timedelta(days=rng.uniform(1, days), hours=rng.uniform(0, 8))
        receipts.append(
            [
                f"R{i:05d}",
                p[0],
                rng.choice(["SH-01", "GZ-01"]),
                rng.choice([100, 200, 400]),
                expected.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                p[5],
            ]
        )
    files["receipts"] = _write_csv(
        folder / "receipts.csv", ["receipt_id", "sku", "warehouse", "qty", "expected_at", "supplier"], receipts
    )
    return files, products, customers


def plan_orders(
    rng: random.Random, *, products: list, customers: list, start: datetime, days: int, n_orders: int
) -> list[list]:
    """Order lines (one row per line), created mostly in office hours across the period."""
    rows = []
    for i in range(1, n_orders + 1):
        day = rng.randrange(days)
        hour = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9]) if rng.random() < 0.85 else rng.randrange(24)
        created = start + timedelta(days=day, hours=hour, minutes=rng.randrange(60))
        cust = customers[rng.randrange(len(customers))]
        channel = rng.choice(CHANNELS)
        priority = rng.choice([0, 0, 0, 1, 2])
        # most shops promise a few days out; a blank date is filled from available-to-promise
        promised = (
            "" if rng.random() < 0.2 else (created + timedelta(days=rng.choice([2, 3, 3, 4]))).strftime("%Y-%m-%d")
        )
        for line_no in range(1, rng.choice([1, 1, 1, 2, 3]) + 1):
            p = products[rng.randrange(len(products))]
            rows.append(
                [
                    f"SO{i:06d}",
                    line_no,
                    cust[0],
                    p[0],
                    rng.choice([1, 2, 5, 10, 20]),
                    channel,
                    cust[3],
                    round(rng.uniform(5, 500), 2),
                    created.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                    priority,
                    promised,
                ]
            )
    rows.sort(key=lambda r: (r[8], r[0], r[1]))
    return rows


ORDER_HEADER = [
    "order_id",
    "line_no",
    "customer",
    "sku",
    "qty",
    "channel",
    "region",
    "unit_price",
    "created_at",
    "priority",
    "promised_ship_date",
]


@cache  # the hourly steps draw again for every order still waiting
def _fraction(key: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for a task or order (the demo is reproducible)."""
    import hashlib

    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _work_factor(key: str) -> float:
    """How much of its SLA a task takes: mostly well within, some close, a few late."""
    u, v = _fraction(key, "band"), _fraction(key, "within")
    if u < 0.72:
        return 0.1 + 0.6 * v
    if u < 0.90:
        return 0.7 + 0.28 * v
    return 1.1 + 3.0 * v


def write_config(directory: Path, example_text: str, *, language: str | None = None) -> Path:
    """The example config with the store and log inside the demo folder (and ``[defaults] language``
    when given: the demo's later commands, notifications and dashboard speak it too)."""
    text = example_text
    lines = []
    section = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        if section == "[database]" and stripped.startswith("url"):
            line = 'url = "sqlite:///ffctl.db"'
        if section == "[defaults]" and language and stripped.startswith(("language", "# language")):
            continue
        lines.append(line)
        if stripped == "[defaults]" and language:
            lines.append(f'language = "{language}"')
    path = directory / "ffctl.toml"
    write_private(path, "\n".join(lines) + "\n", exclusive=True)
    return path


class Simulation:
    """Hour by hour through the demo period, with the command clock set to each hour."""

    def __init__(
        self, store: Store, cfg: Config, folder: Path, rng: random.Random, progress: Callable[[str], None]
    ) -> None:
        self.store, self.cfg, self.folder, self.rng, self.progress = store, cfg, folder, rng, progress
        self.counts: dict[str, int] = {}
        self.holds: dict[str, datetime] = {}  # order_id -> release time
        self.comebacks: dict[str, datetime] = {}  # order_id -> when its return arrives
        self._open_manual_stmt: sa.Select | None = None
        self._open: Session | None = None

    def bump(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def import_file(self, kind: str, path: Path, now: datetime) -> None:
        from ffctl.core.imports import import_file

        report = import_file(self.store, self.cfg, kind, path, now=now, actor="importer")
        if not report.ok:
            raise RuntimeError(
                _("demo import of {file} failed: {errors}").format(file=path.name, errors=report.errors[:3])
            )
        self.bump(f"imported_{kind}", report.written + report.updated)

    def step(self, prev: datetime, now: datetime) -> None:
        with self._session():  # the hour's work in one transaction; the sweep commits its own
            after = 0
            for _step in range(6):  # a completed node can be followed by the next within the hour
                done, after = self.work(prev, now, after)
                if not done:
                    break
            self.receive(now)
            self.allocate(now)
            self.ship(prev, now)
            self.deliver(now)
            self.come_back(now)
            self.releases(now)
        self.sweep(now)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """The simulated hour's write session, or a new one outside it (a session per step of
        the hour cost more than most steps' statements)."""
        if self._open is not None:
            yield self._open
            return
        with self.store.session(write=True) as s:
            self._open = s
            try:
                yield s
            finally:
                self._open = None

    def work(self, prev: datetime, now: datetime, after: int = 0) -> tuple[int, int]:
        """Reviewers and warehouse staff complete (or reject) the manual tasks they have finished
        among those with an id above ``after``; returns how many, and the largest task id before
        them (the hour's next pass looks at the tasks entered since: the others' finishing times
        are past the hour, or they were acted on).

        Each visit's delay and rejection are drawn from its order, node and visit number (stable
        however its task was numbered); the completions go in one ``workflow.complete_tasks`` batch
        per person (the set-based completion allocation uses), holds and rejections one by one."""
        from ffctl.core import audit, workflow

        done = 0
        with self._session() as s:
            top = s.execute(sa.text("SELECT coalesce(max(id), 0) FROM task")).scalar_one()
            tasks = s.execute(self._open_manual(), {"now": now, "after": after}).all()
            batches: dict[str, list] = {}  # actor -> the tasks they complete
            times: dict[str, datetime] = {}
            for t in tasks:
                key = f"{t.order_id}:{t.node}:{t.visit}"
                cal = self.cfg.calendar(t.node)
                finish = cal.add(t.entered_at, t.sla_seconds * _work_factor(key))
                if t.node == "credit_review" and _fraction(t.order_id, "hold") < 0.03 and t.order_id not in self.holds:
                    held_at = max(prev, t.entered_at + timedelta(minutes=5))
                    workflow.hold(
                        s,
                        self.cfg,
                        t.order_id,
                        at=held_at,
                        actor=self._member(t.node, 0),
                        reason="customer asked to confirm the delivery address",
                    )
                    self.holds[t.order_id] = held_at + timedelta(hours=2 + 20 * _fraction(t.order_id, "held"))
                    self.bump("holds")
                    continue
                if finish > now:
                    continue
                at = max(finish, prev, t.entered_at)
                actor = self._member(t.node, t.escalation_level)
                if t.node == "tech_confirm" and _fraction(key, "reject") < 0.08:
                    workflow.reject(
                        s,
                        self.cfg,
                        t.order_id,
                        at=at,
                        actor=actor,
                        manual=True,
                        reason="drawing revision missing; sales to confirm with the customer",
                    )
                    self.bump("rejections")
                    done += 1
                    continue
                batches.setdefault(actor, []).append(t)
                times[t.order_id] = at
            # their timelines cannot run backwards (what `complete` refuses one by one)
            audit.refuse_earlier_many(s, sorted(times.items()), self.cfg.timezone)
            for actor, batch in batches.items():
                done += len(workflow.complete_tasks(s, self.cfg, batch, at=times, actor=actor))
        self.bump("advances", done)
        return done, top

    def _open_manual(self) -> sa.Select:
        """The open manual tasks of open orders entered by ``:now``, with each one's visit number
        (built once: building it each pass cost more than running it)."""
        if self._open_manual_stmt is not None:
            return self._open_manual_stmt
        from sqlmodel import col

        from ffctl.core.models import Order, Task

        manual = [n for n, spec in self.cfg.nodes.items() if not spec.auto]
        earlier = sa.orm.aliased(Task)
        visit = (
            sa.select(sa.func.count())
            .where(col(earlier.order_id) == Task.order_id, col(earlier.node) == Task.node, col(earlier.id) <= Task.id)
            .scalar_subquery()
        )
        self._open_manual_stmt = (
            sa.select(
                col(Task.id),
                col(Task.order_id),
                col(Task.node),
                col(Task.workflow),
                col(Task.seq),
                col(Task.deadline),
                col(Task.entered_at),
                col(Task.sla_seconds),
                col(Task.escalation_level),
                visit.label("visit"),
            )
            .join(Order, col(Order.order_id) == Task.order_id)
            .where(
                col(Task.status) == "open",
                col(Task.held_at).is_(None),
                col(Task.node).in_(manual),
                col(Task.entered_at) <= sa.bindparam("now", type_=Task.__table__.c.entered_at.type),
                col(Task.id) > sa.bindparam("after", type_=sa.Integer()),
                col(Order.status) == "open",
            )
            .order_by(col(Task.entered_at), col(Task.order_id))
        )
        return self._open_manual_stmt

    def _member(self, node: str, level: int) -> str:
        owner = self.cfg.nodes[node].owner
        assert owner is not None  # a manual node has an owner (config check)
        chain = (owner, *self.cfg.escalation_chain(owner))
        role = self.cfg.roles[chain[min(level, len(chain) - 1)]]
        return role.members[0]

    def receive(self, now: datetime) -> None:
        from sqlmodel import col

        from ffctl.core import stock
        from ffctl.core.models import Receipt

        with self._session() as s:
            due = (
                s.execute(
                    sa.select(col(Receipt.receipt_id))
                    .where(col(Receipt.status) == "open", col(Receipt.expected_at) <= now)
                    .distinct()
                )
                .scalars()
                .all()
            )
            for receipt_id in due:
                stock.receive(s, receipt_id, at=now, actor="frank")
        self.bump("receipts", len(due))

    def allocate(self, now: datetime) -> None:
        from ffctl.core import stock

        with self._session() as s:
            stock.allocate(s, self.cfg, all_orders=True, at=now, actor="allocator", tz=self.cfg.timezone, details=False)

    def ship(self, prev: datetime, now: datetime) -> None:
        from sqlmodel import col

        from ffctl.core import shipping
        from ffctl.core.models import Order, OrderLine, Shipment, Task

        ship_nodes = [n for n, spec in self.cfg.nodes.items() if spec.auto == "ship"]
        with self._session() as s:
            waiting = s.execute(
                sa.select(col(Task.order_id), col(Task.entered_at))
                .join(Order, col(Order.order_id) == Task.order_id)
                .where(
                    col(Task.status) == "open",
                    col(Task.node).in_(ship_nodes),
                    col(Task.entered_at) <= now - timedelta(hours=2),  # no order ships sooner
                    col(Order.status) == "open",
                )
            ).all()
            due = []
            for w in waiting:
                u = _fraction(w.order_id, "ship")
                delay = timedelta(hours=2 + 30 * u) if u < 0.9 else timedelta(hours=40 + 400 * (u - 0.9))
                if w.entered_at + delay <= now:
                    due.append((w, w.entered_at + delay))
            # what is left to ship and the first shipment of every due order, read once for the hour
            # (each order's own rows change only when it ships, which the loop does after reading them)
            ids = [w.order_id for w, _at in due]
            remaining: dict[str, list] = {oid: [] for oid in ids}
            firsts: dict[str, datetime] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for oid, ln, sku, qty in s.execute(
                    sa.select(
                        col(OrderLine.order_id),
                        col(OrderLine.line_no),
                        col(OrderLine.sku),
                        col(OrderLine.qty) - col(OrderLine.shipped) - col(OrderLine.cancelled),
                    )
                    .where(col(OrderLine.order_id).in_(chunk))
                    .order_by(col(OrderLine.order_id), col(OrderLine.line_no))
                ):
                    remaining[oid].append((ln, sku, qty))
                firsts.update(
                    s.execute(
                        sa.select(col(Shipment.order_id), sa.func.max(col(Shipment.shipped_at)))
                        .where(col(Shipment.order_id).in_(chunk))
                        .group_by(Shipment.order_id)
                    ).all()
                )
            # the hour's shipments as one batch, as `import shipments` records them: the same Shipper
            # (and rules) as `ffctl ship`, the store read and written once instead of once per order
            requests = []
            for w, at in due:
                todo = [(ln, sku, q) for ln, sku, q in remaining[w.order_id] if q > 0]
                first = firsts.get(w.order_id)
                # some orders ship in two parts: what the shelf has now, the rest about a day later
                split = first is None and _fraction(w.order_id, "split") < 0.15 and sum(q for *_, q in todo) > 1
                if first is not None:
                    at = first + timedelta(hours=18 + 30 * _fraction(w.order_id, "rest"))
                    if at > now:
                        continue
                picks = []
                for line_no, sku, left in todo:
                    qty = left
                    if split:
                        qty = left // 2
                    elif _fraction(f"{w.order_id}:{line_no}", "pick") < 0.02:
                        qty = left + 1  # one too many picked: a pick error
                        self.bump("pick_errors")
                    if qty:
                        picks.append((line_no, sku, qty))
                requests.append(
                    shipping.ShipmentRequest(
                        w.order_id,
                        max(at, prev),
                        carrier=self.rng.choice(["顺丰", "京东物流", "EMS"]),
                        tracking=f"T{self.rng.randrange(10**9):09d}",
                        picks=picks,
                    )
                )
            if not requests:
                return
            shipper = shipping.Shipper(s, self.cfg, requests, actor="grace")
            for request in requests:
                done = shipper.plan(request)
                if done is not None and done["complete"]:
                    self.bump("shipped")
                elif done is not None:
                    self.bump("split")
            shipper.write()

    def deliver(self, now: datetime) -> None:
        """The carriers' deliveries due by ``now``, recorded together (``stock.deliver_many``)."""
        from sqlmodel import col

        from ffctl.core import stock
        from ffctl.core.models import Order

        with self._session() as s:
            shipped = s.execute(
                sa.select(col(Order.order_id), col(Order.shipped_at)).where(
                    col(Order.status) == "shipped",
                    col(Order.shipped_at) <= now - timedelta(hours=20),  # no delivery takes less
                )
            ).all()
            due = []
            for o in shipped:
                at = o.shipped_at + timedelta(hours=20 + 50 * _fraction(o.order_id, "transit"))
                if at > now:
                    continue
                issue = None
                if _fraction(o.order_id, "issue") < 0.04:
                    issue = ISSUES[int(_fraction(o.order_id, "which") * len(ISSUES))]
                    self.bump("delivery_issues")
                due.append((o.order_id, at, issue))
                self.bump("delivered")
                if _fraction(o.order_id, "return") < 0.03:  # a few come back two days later (SPEC 9.5)
                    self.comebacks[o.order_id] = at + timedelta(days=2)
            stock.deliver_many(s, self.cfg, due, actor="oscar")

    def come_back(self, now: datetime) -> None:
        """The returns that arrived by ``now``: one unit of the order's first shipped line."""
        due = sorted((at, oid) for oid, at in self.comebacks.items() if at <= now)
        if not due:
            return
        from ffctl.core.returns import record_return

        with self._session() as s:
            for at, order_id in due:
                del self.comebacks[order_id]
                line = s.execute(
                    sa.text(
                        "SELECT line_no FROM order_line WHERE order_id = :o AND shipped > 0 ORDER BY line_no LIMIT 1"
                    ),
                    {"o": order_id},
                ).scalar()
                if line is not None:
                    reason = RETURN_REASONS[int(_fraction(order_id, "why") * len(RETURN_REASONS))]
                    record_return(s, self.cfg, order_id, [(line, 1)], reason=reason, at=at, actor="oscar")
                    self.bump("returned")

    def releases(self, now: datetime) -> None:
        from ffctl.core import workflow

        due = [oid for oid, at in self.holds.items() if at <= now]
        if not due:
            return
        with self._session() as s:
            for oid in due:
                workflow.release(s, self.cfg, oid, at=self.holds[oid], actor="alice")
                self.holds[oid] = datetime.max.replace(tzinfo=timezone.utc)

    def sweep(self, now: datetime) -> None:
        from ffctl.core import sla

        report = sla.sweep(self.store, self.cfg, now=now)
        self.bump("sweeps")
        self.bump("breaches_flagged", report.breached)  # what sweeps saw; the breaches are counted at the end
        self.bump("escalations", report.actions.get("escalate", 0))
        self.bump("rule_hits", report.rule_hits)


RETURN_REASONS = ("damaged", "wrong_size", "not_as_described")


def _new_or_empty(directory: Path) -> None:
    """The demo writes into a new or empty folder only: it never mixes with (or overwrites) files."""
    if directory.is_symlink() or (directory.exists() and (not directory.is_dir() or any(directory.iterdir()))):
        raise Conflict(
            _("{path} is not a new or empty folder; the demo writes only into one").format(path=directory),
            hint=_("Pick a new folder with --dir (or leave --dir out for a temporary one)."),
        )
    directory.mkdir(parents=True, exist_ok=True)


def build_demo(
    directory: Path,
    *,
    orders: int = 2000,
    days: int = 30,
    seed: int = 7,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    db_url: str | None = None,
    language: str | None = None,
    refresh_daily: bool = False,
) -> DemoResult:
    """Create a store and config in ``directory`` and run ``days`` days of business into it
    (into the store at ``db_url`` instead when given: the tests run the demo on PostgreSQL too);
    ``language`` goes into the demo's config. The report facts are refreshed once, at the end
    (``refresh_daily``: also at each simulated day's start, as a daily report job would; the tests
    check those incremental refreshes against a rebuild; 31 of them were a fifth of the demo)."""
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    progress = progress or default_progress
    rng = random.Random(seed)
    _new_or_empty(directory)
    from ffctl.core import kpi
    from ffctl.core.config import example_config_text

    config_path = write_config(directory, example_config_text(), language=language)
    cfg = load_config(config_path)
    end = (now or _utc_now()).astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    start = (end - timedelta(days=days)).replace(hour=0)
    url = db_url or cfg.database_url
    assert url is not None  # the example config names its store
    store = Store(url)
    store.upgrade()
    sim = Simulation(store, cfg, directory, rng, progress)

    progress(_("writing and importing master data"))
    files, products, customers = write_masters(directory, rng, start=start, days=days, n_orders=orders)
    for kind in ("suppliers", "products", "customers", "stock", "receipts"):
        sim.import_file(kind, files[kind], start)
    order_rows = plan_orders(rng, products=products, customers=customers, start=start, days=days, n_orders=orders)
    by_day: dict[int, list[list]] = {}
    for row in order_rows:
        created = datetime.fromisoformat(row[8])
        by_day.setdefault((created - start).days, []).append(row)

    qc_rows = []
    t = start
    step = timedelta(hours=1)
    day_index = -1
    while t < end:
        # hourly through the Shanghai working day (00:00-12:00 UTC), every three hours at night
        nxt = min(end, t + (step if t.hour < 12 else 3 * step))
        if (t - start).days != day_index:
            day_index = (t - start).days
            rows = by_day.get(day_index, [])
            if rows:
                private_folder(directory / "orders")
                path = _write_csv(directory / "orders" / f"orders-{day_index + 1:02d}.csv", ORDER_HEADER, rows)
                sim.import_file("orders", path, t)
            qc_rows.extend(_qc_day(rng, day_index, start))
            if refresh_daily:
                kpi.refresh_facts(store, cfg, now=t)
            if day_index < days:
                progress(
                    ngettext(
                        "day {day}/{days}: {lines} order line imported",
                        "day {day}/{days}: {lines} order lines imported",
                        len(rows),
                    ).format(day=day_index + 1, days=days, lines=len(rows))
                )
        sim.step(t, nxt)
        t = nxt
    qc_path = _write_csv(
        directory / "qc.csv",
        ["supplier", "batch_id", "inspected_at", "passed", "total", "promised_at", "received_at", "sku"],
        qc_rows,
    )
    sim.import_file("qc", qc_path, end)
    sim.sweep(end)  # the rules see the QC history
    sim.counts["breaches"] = count_breaches(store, end)
    kpi.refresh_facts(store, cfg, now=end)  # the reports the demo suggests answer at once
    store.dispose()
    return DemoResult(
        directory=directory,
        config_path=config_path,
        db_url=url,
        orders=orders,
        days=days,
        now=end,
        counts=sim.counts,
    )


def count_breaches(store: Store, now: datetime) -> int:
    """Node visits breached by ``now`` (``workflow.breached``: late, whether or not a sweep saw it)."""
    from ffctl.core.models import Task
    from ffctl.core.workflow import breached, stopped_at

    t = Task.__table__.c
    with store.session() as s:
        return s.execute(
            sa.select(sa.func.count())
            .select_from(Task.__table__)
            .where(t.status != "skipped", breached(t.deadline, stopped_at(t), now))
        ).scalar_one()


def _qc_day(rng: random.Random, day: int, start: datetime) -> list[list]:
    """QC results of the day's inbound batches: S03 slips below 95% and S05 delivers late."""
    rows = []
    for n, supplier in enumerate(("S01", "S02", "S03", "S04", "S05", "S06")):
        if (day + n) % 3:
            continue
        total = rng.choice([100, 200, 500])
        rate = 0.90 if supplier == "S03" and day > 10 else rng.uniform(0.96, 1.0)
        promised = start + timedelta(days=day, hours=2)
        delay = timedelta(days=7 + rng.uniform(0, 3)) if supplier == "S05" else timedelta(hours=rng.uniform(-6, 30))
        received = promised + delay
        rows.append(
            [
                supplier,
                f"B{day:02d}-{supplier}",
                (received + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                int(total * rate),
                total,
                promised.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                received.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                "",
            ]
        )
    return rows


def default_progress(_: str) -> None:
    return None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
