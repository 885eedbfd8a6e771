"""``ffctl import KIND FILE``: parse the options, call core.imports, render the report."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Optional

import typer

app = typer.Typer()

KIND_NAMES = ("products", "customers", "suppliers", "stock", "receipts", "orders", "shipments", "deliveries", "qc")


class OnError(str, Enum):
    abort = "abort"
    skip = "skip"


@app.command("import")
def import_command(
    ctx: typer.Context,
    kind: str = typer.Argument(..., metavar="KIND", help=f"What the file holds: {', '.join(KIND_NAMES)}."),
    file: str = typer.Argument(..., metavar="FILE", help="The CSV file (header row first); - reads stdin."),
    on_error: OnError = typer.Option(
        OnError.abort, "--on-error", case_sensitive=False,
        help="abort: any bad row and nothing is written. skip: write the good rows, reject the bad.",
    ),
    rejects: Optional[str] = typer.Option(
        None, "--rejects", metavar="FILE",
        help="With --on-error skip: write rejected rows here (the original columns plus error).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and report what would change; write nothing."),
    update: bool = typer.Option(False, "--update", help="Replace orders that changed since they were imported (not shipped, no stock allocated)."),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help="Skip columns ffctl does not use instead of refusing the file."),
    encoding: Optional[str] = typer.Option(
        None, "--encoding", metavar="NAME", help="The file's encoding [default: detected: UTF-8, UTF-8 with BOM, GBK/GB18030]."
    ),
    batch_rows: int = typer.Option(10_000, "--batch-rows", hidden=True, min=1, help="Rows per transaction."),
) -> None:
    """Import a CSV file of KIND: validated, idempotent, in batches of whole orders.

    Columns may come in any order. Times are ISO 8601, YYYY/MM/DD HH:MM[:SS] or YYYY/MM/DD,
    in [defaults] timezone when they carry no offset. Re-importing a file adds nothing twice.
    """
    from ffctl.commands._common import AppState
    from ffctl.core.errors import FfctlError, UsageError
    from ffctl.core.imports import KINDS, import_file

    if kind not in KINDS:
        raise UsageError(f"unknown import kind {kind!r}: use one of {', '.join(KINDS)}")
    st = AppState.of(ctx)
    cfg = st.config()
    store = st.store()
    with _progress_bar(file) as progress:
        report = import_file(
            store, cfg, kind, file, now=st.now(), actor=st.user, on_error=on_error.value, dry_run=dry_run,
            update=update, ignore_unknown=ignore_unknown, encoding=encoding, rejects=rejects,
            progress=progress, batch_rows=batch_rows,
        )
    _render(report)
    if report.aborted:
        raise FfctlError(
            f"{report.error_count:,} error{'s' if report.error_count != 1 else ''} in {report.path}: nothing was imported",
            hint="Fix the rows listed above, or pass --on-error skip --rejects FILE to import the good rows.",
        )
    if report.error_count and not report.dry_run:
        where = f"; they are in {report.rejects_path}" if report.rejects_path else ""
        raise FfctlError(
            f"{report.rejected_rows:,} row{'s' if report.rejected_rows != 1 else ''} rejected{where}",
            hint=None if report.rejects_path else "Pass --rejects FILE to save them with their errors.",
        )
    if report.error_count:
        raise FfctlError(f"{report.error_count} error{'s' if report.error_count != 1 else ''} found (dry run)")


def _render(report) -> None:
    from ffctl.commands._output import message, warn

    for error in report.errors:
        message(str(error))
    if report.error_count > len(report.errors):
        message(f"... and {report.error_count - len(report.errors)} more error(s)")
    for note in report.notes:
        message(f"Note: {note}")
    if report.skipped:
        shown = ", ".join(report.changed[:10]) + (" ..." if report.skipped > 10 else "")
        warn(f"{report.skipped} {report.unit} changed since they were imported and were left as they are "
             f"({shown}); pass --update to replace them")
    verb = "would be" if report.dry_run else "were"
    if report.aborted:
        message(f"{report.path} ({report.encoding}): {report.read:,} rows read; nothing imported.")
        return
    prefix = "Dry run: " if report.dry_run else ""
    message(
        f"{prefix}{report.path} ({report.encoding}): {report.read:,} rows read in {report.seconds:.1f}s; "
        f"{report.unit}: {report.written:,} new, {report.updated:,} updated, {report.unchanged:,} unchanged, "
        f"{report.skipped:,} skipped; {report.rejected_rows:,} rows rejected."
    )
    if report.rejects_path and report.rejects_written:
        message(f"{report.rejects_written:,} rejected rows {verb} written to {report.rejects_path} (fix them and "
                "import that file as it is).")


class _progress_bar:
    """A Rich progress bar on stderr when it is a terminal; a no-op callback otherwise."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.progress import (
            BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
        )

        from ffctl.commands._output import message

        message("")  # make sure the stderr console exists
        self.bar = Progress(
            TextColumn("{task.description:<9}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rows]:>10,} rows  {task.fields[rate]:>8,.0f} rows/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            transient=True, redirect_stdout=False, redirect_stderr=False,
        )
        self.bar.start()
        return self.update

    def update(self, phase: str, done: int, total, rows: int) -> None:
        bar = self.bar
        task = self.tasks.get(phase)
        if task is None:
            for earlier in self.tasks.values():  # a new phase: the earlier ones are done
                finished = bar.tasks[earlier]
                took, count = finished.elapsed or 0.0, finished.fields.get("rows", 0)
                bar.update(earlier, total=finished.total or 1, completed=finished.total or 1,
                           rate=count / took if finished.total and took > 0 else 0.0)
                bar.stop_task(earlier)
            task = self.tasks[phase] = bar.add_task(phase, total=total, rows=rows, rate=0.0)
        elapsed = bar.tasks[task].elapsed or 0.0
        rate = rows / elapsed if total is not None and elapsed > 0.5 else 0.0
        bar.update(task, completed=done, total=total, rows=rows, rate=rate)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
