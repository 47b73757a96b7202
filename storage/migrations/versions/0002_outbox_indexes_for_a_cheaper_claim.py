"""outbox indexes for a cheaper claim

The claim moves rows from ``scheduled`` to ``sending``, and every index entry it has to move
costs time with a million rows in the table. The lease index goes (the few rows in
``sending`` are found through ``ix_outbound_claim``), the wamid and reach indexes only hold
rows that were sent, and the contact index no longer holds the status (a contact has a
handful of rows).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 14:16:19.783578
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

HAS_WAMID = sa.text('wamid IS NOT NULL')
WAS_SENT = sa.text('sent_at IS NOT NULL')
REACH = ['workspace_id', 'business_initiated', 'sent_at']


def upgrade() -> None:
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.drop_constraint('uq_outbound_messages_wamid', type_='unique')
        batch_op.drop_index('ix_outbound_contact')
        batch_op.drop_index('ix_outbound_lease')
        batch_op.drop_index('ix_outbound_reach')
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.create_index(
            'uq_outbound_messages_wamid', ['wamid'], unique=True,
            sqlite_where=HAS_WAMID, postgresql_where=HAS_WAMID,
        )
        batch_op.create_index('ix_outbound_contact', ['contact_id'], unique=False)
        batch_op.create_index(
            'ix_outbound_reach', REACH, unique=False,
            sqlite_where=WAS_SENT, postgresql_where=WAS_SENT,
        )


def downgrade() -> None:
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.drop_index('uq_outbound_messages_wamid')
        batch_op.drop_index('ix_outbound_contact')
        batch_op.drop_index('ix_outbound_reach')
    with op.batch_alter_table('outbound_messages', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_outbound_messages_wamid', ['wamid'])
        batch_op.create_index('ix_outbound_contact', ['contact_id', 'status'], unique=False)
        batch_op.create_index('ix_outbound_lease', ['status', 'lease_until'], unique=False)
        batch_op.create_index('ix_outbound_reach', REACH, unique=False)
