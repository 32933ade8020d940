"""A person's inbox on the site: recipients by mailbox (their address in lower case), so
that listing a mailbox's messages does not read every recipient.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_recipients_mailbox", "recipients", [sa.text("lower(address)")])


def downgrade() -> None:
    op.drop_index("ix_recipients_mailbox", table_name="recipients")
