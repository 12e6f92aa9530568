"""Initial case store, with append-only protection of the audit trail.

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 05:37:17.992869
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_sequence', sa.BigInteger(), nullable=False),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_chain_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head'))
    )
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('head_hash', sa.String(length=64), nullable=False),
    sa.Column('hmac', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_checkpoints_sequence'), ['sequence'], unique=False)

    op.create_table('audit_events',
    sa.Column('sequence', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('event_uid', sa.String(length=36), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('action', sa.Enum('C', 'R', 'U', 'D', 'E', name='audit_action', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=True),
    sa.Column('workstation', sa.String(length=255), nullable=False),
    sa.Column('patient_pseudonym', sa.String(length=40), nullable=True),
    sa.Column('case_uid', sa.String(length=40), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('outcome IN (0, 4, 8, 12)', name=op.f('ck_audit_events_outcome_code')),
    sa.PrimaryKeyConstraint('sequence', name=op.f('pk_audit_events')),
    sa.UniqueConstraint('event_uid', name=op.f('uq_audit_events_event_uid')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_events_hash'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_case_uid', ['case_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_event_type'), ['event_type'], unique=False)
        batch_op.create_index('ix_audit_events_occurred_at', ['occurred_at'], unique=False)

    op.create_table('patients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pseudonym', sa.String(length=40), nullable=False),
    sa.Column('identifier_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('birth_year', sa.Integer(), nullable=True),
    sa.Column('sex', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('pseudonym', name=op.f('uq_patients_pseudonym'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.Enum('clinician', 'reviewer', 'admin', 'data_scientist', name='role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_uid', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('previous_version_id', sa.Integer(), nullable=True),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('new', 'analysed', 'in_review', 'signed', 'amended', name='case_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('is_composite_demo', sa.Boolean(), nullable=False),
    sa.Column('top_suggestion', sa.String(length=200), nullable=True),
    sa.Column('priority', sa.Float(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('reviewer_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('version >= 1', name=op.f('ck_cases_version_positive')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_cases_created_by_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_cases_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['previous_version_id'], ['cases.id'], name=op.f('fk_cases_previous_version_id_cases'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_cases_reviewer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('case_uid', 'version', name='uq_cases_case_uid_version')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_case_uid'), ['case_uid'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_priority'), ['priority'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_reviewer_id'), ['reviewer_id'], unique=False)
        batch_op.create_index('ix_cases_status_updated_at', ['status', 'updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_top_suggestion'), ['top_suggestion'], unique=False)
        batch_op.create_index('ix_cases_updated_at', ['updated_at'], unique=False)

    op.create_table('privacy_budgets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dataset', sa.String(length=100), nullable=False),
    sa.Column('epsilon_total', sa.String(length=64), nullable=False),
    sa.Column('delta_total', sa.String(length=64), nullable=False),
    sa.Column('set_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['set_by_id'], ['users.id'], name=op.f('fk_privacy_budgets_set_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_privacy_budgets')),
    sa.UniqueConstraint('dataset', name=op.f('uq_privacy_budgets_dataset'))
    )
    op.create_table('analyses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('model_name', sa.String(length=100), nullable=False),
    sa.Column('model_version', sa.String(length=40), nullable=False),
    sa.Column('bundle_sha256', sa.String(length=64), nullable=False),
    sa.Column('input_sha256s', sa.JSON(), nullable=False),
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('timings_ms', sa.JSON(), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_analyses_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], name=op.f('fk_analyses_requested_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_analyses'))
    )
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_analyses_case_id'), ['case_id'], unique=False)

    op.create_table('case_inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('modality', sa.Enum('pathology', 'ecg', 'note', name='modality', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('original_name', sa.String(length=255), nullable=False),
    sa.Column('media_type', sa.String(length=100), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('stored_path', sa.String(length=1024), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('deidentified_metadata', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_inputs_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_inputs')),
    sa.UniqueConstraint('case_id', 'sha256', name='uq_case_inputs_case_sha256')
    )
    with op.batch_alter_table('case_inputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_inputs_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_inputs_sha256'), ['sha256'], unique=False)

    op.create_table('note_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('scrubbed', sa.JSON(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_note_versions_author_id_users')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_note_versions_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_note_versions')),
    sa.UniqueConstraint('case_id', 'version', name='uq_note_versions_case_ver')
    )
    with op.batch_alter_table('note_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_note_versions_case_id'), ['case_id'], unique=False)

    op.create_table('privacy_charges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('budget_id', sa.Integer(), nullable=False),
    sa.Column('query', sa.String(length=100), nullable=False),
    sa.Column('mechanism', sa.String(length=64), nullable=False),
    sa.Column('epsilon', sa.String(length=64), nullable=False),
    sa.Column('delta', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['budget_id'], ['privacy_budgets.id'], name=op.f('fk_privacy_charges_budget_id_privacy_budgets'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_privacy_charges_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_privacy_charges'))
    )
    with op.batch_alter_table('privacy_charges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_privacy_charges_budget_id'), ['budget_id'], unique=False)

    op.create_table('reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('pdf', 'dicom_pdf', 'fhir', name='report_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_reports_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_reports_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports'))
    )
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reports_case_id'), ['case_id'], unique=False)

    op.create_table('sign_offs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('final_impression', sa.Text(), nullable=False),
    sa.Column('meaning', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_sign_offs_case_id_cases'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sign_offs_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sign_offs')),
    sa.UniqueConstraint('case_id', name=op.f('uq_sign_offs_case_id'))
    )
    op.create_table('vital_signs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heart_rate_bpm', sa.Double(), nullable=True),
    sa.Column('systolic_mmhg', sa.Double(), nullable=True),
    sa.Column('diastolic_mmhg', sa.Double(), nullable=True),
    sa.Column('spo2_percent', sa.Double(), nullable=True),
    sa.Column('temperature_c', sa.Double(), nullable=True),
    sa.Column('respiratory_rate_per_min', sa.Double(), nullable=True),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_vital_signs_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_vital_signs_recorded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vital_signs'))
    )
    with op.batch_alter_table('vital_signs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vital_signs_case_id'), ['case_id'], unique=False)

    op.create_table('explanation_artefacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('analysis_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'], name=op.f('fk_explanation_artefacts_analysis_id_analyses'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_explanation_artefacts'))
    )
    with op.batch_alter_table('explanation_artefacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_explanation_artefacts_analysis_id'), ['analysis_id'], unique=False)

    op.create_table('suggestions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('analysis_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('code_system', sa.String(length=100), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('display', sa.String(length=255), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('calibrated_probability', sa.Float(), nullable=True),
    sa.Column('abstained', sa.Boolean(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.CheckConstraint('probability >= 0 AND probability <= 1', name=op.f('ck_suggestions_probability_range')),
    sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'], name=op.f('fk_suggestions_analysis_id_analyses'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suggestions'))
    )
    with op.batch_alter_table('suggestions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suggestions_analysis_id'), ['analysis_id'], unique=False)
        batch_op.create_index('ix_suggestions_code', ['code_system', 'code'], unique=False)

    op.create_table('decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('suggestion_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.Enum('accept', 'override', 'reject', name='decision_action', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('override_code_system', sa.String(length=100), nullable=True),
    sa.Column('override_code', sa.String(length=64), nullable=True),
    sa.Column('override_display', sa.String(length=255), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("action = 'accept' OR (reason IS NOT NULL AND length(trim(reason)) > 0)", name=op.f('ck_decisions_reason_required')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_decisions_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['suggestion_id'], ['suggestions.id'], name=op.f('fk_decisions_suggestion_id_suggestions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_decisions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_decisions'))
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decisions_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_decisions_suggestion_id'), ['suggestion_id'], unique=False)
    op.execute(
        "INSERT INTO audit_chain_head (id, last_sequence, last_hash) VALUES (1, 0, '"
        + "0" * 64
        + "')"
    )
    _protect_audit_trail()


def downgrade() -> None:
    _unprotect_audit_trail()

    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decisions_suggestion_id'))
        batch_op.drop_index(batch_op.f('ix_decisions_case_id'))

    op.drop_table('decisions')
    with op.batch_alter_table('suggestions', schema=None) as batch_op:
        batch_op.drop_index('ix_suggestions_code')
        batch_op.drop_index(batch_op.f('ix_suggestions_analysis_id'))

    op.drop_table('suggestions')
    with op.batch_alter_table('explanation_artefacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_explanation_artefacts_analysis_id'))

    op.drop_table('explanation_artefacts')
    with op.batch_alter_table('vital_signs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vital_signs_case_id'))

    op.drop_table('vital_signs')
    op.drop_table('sign_offs')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reports_case_id'))

    op.drop_table('reports')
    with op.batch_alter_table('privacy_charges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_privacy_charges_budget_id'))

    op.drop_table('privacy_charges')
    with op.batch_alter_table('note_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_note_versions_case_id'))

    op.drop_table('note_versions')
    with op.batch_alter_table('case_inputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_inputs_sha256'))
        batch_op.drop_index(batch_op.f('ix_case_inputs_case_id'))

    op.drop_table('case_inputs')
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analyses_case_id'))

    op.drop_table('analyses')
    op.drop_table('privacy_budgets')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_updated_at')
        batch_op.drop_index(batch_op.f('ix_cases_top_suggestion'))
        batch_op.drop_index('ix_cases_status_updated_at')
        batch_op.drop_index(batch_op.f('ix_cases_reviewer_id'))
        batch_op.drop_index(batch_op.f('ix_cases_priority'))
        batch_op.drop_index(batch_op.f('ix_cases_patient_id'))
        batch_op.drop_index(batch_op.f('ix_cases_created_at'))
        batch_op.drop_index(batch_op.f('ix_cases_case_uid'))

    op.drop_table('cases')
    op.drop_table('users')
    op.drop_table('patients')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_occurred_at')
        batch_op.drop_index(batch_op.f('ix_audit_events_event_type'))
        batch_op.drop_index('ix_audit_events_case_uid')

    op.drop_table('audit_events')
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_checkpoints_sequence'))

    op.drop_table('audit_checkpoints')
    op.drop_table('audit_chain_head')



# The audit trail is append-only at the database level, not only in the app: SQLite triggers
# and a PostgreSQL trigger refuse UPDATE and DELETE on audit_events and audit_checkpoints.
# On PostgreSQL the app's role should also lack those rights (README).
_TABLES = ("audit_events", "audit_checkpoints")


def _protect_audit_trail() -> None:
    dialect = op.get_bind().dialect.name
    for table in _TABLES:
        if dialect == "sqlite":
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER trg_{table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
                )
        elif dialect == "postgresql":
            op.execute(
                "CREATE OR REPLACE FUNCTION clinicfusion_append_only() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% is append-only: % refused', "
                "TG_TABLE_NAME, TG_OP; END $$"
            )
            op.execute(
                f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION clinicfusion_append_only()"
            )


def _unprotect_audit_trail() -> None:
    dialect = op.get_bind().dialect.name
    for table in _TABLES:
        if dialect == "sqlite":
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_no_{verb}")
        elif dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_append_only ON {table}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS clinicfusion_append_only()")
