"""team prompt templates, worked solutions, teacher solutions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prompt_templates',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('team_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('sources', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_prompt_templates_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_templates')),
    sa.UniqueConstraint('team_id', 'name', 'version', name=op.f('uq_prompt_templates_team_id_name_version'))
    )
    # Batch mode: SQLite (the embedded default) cannot add a foreign key with ALTER TABLE.
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('template_id', sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f('fk_jobs_template_id_prompt_templates'), 'prompt_templates', ['template_id'], ['id']
        )
    op.add_column('dataset_items', sa.Column('solution', sa.Text(), nullable=True))
    op.add_column('snapshot_rows', sa.Column('solution', sa.Text(), nullable=True))
    op.add_column('snapshot_rows', sa.Column('teacher_solution', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('snapshot_rows', 'teacher_solution')
    op.drop_column('snapshot_rows', 'solution')
    op.drop_column('dataset_items', 'solution')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint(op.f('fk_jobs_template_id_prompt_templates'), type_='foreignkey')
        batch.drop_column('template_id')
    op.drop_table('prompt_templates')
