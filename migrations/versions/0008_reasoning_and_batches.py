"""reasoning_content apart from the answer; Batch API submissions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("reasoning", sa.Text(), nullable=True))
    op.create_table(
        "generation_batches",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("chunk_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("stage", sa.String(length=10), nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=False),
        sa.Column("input_file_id", sa.String(length=200), nullable=False),
        sa.Column("output_file_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("completed", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_generation_batches_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "chunk_no", "stage", name=op.f("pk_generation_batches")),
    )


def downgrade() -> None:
    op.drop_table("generation_batches")
    op.drop_column("generations", "reasoning")
