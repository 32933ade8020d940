"""Delivery decisions: what an SMTP answer means for a recipient, and when to try again.

Pure values and a pure policy, like a job queue's retry strategy: the worker asks, the
policy answers, the store records. Nothing here touches SMTP or the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from soap_service.crypto import WrappedKey
from soap_service.domain.model import Language, MessageType, RecipientState


class DeliveryPath(StrEnum):
    """How a recipient is reached."""

    NOTIFICATION = "notification"  # a mail with a link to the pickup page
    GATEWAY = "gateway"  # the message itself, signed, to the organisation's gateway


class OutcomeKind(StrEnum):
    ACCEPTED = "accepted"  # the server answered 250 to the whole transaction
    TEMPORARY = "temporary"  # 4xx, timeout, refused or dropped connection, no TLS
    PERMANENT = "permanent"  # 5xx for this recipient


@dataclass(frozen=True, kw_only=True)
class Outcome:
    kind: OutcomeKind
    # The server's reply or what went wrong, for the journal and GetStatus.
    detail: str


@dataclass(frozen=True, kw_only=True)
class Decision:
    state: RecipientState
    next_attempt_at: datetime | None
    detail: str
    # The gateway is given up for a notification (the organisation's fallback): from now
    # on this recipient is notified, with a retry time of its own.
    fall_back: bool = False


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Postfix-like: first retry after `minimum`, then doubling up to `maximum`; after
    `give_up` since acceptance a temporary failure becomes final."""

    minimum: timedelta
    maximum: timedelta
    give_up: timedelta

    def delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt (1 for the first)."""
        # The exponent is capped: 2**40 seconds would overflow a timedelta long after the
        # maximum has been reached.
        doublings = min(max(0, attempts - 1), 32)
        seconds = self.minimum.total_seconds() * 2.0**doublings
        # Clamped as seconds: a timedelta of the unclamped value could overflow.
        return timedelta(seconds=min(seconds, self.maximum.total_seconds()))

    def decide(
        self,
        outcome: Outcome,
        *,
        attempts: int,
        since: datetime,
        now: datetime,
        path: DeliveryPath = DeliveryPath.NOTIFICATION,
        fallback: bool = False,
    ) -> Decision:
        """`attempts` counts this attempt; the retry time runs from `since` (acceptance,
        or when the gateway was given up). A mail the gateway accepted is the message
        itself: `delivered`, final. A gateway unreached until the retry time is over
        gives way to a notification only when `fallback` says so."""
        if outcome.kind is OutcomeKind.ACCEPTED:
            state = (
                RecipientState.DELIVERED if path is DeliveryPath.GATEWAY else RecipientState.SENT
            )
            return Decision(state=state, next_attempt_at=None, detail=outcome.detail)
        if outcome.kind is OutcomeKind.PERMANENT:
            return Decision(
                state=RecipientState.FAILED, next_attempt_at=None, detail=outcome.detail
            )
        if now - since >= self.give_up:  # like Postfix's maximal_queue_lifetime
            if path is DeliveryPath.GATEWAY and fallback:
                return Decision(
                    state=RecipientState.DEFERRED,
                    next_attempt_at=now,
                    detail=f"gateway given up after {attempts} attempts, a notification "
                    f"follows: {outcome.detail}",
                    fall_back=True,
                )
            return Decision(
                state=RecipientState.FAILED,
                next_attempt_at=None,
                detail=f"gave up after {attempts} attempts: {outcome.detail}",
            )
        return Decision(
            state=RecipientState.DEFERRED,
            next_attempt_at=now + self.delay(attempts),
            detail=outcome.detail,
        )


@dataclass(frozen=True, kw_only=True)
class DeliveryJob:
    """One claimed recipient, with what its notification needs."""

    recipient_id: int
    message_id: str
    position: int
    address: str
    attempts: int
    accepted_at: datetime
    expires_at: datetime
    type: MessageType
    language: Language
    organisation: str
    show_subject: bool
    sealed_subject: bytes
    data_key: WrappedKey
    # The sender's address for replies (an SMTP submission's envelope sender), if any.
    report_to: str | None = None
    # When the organisation's gateway was given up for a notification, if it was.
    gateway_given_up_at: datetime | None = None
    # The size of the message's bodies and attachments (a gateway mail carries them).
    content_bytes: int = 0

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


@dataclass(frozen=True, kw_only=True)
class DeliveryResult:
    job: DeliveryJob
    decision: Decision
    attempted_at: datetime


@dataclass(frozen=True, kw_only=True)
class QueueSummary:
    """The delivery queue as an operator watches it: recipients still waiting (queued or
    deferred), those due now, and since when the oldest due one has been due."""

    waiting: int
    due: int
    oldest_due_since: datetime | None
