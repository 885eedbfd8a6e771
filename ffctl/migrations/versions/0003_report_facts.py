"""Report facts: one row per order (order_fact), the node visits that count for the bottleneck
(node_fact), and what they were last refreshed from (fact_state, fact_customer). Derived data,
kept by core/kpi.py's refresh_facts; the first report after this upgrade builds them.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fact_customer',
    sa.Column('customer', sa.String(), nullable=False),
    sa.Column('region', sa.String(), nullable=True),
    sa.PrimaryKeyConstraint('customer')
    )
    op.create_table('fact_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=True),
    sa.Column('fingerprint', sa.String(), nullable=True),
    sa.Column('refreshed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('node_fact',
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(), nullable=False),
    sa.Column('node', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('breached', sa.Integer(), nullable=False),
    sa.Column('deadline', sa.DateTime(), nullable=True),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('task_id')
    )
    with op.batch_alter_table('node_fact', schema=None) as batch_op:
        batch_op.create_index('ix_node_fact_order', ['order_id'], unique=False)

    op.create_table('order_fact',
    sa.Column('order_id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('customer', sa.String(), nullable=False),
    sa.Column('region', sa.String(), nullable=True),
    sa.Column('channel', sa.String(), nullable=True),
    sa.Column('sales_rep', sa.String(), nullable=True),
    sa.Column('week', sa.Date(), nullable=True),
    sa.Column('conf', sa.Float(), nullable=True),
    sa.Column('alloc', sa.Float(), nullable=True),
    sa.Column('cycle', sa.Float(), nullable=True),
    sa.Column('shipped', sa.Integer(), nullable=False),
    sa.Column('on_time', sa.Integer(), nullable=False),
    sa.Column('delivered', sa.Integer(), nullable=False),
    sa.Column('perfect', sa.Integer(), nullable=False),
    sa.Column('picked', sa.Integer(), nullable=False),
    sa.Column('picked_right', sa.Integer(), nullable=False),
    sa.Column('decided', sa.Integer(), nullable=False),
    sa.Column('within', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('order_id')
    )
    op.execute("INSERT INTO fact_state (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table('order_fact')
    with op.batch_alter_table('node_fact', schema=None) as batch_op:
        batch_op.drop_index('ix_node_fact_order')

    op.drop_table('node_fact')
    op.drop_table('fact_state')
    op.drop_table('fact_customer')
