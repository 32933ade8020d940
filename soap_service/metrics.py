"""How the service is doing, for an operator: metrics in the Prometheus text format and
the same at a glance (`soap-service status`).

Counted where they happen, in every process of the service: SOAP calls and their faults
and time (the API's gunicorn workers), mails taken by the SMTP channel, and what each
delivery attempt led to (the workers). They use prometheus_client's multiprocess mode:
each process keeps its counters in a file of its own in one folder (`var/metrics/`), and
whoever reads them adds them up, so a scrape sees every process of this host, not the one
gunicorn worker that answered it. The files outlive the processes: the counters count
since the folder was made (delete it while the service is stopped to start from zero).

The delivery queue (recipients waiting, due now, and how long the oldest due one has
waited) is read from the database when asked for, so it is the same on every host.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soap_service.domain.delivery import QueueSummary

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

# prometheus_client's own variable: where a process's counters are kept.
FOLDER_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def count_in(folder: Path) -> None:
    """Keep this process's counters in `folder` (and those of the processes it starts):
    call it before the first `Metrics` is made."""
    from prometheus_client import values

    folder.mkdir(parents=True, exist_ok=True)
    os.environ[FOLDER_VARIABLE] = str(folder)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


class Metrics:
    """The service's counters. Made without `count_in` first, they count in this process's
    memory only (tests of a single process)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self._api_calls = Counter(
            "soap_service_api_calls",
            "SOAP calls by operation and outcome: ok, or the fault code",
            ["operation", "outcome"],
            registry=None,
        )
        self._api_seconds = Histogram(
            "soap_service_api_call_seconds",
            "Time to answer a SOAP call, by operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self._smtp = Counter(
            "soap_service_smtp_submissions",
            "Mails submitted on the SMTP channel, by outcome: accepted, or the reply code",
            ["outcome"],
            registry=None,
        )
        self._deliveries = Counter(
            "soap_service_deliveries",
            "Delivery attempts by the state they left the recipient in",
            ["state"],
            registry=None,
        )

    def api_call(self, operation: str | None, outcome: str, seconds: float) -> None:
        operation = operation or "unknown"  # refused before its operation was known
        self._api_calls.labels(operation, outcome).inc()
        self._api_seconds.labels(operation).observe(seconds)

    def smtp_submission(self, reply: str) -> None:
        self._smtp.labels("accepted" if reply.startswith("250") else reply[:3]).inc()

    def delivered(self, states: dict[str, int]) -> None:
        """A batch's attempts: how many left their recipient sent, deferred, failed or
        delivered."""
        for state, count in states.items():
            self._deliveries.labels(state).inc(count)


def exposition(folder: Path, queue: Callable[[], QueueSummary], now: datetime) -> bytes:
    """Every counter of this host's processes and the queue, in the text format."""
    from prometheus_client import generate_latest

    return generate_latest(_registry(folder, queue, now))


def _registry(folder: Path, queue: Callable[[], QueueSummary], now: datetime) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    if folder.is_dir():
        multiprocess.MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    registry.register(_QueueCollector(queue, now))
    return registry


class _QueueCollector:
    """Reads the delivery queue from the database at each scrape."""

    def __init__(self, queue: Callable[[], QueueSummary], now: datetime) -> None:
        self._queue = queue
        self._now = now

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        summary = self._queue()
        yield GaugeMetricFamily(
            "soap_service_recipients_waiting",
            "Recipients queued or deferred: not yet handed to a mail server",
            value=summary.waiting,
        )
        yield GaugeMetricFamily(
            "soap_service_recipients_due",
            "Recipients whose delivery is due now",
            value=summary.due,
        )
        yield GaugeMetricFamily(
            "soap_service_oldest_due_seconds",
            "How long the oldest due recipient has been due (0 when none is)",
            value=_age(summary, self._now),
        )


def _age(summary: QueueSummary, now: datetime) -> float:
    if summary.oldest_due_since is None:
        return 0.0
    return max(0.0, (now - summary.oldest_due_since).total_seconds())


@dataclass(frozen=True, kw_only=True)
class Glance:
    """The metrics added up for `soap-service status`."""

    # operation -> outcome -> calls
    api_calls: dict[str, dict[str, float]]
    # operation -> (calls, seconds in all)
    api_time: dict[str, tuple[float, float]]
    smtp: dict[str, float]
    deliveries: dict[str, float]
    queue: QueueSummary
    oldest_due_seconds: float


def glance(folder: Path, queue: Callable[[], QueueSummary], now: datetime) -> Glance:
    calls: dict[str, dict[str, float]] = {}
    time_sum: dict[str, float] = {}
    time_count: dict[str, float] = {}
    smtp: dict[str, float] = {}
    deliveries: dict[str, float] = {}
    summary = queue()
    for family in _registry(folder, lambda: summary, now).collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "soap_service_api_calls_total":
                outcomes = calls.setdefault(labels["operation"], {})
                outcomes[labels["outcome"]] = sample.value
            elif sample.name == "soap_service_api_call_seconds_sum":
                time_sum[labels["operation"]] = sample.value
            elif sample.name == "soap_service_api_call_seconds_count":
                time_count[labels["operation"]] = sample.value
            elif sample.name == "soap_service_smtp_submissions_total":
                smtp[labels["outcome"]] = sample.value
            elif sample.name == "soap_service_deliveries_total":
                deliveries[labels["state"]] = sample.value
    return Glance(
        api_calls=calls,
        api_time={op: (time_count[op], time_sum.get(op, 0.0)) for op in time_count},
        smtp=smtp,
        deliveries=deliveries,
        queue=summary,
        oldest_due_seconds=_age(summary, now),
    )


def glance_text(seen: Glance) -> str:
    """What `soap-service status` prints."""
    lines = ["SOAP API (calls since the counters began; mean time per call)"]
    if not seen.api_calls:
        lines.append("  no calls yet")
    for operation in sorted(seen.api_calls):
        outcomes = seen.api_calls[operation]
        ok = outcomes.get("ok", 0)
        faults = ", ".join(
            f"{code} {count:.0f}" for code, count in sorted(outcomes.items()) if code != "ok"
        )
        count, seconds = seen.api_time.get(operation, (0.0, 0.0))
        mean = f"{seconds / count * 1000:.1f} ms" if count else "-"
        lines.append(
            f"  {operation:<18} {ok:>8.0f} ok  {mean:>9}"
            + (f"  faults: {faults}" if faults else "")
        )
    smtp = ", ".join(f"{outcome} {count:.0f}" for outcome, count in sorted(seen.smtp.items()))
    lines.append(f"SMTP channel: {smtp or 'no mails yet'}")
    states = ("sent", "delivered", "deferred", "failed")
    delivered = ", ".join(f"{state} {seen.deliveries.get(state, 0):.0f}" for state in states)
    lines.append(f"Delivery attempts: {delivered}")
    queue = seen.queue
    lines.append(
        f"Queue: {queue.waiting} waiting, {queue.due} due now"
        + (f", the oldest due for {seen.oldest_due_seconds:.0f} s" if queue.due else "")
    )
    return "\n".join(lines) + "\n"
