"""The breach forecast reads each node's most recent finished visits (core/forecast.py): an index
on (node, completed_at) over the finished tasks only, so ``sla forecast`` and ``task list`` read
a node's latest ``sample`` visits by key instead of scanning every closed task.

Revision ID: 0008
Revises: 0005 (until 0007 lands; the lead renumbers)
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

FINISHED = "status IN ('done', 'rejected')"


def upgrade() -> None:
    op.create_index("ix_task_finished", "task", ["node", "completed_at"], unique=False,
                    sqlite_where=sa.text(FINISHED), postgresql_where=sa.text(FINISHED))


def downgrade() -> None:
    op.drop_index("ix_task_finished", table_name="task")
