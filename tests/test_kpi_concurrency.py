"""Reports refreshing their facts while another process moves orders, on both backends.

Two reporter processes refresh the facts and read the KPI report in a loop while a writer
process completes workflow nodes, one transaction per order. No process fails, and when all
are done the facts one more refresh keeps are exactly what a rebuild from scratch writes
(on PostgreSQL this exercises the high-water mark read under ``LOCK TABLE event IN SHARE MODE``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from tests.conftest import REPO

BASE = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
ORDERS = 40

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta, timezone
    from ffctl.core import kpi, workflow
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    role, url, config, done = sys.argv[1:5]
    cfg = load_config(config)
    store = Store(url)
    base = datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc)
    now = base + timedelta(days=3)
    if role == "writer":
        for step in range(3):  # credit_review, then tech_confirm (or allocation), one order at a time
            for i in range(ORDERS_N):
                with store.session(write=True) as s:
                    task = workflow.current_task(s, f"K{i:03d}")
                    if task is not None and cfg.nodes[task.node].auto is None:
                        # after every order was created (+0..39 min): a timeline never runs backwards
                        workflow.complete(s, cfg, f"K{i:03d}", at=base + timedelta(minutes=60 + 10 * step + i % 7),
                                          actor="admin")
        open(done, "w").close()
    else:
        import os
        runs = 0
        while not os.path.exists(done) or runs < 2:
            kpi.refresh_facts(store, cfg, cuts=(None, "region"), now=now)
            with store.session() as s:
                kpi.kpi_report(s, cfg, now=now, by="region")
            runs += 1
        print(runs)
    """
).replace("ORDERS_N", str(ORDERS))


def test_reports_refresh_while_orders_move(workspace, tmp_path):
    from ffctl.core import workflow
    from ffctl.core.config import load_config
    from ffctl.core.kpi import refresh_facts
    from ffctl.core.models import Customer, Order, OrderLine, Product
    from ffctl.core.store import Store

    assert workspace.run("init").exit_code == 0
    cfg = load_config(workspace.config_path)
    store = Store(workspace.db_url)
    with store.session(write=True) as s:
        s.execute(sa.insert(Product.__table__), [{"sku": "A", "name": "A", "custom": False, "safety_stock": 0}])
        s.execute(
            sa.insert(Customer.__table__),
            [{"customer": f"C{i}", "name": f"客户{i}", "region": r} for i, r in enumerate(["华东", "华南", "华北"])],
        )
        orders = [
            {
                "order_id": f"K{i:03d}",
                "customer": f"C{i % 3}",
                "created_at": BASE + timedelta(minutes=i),
                "status": "open",
                "priority": 0,
            }
            for i in range(ORDERS)
        ]
        s.execute(sa.insert(Order.__table__), orders)
        s.execute(
            sa.insert(OrderLine.__table__),
            [{"order_id": o["order_id"], "line_no": 1, "sku": "A", "qty": 1} for o in orders],
        )
        workflow.enter_orders(s, cfg, workflow.order_facts(s, [o["order_id"] for o in orders]), actor="importer")
    assert refresh_facts(store, cfg, now=BASE)["mode"] == "full"

    script = tmp_path / "facts_worker.py"
    script.write_text(SCRIPT, encoding="utf-8")
    done = tmp_path / "writer.done"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args = [str(workspace.db_url), str(workspace.config_path), str(done)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), role, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("reader", "writer", "reader")
    ]
    deadline = time.monotonic() + 240
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert p.returncode == 0, err
        outs.append(out)
    assert all(int(out) >= 2 for out in (outs[0], outs[2]))

    refresh_facts(store, cfg, now=BASE)
    with store.session() as s:
        kept = s.execute(sa.text("SELECT * FROM order_fact ORDER BY order_id")).all()
        kept_nodes = s.execute(sa.text("SELECT * FROM node_fact ORDER BY task_id")).all()
        done_tasks = s.execute(sa.text("SELECT COUNT(*) FROM task WHERE status = 'done'")).scalar_one()
    assert done_tasks >= ORDERS  # the writer did move the orders (credit review; allocation is automatic)
    with store.session(write=True) as s:
        s.execute(sa.text("UPDATE fact_state SET event_id = NULL"))
    assert refresh_facts(store, cfg, now=BASE)["mode"] == "full"
    with store.session() as s:
        assert s.execute(sa.text("SELECT * FROM order_fact ORDER BY order_id")).all() == kept
        assert s.execute(sa.text("SELECT * FROM node_fact ORDER BY task_id")).all() == kept_nodes
    store.dispose()
