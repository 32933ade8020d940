"""Teams: an organisation's people (owners and members) who share the logbook of the
team's sender accounts; invitations are account mails that name their team and role.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"], ["teams.id"], name=op.f("fk_team_members_team_id_teams")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["recipient_accounts.id"],
            name=op.f("fk_team_members_person_id_recipient_accounts"),
        ),
        sa.PrimaryKeyConstraint("team_id", "person_id", name=op.f("pk_team_members")),
    )
    with op.batch_alter_table("team_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_members_person_id"), ["person_id"], unique=False)
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_accounts_team_id"), ["team_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_accounts_team_id_teams"), "teams", ["team_id"], ["id"]
        )
    with op.batch_alter_table("account_mails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("role", sa.String(length=8), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_account_mails_team_id_teams"), "teams", ["team_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("account_mails", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_account_mails_team_id_teams"), type_="foreignkey")
        batch_op.drop_column("role")
        batch_op.drop_column("team_id")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_accounts_team_id_teams"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_accounts_team_id"))
        batch_op.drop_column("team_id")
    with op.batch_alter_table("team_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_team_members_person_id"))
    op.drop_table("team_members")
    op.drop_table("teams")
