"""Reports owed to a message's sender by mail: where they go (messages.report_to), and the
queue of failure notices and receipts (sender_reports), filled by triggers on messages and
on the journal.

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

# A registered message with a report address owes its sender the submission receipt: queued
# by a trigger on messages, whose condition (WHEN) costs a message without one nothing.
_QUEUE_SUBMISSION = """
INSERT INTO sender_reports
    (message_id, position, kind, state, attempts, next_attempt_at, created_at)
VALUES (NEW.id, 0, 'submission', 'queued', 0, NEW.accepted_at, NEW.accepted_at)
"""
_SUBMISSION_DUE = "NEW.report_to IS NOT NULL AND NEW.type = 'registered'"
# A recipient's journal event owes one: its failure (any message), and a registered
# message's acceptance, refusal or expiry (receipts). The queueing of recipients on
# SendMessage's hot path does not wake the trigger.
_QUEUE_RECIPIENT_REPORT = """
INSERT INTO sender_reports
    (message_id, position, kind, state, attempts, next_attempt_at, created_at)
SELECT m.id, r.position,
       CASE NEW.kind WHEN 'accepted' THEN 'pickup' WHEN 'refused' THEN 'refusal'
                     WHEN 'expired' THEN 'expiry' ELSE 'failure' END,
       'queued', 0, NEW.at, NEW.at
FROM messages AS m JOIN recipients AS r ON r.id = NEW.recipient_id
WHERE m.id = NEW.message_id AND m.report_to IS NOT NULL
  AND (NEW.kind = 'failed' OR m.type = 'registered')
ON CONFLICT (message_id, position, kind) DO NOTHING
"""
_RECIPIENT_REPORT_DUE = (
    "NEW.recipient_id IS NOT NULL AND NEW.kind IN ('accepted', 'failed', 'refused', 'expired')"
)


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
        for name, table, body, condition in _TRIGGERS:
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN {body}; RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER INSERT ON {table} FOR EACH ROW "
                f"WHEN ({condition}) EXECUTE FUNCTION {name}()"
            )
    else:
        for name, table, body, condition in _TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} AFTER INSERT ON {table} WHEN {condition} BEGIN {body}; END"
            )


_TRIGGERS = (
    ("queue_submission_report", "messages", _QUEUE_SUBMISSION, _SUBMISSION_DUE),
    ("queue_recipient_report", "events", _QUEUE_RECIPIENT_REPORT, _RECIPIENT_REPORT_DUE),
)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table, _, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name}" + (f" ON {table}" if postgresql else ""))
        if postgresql:
            op.execute(f"DROP FUNCTION {name}()")
    with op.batch_alter_table("sender_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_sender_reports_state_next_attempt_at")
    op.drop_table("sender_reports")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("report_to")
