"""ffctl return ORDER_ID --line LINE_NO:QTY --reason R [--at T] [--restock WAREHOUSE]."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState
from ffctl.i18n import _, ngettext

app = typer.Typer(help=_("Record units of a shipped order that came back, with the reason."))


@app.command(
    name="return",
    help=_(
        "Record a return: at most what each line shipped less what came back already; the order's\n"
        "timeline gets a `returned` event; with --restock the units go back on hand (a stock move)."
    ),
)
def return_(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
    line: list[str] = typer.Option(
        ..., "--line", metavar="LINE_NO:QTY", help=_("QTY units of order line LINE_NO came back (repeatable).")
    ),
    reason: str = typer.Option(..., "--reason", help=_("Why they came back, e.g. damaged or wrong_size.")),
    at: str | None = typer.Option(
        None, "--at", metavar="TIME", help=_("When they came back (default: the command clock).")
    ),
    restock: str | None = typer.Option(
        None, "--restock", metavar="WAREHOUSE", help=_("Put the units back on hand in this warehouse.")
    ),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.clock import parse_time
    from ffctl.core.errors import UsageError
    from ffctl.core.returns import record_return
    from ffctl.core.shipping import parse_line_spec

    st = AppState.of(ctx)
    cfg = st.config()
    lines = [parse_line_spec(x) for x in line]
    when = st.now()
    if at is not None:
        try:
            when = parse_time(at, cfg.timezone)
        except ValueError as exc:
            raise UsageError(_("--at {text!r}: {why}").format(text=at, why=exc)) from None
    with st.store().session(write=True) as s:
        done = record_return(s, cfg, order_id, lines, reason=reason, at=when, actor=st.user, restock=restock)
    if done is None:
        message(_("{order}: this return was already recorded; nothing changed.").format(order=order_id))
        return
    units = ngettext("{n} unit", "{n} units", done["units"]).format(n=done["units"])
    if restock:
        message(
            _("{order}: {units} returned ({reason}), restocked in {wh}.").format(
                order=order_id, units=units, reason=done["reason"], wh=restock
            )
        )
    else:
        message(_("{order}: {units} returned ({reason}).").format(order=order_id, units=units, reason=done["reason"]))
