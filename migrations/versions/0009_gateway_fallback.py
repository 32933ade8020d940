"""Recipients whose organisation's gateway could not be reached until the retry time was
over, and whose organisation asked for a notification then: when that happened. From
then on the recipient gets a notification, with a retry time of its own.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch: on SQLite a batch copies the table, and the journal's
# trigger (0006) that reads recipients refuses the copy; SQLite has dropped columns in
# place since 3.35.


def upgrade() -> None:
    op.add_column(
        "recipients", sa.Column("gateway_given_up_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("recipients", "gateway_given_up_at")
