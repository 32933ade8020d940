"""The delivery worker: claim due recipients, send their notifications, record outcomes.

Several workers, on one host or several, share the database. A claim is one atomic step
and carries a lease; a worker renews the leases of what it still holds, and what a dead
worker held becomes due again when its lease runs out. Each outcome is recorded as soon
as it is known (recording.py): a crash between a server's 250 and the record of it sends
that notification again, once, with the same Message-ID, and only the one or two mails
on their way when it happened.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.delivery.account_mails import AccountMailSender
from soap_service.delivery.gateway_mail import GatewayMailWriter, MessageContent
from soap_service.delivery.leases import LeaseKeeper
from soap_service.delivery.mail_queue import QueueParts
from soap_service.delivery.notification import NotificationWriter
from soap_service.delivery.recording import OutcomeRecorder
from soap_service.delivery.routing import NoRoute, Router, RouteUnknown
from soap_service.delivery.sender_reports import ReceiptFile, ReportSender
from soap_service.delivery.smtp import (
    DestinationBusy,
    Route,
    SmtpSession,
    TlsContexts,
    TransportError,
)
from soap_service.domain import sealing
from soap_service.domain.delivery import (
    DeliveryJob,
    DeliveryPath,
    DeliveryResult,
    Outcome,
    OutcomeKind,
    RetryPolicy,
)
from soap_service.domain.model import MessageType
from soap_service.domain.organisations import Gateway, GatewayDirectory, Organisation
from soap_service.domain.ports import DeliveryStore, SealedContent
from soap_service.domain.sealing import MessageCipher
from soap_service.errors import DeliveryError, ServiceError, SoapServiceError
from soap_service.logs import describe_exception
from soap_service.settings import DeliverySettings

log = logging.getLogger(__name__)

# A connection unused this long is closed (servers drop idle clients after a minute or so).
IDLE_CONNECTION_SECONDS = 10.0
# At most this many connections are kept open between batches (the most recently used).
MAX_IDLE_CONNECTIONS = 32
# Expired messages are looked for at most this often, this many per transaction.
EXPIRY_SWEEP_SECONDS = 30.0
EXPIRY_BATCH = 1000
# Messages whose retention is over are looked for at most this often (a batch each time).
RETENTION_SWEEP_SECONDS = 300.0
# recipients.lease_owner is 64 characters.
WORKER_NAME_LENGTH = 64
# Gateway mails are written in chunks, each chunk's content read in one query: at most
# this many messages or this much content a chunk (a message larger than that is a chunk
# of its own), and one chunk written ahead of the one being sent.
GATEWAY_CHUNK_MESSAGES = 50
GATEWAY_CHUNK_BYTES = 8 * 1024 * 1024


def worker_name() -> str:
    """Host, process and a random part: unique, and telling an operator where it runs."""
    suffix = f":{os.getpid()}:{uuid.uuid4().hex[:6]}"
    return socket.gethostname()[: WORKER_NAME_LENGTH - len(suffix)] + suffix


class DeliveryWorker:
    def __init__(
        self,
        *,
        stores: Callable[[], DeliveryStore],
        keyring: crypto.Keyring,
        settings: DeliverySettings,
        now: Callable[[], datetime],
        name: str | None = None,
        delete_due_content: Callable[[], int] | None = None,
        receipt_file: ReceiptFile | None = None,
        organisations: Callable[[], list[Organisation]] | None = None,
        mail_signer: Callable[[], crypto.MailSigner] | None = None,
        count: Callable[[dict[str, int]], None] = lambda states: None,
    ) -> None:
        self._count = count  # each batch's outcomes (metrics.py)
        self.name = name or worker_name()
        # Retention (domain/retention.py), run by the workers now and then: a batch a call.
        self._delete_due_content = delete_due_content
        self._last_retention = -float("inf")
        self._stores = stores
        self._keyring = keyring
        self._settings = settings
        self._now = now
        self._policy = RetryPolicy(
            minimum=timedelta(seconds=settings.retry_min_seconds),
            maximum=timedelta(seconds=settings.retry_max_seconds),
            give_up=timedelta(seconds=settings.give_up_seconds),
        )
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._leases = LeaseKeeper(stores=stores, worker=self.name, lease=self._lease, now=now)
        self._writer = NotificationWriter(
            mail_from=settings.smtp.mail_from,
            hostname=settings.smtp.hostname,
            pickup_base_url=settings.pickup_base_url,
            operator=settings.operator,
            signer=mail_signer,
        )
        self._router = Router(settings.smtp.relay)
        # Organisations' gateways, read again for each batch (an operator's change counts
        # from the next batch on).
        self._organisations = organisations or list
        self._gateway_writer = GatewayMailWriter(
            signer=mail_signer or _no_signer,
            mail_from=settings.smtp.mail_from,
            hostname=settings.smtp.hostname,
            operator_name=settings.operator.name,
        )
        self._tls = TlsContexts.from_settings(settings.smtp)
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifications")
        # Set when the worker is asked to stop: nothing more is sent, retries end.
        self._stop = threading.Event()
        self._outcomes = OutcomeRecorder(
            stores=stores,
            worker=self.name,
            leases=self._leases,
            lease=self._lease,
            stop=lambda: self._stop,
        )
        # Mails besides notifications, each queue in a thread of its own: reports owed to
        # senders (failures, receipts) and mails about people's accounts.
        parts = QueueParts(
            stores=stores,
            smtp=settings.smtp,
            router=self._router,
            tls=self._tls,
            policy=self._policy,
            poll_seconds=settings.poll_seconds,
            worker=self.name,
            now=now,
            sender_name=settings.operator.name,
        )
        self._reports = ReportSender(parts, keyring=keyring, receipt_file=receipt_file)
        self._account_mails = AccountMailSender(
            parts, keyring=keyring, site_url=settings.pickup_base_url
        )
        # Connections kept open between batches, by destination, with when last used.
        self._idle: dict[tuple[Route, ...], tuple[SmtpSession, float]] = {}
        self._last_sweep = -float("inf")

    @property
    def leases(self) -> LeaseKeeper:
        return self._leases

    def run(self, stop: threading.Event) -> None:
        log.info("delivery worker %s started", self.name)
        self._stop = stop
        queues = [
            threading.Thread(target=queue.run, args=(stop,), name=queue.name, daemon=True)
            for queue in (self._reports, self._account_mails)
        ]
        for queue in queues:
            queue.start()
        failures = 0
        while not stop.is_set():
            try:
                handled = self.run_once(record_in_background=True)
            except ServiceError as exc:  # the database is away: wait and try again
                if not failures:
                    log.warning("delivery paused: %s", exc.message)
                failures += 1
                stop.wait(_backoff(self._settings.poll_seconds, failures))
                continue
            except Exception as exc:
                # A bug must not stop delivery: what this batch held is retried when its
                # leases run out.
                log.error("delivery batch failed: %s", describe_exception(exc))
                failures += 1
                stop.wait(_backoff(self._settings.poll_seconds, failures))
                continue
            if failures:
                log.info("delivery resumed after %d failed tries", failures)
                failures = 0
            if not handled:
                stop.wait(self._settings.poll_seconds)
        self._outcomes.flush()
        for queue in queues:
            queue.join(timeout=60)
        log.info("delivery worker %s stopped", self.name)

    def close(self) -> None:
        self._close_idle_sessions(older_than=-1.0)
        self._writer_thread.shutdown(wait=True, cancel_futures=True)
        self._outcomes.close()
        self._leases.close()

    def run_once(self, *, record_in_background: bool = False) -> int:
        """Expire what is due, then deliver one batch; the number of recipients tried.

        Each outcome is written as soon as it is known, in the background; the last ones
        may still be on their way when this returns, unless `record_in_background` is off.
        """
        self._retention_due()
        with closing(self._stores()) as store:
            self._expire_due(store)
            now = self._now()
            jobs = store.claim_due(
                self.name, now=now, lease_until=now + self._lease, limit=self._settings.batch_size
            )
        if not jobs:
            self._close_idle_sessions(older_than=IDLE_CONNECTION_SECONDS)
            return 0
        batch = [job.recipient_id for job in jobs]
        self._leases.hold(batch)
        try:
            results, untried = self._deliver(jobs)
            if untried:
                self._release(untried)
        except BaseException:
            self._leases.forget(batch)  # tried again when the leases run out
            raise
        finally:
            self._close_idle_sessions(older_than=IDLE_CONNECTION_SECONDS)
        # Lost to another worker meanwhile: neither tried nor recorded here.
        settled = {result.job.recipient_id for result in results} | set(untried)
        self._leases.forget([recipient for recipient in batch if recipient not in settled])
        if not record_in_background:
            self._outcomes.flush()
        counts = Counter(result.decision.state.value for result in results)
        self._count(dict(counts))
        log.info("delivered %d: %s", len(results), ", ".join(f"{k} {v}" for k, v in counts.items()))
        return len(results)

    def send_reports(self) -> int:
        """One round of the reports owed to senders (run() does it in its own thread)."""
        return self._reports.run_once()

    def send_account_mails(self) -> int:
        """One round of the mails about people's accounts (run() does it in its own
        thread)."""
        return self._account_mails.run_once()

    # Expiry.

    def _expire_due(self, store: DeliveryStore) -> None:
        if time.monotonic() - self._last_sweep < EXPIRY_SWEEP_SECONDS:
            return
        self._last_sweep = time.monotonic()
        total = 0
        while True:  # a transaction per thousand: never one huge one
            expired = store.expire_due(now=self._now(), limit=EXPIRY_BATCH)
            total += expired
            if expired < EXPIRY_BATCH:
                break
        if total:
            log.info("expired %d recipient(s)", total)

    def _retention_due(self) -> None:
        if self._delete_due_content is None:
            return
        if time.monotonic() - self._last_retention < RETENTION_SWEEP_SECONDS:
            return
        self._last_retention = time.monotonic()
        deleted = self._delete_due_content()
        if deleted:
            log.info("deleted the content of %d message(s) at the end of their retention", deleted)

    # Sending.

    def _deliver(self, jobs: list[DeliveryJob]) -> tuple[list[DeliveryResult], list[int]]:
        """The outcome of each job tried, and the jobs not tried because the worker is
        stopping. A job whose lease was taken back is neither: another worker has it."""
        results: list[DeliveryResult] = []
        untried: list[int] = []
        for routes, group in self._by_destination(jobs, results).items():
            if self._stop.is_set():
                untried += [job.recipient_id for job in group]
                continue
            gateway = routes[0].gateway
            session = self._idle_session(routes)
            waiting = deque(group)
            # The next mails are written in another thread while this one waits for the
            # server's replies (SSL reads release the GIL).
            if gateway is None:
                chunks = [[job] for job in group]
                written = self._written_ahead(self._notifications, chunks, ahead=len(chunks))
            else:
                written = self._written_ahead(self._gateway_mails, _chunks(group), ahead=1)
            try:
                for mail in written:
                    job = waiting.popleft()
                    if self._stop.is_set():
                        untried += [job.recipient_id, *(other.recipient_id for other in waiting)]
                        break
                    if self._leases.lost(job.recipient_id):
                        continue
                    if mail is None:
                        problem = _temporary("the mail could not be written")
                        self._done(results, self._result(job, problem, routes))
                        continue
                    try:
                        if session is None:
                            session = self._open(routes)
                        outcome = session.send(self._settings.smtp.mail_from, job.address, mail)
                    except TransportError as exc:
                        session = None
                        if isinstance(exc, DestinationBusy | _OpenFailed):
                            # Nobody to talk to, or it asked us to go away: the same answer
                            # for the whole group, without knocking again for each.
                            busy = _temporary(str(exc))
                            self._done(
                                results,
                                *(
                                    self._result(deferred, busy, routes)
                                    for deferred in (job, *waiting)
                                    if not self._leases.lost(deferred.recipient_id)
                                ),
                            )
                            break
                        outcome = _temporary(str(exc))  # the next mail opens a new connection
                    self._done(results, self._result(job, outcome, routes))
                    if session is not None and not session.is_open:
                        session = None
            finally:
                if session is not None:
                    self._idle[routes] = (session, time.monotonic())
        return results, untried

    def _done(self, results: list[DeliveryResult], *tried: DeliveryResult) -> None:
        """Outcomes now known: recorded at once (the next mail waits if the recording
        falls behind), and kept for the batch's log line."""
        results.extend(tried)
        self._outcomes.record(tried)

    def _open(self, routes: tuple[Route, ...]) -> SmtpSession:
        failures = []
        for route in routes:
            session = SmtpSession(route, self._settings.smtp, self._tls)
            try:
                session.open()
                return session
            except TransportError as exc:
                failures.append(str(exc))
        raise _OpenFailed("; ".join(failures))

    def _by_destination(
        self, jobs: list[DeliveryJob], results: list[DeliveryResult]
    ) -> dict[tuple[Route, ...], list[DeliveryJob]]:
        groups: dict[tuple[Route, ...], list[DeliveryJob]] = defaultdict(list)
        gateways = self._gateways(jobs)
        # One DNS lookup per domain and batch: a payroll run is mostly one or two domains.
        known: dict[tuple[str, Organisation | None], tuple[Route, ...] | Exception] = {}
        for job in jobs:
            organisation = gateways.get(job.recipient_id)
            key = (job.domain.lower(), organisation)
            if key not in known:
                try:
                    known[key] = self._routes(job.domain, organisation)
                except (NoRoute, RouteUnknown) as exc:
                    known[key] = exc
            found = known[key]
            if isinstance(found, Exception):
                unrouted = Outcome(
                    kind=OutcomeKind.PERMANENT
                    if isinstance(found, NoRoute)
                    else OutcomeKind.TEMPORARY,
                    detail=str(found),
                )
                gateway = organisation.gateway if organisation else None
                self._done(results, self._decided(job, unrouted, gateway))
            else:
                groups[found].append(job)
        return groups

    def _gateways(self, jobs: list[DeliveryJob]) -> dict[int, Organisation]:
        """The organisation whose gateway takes each confidential message's recipient
        (personal and registered messages always go through the pickup page; a recipient
        whose gateway was given up for the fallback gets a notification)."""
        candidates = [
            job
            for job in jobs
            if job.type is MessageType.CONFIDENTIAL and job.gateway_given_up_at is None
        ]
        if not candidates:
            return {}
        directory = GatewayDirectory(self._organisations())
        if not directory:
            return {}
        found = {}
        for job in candidates:
            organisation = directory.organisation_for(job.address)
            if organisation is not None:
                found[job.recipient_id] = organisation
        return found

    def _routes(self, domain: str, organisation: Organisation | None) -> tuple[Route, ...]:
        gateway = organisation.gateway if organisation else None
        if gateway is None:
            return tuple(self._router.routes_for_domain(domain))
        if gateway.host is not None:
            return (Route(gateway.host, gateway.port, gateway=gateway),)
        # The domain's MX, never the relay: TLS to the gateway is the organisation's.
        return tuple(
            Route(route.host, gateway.port, gateway=gateway)
            for route in self._router.exchangers(domain)
        )

    def _idle_session(self, routes: tuple[Route, ...]) -> SmtpSession | None:
        """A connection kept from an earlier batch, if the server still answers on it."""
        kept = self._idle.pop(routes, None)
        if kept is None:
            return None
        session, _ = kept
        if session.alive():
            return session
        session.close()
        return None

    def _close_idle_sessions(self, older_than: float) -> None:
        cutoff = time.monotonic() - older_than
        by_age = sorted(self._idle.items(), key=lambda item: item[1][1], reverse=True)
        for rank, (routes, (session, last_used)) in enumerate(by_age):
            if last_used <= cutoff or rank >= MAX_IDLE_CONNECTIONS:
                del self._idle[routes]
                session.close()

    def _written_ahead(
        self,
        write: Callable[[list[DeliveryJob]], list[bytes | None]],
        chunks: list[list[DeliveryJob]],
        *,
        ahead: int,
    ) -> Iterator[bytes | None]:
        """Each job's mail in order (None: it could not be written), written a chunk at a
        time in the writer thread, at most `ahead` chunks before the one being sent."""
        pending: deque[Future[list[bytes | None]]] = deque()
        queue = iter(chunks)
        for chunk in itertools.islice(queue, ahead + 1):
            pending.append(self._writer_thread.submit(write, chunk))
        while pending:
            mails = pending.popleft().result()
            following = next(queue, None)
            if following is not None:
                pending.append(self._writer_thread.submit(write, following))
            yield from mails

    def _notifications(self, jobs: list[DeliveryJob]) -> list[bytes | None]:
        return [self._notification_or_error(job) for job in jobs]

    def _notification_or_error(self, job: DeliveryJob) -> bytes | None:
        try:
            cipher = MessageCipher.unwrap(self._keyring, job.data_key, job.message_id)
            subject = (
                cipher.open(sealing.SUBJECT, job.sealed_subject).decode("utf-8")
                if job.show_subject
                else None
            )
            token = cipher.pickup_token(job.position)
            return self._writer.write(job, token=token, subject=subject, now=self._now()).data
        except Exception as exc:  # a missing master key, a bug: retried, never a crash
            log.error("cannot write notification: %s", describe_exception(exc))
            return None

    def _gateway_mails(self, jobs: list[DeliveryJob]) -> list[bytes | None]:
        try:
            with closing(self._stores()) as store:
                contents = store.message_contents(sorted({job.message_id for job in jobs}))
        except Exception as exc:  # the database away: retried, never a crash
            log.error("cannot read messages for gateway mails: %s", describe_exception(exc))
            return [None] * len(jobs)
        mails: list[bytes | None] = []
        for job in jobs:
            try:
                sealed = contents.get(job.message_id)
                if sealed is None:
                    raise DeliveryError(f"the content of {job.message_id} was deleted")
                mails.append(self._gateway_writer.write(job, self._opened(job, sealed)))
            except Exception as exc:  # the signing key unreadable, a bug: retried
                log.error("cannot write gateway mail: %s", describe_exception(exc))
                mails.append(None)
        return mails

    def _opened(self, job: DeliveryJob, sealed: SealedContent) -> MessageContent:
        cipher = MessageCipher.unwrap(self._keyring, job.data_key, job.message_id)
        texts = cipher.open_texts(sealed.texts)
        return MessageContent(
            subject=texts.subject,
            text_body=texts.text_body,
            html_body=texts.html_body,
            attachments=tuple(map(cipher.open_attachment, sealed.attachments)),
        )

    def _result(
        self, job: DeliveryJob, outcome: Outcome, routes: tuple[Route, ...]
    ) -> DeliveryResult:
        return self._decided(job, outcome, routes[0].gateway)

    def _decided(
        self, job: DeliveryJob, outcome: Outcome, gateway: Gateway | None
    ) -> DeliveryResult:
        now = self._now()
        decision = self._policy.decide(
            outcome,
            attempts=job.attempts + 1,
            since=job.gateway_given_up_at or job.accepted_at,
            now=now,
            path=DeliveryPath.NOTIFICATION if gateway is None else DeliveryPath.GATEWAY,
            fallback=gateway is not None and gateway.fallback_to_notification,
        )
        return DeliveryResult(job=job, decision=decision, attempted_at=now)

    def _release(self, recipient_ids: list[int]) -> None:
        try:
            with closing(self._stores()) as store:
                store.release_leases(self.name, recipient_ids)
        except SoapServiceError as exc:
            log.warning("leases not released, they run out instead: %s", exc)
        finally:
            self._leases.forget(recipient_ids)


class _OpenFailed(TransportError):
    """No server of the destination could be reached."""


def _chunks(jobs: list[DeliveryJob]) -> list[list[DeliveryJob]]:
    """Jobs in order, in chunks of at most GATEWAY_CHUNK_MESSAGES messages and, but for a
    chunk of one, GATEWAY_CHUNK_BYTES of content."""
    chunks: list[list[DeliveryJob]] = []
    size = 0
    for job in jobs:
        if (
            not chunks
            or len(chunks[-1]) >= GATEWAY_CHUNK_MESSAGES
            or size + job.content_bytes > GATEWAY_CHUNK_BYTES
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(job)
        size += job.content_bytes
    return chunks


def _no_signer() -> crypto.MailSigner:
    raise DeliveryError("no mail signing certificate was given to this worker")


def _temporary(detail: str) -> Outcome:
    return Outcome(kind=OutcomeKind.TEMPORARY, detail=detail)


def _backoff(poll_seconds: float, failures: int) -> float:
    """Waits that grow while the database stays away, up to half a minute."""
    return min(poll_seconds * (1 << min(failures, 10)), 30.0)
