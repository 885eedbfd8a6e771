"""`ffctl advance` for many orders: one process per order (as before) against one process for all.

    python bench/advance_batch.py [--orders 20] [--record]

A fresh SQLite store from `ffctl init` in a temp folder, the orders imported at credit_review;
half are advanced one `ffctl advance ID` process each, the other half by one
`ffctl advance ID ID ...`. Both halves run as fresh processes from this interpreter's bin
directory, so the figure is the ratio of the two per-order times in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

MASTERS = {
    "customers": "customer,name\nC-1,上海宏达机械厂\n",
    "products": "sku,name\nSKU-1,六角螺栓 M8\n",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20, help="orders per half")
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()
    n = args.orders
    ffctl = shutil.which("ffctl", path=str(Path(sys.executable).parent)) or shutil.which("ffctl")
    if not ffctl:
        sys.exit("needs ffctl on PATH: pip install -e .")
    folder = Path(tempfile.mkdtemp(prefix="ffctl-bench-advance-"))
    try:

        def run(*args: str) -> None:
            subprocess.run([ffctl, "--as", "alice", *args], cwd=folder, check=True, capture_output=True)

        run("init")
        for kind, text in MASTERS.items():
            (folder / f"{kind}.csv").write_text(text, encoding="utf-8")
            run("import", kind, f"{kind}.csv")
        ids = [f"SO{i:06d}" for i in range(2 * n)]
        lines = "".join(f"{oid},1,C-1,SKU-1,1\n" for oid in ids)
        (folder / "orders.csv").write_text("order_id,line_no,customer,sku,qty\n" + lines, encoding="utf-8")
        run("import", "orders", "orders.csv")
        start = time.perf_counter()
        for oid in ids[:n]:
            run("advance", oid)
        each = (time.perf_counter() - start) / n
        start = time.perf_counter()
        run("advance", *ids[n:])
        batch = (time.perf_counter() - start) / n
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = (
        f"{n} processes, one order each   {each * 1000:7.1f} ms per order (reference)\n"
        f"1 process, {n} orders           {batch * 1000:7.1f} ms per order\n"
        f"ratio                          {batch / each:7.2f}x"
    )
    print(text)
    if args.record:
        body = (
            f"## Advancing many orders (`bench/advance_batch.py`)\n\n"
            f"`python bench/advance_batch.py --orders {n}` on SQLite, {time.strftime('%Y-%m-%d')}, on the shared\n"
            f"2-core machine (load average {os.getloadavg()[0]:.1f} while other sessions ran their tests, so the\n"
            f"absolute times are inflated; the ratio is measured in the same run). Most of a lone\n"
            f"`ffctl advance` is start-up: importing SQLAlchemy and the models, reading the config.\n\n"
            f"```\n{text}\n```\n"
        )
        print(f"recorded in {record_section('advance_batch.py', body)}")


if __name__ == "__main__":
    main()
