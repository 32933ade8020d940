"""Organisations' gateways: where their confidential messages are delivered as signed
mails, with which TLS policy, and whether an unreachable gateway falls back to a
notification.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_host", sa.String(length=253), nullable=True))
        batch_op.add_column(sa.Column("gateway_port", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("gateway_tls", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("gateway_ca_pem", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("gateway_fallback", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        for column in ("gateway_fallback", "gateway_ca_pem", "gateway_tls", "gateway_port"):
            batch_op.drop_column(column)
        batch_op.drop_column("gateway_host")
