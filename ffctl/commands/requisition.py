"""ffctl requisition list / approve / reject: purchase requisitions drafted by the rules."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer

from ffctl.commands._common import AppState, format_option

app = typer.Typer(help="Purchase requisitions drafted by the rules.", no_args_is_help=True)


class Status(str, Enum):
    draft = "draft"
    approved = "approved"
    rejected = "rejected"


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Optional[Status] = typer.Option(None, "--status", help="Only draft, approved or rejected ones.",
                                            case_sensitive=False),
    fmt=format_option(),
) -> None:
    """Requisitions, oldest first, with the numbers that caused each one."""
    from ffctl.commands._output import Column, render
    from ffctl.core.requisitions import list_requisitions

    st = AppState.of(ctx)
    with st.store().session() as s:
        rows = list_requisitions(s, status=status.value if status else None)
    columns = [
        Column("id", justify="right"), Column("sku"), Column("qty", justify="right"), Column("supplier"),
        Column("status"), Column("created_at", "created"), Column("reason"),
        Column("decided_by", "decided by"), Column("decided_at", "decided"),
    ]
    render(rows, columns, fmt, tz=st.tz, empty="No requisitions" + (f" with status {status.value}." if status else "."))


def _decide(ctx: typer.Context, req_id: int, approve: bool, reason: str | None) -> None:
    from ffctl.commands._output import message
    from ffctl.core.requisitions import decide_requisition

    st = AppState.of(ctx)
    with st.store().session(write=True) as s:
        row = decide_requisition(s, req_id, approve=approve, at=st.now(), actor=st.user, reason=reason)
    supplier = f" from {row['supplier']}" if row["supplier"] else ""
    message(f"Requisition #{row['id']} {row['status']}: {row['qty']} x {row['sku']}{supplier}.")


@app.command()
def approve(ctx: typer.Context, req_id: int = typer.Argument(..., metavar="ID", help="The requisition id.")) -> None:
    """Approve a draft requisition (only drafts can be decided)."""
    _decide(ctx, req_id, True, None)


@app.command()
def reject(
    ctx: typer.Context,
    req_id: int = typer.Argument(..., metavar="ID", help="The requisition id."),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why (kept in the audit trail)."),
) -> None:
    """Reject a draft requisition.

    While the SKU stays below safety stock the rule drafts a new one at its next run; set the
    product's safety_stock to 0 to stop reordering it.
    """
    _decide(ctx, req_id, False, reason)
