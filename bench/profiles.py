"""Benchmark an import profile's row mapping against reading the same file without it.

    python bench/profiles.py                    # 200,000 line items of a Shopify export
    python bench/profiles.py --lines 1000000 --record

`import orders --profile shopify` reads the file through csvio (the reference) and maps each row
(fill-down, skip, columns, dates, line numbers) before the import's own parsing. This times both
over one generated Shopify export (60% of orders with 2-4 line items, the order's fields on its
first row only, 3% refunded), alternating three rounds, and prints the mapping's cost against the
read in the same run, as a ratio and per line. Goal: the mapping adds at most 5 µs a line, a
small share of the import's own ~90 µs a line (the import section of docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Currency,Subtotal,Created at,"
    "Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Shipping Province,Shipping Country\n"
)


def write_export(path: Path, lines: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    written, order = 0, 1000
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        while written < lines:
            order += 1
            items = 1 if rng.random() < 0.4 else rng.randint(2, 4)
            status = "refunded" if rng.random() < 0.03 else "paid"
            when = f"2026-11-{rng.randint(1, 24):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00 +0800"
            for n in range(items):
                sku, qty = f"SKU-{rng.randint(1, 5000):05d}", rng.randint(1, 5)
                if n == 0:
                    f.write(
                        f"#{order},c{rng.randint(1, 20000)}@example.com,{status},{when},unfulfilled,CNY,"
                        f"99.00,{when},{qty},商品 {sku},19.90,{sku},ZJ,CN\n"
                    )
                else:
                    f.write(f"#{order},,,,,,,,{qty},商品 {sku},19.90,{sku},,\n")
                written += 1
    return written


def read_plain(path: Path) -> int:
    from ffctl.core import csvio

    source = csvio.open_csv(path)
    try:
        return sum(1 for _ in source.rows)
    finally:
        source.close()


def read_mapped(path: Path) -> int:
    from ffctl.core import csvio
    from ffctl.core.profiles import BUILTIN, ProfileReader

    source = csvio.open_csv(path)
    try:
        return sum(1 for _ in ProfileReader(BUILTIN["shopify"], source).rows)
    finally:
        source.close()


def timed(fn, path: Path) -> tuple[float, int]:
    started = time.process_time()
    rows = fn(path)
    return time.process_time() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "orders_export.csv"
        lines = write_export(path, args.lines)
        plain, mapped = [], []
        for _ in range(args.rounds):
            seconds, rows_plain = timed(read_plain, path)
            plain.append(seconds)
            seconds, rows_mapped = timed(read_mapped, path)
            mapped.append(seconds)
    load = os.getloadavg()[0]
    best_plain, best_mapped = min(plain), min(mapped)
    ratio = best_mapped / best_plain
    per_line = (best_mapped - best_plain) / lines * 1e6
    lines_out = [
        f"{lines:,} line items ({rows_plain:,} rows read, {rows_mapped:,} kept after skipping refunds), "
        f"best of {args.rounds} alternated rounds, CPU seconds, load average {load:.1f}:",
        f"- reference: read (csvio.open_csv): {best_plain:.2f} s",
        f"- read + shopify profile (fill-down, skip, map, dates, line numbers): {best_mapped:.2f} s "
        f"({ratio:.1f}x the read)",
        f"- the mapping: {per_line:.1f} µs a line (goal <= 5 µs: {'met' if per_line <= 5 else 'not met'})",
    ]
    print("\n".join(lines_out))
    if args.record:
        text = (
            "## Import profiles (`bench/profiles.py`)\n\n"
            f"`python bench/profiles.py --lines {args.lines}` on {time.strftime('%Y-%m-%d')}. "
            + "\n".join(lines_out)
            + "\n"
        )
        print(f"recorded in {record_section('profiles.py', text)}")


if __name__ == "__main__":
    main()
