"""Reports owed to a message's sender by mail: where they go (messages.report_to), and the
queue of failure notices and receipts (sender_reports), filled by a trigger on the journal.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The journal events that owe the sender a report, and which report: a failed recipient
# (any message), and a registered message's acceptance by the service (recipient_id NULL:
# the submission receipt) and each recipient's acceptance, refusal or expiry (receipts).
_QUEUE_REPORT = """
INSERT INTO sender_reports
    (message_id, position, kind, state, attempts, next_attempt_at, created_at)
SELECT m.id, COALESCE(r.position, 0),
       CASE WHEN NEW.recipient_id IS NULL THEN 'submission'
            WHEN NEW.kind = 'accepted' THEN 'pickup'
            WHEN NEW.kind = 'refused' THEN 'refusal'
            WHEN NEW.kind = 'expired' THEN 'expiry'
            ELSE 'failure' END,
       'queued', 0, NEW.at, NEW.at
FROM messages AS m LEFT JOIN recipients AS r ON r.id = NEW.recipient_id
WHERE m.id = NEW.message_id AND m.report_to IS NOT NULL
  AND (NEW.kind = 'failed' OR m.type = 'registered')
ON CONFLICT (message_id, position, kind) DO NOTHING
"""
_KINDS = "('accepted', 'failed', 'refused', 'expired')"


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_to", sa.String(length=320), nullable=True))
    op.create_table(
        "sender_reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_sender_reports_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sender_reports")),
        sa.UniqueConstraint(
            "message_id",
            "position",
            "kind",
            name=op.f("uq_sender_reports_message_id_position_kind"),
        ),
    )
    with op.batch_alter_table("sender_reports", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sender_reports_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION queue_sender_report() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_QUEUE_REPORT}; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER events_sender_reports AFTER INSERT ON events FOR EACH ROW "
            f"WHEN (NEW.kind IN {_KINDS}) EXECUTE FUNCTION queue_sender_report()"
        )
    else:
        op.execute(
            "CREATE TRIGGER events_sender_reports AFTER INSERT ON events "
            f"WHEN NEW.kind IN {_KINDS} BEGIN {_QUEUE_REPORT}; END"
        )


def downgrade() -> None:
    op.execute(
        "DROP TRIGGER events_sender_reports"
        + (" ON events" if op.get_bind().dialect.name == "postgresql" else "")
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION queue_sender_report()")
    with op.batch_alter_table("sender_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_sender_reports_state_next_attempt_at")
    op.drop_table("sender_reports")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("report_to")
