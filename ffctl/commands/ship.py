"""ffctl ship ORDER_ID / ffctl deliver ORDER_ID."""

from __future__ import annotations

from typing import Optional

import typer

from ffctl.commands._common import AppState

ship_app = typer.Typer(help="Record that an order has shipped.")
deliver_app = typer.Typer(help="Record that an order was delivered, with any issue.")


@ship_app.command()
def ship(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help="The order id."),
    carrier: Optional[str] = typer.Option(None, "--carrier", help="Carrier name."),
    tracking: Optional[str] = typer.Option(None, "--tracking", help="Tracking number."),
) -> None:
    """Record a shipment at the command clock: consumes the order's reservations and completes
    its dispatch (auto = "ship") node."""
    from ffctl.commands._output import message
    from ffctl.core.stock import ship as ship_one

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session(write=True) as s:
        done = ship_one(s, cfg, order_id, at=st.now(), actor=st.user, carrier=carrier, tracking=tracking,
                        manual=True)
    if not done:
        message(f"{order_id} was already recorded as shipped with these details; nothing changed.")
        return
    via = ", ".join(x for x in (carrier, tracking and f"tracking {tracking}") if x)
    message(f"{order_id}: shipped{f' ({via})' if via else ''}.")


@deliver_app.command()
def deliver(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help="The order id."),
    issue: Optional[str] = typer.Option(
        None, "--issue", metavar="ISSUE",
        help="A delivery problem: wrong_item, short, late, damaged, wrong_address or documents.",
    ),
) -> None:
    """Record a delivery at the command clock, with the issue if there was one."""
    from ffctl.commands._output import message
    from ffctl.core.stock import deliver as deliver_one

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session(write=True) as s:
        done = deliver_one(s, cfg, order_id, at=st.now(), actor=st.user, issue=issue)
    if not done:
        message(f"{order_id} was already recorded as delivered with these details; nothing changed.")
        return
    message(f"{order_id}: delivered{f' with an issue: {issue}' if issue else ''}.")
