"""`order list` and `task list` over a large store: a page, its count when cut, and the searches.

    python bench/lists.py                                   # 1M orders, both backends
    python bench/lists.py --orders 100000 --backend sqlite --no-doc

The store is bench/rules.py's (built with SQL alone: 1M orders, 4% open, one task each, 10,000
customers). Each list is timed as the command's core call (``list_orders`` / ``list_tasks``) at
its default ``--limit 200``; the reference, in the same run, is one ``SELECT count(*) FROM
orders``. A list that is cut pays a second query that counts its matches (the stderr note
"Showing 200 of N"); ``--limit 0``-sized lists do not. Wall-clock medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time

import rules as built  # bench/rules.py: the store's loader (bench/ is on sys.path when run)
import sqlalchemy as sa
from _perfdoc import record_section

from ffctl.core.config import load_config
from ffctl.core.inbox import list_tasks
from ffctl.core.orders import list_orders
from ffctl.core.store import Store

CASES = (
    ("order list (every order: a page + its count)", "orders", {}),
    ("order list --status open", "orders", {"status": "open"}),
    ("order list --customer C1234", "orders", {"customer": "C1234"}),
    ("order list --search 'customer 1234' (name)", "orders", {"search": "customer 1234"}),
    ("order list --search SO99999 (order id)", "orders", {"search": "SO99999"}),
    ("order list --search nothing-matches", "orders", {"search": "nothing-matches"}),
    ("task list --all (every open task)", "tasks", {}),
    ("task list --all --breached", "tasks", {"breached": True}),
)


NOTES = (
    "A page reads `--limit` + 1 rows; only when the extra row comes back is a second query run, and it counts "
    "the orders (or open tasks) alone, without the customer and task joins the page needs. `--search` is the "
    "union of two index-driven sets: order ids that contain the text, read off the primary key's index (never "
    "the orders' rows; plain LIKE on SQLite, which already ignores ASCII case, ILIKE on PostgreSQL), and the "
    "orders of customers whose id or name contains it (the customer table, then `ix_orders_customer`). "
    "A piece of text inside a key cannot use a B-tree, so the id side reads the whole key index; that is "
    "what the three searches cost alike.\n"
)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), out


def bench_backend(url: str, orders: int, repeat: int) -> list[str]:
    store = Store(url)
    store.upgrade()
    built.load(store, orders, 50_000)
    cfg = load_config(built.REPO / "config.example.toml")

    def count() -> int:
        with store.session() as s:
            return s.execute(sa.text("SELECT count(*) FROM orders")).scalar()

    def run(kind: str, kw: dict):
        with store.session() as s:
            if kind == "orders":
                return list_orders(s, cfg, built.NOW, **kw)
            return list_tasks(s, cfg, built.NOW, **kw)

    count()
    reference, _ = timed(count, repeat)
    lines = [f"  {'SELECT count(*) FROM orders (reference)':<46}{reference:8.3f} s"]
    for label, kind, kw in CASES:
        run(kind, kw)  # warm
        secs, (rows, total) = timed(lambda kind=kind, kw=kw: run(kind, kw), repeat)
        total = total["total"] if isinstance(total, dict) else total
        lines.append(f"  {label:<46}{secs:8.3f} s {secs / reference:7.1f}x   {len(rows):>4} shown of {total:,}")
    store.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args()
    body = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            body += ["SQLite"] + bench_backend(f"sqlite:///{tmp}/bench.db", args.orders, args.repeat) + [""]
            print("\n".join(body), flush=True)
    if args.backend in ("postgresql", "both"):
        url, drop = built.pg_database()
        try:
            lines = ["PostgreSQL"] + bench_backend(url, args.orders, args.repeat)
        finally:
            drop()
        body += lines
        print("\n".join(lines), flush=True)
    if args.no_doc:
        return
    command = (
        "python bench/lists.py"
        + (f" --orders {args.orders}" if args.orders != 1_000_000 else "")
        + (f" --backend {args.backend}" if args.backend != "both" else "")
    )
    record_section(
        "lists.py",
        (
            "## Lists over a large store (`bench/lists.py`)\n\n"
            f"`{command}` on {platform.python_implementation()} {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')} (a shared 2-core machine; wall-clock medians of {args.repeat}). "
            f"bench/rules.py's store: {args.orders:,} orders (4% open, one task each), 10,000 customers. Each list at "
            "its default `--limit 200`; a cut list also counts its matches for 'Showing 200 of N'.\n\n"
            "```\n" + "\n".join(body).rstrip() + "\n```\n\n" + NOTES
        ),
    )
    print("recorded in docs/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
