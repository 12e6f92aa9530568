"""Patient identifier look-up: a keyed hash to find a patient without decrypting.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 06:09:53.960195
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identifier_lookup', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_patients_identifier_lookup'), ['identifier_lookup'])




def downgrade() -> None:

    with op.batch_alter_table('patients', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_patients_identifier_lookup'), type_='unique')
        batch_op.drop_column('identifier_lookup')


