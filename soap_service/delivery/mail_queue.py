"""A queue of mails the delivery workers send besides notifications (reports to senders,
mails about people's accounts), each in a thread of its own, so that one destination's
unreachable mail server never holds up notifications or the other queue.

One mail at a time: claimed with a lease longer than sending it can take, written, sent
like a notification (verified STARTTLS, the relay or the MX), and its outcome recorded at
once, with the delivery retry policy. A queue says how to claim, write and record its
mails; this says how they are sent.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from soap_service.delivery.routing import NoRoute, Router, RouteUnknown
from soap_service.delivery.smtp import SmtpSession, TlsContexts, TransportError
from soap_service.domain.delivery import Decision, Outcome, OutcomeKind, RetryPolicy
from soap_service.domain.ports import DeliveryStore
from soap_service.logs import describe_exception
from soap_service.settings import SmtpSettings

log = logging.getLogger(__name__)

# Mails sent in one round before the thread looks at its stop event again.
ROUND = 20
# A claimed mail's lease: longer than sending one can take (every server of its
# destination, each with its timeout), so that no other worker sends it meanwhile.
LEASE = timedelta(minutes=10)

Job = TypeVar("Job")


@dataclass(frozen=True, kw_only=True)
class Written:
    """A mail ready to go: to whom, from which envelope sender, its bytes."""

    to: str
    envelope_from: str
    data: bytes


@dataclass(frozen=True, kw_only=True)
class MailOutcome:
    """What became of one attempt, for the queue to record."""

    state: str  # "sent", "queued" again (next_attempt_at), or "failed" (given up)
    next_attempt_at: datetime | None
    detail: str
    attempted_at: datetime


@dataclass(frozen=True, kw_only=True)
class QueueParts:
    """What every queue of a worker shares: its stores, how it reaches mail servers (the
    worker's own), how long it sleeps when nothing is due, its name, its clock."""

    stores: Callable[[], DeliveryStore]
    smtp: SmtpSettings
    router: Router
    tls: TlsContexts
    policy: RetryPolicy
    poll_seconds: float
    worker: str
    now: Callable[[], datetime]
    # The name in the mails' From: the operator's.
    sender_name: str


class MailQueue(ABC, Generic[Job]):
    name = "mails"

    def __init__(self, parts: QueueParts) -> None:
        self._parts = parts
        self._stores = parts.stores
        self._worker = parts.worker
        self._now = parts.now

    # What a queue says.

    @abstractmethod
    def _claim(self, store: DeliveryStore, now: datetime) -> Job | None: ...

    @abstractmethod
    def _write(self, job: Job) -> Written: ...

    @abstractmethod
    def _record(self, store: DeliveryStore, job: Job, outcome: MailOutcome) -> None: ...

    @abstractmethod
    def _attempts(self, job: Job) -> tuple[int, datetime]:
        """How often the job was tried before, and since when it waits."""

    # How its mails are sent.

    def run(self, stop: threading.Event) -> None:
        """Send mails as they fall due, until `stop` is set."""
        failures = 0
        while not stop.is_set():
            try:
                tried = self.run_once(stop)
            except Exception as exc:  # the database away, a bug: wait and try again
                failures += 1
                if failures == 1:
                    log.warning("%s paused: %s", self.name, describe_exception(exc))
                stop.wait(min(self._parts.poll_seconds * (1 << min(failures, 6)), 30.0))
                continue
            failures = 0
            if not tried:
                stop.wait(self._parts.poll_seconds)

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Send the mails that are due, one by one (a round); how many were tried."""
        tried = 0
        while tried < ROUND and not (stop is not None and stop.is_set()):
            with closing(self._stores()) as store:
                job = self._claim(store, self._now())
            if job is None:
                break
            outcome = self._send(job)
            with closing(self._stores()) as store:
                self._record(store, job, outcome)
            tried += 1
            log.info("%s: %s", self.name, outcome.state)
        return tried

    def _send(self, job: Job) -> MailOutcome:
        try:
            written = self._write(job)
        except Exception as exc:  # a receipt that cannot be made now, a missing key
            log.error("cannot write a mail of %s: %s", self.name, describe_exception(exc))
            return self._outcome(job, Outcome(kind=OutcomeKind.TEMPORARY, detail="not written"))
        return self._outcome(job, self._deliver(written))

    def _deliver(self, written: Written) -> Outcome:
        parts = self._parts
        try:
            routes = parts.router.routes(written.to)
        except NoRoute as exc:
            return Outcome(kind=OutcomeKind.PERMANENT, detail=str(exc))
        except RouteUnknown as exc:
            return Outcome(kind=OutcomeKind.TEMPORARY, detail=str(exc))
        failures = []
        for route in routes:
            session = SmtpSession(route, parts.smtp, parts.tls)
            try:
                session.open()
                return session.send(written.envelope_from, written.to, written.data)
            except TransportError as exc:
                failures.append(str(exc))
            finally:
                session.close()
        return Outcome(kind=OutcomeKind.TEMPORARY, detail="; ".join(failures))

    def _outcome(self, job: Job, outcome: Outcome) -> MailOutcome:
        now = self._now()
        attempts, since = self._attempts(job)
        decision: Decision = self._parts.policy.decide(
            outcome, attempts=attempts + 1, since=since, now=now
        )
        state = {"sent": "sent", "deferred": "queued"}.get(decision.state.value, "failed")
        if state == "failed":
            log.warning("a mail of %s was given up: %s", self.name, decision.detail)
        return MailOutcome(
            state=state,
            next_attempt_at=decision.next_attempt_at,
            detail=decision.detail,
            attempted_at=now,
        )
