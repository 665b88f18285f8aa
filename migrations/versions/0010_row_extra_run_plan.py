"""a snapshot row keeps its item's extra columns; a training run keeps its plan

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # The dataset's own columns (id, source, difficulty, …) travel with the triplet into every
    # export, so exported rows can be joined back to the team's data.
    op.add_column("snapshot_rows", sa.Column("extra", JSON, nullable=True))
    # train_rows, val_rows, epochs, total_steps, tokens_per_step: reported before the first step.
    op.add_column("training_runs", sa.Column("plan", JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("training_runs", "plan")
    op.drop_column("snapshot_rows", "extra")
