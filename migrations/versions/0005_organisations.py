"""Organisations: their mail domains and the client certificate their mail server
presents to the SMTP channel.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("client_cert_sha256", sa.LargeBinary(length=32), nullable=True),
        sa.Column("client_cert_pem", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_organisations_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
        sa.UniqueConstraint("client_cert_sha256", name=op.f("uq_organisations_client_cert_sha256")),
        sa.UniqueConstraint("name", name=op.f("uq_organisations_name")),
    )
    op.create_table(
        "organisation_domains",
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_organisation_domains_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_organisation_domains")),
    )
    with op.batch_alter_table("organisation_domains", schema=None) as batch_op:
        batch_op.create_index(
            "ix_organisation_domains_organisation_id", ["organisation_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("organisation_domains", schema=None) as batch_op:
        batch_op.drop_index("ix_organisation_domains_organisation_id")
    op.drop_table("organisation_domains")
    op.drop_table("organisations")
