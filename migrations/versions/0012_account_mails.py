"""People's accounts on the site: the mails about them (activation codes, password reset
links, word that an address already has an account), queued for the delivery workers,
with the secrets they carry.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_mails",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=True),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("failed_codes", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_mails")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_mails_token_hash")),
    )
    with op.batch_alter_table("account_mails", schema=None) as batch_op:
        batch_op.create_index(
            "ix_account_mails_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_account_mails_address_kind", ["address", "kind"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("account_mails", schema=None) as batch_op:
        batch_op.drop_index("ix_account_mails_address_kind")
        batch_op.drop_index("ix_account_mails_state_next_attempt_at")
    op.drop_table("account_mails")
