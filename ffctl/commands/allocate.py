"""ffctl allocate [ORDER_ID...] [--all] [--dry-run]."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("Reserve stock for orders waiting at the allocation node."))

TABLE_ROWS = 50  # a terminal table shows this many orders; json/csv show all

RESULT_STYLES = {"allocated": "green", "partial": "yellow", "backordered": "red"}


def _result_text(value) -> str:
    from ffctl.commands._output import safe

    style = RESULT_STYLES.get(value)
    return f"[{style}]{value}[/]" if style else safe(value or "-")


def _order_row(o: dict) -> dict:
    return {
        k: o[k]
        for k in (
            "order_id",
            "priority",
            "promised_ship_date",
            "result",
            "allocated_now",
            "backordered",
            "backorder_atp",
            "next_node",
        )
    }


@app.command(
    help=_(
        "Reserve stock for orders at the allocation node: priority first, then promised date, then age.\n"
        "\n"
        "Each line takes what is available, from one warehouse that can fill it when there is one,\n"
        "else from the warehouses with the most first. A fully allocated order completes the node;\n"
        "a partial one stays (backordered, with the date available-to-promise covers it) and is\n"
        "topped up by a later run. Never reserves more than is on hand."
    )
)
def allocate(
    ctx: typer.Context,
    order_ids: list[str] | None = typer.Argument(None, metavar="[ORDER_ID]...", help=_("Orders to allocate.")),
    all_orders: bool = typer.Option(False, "--all", help=_("Every order waiting at an allocation node.")),
    dry_run: bool = typer.Option(False, "--dry-run", help=_("Show the plan; write nothing.")),
    fmt=format_option(),
) -> None:
    import shutil
    import sys
    import tempfile

    from ffctl.commands._output import Column, RowStream, message, render, resolve_format
    from ffctl.core.errors import UsageError
    from ffctl.core.stock import allocate as run

    if order_ids and all_orders:
        raise UsageError(_("give ORDER_IDs or --all, not both"))
    st = AppState.of(ctx)
    cfg = st.config()
    kind = resolve_format(fmt)
    columns = [
        Column("order_id", N_("order")),
        Column("priority", justify="right"),
        Column("promised_ship_date", N_("promised")),
        Column("result", show=_result_text),
        Column("allocated_now", N_("reserved now"), justify="right"),
        Column("backordered", justify="right"),
        Column("backorder_atp", N_("backorder ATP")),
        Column("next_node", N_("now at")),
    ]
    # Rows are spooled (to disk past 8 MB) and printed once the transaction has committed, so a
    # big --all run keeps bounded memory and never prints a plan that was then rolled back.
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+", encoding="utf-8", newline="")
    stream = (
        None
        if kind == "table"
        else RowStream(columns, kind, tz=st.tz, out=spool, envelope=("orders", {"dry_run": dry_run}))
    )
    table_rows: list[dict] = []
    count = [0]

    def take(rows: list[dict]) -> None:
        for o in rows:
            if stream is not None:
                stream.write(o)  # JSON: the whole order, with its lines
            elif len(table_rows) < TABLE_ROWS:
                table_rows.append(_order_row(o))
            count[0] += 1

    with spool:
        with st.store().session(write=not dry_run) as s:
            result = run(
                s,
                cfg,
                order_ids or None,
                all_orders=all_orders,
                dry_run=dry_run,
                at=st.now(),
                actor=st.user,
                tz=cfg.timezone,
                on_orders=take,
                details=True if kind == "json" else "orders",
            )
        if stream is not None:
            stream.close({k: result[k] for k in ("skipped", "after_clock", "summary")})
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout)
        else:
            render(
                table_rows,
                columns,
                kind,
                tz=st.tz,
                title=_("allocation plan (dry run)") if dry_run else None,
                empty=_("No orders are waiting for allocation."),
            )
            if count[0] > len(table_rows):
                message(
                    ngettext(
                        "Showing the first {shown:,} of {total:,} order (--format csv or json shows all).",
                        "Showing the first {shown:,} of {total:,} orders (--format csv or json shows all).",
                        count[0],
                    ).format(shown=len(table_rows), total=count[0])
                )
    sm = result["summary"]
    verb = _("Would reserve") if dry_run else _("Reserved")
    units = ngettext("{n:,} unit", "{n:,} units", sm["units_allocated"]).format(n=sm["units_allocated"])
    orders = ngettext("{n:,} order", "{n:,} orders", sm["orders"]).format(n=sm["orders"])
    short = ngettext("{n:,} unit", "{n:,} units", sm["units_backordered"]).format(n=sm["units_backordered"])
    message(
        _(
            "{verb} {units} for {orders}: {completed} fully allocated{value}, {partial} partial, "
            "{backordered} waiting for stock; {short} backordered."
        ).format(
            verb=verb,
            units=units,
            orders=orders,
            completed=sm["completed"],
            value=_(" (node completed)") if not dry_run and sm["completed"] else "",
            partial=sm["partial"],
            backordered=sm["backordered"],
            short=short,
        )
        + (_(" Dry run: nothing was written.") if dry_run else "")
    )
    if result["skipped"]:
        skipped = result["skipped"]
        message(
            ngettext(
                "{n:,} order was being changed by another process and was left for the next run: {ids}",
                "{n:,} orders were being changed by another process and were left for the next run: {ids}",
                len(skipped),
            ).format(n=len(skipped), ids=", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
        )
    if result["after_clock"]:
        from ffctl.commands._output import table_cell

        later = result["after_clock"]
        shown = ", ".join(
            _("{order} ({event} at {at})").format(
                order=o["order_id"], event=o["latest_event"], at=table_cell(o["latest_at"], st.tz)
            )
            for o in later[:5]
        )
        message(
            ngettext(
                "{n:,} order has events later than the clock {now} and was left as it is (its timeline "
                "cannot run backwards): {orders}",
                "{n:,} orders have events later than the clock {now} and "
                "were left as they are (their timelines cannot run backwards): {orders}",
                len(later),
            ).format(n=len(later), now=table_cell(st.now(), st.tz), orders=shown + (" ..." if len(later) > 5 else ""))
        )
