"""ffctl supplier list / show: QC pass rates, delays, inspection exemption and why it was frozen."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("Supplier QC pass rates, delays and inspection exemption."), no_args_is_help=True)


def _rate(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _days(value) -> str:
    return "-" if value is None else f"{value:+.1f}d"


@app.command("list", help=_("Every supplier: pass rate over the last 3 QC batches, average delay, exemption."))
def list_(ctx: typer.Context, fmt=format_option()) -> None:
    from ffctl.commands._output import Column, render
    from ffctl.core.suppliers import list_suppliers, supplier_window

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        rows = list_suppliers(s, cfg)
    window = supplier_window(cfg)
    columns = [
        Column("supplier"),
        Column("name"),
        Column("inspection_exempt", N_("exempt")),
        Column("qc_pass_rate_last3", N_("pass rate (last 3)"), justify="right", show=_rate),
        Column("avg_delay_days", _("avg delay (last {window})").format(window=window), justify="right", show=_days),
        Column("exempt_frozen_at", N_("frozen")),
    ]
    render(rows, columns, fmt, tz=st.tz, empty=_("No suppliers (ffctl import suppliers FILE)."))


@app.command(help=_("A supplier's numbers, its recent QC batches, and why its exemption was frozen."))
def show(
    ctx: typer.Context,
    supplier: str = typer.Argument(..., help=_("The supplier code.")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import render_object
    from ffctl.core.suppliers import show_supplier

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        obj = show_supplier(s, cfg, supplier)
    render_object(obj, fmt, tz=st.tz, table=lambda o: _show_table(o, st.tz))


def _show_table(o: dict, tz: str) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from ffctl.commands._output import get_console, safe, table_cell

    console = get_console()
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row(_("name"), safe(o["name"]))
    if o["inspection_exempt"]:
        head.add_row(_("inspection"), "[green]" + _("exempt") + "[/]")
    elif o["exempt_frozen_at"]:
        head.add_row(
            _("inspection"),
            _("[bold red]exemption frozen[/] at {at} ({tz})").format(at=table_cell(o["exempt_frozen_at"], tz), tz=tz),
        )
        head.add_row(_("why"), safe(o["exempt_frozen_reason"] or "-"))
    else:
        head.add_row(_("inspection"), _("not exempt (every batch is inspected)"))
    head.add_row(_("pass rate"), _("{rate} over the last 3 batches").format(rate=_rate(o["qc_pass_rate_last3"])))
    head.add_row(
        _("avg delay"),
        f"{_days(o['avg_delay_days'])} "
        + ngettext("over the last batch", "over the last {n} batches", o["window_batches"]).format(
            n=o["window_batches"]
        ),
    )
    console.print(Panel(head, title=_("supplier {safe}").format(safe=safe(o["supplier"])), expand=False))

    if o["batches"]:
        batches = Table(title=_("recent QC batches (newest first)"), header_style="bold")
        for name, justify in (
            (N_("batch"), "left"),
            (N_("sku"), "left"),
            (N_("inspected"), "left"),
            (N_("passed"), "right"),
            (N_("total"), "right"),
            (N_("pass rate"), "right"),
            (N_("promised"), "left"),
            (N_("received"), "left"),
            (N_("delay"), "right"),
        ):
            batches.add_column(_(name), justify=justify)
        for b in o["batches"]:
            batches.add_row(
                safe(b["batch_id"]),
                safe(b["sku"] or "-"),
                table_cell(b["inspected_at"], tz),
                str(b["passed"]),
                str(b["total"]),
                _rate(b["pass_rate"]),
                table_cell(b["promised_at"], tz),
                table_cell(b["received_at"], tz),
                _days(b["delay_days"]),
            )
        console.print(batches)
    else:
        console.print(_("No QC batches yet (ffctl import qc FILE)."))
    if o["history"]:
        history = Table(title=_("history"), header_style="bold")
        for name in ("at", "event", "by", "detail"):
            history.add_column(name, overflow="fold")
        for e in o["history"]:
            history.add_row(table_cell(e["at"], tz), safe(e["event"]), safe(e["actor"]), safe(e["detail"] or ""))
        console.print(history)
