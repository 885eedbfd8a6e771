"""Process-flow facts (SPEC 9.7, issue 24): ``report flow`` and the dashboard's flow panel read
them instead of ranking every node visit of the task history.

- flow_edge: one row per directly-follows step of an order (a visit, then the order's next
  visit; skipped visits left out), with the business time between the two entries, indexed by
  (node, next_node, seconds) so an edge's exact median is an OFFSET into its range.
- flow_path: one row per order with a visit: its nodes in visit order and the nodes of its
  rejected visits (variants, edge counts and rework are counts over these groups).

Derived data, kept by core/kpi.py's refresh_facts (core/flow.py writes them): the next refresh
rebuilds every fact.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_edge",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("next_node", sa.String(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_index("ix_flow_edge_order", "flow_edge", ["order_id"], unique=False)
    op.create_index("ix_flow_edge_seconds", "flow_edge", ["node", "next_node", "seconds", "created_at"], unique=False)
    op.create_table(
        "flow_path",
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("rejects", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_flow_path_groups", "flow_path", ["path", "rejects", "created_at"], unique=False)
    # new facts: the next refresh rebuilds every fact
    op.execute("UPDATE fact_state SET event_id = NULL")


def downgrade() -> None:
    op.drop_index("ix_flow_path_groups", table_name="flow_path")
    op.drop_table("flow_path")
    op.drop_index("ix_flow_edge_seconds", table_name="flow_edge")
    op.drop_index("ix_flow_edge_order", table_name="flow_edge")
    op.drop_table("flow_edge")
    op.execute("UPDATE fact_state SET event_id = NULL")
