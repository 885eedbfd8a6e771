"""Indexes for the breach forecast (core/forecast.py):

- ``ix_task_finished`` (node, completed_at) over the finished tasks only: ``sla forecast`` and
  ``task list`` read a node's latest ``sample`` visits by key instead of scanning every closed task;
- ``ix_task_node`` gains ``entered_at`` (still open tasks only): a node's queue as of the command
  clock is a range of it (tasks entered later are not in it), and node-only lookups still use it.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

FINISHED = "status IN ('done', 'rejected')"


OPEN = "status = 'open'"


def _where(cond: str) -> dict:
    return {"sqlite_where": sa.text(cond), "postgresql_where": sa.text(cond)}


def upgrade() -> None:
    op.create_index("ix_task_finished", "task", ["node", "completed_at"], unique=False, **_where(FINISHED))
    op.drop_index("ix_task_node", table_name="task")
    op.create_index("ix_task_node", "task", ["node", "entered_at"], unique=False, **_where(OPEN))


def downgrade() -> None:
    op.drop_index("ix_task_node", table_name="task")
    op.create_index("ix_task_node", "task", ["node"], unique=False, **_where(OPEN))
    op.drop_index("ix_task_finished", table_name="task")
