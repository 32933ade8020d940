"""Retention: what a message said is kept only as long as it is needed.

Once every recipient is done (opened, accepted, refused, failed, withdrawn ...) or the
message expired, its bodies and attachments are kept `keep` longer (a setting), then
deleted; the subject, every recipient's state, the journal and the receipts stay. A
registered message's receipts state the content's digests, so every receipt due is made
and kept before its content goes. The pickup link then says the content was deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from soap_service.domain.model import MessageType
from soap_service.domain.ports import RetentionStore, SettledMessage

# Messages looked at per call: a transaction each, so a long backlog never is one.
BATCH = 100


class ContentRetention:
    def __init__(
        self,
        *,
        store: RetentionStore,
        keep: timedelta,
        issue_receipts: Callable[[int, str], int],
        now: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._keep = keep
        self._issue_receipts = issue_receipts  # (account id, message id) -> receipts kept
        self._now = now

    def due(self, *, at: datetime | None = None, limit: int = BATCH) -> list[SettledMessage]:
        """The messages whose content is to be deleted by `at` (now, by default)."""
        moment = at or self._now()
        return self._store.settled_before(moment - self._keep, now=moment, limit=limit)

    def delete_due(self, limit: int = BATCH) -> int:
        """Delete the content of up to `limit` messages due; how many."""
        now = self._now()
        deleted = 0
        for message in self.due(at=now, limit=limit):
            if message.type is MessageType.REGISTERED:
                self._issue_receipts(message.account_id, message.message_id)
            deleted += self._store.delete_content(message.message_id, now)
        return deleted
