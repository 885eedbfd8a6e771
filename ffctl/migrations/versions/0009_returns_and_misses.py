"""Returns and why an order was not perfect (SPEC 9.5).

- return_line: units of an order line that came back, with their reason and time, and the
  warehouse they were restocked in (NULL: not restocked); unique on (order, line, time, reason)
  so that ``import returns`` run twice writes nothing the second time.
- order_fact.units_shipped / units_returned: the return rate's units (derived: the facts'
  version changed, so the next report rebuilds them; SQLite's covering report indexes, which
  hold every counter, are dropped and built again on first use).
- miss_fact: one row per shipped order that is not perfect, with its failed components and its
  primary cause (derived, like order_fact).

Chained on 0008 while 0007 is being written elsewhere (the lead renumbers).

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# visit_fact copies every order counter so the node cut keeps its indexed path (kpi._VISIT_COUNTERS)
_VISIT_SUMS_0007 = ("decided", "within", "auto", "first", "escalations", "reminders", "shipped", "on_time",
                    "delivered", "perfect", "picked", "picked_right", "units", "units_on_time")
_VISIT_NEW = ("units_shipped", "units_returned")


def _visit_sums_index(sums: tuple[str, ...]) -> None:
    op.drop_index("ix_visit_fact_sums", table_name="visit_fact")
    op.create_index("ix_visit_fact_sums", "visit_fact", ["node", "created_at", "seconds", "conf", "alloc", *sums])


def _drop_report_indexes() -> None:
    """SQLite's per-cut covering indexes on order_fact (kpi._ensure_indexes builds them on use)."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for (name,) in bind.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' "
                                            "AND name LIKE 'ix_order_fact_by_%'").fetchall():
            op.execute(f"DROP INDEX {name}")


def upgrade() -> None:
    op.create_table(
        "return_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("returned_at", sa.DateTime(), nullable=False),
        sa.Column("warehouse", sa.String(), nullable=True),
        sa.CheckConstraint("qty > 0", name="ck_return_line_qty_pos"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "line_no", "returned_at", "reason", name="uq_return_line"),
    )
    op.create_table(
        "miss_fact",
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("short", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("wrong_item", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("delivery_issue", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("returned", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cause", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=True),
        sa.Column("role", sa.String(), nullable=True),
        sa.Column("sku", sa.String(), nullable=True),
        sa.Column("supplier", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_miss_fact_created", "miss_fact", ["created_at"])
    _drop_report_indexes()
    op.add_column("order_fact", sa.Column("units_shipped", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("order_fact", sa.Column("units_returned", sa.Integer(), nullable=False, server_default="0"))
    for column in _VISIT_NEW:
        op.add_column("visit_fact", sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    _visit_sums_index(_VISIT_SUMS_0007 + _VISIT_NEW)


def downgrade() -> None:
    _drop_report_indexes()
    _visit_sums_index(_VISIT_SUMS_0007)
    for column in reversed(_VISIT_NEW):
        if op.get_bind().dialect.name == "postgresql":
            op.drop_column("visit_fact", column)
        else:
            op.execute(f"ALTER TABLE visit_fact DROP COLUMN {column}")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("order_fact", "units_returned")
        op.drop_column("order_fact", "units_shipped")
    else:
        op.execute("ALTER TABLE order_fact DROP COLUMN units_returned")
        op.execute("ALTER TABLE order_fact DROP COLUMN units_shipped")
    op.drop_index("ix_miss_fact_created", table_name="miss_fact")
    op.drop_table("miss_fact")
    op.drop_table("return_line")
