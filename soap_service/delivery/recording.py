"""Recording each delivery outcome as soon as it is known.

A worker killed between a server's 250 and the record of it sends that notification again,
once, after its lease runs out. So outcomes are written by a thread of their own while the
worker sends on: whatever outcomes wait when the writer is free go in one transaction, and
the sender does not start another mail while more than `max_waiting` outcomes are still
unwritten. A kill at any moment leaves at most that many (plus the mail on the wire)
to be sent twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from datetime import timedelta

from soap_service.delivery.leases import LeaseKeeper
from soap_service.domain.delivery import DeliveryResult
from soap_service.domain.ports import DeliveryStore
from soap_service.errors import SoapServiceError, Unavailable
from soap_service.logs import describe_exception

log = logging.getLogger(__name__)

# Outcomes the sender may be ahead of the writer by: the one being written and the one
# just known. A commit takes less than sending a mail, so the sender seldom waits.
MAX_WAITING = 1


class RecordingFailed(SoapServiceError):
    """Some outcomes could not be written; their leases run out instead."""


class OutcomeRecorder:
    def __init__(
        self,
        *,
        stores: Callable[[], DeliveryStore],
        worker: str,
        leases: LeaseKeeper,
        lease: timedelta,
        stop: Callable[[], threading.Event],
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._stores = stores
        self._worker = worker
        self._leases = leases
        self._lease = lease
        self._stop = stop  # the worker's current stop event
        self._max_waiting = max_waiting
        self._condition = threading.Condition()
        self._queue: list[DeliveryResult] = []
        self._writing = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def record(self, results: Iterable[DeliveryResult]) -> None:
        """Hand outcomes over to be written; returns once at most `max_waiting` outcomes
        are unwritten (the caller may then send the next mail)."""
        with self._condition:
            self._queue.extend(results)
            self._start()
            self._condition.notify_all()
            self._condition.wait_for(
                lambda: len(self._queue) + self._writing <= self._max_waiting or self._closed
            )

    def flush(self) -> None:
        """Returns once every outcome handed over is written (or given up)."""
        with self._condition:
            self._condition.wait_for(lambda: not self._queue and not self._writing)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                group, self._queue = self._queue, []
                self._writing = len(group)
            try:
                self._write(group)
            except RecordingFailed as exc:
                log.warning("outcomes not recorded: %s; tried again after their leases", exc)
            except Exception as exc:
                # Tried again when their leases run out: at most one duplicate each, never
                # a loss.
                log.warning("outcomes not recorded: %s", describe_exception(exc))
            finally:
                self._leases.forget([result.job.recipient_id for result in group])
                with self._condition:
                    self._writing = 0
                    self._condition.notify_all()

    def _write(self, results: list[DeliveryResult]) -> None:
        """Write a group; while the database is away, try again until a lease has passed
        or the worker stops. A group the database refuses for another reason is written
        one result at a time, so that one bad row costs only itself."""
        deadline = time.monotonic() + self._lease.total_seconds()
        pause = 0.5
        while True:
            try:
                with closing(self._stores()) as store:
                    store.record_results(self._worker, results)
                return
            except Unavailable:
                if time.monotonic() + pause > deadline or self._stop().wait(pause):
                    raise
                pause = min(pause * 2, 10.0)
            except SoapServiceError:
                if len(results) == 1:
                    raise RecordingFailed("1 of 1 outcomes were not recorded") from None
                break
        unrecorded = 0
        for result in results:
            try:
                with closing(self._stores()) as store:
                    store.record_results(self._worker, [result])
            except SoapServiceError:
                unrecorded += 1
        if unrecorded:
            raise RecordingFailed(f"{unrecorded} of {len(results)} outcomes were not recorded")
