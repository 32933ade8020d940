"""The journal's positions, for GetStatusChanges, and the account's messages by time, for
ListMessages.

On PostgreSQL an event's id does not say when it became visible: ids are drawn when a
transaction inserts, and transactions commit in another order, so a reader that remembered
"up to id 105" could miss 103, committed later. Each event therefore records the id of the
transaction that wrote it (`xact`, pg_current_xact_id()); a reader takes only events of
transactions older than every transaction still running (its snapshot's xmin), which can
no longer change, in (xact, id) order. SQLite has one writer at a time, so its ids are in
commit order already: there `xact` is 0.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Earlier events all get the id of this migration's transaction: they come first.
        op.execute("ALTER TABLE events ADD COLUMN xact xid8 NOT NULL DEFAULT pg_current_xact_id()")
    else:
        op.add_column(
            "events", sa.Column("xact", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_index("ix_events_xact_id", "events", ["xact", "id"])
    op.create_index(
        "ix_messages_account_id_accepted_at", "messages", ["account_id", "accepted_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_messages_account_id_accepted_at", table_name="messages")
    op.drop_index("ix_events_xact_id", table_name="events")
    op.drop_column("events", "xact")
