"""Report facts for the line cuts and the pilot cut (issue 25, issue 20).

- group_fact: one row per order and product or category it touches, with a copy of the order's
  facts and its lines' pick and return counters, indexed by (cut, group, time), so
  ``report kpi --by product`` / ``--by category`` read narrow rows instead of joining every
  order line.
- fact_product: the product categories the facts were written with (a changed category rewrites
  the orders with a line of the product, as fact_customer does for a customer's region).
- visit_fact.due: the order's promised date on its first visit of a node (the node cut's fill
  rate reads visit_fact instead of joining every task), in the covering sums index.
- order_fact.workflow: the workflow the order was routed to, so ``report kpi --by workflow``
  takes the indexed path of the other single-valued cuts.

Derived data: the upgrade forgets the last refresh, so the first report after it rebuilds every
fact (FACTS_VERSION changed too).

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_COPIES = ("shipped", "on_time", "delivered", "perfect", "picked", "picked_right", "decided", "within",
           "units", "units_on_time", "units_shipped", "units_returned")
_LINES = ("line_picked", "line_picked_right", "line_shipped", "line_returned")
_VISIT_SUMS = ("decided", "within", "auto", "first", "escalations", "reminders", "shipped", "on_time", "delivered",
               "perfect", "picked", "picked_right", "units", "units_on_time", "units_shipped", "units_returned")


def _visit_sums_index(*due: str) -> None:
    op.drop_index("ix_visit_fact_sums", table_name="visit_fact")
    op.create_index("ix_visit_fact_sums", "visit_fact", ["node", "created_at", "seconds", "conf", "alloc", *due,
                                                         *_VISIT_SUMS])


def upgrade() -> None:
    op.create_table(
        "group_fact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cut", sa.String(), nullable=False),
        sa.Column("g", sa.String(), nullable=True),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("member", sa.Integer(), nullable=False),
        sa.Column("conf", sa.Float(), nullable=True),
        sa.Column("alloc", sa.Float(), nullable=True),
        sa.Column("cycle", sa.Float(), nullable=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _COPIES),
        sa.Column("due", sa.Date(), nullable=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in _LINES),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_group_fact_order", "group_fact", ["order_id"])
    op.create_index("ix_group_fact_sums", "group_fact",
                    ["cut", "g", "conf", "created_at", "alloc", "cycle", "due", "member", *_COPIES, *_LINES])
    op.create_index("ix_group_fact_alloc", "group_fact", ["cut", "g", "alloc", "created_at"])
    op.create_index("ix_group_fact_cycle", "group_fact", ["cut", "g", "cycle", "created_at"])
    op.create_table(
        "fact_product",
        sa.Column("sku", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("sku"),
    )
    op.add_column("order_fact", sa.Column("workflow", sa.String(), nullable=True))
    op.add_column("visit_fact", sa.Column("due", sa.Date(), nullable=True))
    _visit_sums_index("due")
    op.execute("UPDATE fact_state SET event_id = NULL")


def downgrade() -> None:
    bind = op.get_bind()
    _visit_sums_index()
    if bind.dialect.name == "sqlite":
        op.execute("ALTER TABLE visit_fact DROP COLUMN due")
    else:
        op.drop_column("visit_fact", "due")
    if bind.dialect.name == "sqlite":  # kpi._ensure_indexes' lazily built indexes of the workflow cut
        for (name,) in bind.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' "
                                            "AND name LIKE 'ix_order_fact_by_workflow_%'").fetchall():
            op.execute(f"DROP INDEX {name}")
        op.execute("ALTER TABLE order_fact DROP COLUMN workflow")
    else:
        op.drop_column("order_fact", "workflow")
    op.drop_table("fact_product")
    for name in ("ix_group_fact_cycle", "ix_group_fact_alloc", "ix_group_fact_sums", "ix_group_fact_order"):
        op.drop_index(name, table_name="group_fact")
    op.drop_table("group_fact")
    op.execute("UPDATE fact_state SET event_id = NULL")
