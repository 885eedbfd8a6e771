"""``ix_pick_line_order``: an order's pick lines by key. The incremental refresh of the report
facts reads the changed orders' pick lines (order_fact's pick counters, group_fact's line sums,
miss_fact's pick errors); without it each of those statements scanned every pick line.

Revision ID: 0012
Revises: 0011
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pick_line_order", "pick_line", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pick_line_order", table_name="pick_line")
