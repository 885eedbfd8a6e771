"""ffctl stock show / atp / receive / adjust."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("Stock per warehouse, available-to-promise, receipts, counts."), no_args_is_help=True)


def _available_text(value) -> str:
    return f"[bold red]{value}[/]" if isinstance(value, int) and value <= 0 else str(value)


@app.command(help=_("On hand, allocated, available, inbound and safety stock, per SKU and warehouse."))
def show(
    ctx: typer.Context,
    sku: str | None = typer.Argument(None, help=_("One SKU [default: every SKU with stock or receipts].")),
    warehouse: str | None = typer.Option(None, "--warehouse", "-w", help=_("Only this warehouse.")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, render
    from ffctl.core.stock import stock_rows

    st = AppState.of(ctx)
    with st.store().session() as s:
        rows = stock_rows(s, sku, warehouse)
    columns = [
        Column("sku"),
        Column("warehouse"),
        Column("on_hand", N_("on hand"), justify="right"),
        Column("allocated", justify="right"),
        Column("available", justify="right", show=_available_text),
        Column("inbound", justify="right"),
        Column("safety_stock", N_("safety stock"), justify="right"),
    ]
    what = _(" for {sku}").format(sku=sku) if sku else ""
    render(rows, columns, fmt, tz=st.tz, empty=_("No stock recorded{what}.").format(what=what))


@app.command(
    help=_(
        "Time-phased available-to-promise and the earliest date QTY can ship.\n"
        "\n"
        "Today's figure is on hand minus allocated minus what open orders still need (unallocated);\n"
        "each open receipt adds its quantity on its expected date (an overdue receipt counts today)."
    )
)
def atp(
    ctx: typer.Context,
    sku: str = typer.Argument(..., help=_("The SKU.")),
    qty: int | None = typer.Option(None, "--qty", "-q", min=1, help=_("Quantity to ship [default: 1].")),
    warehouse: str | None = typer.Option(None, "--warehouse", "-w", help=_("Only this warehouse's supply.")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import render_object
    from ffctl.core.stock import atp as atp_of

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        result = atp_of(s, sku, qty, now=st.now(), tz=cfg.timezone, warehouse=warehouse)
    render_object(result, fmt, tz=st.tz, table=_atp_table)


def _atp_table(result: dict) -> None:
    from rich.table import Table

    from ffctl.commands._output import get_console, safe

    console = get_console()
    table = Table(title=_("available to promise: {safe}").format(safe=safe(result["sku"])), header_style="bold")
    table.add_column(_("date"))
    table.add_column(_("available"), justify="right")
    for row in result["schedule"]:
        table.add_row(row["date"].isoformat(), _available_text(row["available"]))
    console.print(table)
    when = result["earliest_date"]
    console.print(
        _("{qty} can ship on {isoformat}").format(qty=result["qty"], isoformat=when.isoformat())
        if when
        else _("{qty}: no known supply covers it (no date)").format(qty=result["qty"]),
        highlight=False,
    )


@app.command(help=_("Receive an expected receipt: its quantities move from inbound to on hand."))
def receive(
    ctx: typer.Context,
    receipt_id: str = typer.Argument(..., help=_("The receipt id (all its open lines are received).")),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.stock import receive as receive_one

    st = AppState.of(ctx)
    with st.store().session(write=True) as s:
        result = receive_one(s, receipt_id, at=st.now(), actor=st.user, tz=st.tz)
    lines = ", ".join(f"{ln['sku']} {ln['qty']} into {ln['warehouse']}" for ln in result["lines"])
    message(
        ngettext(
            "Received {receipt}: {n} unit ({lines}).", "Received {receipt}: {n} units ({lines}).", result["units"]
        ).format(receipt=receipt_id, n=result["units"], lines=lines)
    )
    message(_("Orders waiting for this stock get it on the next `ffctl allocate`."))


@app.command(
    context_settings={"ignore_unknown_options": True},
    help=_("Correct on hand by DELTA after a count; refused below zero or below what is allocated."),
)
def adjust(
    ctx: typer.Context,
    sku: str = typer.Argument(..., help=_("The SKU.")),
    warehouse: str = typer.Argument(..., help=_("The warehouse.")),
    delta: int = typer.Argument(..., help=_("Units to add (positive) or take away (negative, e.g. -3).")),
    reason: str = typer.Option(
        ..., "--reason", "-r", help=_("Why (counted, damaged, found...): recorded with the change.")
    ),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.stock import adjust as adjust_one

    st = AppState.of(ctx)
    with st.store().session(write=True) as s:
        r = adjust_one(s, sku, warehouse, delta, reason=reason, at=st.now(), actor=st.user)
    message(
        _(
            "{sku} in {warehouse}: on hand {on_hand_before} -> {on_hand} ({delta:+d}); {allocated} "
            "allocated, {available} available."
        ).format(
            sku=sku,
            warehouse=warehouse,
            on_hand_before=r["on_hand_before"],
            on_hand=r["on_hand"],
            delta=delta,
            allocated=r["allocated"],
            available=r["available"],
        )
    )
