"""Case search terms: an index of words for the case list's prefix search.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 05:57:47.407787
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_search_terms',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('term', sa.String(length=100).with_variant(sa.String(length=100, collation='C'), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_search_terms_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', 'term', name=op.f('pk_case_search_terms'))
    )
    with op.batch_alter_table('case_search_terms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_search_terms_term'), ['term'], unique=False)
    _backfill()



def downgrade() -> None:
    with op.batch_alter_table('case_search_terms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_search_terms_term'))

    op.drop_table('case_search_terms')


def _backfill() -> None:
    """Index the cases that exist already (the app keeps new ones indexed itself)."""
    from clinic_app.domain.search import search_terms  # small and stable; see its tests

    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT c.id, c.case_uid, c.title, c.top_suggestion, p.pseudonym "
            "FROM cases c JOIN patients p ON p.id = c.patient_id"
        )
    ).all()
    terms = [
        {"case_id": row[0], "term": term}
        for row in rows
        for term in search_terms(row[1], row[2], row[3], row[4])
    ]
    if terms:
        table = sa.table("case_search_terms", sa.column("case_id"), sa.column("term"))
        op.bulk_insert(table, terms)
