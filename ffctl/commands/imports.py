"""``ffctl import KIND FILE``: parse the options, call core.imports, render the report."""

from __future__ import annotations

import sys
from enum import Enum

import typer

from ffctl.i18n import _, ngettext

app = typer.Typer()

KIND_NAMES = (
    "products",
    "customers",
    "suppliers",
    "stock",
    "receipts",
    "orders",
    "shipments",
    "deliveries",
    "returns",
    "qc",
)


class OnError(str, Enum):
    abort = "abort"
    skip = "skip"


@app.command(
    "import",
    help=_(
        "Import a CSV file of KIND: validated, idempotent, in batches of whole orders.\n"
        "\n"
        "Columns may come in any order. Times are ISO 8601, YYYY/MM/DD HH:MM[:SS] or YYYY/MM/DD,\n"
        "in [defaults] timezone when they carry no offset. Re-importing a file adds nothing twice.\n"
        "docs/csv.md lists every column of every kind."
    ),
)
def import_command(
    ctx: typer.Context,
    kind: str = typer.Argument(
        ..., metavar="KIND", help=_("What the file holds: {names}.").format(names=", ".join(KIND_NAMES))
    ),
    file: str | None = typer.Argument(
        None, metavar="FILE", help=_("The CSV file (header row first); - reads stdin. Not with --template.")
    ),
    on_error: OnError = typer.Option(
        OnError.abort,
        "--on-error",
        case_sensitive=False,
        help=_("abort: any bad row and nothing is written. skip: write the good rows, reject the bad."),
    ),
    rejects: str | None = typer.Option(
        None,
        "--rejects",
        metavar="FILE",
        help=_("With --on-error skip: write rejected rows here (the original columns plus error)."),
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help=_("Validate and report what would change; write nothing.")),
    update: bool = typer.Option(
        False,
        "--update",
        help=_("Replace orders that changed since they were imported (not shipped, no stock allocated)."),
    ),
    ignore_unknown: bool = typer.Option(
        False, "--ignore-unknown", help=_("Skip columns ffctl does not use instead of refusing the file.")
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        metavar="NAME",
        help=_("The file's encoding [default: detected: UTF-8, UTF-8 with BOM, GBK/GB18030]."),
    ),
    batch_rows: int = typer.Option(10_000, "--batch-rows", hidden=True, min=1, help=_("Rows per transaction.")),
    delimiter: str | None = typer.Option(
        None,
        "--delimiter",
        metavar="CHAR",
        help=_(
            "What separates the cells: a character, or tab [default: detected on the header: comma, semicolon or tab]."
        ),
    ),
    strict: bool = typer.Option(
        False, "--strict", help=_("Exit 1 when a changed record was left as it is (skipped for want of --update).")
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        metavar="NAME",
        help=_(
            "Orders: the file is another system's export, mapped by a profile: shopify, woocommerce, or "
            "[import_profiles.NAME] in the config (docs/csv.md)."
        ),
    ),
    template: bool = typer.Option(
        False, "--template", help=_("Write KIND's header as CSV to stdout and stop (no FILE).")
    ),
    example: bool = typer.Option(False, "--example", help=_("With --template: three example rows under the header.")),
    backfill: bool = typer.Option(
        False,
        "--backfill",
        help=_(
            "Orders: record each new order's SLA history up to the command clock (at risk, breached, "
            "escalations, auto actions) as applied on import, and notify nobody of it; the next sweep fires "
            "only what falls due later. For going live with an open backlog."
        ),
    ),
) -> None:
    from ffctl.core.errors import FfctlError, UsageError

    if kind not in KIND_NAMES:
        raise UsageError(
            _("unknown import kind {kind!r}: use one of {names}").format(kind=kind, names=", ".join(KIND_NAMES))
        )
    if template or example:
        if not template:
            raise UsageError(_("--example goes with --template"))
        if file is not None:
            raise UsageError(_("--template writes the header to stdout: leave out FILE"))
        _write_template(kind, example=example)
        return
    if file is None:
        raise UsageError(_("give the CSV FILE to import (- reads stdin), or --template for its header"))

    from ffctl.commands._common import AppState
    from ffctl.core.imports import import_file

    st = AppState.of(ctx)
    cfg = st.config()
    mapping = None
    if profile is not None:
        from ffctl.core.profiles import resolve

        mapping = resolve(cfg, profile, kind)
    store = st.store()
    with _progress_bar(file) as progress:
        report = import_file(
            store,
            cfg,
            kind,
            file,
            now=st.now(),
            actor=st.user,
            on_error=on_error.value,
            dry_run=dry_run,
            update=update,
            ignore_unknown=ignore_unknown,
            encoding=encoding,
            rejects=rejects,
            progress=progress,
            batch_rows=batch_rows,
            delimiter=delimiter,
            backfill=backfill,
            profile=mapping,
        )
    _render(report, strict=strict)
    if report.aborted:
        raise FfctlError(
            ngettext(
                "{count} error in {path}: nothing was imported",
                "{count} errors in {path}: nothing was imported",
                report.error_count,
            ).format(count=f"{report.error_count:,}", path=report.path),
            hint=_("Fix the rows listed above, or pass --on-error skip --rejects FILE to import the good rows."),
        )
    if report.error_count and not report.dry_run:
        if report.rejects_path:
            text = ngettext(
                "{count} row rejected; it is in {path}",
                "{count} rows rejected; they are in {path}",
                report.rejected_rows,
            )
        else:
            text = ngettext("{count} row rejected", "{count} rows rejected", report.rejected_rows)
        raise FfctlError(
            text.format(count=f"{report.rejected_rows:,}", path=report.rejects_path),
            hint=None if report.rejects_path else _("Pass --rejects FILE to save them with their errors."),
        )
    if report.error_count:
        raise FfctlError(
            ngettext("{count} error found (dry run)", "{count} errors found (dry run)", report.error_count).format(
                count=f"{report.error_count:,}"
            )
        )
    if strict and report.skipped:
        raise FfctlError(
            ngettext(
                "--strict: {count} changed {unit} was skipped",
                "--strict: {count} changed {units} were skipped",
                report.skipped,
            ).format(count=f"{report.skipped:,}", unit=report.unit_one, units=report.unit),
            hint=_("Pass --update to replace them, or import them under new keys."),
        )


def _write_template(kind: str, *, example: bool) -> None:
    import csv

    from ffctl.core.imports import template

    writer = csv.writer(sys.stdout, lineterminator="\n")
    for row in template(kind, example=example):
        writer.writerow(row)


def _rows(n: int) -> str:
    return ngettext("{count} row", "{count} rows", n).format(count=f"{n:,}")


def _render(report, *, strict: bool = False) -> None:
    from ffctl.commands._output import message, warn
    from ffctl.core.csvio import delimiter_name, encoding_label

    if report.encoding_detected and encoding_label(report.encoding) != "UTF-8":
        message(
            _("Note: read {path} as {encoding} (detected; --encoding NAME overrides).").format(
                path=report.path, encoding=encoding_label(report.encoding)
            )
        )
    if report.delimiter_detected and report.delimiter != ",":
        message(
            _("Note: the cells of {path} are separated by {delimiter} (detected; --delimiter overrides).").format(
                path=report.path, delimiter=delimiter_name(report.delimiter)
            )
        )
    for error in report.errors:
        message(str(error))
    if report.error_count > len(report.errors):
        more = report.error_count - len(report.errors)
        message(ngettext("... and {count} more error", "... and {count} more errors", more).format(count=f"{more:,}"))
    for note in report.notes:
        message(_("Note: {note}").format(note=note))
    if report.skipped:
        shown = ", ".join(report.changed[:10]) + (" ..." if report.skipped > 10 else "")
        text = ngettext(
            "{count} {unit} changed since it was imported and was left as it is ({keys}); pass --update to replace it",
            "{count} {units} changed since they were imported and were left as they are ({keys}); "
            "pass --update to replace them",
            report.skipped,
        ).format(count=f"{report.skipped:,}", unit=report.unit_one, units=report.unit, keys=shown)
        warn(text)
    if report.aborted:
        message(
            _("{path} ({encoding}): {rows} read; nothing imported.").format(
                path=report.path, encoding=report.encoding, rows=_rows(report.read)
            )
        )
        return
    text = _(
        "{path} ({encoding}): {rows} read in {seconds}s; {unit}: {new} new, {updated} updated, "
        "{unchanged} unchanged, {skipped} skipped; {rejected} rejected."
    ).format(
        path=report.path,
        encoding=report.encoding,
        rows=_rows(report.read),
        seconds=f"{report.seconds:.1f}",
        unit=report.unit,
        new=f"{report.written:,}",
        updated=f"{report.updated:,}",
        unchanged=f"{report.unchanged:,}",
        skipped=f"{report.skipped:,}",
        rejected=_rows(report.rejected_rows),
    )
    message(_("Dry run: {summary}").format(summary=text) if report.dry_run else text)
    if report.skipped:
        message(
            _("--strict: the import fails because of the skipped ones.")
            if strict
            else _("Skipped records do not make the import fail; pass --strict to exit 1 when there are any.")
        )
    if report.rejects_path and report.rejects_written:
        message(
            ngettext(
                "{count} rejected row was written to {path} (fix it and import that file as it is).",
                "{count} rejected rows were written to {path} (fix them and import that file as it is).",
                report.rejects_written,
            ).format(count=f"{report.rejects_written:,}", path=report.rejects_path)
        )
        if report.rejects_formulas:
            warn(
                ngettext(
                    "{count} row in {path} has a cell starting with =, +, - or @, kept as it was so the file imports "
                    "as it is; a spreadsheet may run it as a formula: open the file as text (docs/csv.md)",
                    "{count} rows in {path} have a cell starting with =, +, - or @, kept as they were so the file "
                    "imports as it is; a spreadsheet may run them as formulas: open the file as text (docs/csv.md)",
                    report.rejects_formulas,
                ).format(count=f"{report.rejects_formulas:,}", path=report.rejects_path)
            )


class _progress_bar:
    """A Rich progress bar on stderr when it is a terminal; a no-op callback otherwise."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.bar = None
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:>10,} " + _("rows")),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            console=Console(stderr=True),
        )
        self.bar.start()
        return self.update

    def update(self, phase: str, done: int, total, rows: int) -> None:
        bar = self.bar
        task = self.tasks.get(phase)
        if task is None:
            for earlier in self.tasks.values():  # a new phase: the earlier ones are done
                finished = bar.tasks[earlier]
                bar.update(earlier, total=finished.total or 1, completed=finished.total or 1)
                bar.stop_task(earlier)
            task = self.tasks[phase] = bar.add_task(phase, total=total, rows=rows)
        bar.update(task, completed=done, total=total, rows=rows)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _rate_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Rows per second of a phase, from its rows and its elapsed time as it renders: real while
        reading stdin (no total) and while checking (one step), blank until there is a figure."""

        def render(self, task) -> Text:
            elapsed = task.elapsed or 0.0
            rows = task.fields.get("rows", 0)
            if not rows or elapsed <= 0 or (elapsed < 0.2 and task.stop_time is None):
                return Text(" " * 14)  # too early for a figure (a finished phase has its final one)
            return Text(_("{rate:>8,.0f} rows/s").format(rate=rows / elapsed))

    return RateColumn


def _RateColumn():  # noqa: N802 - built on first use: rich is imported only with a progress bar
    return _rate_column()()
