"""Reports to a message's sender by mail, as IncaMail's senders get them: a delivery
status notification when a recipient fails, and a registered message's signed receipts
(submission, pickup, refusal, expiry). Only messages that name where reports go
(`report_to`: an SMTP submission's envelope sender) have them.

The database queues a report in the transaction of what it reports (triggers on the
message and its journal),
so none is lost or made twice; the delivery workers send them like notifications and
retry them with the same policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from soap_service.crypto import WrappedKey
from soap_service.domain.model import Language, MessageType


class ReportKind(StrEnum):
    FAILURE = "failure"  # a recipient failed: a delivery status notification
    SUBMISSION = "submission"  # receipts of a registered message
    PICKUP = "pickup"
    REFUSAL = "refusal"
    EXPIRY = "expiry"

    @property
    def is_receipt(self) -> bool:
        return self is not ReportKind.FAILURE


@dataclass(frozen=True, kw_only=True)
class ReportJob:
    """One claimed report, with what its mail needs."""

    report_id: int
    kind: ReportKind
    attempts: int
    created_at: datetime
    report_to: str
    account_id: int
    organisation: str
    message_id: str
    reference: str
    type: MessageType
    language: Language
    accepted_at: datetime
    sealed_subject: bytes
    data_key: WrappedKey
    # The recipient it is about (None for the submission receipt), its state's time and
    # its last error (a failure's reason).
    recipient: str | None
    recipient_changed_at: datetime | None
    recipient_error: str | None


@dataclass(frozen=True, kw_only=True)
class ReportResult:
    report_id: int
    # "sent", or "queued" again (next_attempt_at), or "failed" (given up).
    state: str
    next_attempt_at: datetime | None
    detail: str
    attempted_at: datetime
