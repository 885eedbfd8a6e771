"""Content hashes of a demo store, to check a change left `ffctl demo`'s results alone.

    /usr/bin/time ffctl --now 2026-11-20T12:00:00+08:00 demo --dir /tmp/demo-a
    python bench/demo_hash.py /tmp/demo-a/ffctl.db     # then compare with a base run's lines

Each line: a table, its row count and a hash of its rows sorted, ids left out (a batch may number
rows differently; a task is named by its order, node and entry time).
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys

QUERIES = {
    "events": "SELECT at, actor, event, order_id, node, subject, detail, "
    "(SELECT node || ':' || entered_at FROM task t WHERE t.id = e.task_id) FROM event e",
    "tasks": "SELECT order_id, workflow, node, seq, status, owner, entered_at, sla_seconds, risk_at, deadline, "
    "sla_state, held_at, paused_seconds, next_step, escalation_level, next_action_at, completed_at, "
    "completed_by, outcome, note FROM task",
    "shiplines": "SELECT shipment_id, order_id, line_no, sku, qty FROM shipment_line",
    "shipments": "SELECT * FROM shipment",
    "orders": "SELECT * FROM orders",
    "order_line": "SELECT * FROM order_line",
    "stock": "SELECT * FROM stock",
    "stock_move": "SELECT sku, warehouse, delta, kind, reason, ref, actor, at FROM stock_move",
    "assignees": "SELECT t.order_id, t.node, t.entered_at, a.role, a.reason, a.added_at "
    "FROM task_assignee a JOIN task t ON t.id = a.task_id",
}


def main() -> None:
    db = sqlite3.connect(sys.argv[1])
    for name, sql in QUERIES.items():
        rows = sorted(repr(r) for r in db.execute(sql))
        print(name, len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16])


if __name__ == "__main__":
    main()
