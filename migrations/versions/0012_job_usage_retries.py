"""a job's tokens by stage and outcome (kept, retried, failed) and its retried attempts by reason

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-05 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Jobs that ran before this table have their totals on their items only: their status
    # lists no tokens by outcome and no retries (they were never recorded).
    op.create_table(
        "job_usage",
        sa.Column(
            "job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("stage", sa.String(20), primary_key=True),
        sa.Column("outcome", sa.String(20), primary_key=True),
        sa.Column("prompt_tokens", BIGINT, nullable=False, server_default="0"),
        sa.Column("completion_tokens", BIGINT, nullable=False, server_default="0"),
    )
    op.create_table(
        "job_retries",
        sa.Column(
            "job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("stage", sa.String(20), primary_key=True),
        sa.Column("reason", sa.String(40), primary_key=True),
        sa.Column("n", BIGINT, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("job_retries")
    op.drop_table("job_usage")
