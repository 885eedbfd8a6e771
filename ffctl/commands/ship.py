"""ffctl ship ORDER_ID / ffctl deliver ORDER_ID."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState
from ffctl.i18n import _, ngettext

ship_app = typer.Typer(help=_("Record that an order has shipped."))
deliver_app = typer.Typer(help=_("Record that an order was delivered, with any issue."))


@ship_app.command(
    help=_(
        "Record a shipment at the command clock: what left comes off on hand and the reservations;\n"
        'once every unit is shipped or cancelled, the dispatch (auto = "ship") node completes.'
    )
)
def ship(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
    line: list[str] | None = typer.Option(
        None,
        "--line",
        metavar="LINE_NO:QTY",
        help=_("Ship QTY units of order line LINE_NO (repeatable); without it, every allocated, unshipped unit."),
    ),
    carrier: str | None = typer.Option(None, "--carrier", help=_("Carrier name.")),
    tracking: str | None = typer.Option(None, "--tracking", help=_("Tracking number.")),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.shipping import parse_line_spec
    from ffctl.core.shipping import ship as ship_one

    st = AppState.of(ctx)
    lines = [parse_line_spec(x) for x in line] if line else None
    cfg = st.config()
    with st.store().session(write=True) as s:
        done = ship_one(
            s, cfg, order_id, at=st.now(), actor=st.user, carrier=carrier, tracking=tracking, lines=lines, manual=True
        )
    if done is None:
        message(
            _("{order} was already recorded as shipped with these details; nothing changed.").format(order=order_id)
        )
        return
    via = ", ".join(x for x in (carrier, tracking and _("tracking {t}").format(t=tracking)) if x)
    units = ngettext("{n} unit", "{n} units", done["units"]).format(n=done["units"])
    if done["complete"]:
        message(
            _("{order}: shipped{via}: {units} in shipment {id}.").format(
                order=order_id, via=f" ({via})" if via else "", units=units, id=done["shipment_id"]
            )
        )
    else:
        left = ngettext("{n} unit", "{n} units", done["still_to_ship"]).format(n=done["still_to_ship"])
        message(
            _("{order}: partially shipped{via}: {units} in shipment {id}, {left} still to ship.").format(
                order=order_id, via=f" ({via})" if via else "", units=units, id=done["shipment_id"], left=left
            )
        )


@deliver_app.command(help=_("Record a delivery at the command clock, with the issue if there was one."))
def deliver(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
    issue: str | None = typer.Option(
        None,
        "--issue",
        metavar="ISSUE",
        help=_("A delivery problem: wrong_item, short, late, damaged, wrong_address or documents."),
    ),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.stock import deliver as deliver_one

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session(write=True) as s:
        done = deliver_one(s, cfg, order_id, at=st.now(), actor=st.user, issue=issue)
    if not done:
        message(
            _("{order_id} was already recorded as delivered with these details; nothing changed.").format(
                order_id=order_id
            )
        )
        return
    message(
        _("{order_id}: delivered with an issue: {issue}.").format(order_id=order_id, issue=issue)
        if issue
        else _("{order_id}: delivered.").format(order_id=order_id)
    )
