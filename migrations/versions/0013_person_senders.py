"""A person sends from the site as a sender account of their own, made at their first
message: the account a person's messages are stored under.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recipient_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sender_account_id", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_recipient_accounts_sender_account_id"), ["sender_account_id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_recipient_accounts_sender_account_id_accounts"),
            "accounts",
            ["sender_account_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("recipient_accounts", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_recipient_accounts_sender_account_id_accounts"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("uq_recipient_accounts_sender_account_id"), type_="unique"
        )
        batch_op.drop_column("sender_account_id")
