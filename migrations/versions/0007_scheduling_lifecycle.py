"""fair scheduling, quotas, circuit breaker, maintained item counts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Keeps job_item_counts in step with job_items inside the writing transaction. Deletes are not
# counted: items are only deleted with their job, whose counts go with it (ON DELETE CASCADE).
COUNTS_TRIGGER = """
CREATE OR REPLACE FUNCTION cgd_count_job_items() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.state = OLD.state AND NEW.error_kind IS NOT DISTINCT FROM OLD.error_kind
       AND NEW.truncated = OLD.truncated AND NEW.prompt_tokens = OLD.prompt_tokens
       AND NEW.completion_tokens = OLD.completion_tokens THEN
      RETURN NULL;
    END IF;
    UPDATE job_item_counts SET n = n - 1, prompt_tokens = prompt_tokens - OLD.prompt_tokens,
        completion_tokens = completion_tokens - OLD.completion_tokens
      WHERE job_id = OLD.job_id AND bucket = OLD.idx / 256 AND state = OLD.state
        AND error_kind = coalesce(OLD.error_kind, '') AND truncated = OLD.truncated;
  END IF;
  INSERT INTO job_item_counts AS c
      (job_id, bucket, state, error_kind, truncated, n, prompt_tokens, completion_tokens)
    VALUES (NEW.job_id, NEW.idx / 256, NEW.state, coalesce(NEW.error_kind, ''), NEW.truncated,
            1, NEW.prompt_tokens, NEW.completion_tokens)
    ON CONFLICT (job_id, bucket, state, error_kind, truncated) DO UPDATE
      SET n = c.n + 1, prompt_tokens = c.prompt_tokens + EXCLUDED.prompt_tokens,
          completion_tokens = c.completion_tokens + EXCLUDED.completion_tokens;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER job_items_counts AFTER INSERT OR UPDATE ON job_items
  FOR EACH ROW EXECUTE FUNCTION cgd_count_job_items();
"""


def upgrade() -> None:
    op.add_column("teams", sa.Column("last_dispatch_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "team_quotas",
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("queued_jobs", sa.Integer(), nullable=True),
        sa.Column(
            "stored_items", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "inflight_items", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("team_max_running_chunks", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_quotas_team_id_teams"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_team_quotas")),
    )
    op.add_column("jobs", sa.Column("priority", sa.Integer(), nullable=False, server_default="1"))
    op.add_column("jobs", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("pause_endpoint", sa.String(length=500), nullable=True))
    op.add_column("jobs", sa.Column("pause_error", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("pause_probed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "training_runs", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index("ix_job_chunks_status", "job_chunks", ["status"], unique=False)
    op.create_table(
        "job_item_counts",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("error_kind", sa.String(length=40), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("n", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "prompt_tokens", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "completion_tokens",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_item_counts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "job_id", "bucket", "state", "error_kind", "truncated", name=op.f("pk_job_item_counts")
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(COUNTS_TRIGGER)
        # Counts of the items that exist already.
        op.execute(
            "INSERT INTO job_item_counts SELECT job_id, idx / 256, state, coalesce(error_kind, ''),"
            " truncated, count(*), sum(prompt_tokens), sum(completion_tokens) FROM job_items"
            " GROUP BY 1, 2, 3, 4, 5"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS job_items_counts ON job_items")
        op.execute("DROP FUNCTION IF EXISTS cgd_count_job_items()")
    op.drop_table("job_item_counts")
    op.drop_index("ix_job_chunks_status", table_name="job_chunks")
    op.drop_column("training_runs", "enqueued_at")
    for col in ("pause_probed_at", "pause_error", "pause_endpoint", "paused_at", "priority"):
        op.drop_column("jobs", col)
    op.drop_table("team_quotas")
    op.drop_column("teams", "last_dispatch_at")
