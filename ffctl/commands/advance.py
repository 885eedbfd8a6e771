"""ffctl advance: complete or reject an order's current manual node."""

from __future__ import annotations

from typing import Optional

import typer

from ffctl.commands._common import AppState

app = typer.Typer(help="Complete (or reject) an order's current manual node.")


@app.command()
def advance(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help="The order id."),
    node: Optional[str] = typer.Option(None, "--node", help="Guard: refuse unless the order is at this node."),
    reject: bool = typer.Option(False, "--reject", help="Send the order back to the previous node instead."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why it is rejected (required with --reject)."),
    note: Optional[str] = typer.Option(None, "--note", help="A note recorded with the completion."),
) -> None:
    """Complete the order's current manual node (or reject it back to the previous one).

    Allowed for members of the node's owner role, of roles it was escalated to, and of admin.
    """
    from ffctl.commands._output import message
    from ffctl.core import orders
    from ffctl.core.errors import UsageError

    if reject and not (reason and reason.strip()):
        raise UsageError("--reject needs --reason: say why the order goes back")
    if reason and not reject:
        raise UsageError("--reason goes with --reject; use --note to comment on a completion")
    st = AppState.of(ctx)
    cfg = st.config()
    orders.check_node(cfg, node)
    store = st.store()
    if node is None:
        # act on the node this command saw: if someone moves the order first, refuse instead of
        # completing the next node by accident
        with store.session() as s:
            node = orders.current_node(s, order_id)
    with store.session(write=True) as s:
        result = orders.advance(s, cfg, order_id, at=st.now(), actor=st.user, node=node, note=note,
                                reject=reject, reason=reason)
    message(orders.advance_message(result))
