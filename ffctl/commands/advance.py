"""ffctl advance: complete or reject an order's current manual node."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState
from ffctl.i18n import _, ngettext

app = typer.Typer(help=_("Complete (or reject) an order's current manual node."))


@app.command(
    help=_(
        "Complete each order's current manual node (or reject it back to the previous one).\n"
        "\n"
        "Allowed for members of the node's owner role, of roles it was escalated to, and of admin.\n"
        "Each order is its own transaction: one refused order leaves the others done, and is named;\n"
        "the exit code is 1 if any was refused."
    )
)
def advance(
    ctx: typer.Context,
    order_ids: list[str] = typer.Argument(..., metavar="ORDER_ID", help=_("One or more order ids.")),
    node: str | None = typer.Option(None, "--node", help=_("Guard: refuse unless the order is at this node.")),
    reject: bool = typer.Option(False, "--reject", help=_("Send the order back to the previous node instead.")),
    reason: str | None = typer.Option(None, "--reason", help=_("Why it is rejected (required with --reject).")),
    note: str | None = typer.Option(None, "--note", help=_("A note recorded with the completion.")),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core import orders
    from ffctl.core.errors import FfctlError, UsageError

    if reject and not (reason and reason.strip()):
        raise UsageError(_("--reject needs --reason: say why the order goes back"))
    if reason and not reject:
        raise UsageError(_("--reason goes with --reject; use --note to comment on a completion"))
    st = AppState.of(ctx)
    cfg = st.config()
    orders.check_node(cfg, node)
    store = st.store()
    ids = list(dict.fromkeys(order_ids))
    refused: list[str] = []
    exit_code = 0
    for order_id in ids:
        try:
            with store.session(write=True) as s:
                # act on the node this command saw: if someone moves the order first, refuse instead of
                # completing the next node by accident
                seen = node if node is not None else orders.current_node(s, order_id)
                result = orders.advance(
                    s, cfg, order_id, at=st.now(), actor=st.user, node=seen, note=note, reject=reject, reason=reason
                )
        except FfctlError as exc:
            if len(ids) == 1:
                raise
            refused.append(order_id)
            exit_code = max(exit_code, exc.exit_code)
            message(_("Error: {message}").format(message=exc.message))
            if exc.hint:
                message(_("Hint: {hint}").format(hint=exc.hint))
            continue
        message(orders.advance_message(result))
    if refused:
        message(
            ngettext("Refused {n} of {total} order: {ids}", "Refused {n} of {total} orders: {ids}", len(ids)).format(
                n=len(refused), total=len(ids), ids=", ".join(refused)
            )
        )
        raise typer.Exit(exit_code)
