"""Keeping a worker's leases: from claim until its outcomes are recorded, everything a
worker holds has its lease renewed, every third of a lease, by a thread of its own: a slow
SMTP server or a slow recording never lets another worker send the same notification.

A recipient whose lease was nevertheless taken back (it expired, or the worker was
stalled longer than a lease and another worker claimed it) is reported lost, and the
worker does not send it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta

from soap_service.domain.ports import DeliveryStore
from soap_service.errors import SoapServiceError

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        *,
        stores: Callable[[], DeliveryStore],
        worker: str,
        lease: timedelta,
        now: Callable[[], datetime],
    ) -> None:
        self._stores = stores
        self._worker = worker
        self._lease = lease
        self._now = now
        self._lock = threading.Lock()
        self._held: set[int] = set()
        self._lost: set[int] = set()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, recipient_ids: list[int]) -> None:
        """Just claimed: renew these until `forget`."""
        with self._lock:
            self._held.update(recipient_ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()

    def forget(self, recipient_ids: list[int]) -> None:
        """Recorded, released or given up: no longer renewed."""
        with self._lock:
            self._held.difference_update(recipient_ids)
            self._lost.difference_update(recipient_ids)

    def lost(self, recipient_id: int) -> bool:
        with self._lock:
            return recipient_id in self._lost

    def renew(self) -> None:
        """Renew every lease held now; called by the thread, and by tests."""
        with self._lock:
            ids = sorted(self._held - self._lost)
        if not ids:
            return
        with closing(self._stores()) as store:
            still_held = store.extend_leases(self._worker, ids, self._now() + self._lease)
        with self._lock:
            # Only what is still held here: an outcome recorded meanwhile gave its lease
            # up itself, and is not lost.
            lost = (set(ids) - still_held) & self._held
            self._lost.update(lost)
        if lost:
            log.warning("%d lease(s) were taken back; those notifications are not sent", len(lost))

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        interval = self._lease.total_seconds() / 3
        while not self._stopped.wait(interval):
            try:
                self.renew()
            except SoapServiceError as exc:
                # The database is away: the next renewal, a third of a lease later, may
                # still come in time.
                log.debug("leases not renewed: %s", exc)
            except Exception:
                log.exception("leases not renewed")
