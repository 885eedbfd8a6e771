"""CSV imports (SPEC §4): every kind through one pipeline.

    file --parse+validate--> staging --cross-row checks--> [plan] --batches of whole records--> store

1. Stage. Each row is parsed and validated once (precompiled cell parsers; SKUs, customers and
   suppliers looked up in dicts loaded at the start) and written with its line number, raw cells
   and parsed values to a staging table keyed ``(group, sub, seq)``: the rows of one record (an
   order's lines, a shipment's pick lines) sort together wherever they are in the file. The
   staging table lives in SQLite's private temporary database, on disk, so memory stays bounded;
   the OS removes it even when the import is killed.
2. Check across rows, in SQL on the staging table: duplicate keys (an order's line twice, a SKU
   twice) and rows of one record that disagree (two customers for one order). A record with
   any bad row is rejected whole: an order's lines are all in or all out.
3. Plan, when the store itself may refuse a record (a shipment for an order that cannot ship,
   `--update` of a shipped order, a count below what is allocated) and the mode is abort, or
   for --dry-run: the records are classified (or applied in a transaction that is rolled
   back), so that "nothing is written" holds before the first batch commits. Shipments
   (``abort_in_one``) skip it: in abort mode every batch is written in one transaction, rolled
   back if the store refused any record (one pass instead of two).
4. Write in batches of whole records, each batch one transaction. Re-importing classifies each
   record against the store (new / unchanged / changed, one lookup per batch), so a killed
   import leaves whole batches and rerunning the same command writes only the rest. Orders on
   PostgreSQL are written by a second thread while the next batch is prepared
   (``_run_pipelined``). Tables the import grew by a large share are then analyzed.

Kinds are rows of ``KINDS``: their columns, cell parsers, key, and a handler that classifies and
writes a batch of records. Adding a kind is adding a row.

    pipeline.py  reading, staging, cross-row checks, batching, the PostgreSQL writer thread, the report
    orders.py    orders: classify against the store, plan rows and workflow entry, insert or replace
    kinds.py     master data, stock counts, receipts, shipments, deliveries, qc; the KINDS table
"""

from ffctl.core.imports.kinds import DELIVERY_ISSUES, EXAMPLES, KINDS, template
from ffctl.core.imports.orders import ORDER_COLUMNS, ORDER_OPTIONAL, ORDER_SHARED, Orders, order_hash, stored_orders
from ffctl.core.imports.pipeline import (
    BATCH_ROWS,
    MAX_ERRORS_SHOWN,
    NEW,
    REJECTED,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    Context,
    Handler,
    ImportReport,
    Kind,
    Record,
    RowError,
    _context,
    compile_row_parser,
    import_file,
    refresh_statistics,
    stored_spellings,
)

__all__ = [
    "BATCH_ROWS",
    "DELIVERY_ISSUES",
    "EXAMPLES",
    "KINDS",
    "MAX_ERRORS_SHOWN",
    "NEW",
    "ORDER_COLUMNS",
    "ORDER_OPTIONAL",
    "ORDER_SHARED",
    "REJECTED",
    "SKIPPED",
    "UNCHANGED",
    "UPDATED",
    "Context",
    "Handler",
    "ImportReport",
    "Kind",
    "Orders",
    "Record",
    "RowError",
    "_context",
    "compile_row_parser",
    "import_file",
    "order_hash",
    "refresh_statistics",
    "stored_orders",
    "stored_spellings",
    "template",
]
