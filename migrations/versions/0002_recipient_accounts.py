"""Recipient accounts and their pickup sessions (personal and registered messages), and
the signed receipts of registered messages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recipient_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("auto_accept", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_accounts")),
        sa.UniqueConstraint("address", name=op.f("uq_recipient_accounts_address")),
    )
    op.create_table(
        "pickup_sessions",
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["recipient_accounts.id"],
            name=op.f("fk_pickup_sessions_account_id_recipient_accounts"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_pickup_sessions")),
    )
    with op.batch_alter_table("pickup_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_pickup_sessions_expires_at", ["expires_at"], unique=False)
    op.create_table(
        "receipts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_receipts_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
        sa.UniqueConstraint(
            "message_id", "position", "kind", name=op.f("uq_receipts_message_id_position_kind")
        ),
    )


def downgrade() -> None:
    op.drop_table("receipts")
    with op.batch_alter_table("pickup_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_pickup_sessions_expires_at")
    op.drop_table("pickup_sessions")
    op.drop_table("recipient_accounts")
