"""Batch import (imported source digests) and batch analysis (a persistent queue).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 14:57:14.874452
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batch_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('queued', 'running', 'cancelling', 'cancelled', 'finished', name='batch_run_state', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('bundle', sa.String(length=1024), nullable=True),
    sa.Column('device', sa.String(length=32), nullable=False),
    sa.Column('explain', sa.Boolean(), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_batch_runs_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_runs'))
    )
    with op.batch_alter_table('batch_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_runs_state'), ['state'], unique=False)

    op.create_table('imported_sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_imported_sources_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imported_sources')),
    sa.UniqueConstraint('digest', name=op.f('uq_imported_sources_digest'))
    )
    with op.batch_alter_table('imported_sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imported_sources_case_id'), ['case_id'], unique=False)

    op.create_table('batch_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('case_uid', sa.String(length=40), nullable=False),
    sa.Column('state', sa.Enum('queued', 'running', 'done', 'failed', 'cancelled', name='batch_item_state', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('analysis_id', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'], name=op.f('fk_batch_items_analysis_id_analyses'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['batch_runs.id'], name=op.f('fk_batch_items_run_id_batch_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_items')),
    sa.UniqueConstraint('run_id', 'case_uid', name='uq_batch_items_run_id_case_uid')
    )
    with op.batch_alter_table('batch_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_items_case_uid'), ['case_uid'], unique=False)
        batch_op.create_index('ix_batch_items_run_id_state', ['run_id', 'state'], unique=False)

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('triage_risk', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('triage_abstained', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('triage_uncertainty', sa.Float(), nullable=True))
        batch_op.create_index('ix_cases_triage_risk', ['triage_risk', 'status', 'reviewer_id', 'triage_abstained', 'triage_uncertainty'], unique=False)
        batch_op.create_index('ix_cases_triage_uncertainty', ['triage_uncertainty', 'status', 'reviewer_id', 'triage_risk', 'triage_abstained'], unique=False)



def downgrade() -> None:
    # Never copy 'cases' (batch mode's default on SQLite): with foreign keys on, dropping the
    # old table cascades to its analyses, decisions and search terms. SQLite >= 3.35 drops a
    # column in place.
    with op.batch_alter_table('cases', schema=None, recreate='never') as batch_op:
        batch_op.drop_index('ix_cases_triage_uncertainty')
        batch_op.drop_index('ix_cases_triage_risk')
        batch_op.drop_column('triage_uncertainty')
        batch_op.drop_column('triage_abstained')
        batch_op.drop_column('triage_risk')

    with op.batch_alter_table('batch_items', schema=None) as batch_op:
        batch_op.drop_index('ix_batch_items_run_id_state')
        batch_op.drop_index(batch_op.f('ix_batch_items_case_uid'))

    op.drop_table('batch_items')
    with op.batch_alter_table('imported_sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imported_sources_case_id'))

    op.drop_table('imported_sources')
    with op.batch_alter_table('batch_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_runs_state'))

    op.drop_table('batch_runs')
