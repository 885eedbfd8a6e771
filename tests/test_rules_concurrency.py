"""Rules run at once by real processes, on both backends: every hit happens once.

One requisition per SKU, one standing flag per order, one freeze per supplier, and each of
their notifications queued once, however the runs interleave.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import sqlalchemy as sa
from helpers import QC_BAD as BAD
from helpers import RULES_NOW as NOW
from helpers import seed_batches, seed_orders, seed_products, seed_stock, seed_suppliers

from tests.conftest import REPO

NOW_ISO = "2026-03-10T12:00:00Z"
SKUS, ORDERS, SUPPLIERS = 60, 60, 8
# per hit: low_stock -> ivan (email); stuck_in_dispatch -> heidi (email, webhook) + oscar (email); supplier -> ivan
EXPECTED_NOTES = SKUS * 1 + ORDERS * 3 + SUPPLIERS * 1


def seed_everything(store) -> None:
    with store.session(write=True) as s:
        seed_suppliers(s, *[(f"S{i:02d}", True) for i in range(SUPPLIERS)], ("FINE", True))
        seed_products(
            s,
            *[{"sku": f"K{i:04d}", "safety_stock": 10, "supplier": "FINE"} for i in range(SKUS)],
            {"sku": "PLENTY", "safety_stock": 10},
        )
        seed_stock(s, *[(f"K{i:04d}", "WH1", i % 5, 0) for i in range(SKUS)], ("PLENTY", "WH1", 100, 0))
        seed_orders(
            s,
            *[
                {
                    "order_id": f"SO{i:04d}",
                    "node": "dispatch",
                    "sales_rep": "oscar",
                    "entered_at": NOW - timedelta(hours=49 + i % 7),
                }
                for i in range(ORDERS)
            ],
        )
        for i in range(SUPPLIERS):
            seed_batches(s, f"S{i:02d}", [BAD, BAD, BAD])


def counts(store) -> dict:
    queries = {
        "requisitions": "SELECT count(*) FROM requisition",
        "skus": "SELECT count(DISTINCT sku) FROM requisition",
        "flags": "SELECT count(*) FROM order_flag",
        "flagged_orders": "SELECT count(DISTINCT order_id) FROM order_flag",
        "frozen": "SELECT count(*) FROM supplier WHERE NOT inspection_exempt",
        "notifications": "SELECT count(*) FROM notification",
        "drafted_events": "SELECT count(*) FROM event WHERE event = 'requisition_drafted'",
        "flagged_events": "SELECT count(*) FROM event WHERE event = 'flagged'",
        "frozen_events": "SELECT count(*) FROM event WHERE event = 'exemption_frozen'",
        "total_hits": "SELECT sum(total_hits) FROM rule_run",
    }
    with store.session() as s:
        return {k: s.execute(sa.text(q)).scalar() for k, q in queries.items()}


EXPECTED = {
    "requisitions": SKUS,
    "skus": SKUS,
    "flags": ORDERS,
    "flagged_orders": ORDERS,
    "frozen": SUPPLIERS,
    "notifications": EXPECTED_NOTES,
    "drafted_events": SKUS,
    "flagged_events": ORDERS,
    "frozen_events": SUPPLIERS,
    "total_hits": SKUS + ORDERS + SUPPLIERS,
}

# `python -m ffctl ...` started by every process at the same instant (imports done beforehand)
STARTER = textwrap.dedent(
    """
    import runpy, sys, time
    import ffctl.cli, ffctl.core.rules, ffctl.core.store  # import before the start line
    start = float(sys.argv[1])
    sys.argv = ["ffctl"] + sys.argv[2:]
    time.sleep(max(0.0, start - time.time()))
    runpy.run_module("ffctl", run_name="__main__")
    """
)


def _env(ws) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "FFCTL_CONFIG": str(ws.config_path),
            "FFCTL_DB": ws.db_url,
            "FFCTL_NOW": NOW_ISO,
            "FFCTL_USER": "cron",
            "PYTHONPATH": str(REPO),
        }
    )
    env.pop("FFCTL_DEBUG", None)
    return env


def test_concurrent_rules_runs_hit_everything_once(workspace):
    ws = workspace
    store = ws.store()
    seed_everything(store)
    start = time.time() + 3.0  # after every process has imported
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(start), "rules", "run", "--format", "json"],
            env=_env(ws),
            cwd=ws.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outputs.append(json.loads(out))
    assert sum(o["hits"] for o in outputs) == SKUS + ORDERS + SUPPLIERS
    assert sum(o["notifications"] for o in outputs) == EXPECTED_NOTES
    for rule, expected in (("low_stock", SKUS), ("stuck_in_dispatch", ORDERS), ("supplier_quality", SUPPLIERS)):
        assert sum(o["per_rule"][rule] for o in outputs) == expected, rule
    assert counts(store) == EXPECTED
    # and once more, sequentially: nothing new
    again = ws.run("rules", "run", "--format", "json", now="2026-03-10T12:01:00Z")
    assert json.loads(again.stdout)["hits"] == 0
    assert counts(store) == EXPECTED
    store.dispose()


# A run that has written its hits but not yet committed, and a second run started meanwhile: the
# second must wait (SQLite: the write lock; PostgreSQL: the unique index entries and row locks) and
# then add nothing.
HOLDER = textwrap.dedent(
    """
    import sys, time, json, pathlib
    from datetime import datetime
    from ffctl.core.config import load_config
    from ffctl.core.rules import run_rules
    from ffctl.core.store import Store
    url, config, now, ready, hold = sys.argv[1:6]
    store = Store(url)
    with store.session(write=True) as s:
        out = run_rules(s, load_config(config), now=datetime.fromisoformat(now), actor="p", dry_run=False)
        pathlib.Path(ready).write_text("ready")
        time.sleep(float(hold))  # keep the transaction open
    print(json.dumps({"hits": out["hits"], "notifications": out["notifications"], "done": time.time()}))
    """
)


def test_a_run_started_during_an_uncommitted_run_waits_and_adds_nothing(workspace, tmp_path):
    ws = workspace
    store = ws.store()
    seed_everything(store)
    env = _env(ws)
    now = "2026-03-10T12:00:00+00:00"
    first_ready, second_ready = tmp_path / "first", tmp_path / "second"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ws.db_url, str(ws.config_path), now, str(first_ready), "2.0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not first_ready.exists():
        assert first.poll() is None, first.communicate()[1]
        assert time.time() < deadline, "the first run never got going"
        time.sleep(0.05)
    second = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ws.db_url, str(ws.config_path), now, str(second_ready), "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    a, b = json.loads(out1), json.loads(out2)
    assert a["hits"] == SKUS + ORDERS + SUPPLIERS and a["notifications"] == EXPECTED_NOTES
    assert b["hits"] == 0 and b["notifications"] == 0
    assert b["done"] >= a["done"] - 0.5  # it could only finish once the first had committed
    assert counts(store) == EXPECTED
    store.dispose()
