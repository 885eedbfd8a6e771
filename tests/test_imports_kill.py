"""A killed import (kill -9 mid-file) leaves no partial order; rerunning completes it, no duplicates.

A real `python -m ffctl import orders` subprocess writes a generated file in small batches; it
is SIGKILLed once some batches have committed. The store then holds only whole orders (every
line of each, one open task each), and the same command run again imports the rest: every
order once, every line once, one `created` event per order.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
from helpers import IMPORT_CUSTOMERS as CUSTOMERS
from helpers import IMPORT_PRODUCTS as PRODUCTS
from helpers import IMPORT_SUPPLIERS as SUPPLIERS
from helpers import ok, run

pytestmark = pytest.mark.slow


def orders_file(path, n_orders: int, seed: int = 3) -> dict[str, list[tuple[int, str, int]]]:
    """A file whose orders have 1-4 lines; one in ten has its last line moved far down the file."""
    rnd = random.Random(seed)
    expected: dict[str, list[tuple[int, str, int]]] = {}
    rows, strays = [], []
    for i in range(n_orders):
        oid = f"K{i:06d}"
        lines = [(n, rnd.choice(["A1", "A2", "A3"]), rnd.randint(1, 9)) for n in range(1, rnd.randint(1, 4) + 1)]
        expected[oid] = lines
        customer = rnd.choice(["C1", "C2"])
        out = [f"{oid},{n},{customer},{sku},{qty},2026/11/2{i % 5} 09:{i % 60:02d}" for n, sku, qty in lines]
        if len(out) > 1 and i % 10 == 0:
            strays.append(out.pop())
        rows.extend(out)
        if strays and rnd.random() < 0.05:
            rows.append(strays.pop(0))
    rows.extend(strays)
    path.write_text("order_id,line_no,customer,sku,qty,created_at\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return expected


def store_state(ws):
    store = ws.store()
    try:
        with store.session() as s:
            lines = s.execute(sa.text("SELECT order_id, line_no, sku, qty FROM order_line")).all()
            orders = s.execute(sa.text("SELECT order_id FROM orders")).scalars().all()
            tasks = dict(
                s.execute(sa.text("SELECT order_id, count(*) FROM task WHERE status = 'open' GROUP BY order_id")).all()
            )
            created = dict(
                s.execute(
                    sa.text("SELECT order_id, count(*) FROM event WHERE event = 'created' GROUP BY order_id")
                ).all()
            )
    finally:
        store.dispose()
    by_order: dict[str, list] = {}
    for oid, n, sku, qty in lines:
        by_order.setdefault(oid, []).append((n, sku, qty))
    return set(orders), {k: sorted(v) for k, v in by_order.items()}, tasks, created


def count_orders(ws) -> int:
    store = ws.store()
    try:
        with store.session() as s:
            return s.execute(sa.text("SELECT count(*) FROM orders")).scalar()
    except Exception:  # noqa: BLE001 - the database may be busy for a moment
        return 0
    finally:
        store.dispose()


def test_kill_9_mid_import_leaves_whole_orders_and_a_rerun_completes(workspace):
    ws = workspace
    ok(run(ws, "suppliers", ws.write("s.csv", SUPPLIERS)))
    ok(run(ws, "products", ws.write("p.csv", PRODUCTS)))
    ok(run(ws, "customers", ws.write("c.csv", CUSTOMERS)))
    path = ws.path / "orders.csv"
    expected = orders_file(path, 12_000)
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(ws.config_path),
        "FFCTL_DB": ws.db_url,
        "FFCTL_USER": "importer",
        "FFCTL_NOW": "2026-11-25T10:00:00+08:00",
    }
    cmd = [sys.executable, "-m", "ffctl", "import", "orders", str(path), "--batch-rows", "300"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    killed_at = 0
    while time.monotonic() < deadline and proc.poll() is None:
        killed_at = count_orders(ws)
        if killed_at >= 600:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the import finished before it was killed: {proc.stderr.read()!r}"

    orders, lines, tasks, created = store_state(ws)
    assert 0 < len(orders) < len(expected)
    for oid in orders:  # whole orders only, each with its open task and one `created` event
        assert lines.get(oid) == sorted(expected[oid]), oid
        assert tasks.get(oid) == 1 and created.get(oid) == 1, oid
    assert set(lines) == orders

    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert f"orders: {len(expected) - len(orders):,} new, 0 updated, {len(orders):,} unchanged" in r.stderr
    orders, lines, tasks, created = store_state(ws)
    assert orders == set(expected)
    assert lines == {oid: sorted(v) for oid, v in expected.items()}
    assert set(tasks.values()) == {1} and len(tasks) == len(expected)
    assert set(created.values()) == {1} and len(created) == len(expected)


def test_two_imports_of_one_file_at_once_write_each_order_once(workspace):
    ws = workspace
    ok(run(ws, "suppliers", ws.write("s.csv", SUPPLIERS)))
    ok(run(ws, "products", ws.write("p.csv", PRODUCTS)))
    ok(run(ws, "customers", ws.write("c.csv", CUSTOMERS)))
    path = ws.path / "orders.csv"
    expected = orders_file(path, 3_000, seed=5)
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(ws.config_path),
        "FFCTL_DB": ws.db_url,
        "FFCTL_USER": "importer",
        "FFCTL_NOW": "2026-11-25T10:00:00+08:00",
    }
    cmd = [sys.executable, "-m", "ffctl", "import", "orders", str(path), "--batch-rows", "200"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    new = [int(out.split("orders: ", 1)[1].split(" new", 1)[0].replace(",", "")) for out in outputs]
    assert sum(new) == len(expected), outputs  # between them, each order was new exactly once
    orders, lines, tasks, created = store_state(ws)
    assert orders == set(expected)
    assert lines == {oid: sorted(v) for oid, v in expected.items()}
    assert set(tasks.values()) == {1} and set(created.values()) == {1}
