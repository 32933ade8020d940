"""The payroll run: every employee's payslip as a secure message, safe to run again.

    python payroll_client.py send --csv employees.csv --payslips DIR --period 2026-11
    python payroll_client.py status --csv employees.csv --period 2026-11 --report out.csv

`send` reads the employees (CSV: id, name, email, language) and sends each one's payslip
(DIR/<id>.pdf) as a confidential or registered message. The payslips go in batches with
SendMessages: up to --batch-size (default 50, at most 100) per call and never more than
30 MiB of payslips in one call, --concurrency batches at once (default 4). Each payslip has
its own result: one the service refuses (a file that looks like a program, say) is
reported for its employee and the rest of its batch is sent. A bad row (no address, no
payslip, an unknown language) is reported and the other rows still go.

`status` follows the run through the account's journal of recipient state changes
(GetStatusChanges), from where that period's first `send` began, until every recipient
is final (or, with --until sent, sent or final: enough for a benchmark) or --timeout,
with a progress bar, then writes a CSV report of each employee's recipient.

What is safe to run again: everything, at any moment. Each payslip's Reference is
payslip-<period>-<employee id>, and the service answers a Reference it already has with
the original message instead of sending it twice: running the same month again after a
crash, a kill -9, a lost connection, a restart of the service or a Ctrl-C sends each
payslip exactly once (a payslip file changed since it was sent is refused with
Client.DuplicateReference, not sent again). `status` only reads.

The state file (--state-file, default payroll-state.json in the current folder) keeps,
per account and period, the journal position at which the period's first `send` began,
so that `status` need not read the account's whole history. A re-run keeps the first
position. Without it `status` reads the journal from the start: slower, same report. Run
one `send` at a time per state file.

Against `make run` no connection option is needed: the development account is read from
var/dev-account.txt and the development certificate var/tls/dev-cert.pem is trusted.

Exit codes, for a scheduler:
    0  every payslip accepted (send) / every recipient final, or sent (status)
    1  some rows were not sent (bad rows, refused by the service): see the summary
    2  wrong usage, an unreadable CSV, or a state file that cannot be read or written
    3  the service refused our credentials
    4  the service could not be reached (or kept failing), or its certificate is not trusted
    5  status: the timeout came before every recipient was final (or sent)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import zeep
import zeep.exceptions
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

# Payslips the service accepted before this run began come from an earlier run.
PROCESS_STARTED = time.time()
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_TIMEOUT = range(6)
LANGUAGES = ("de", "fr", "it", "en")
FINAL_STATES = {"delivered", "opened", "accepted", "refused", "expired", "failed", "cancelled"}
# Each delivery attempt ends in one of these states: counted as the report's attempts.
ATTEMPT_STATES = {"deferred", "sent", "delivered", "failed"}
# Faults worth sending again unchanged (the reference makes it safe); others are final.
RETRIED_FAULTS = {"Server.Unavailable", "Server.InternalError"}
# The service's limits: messages per SendMessages call, payslip bytes in one call.
MAX_BATCH_MESSAGES = 100
MAX_BATCH_BYTES = 30 * 1024 * 1024
# Changes per GetStatusChanges call: the most the service gives.
CHANGES_PAGE = 1000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Stop(Exception):
    """Nothing more can be done (credentials refused, service unreachable, bad state file)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Employee:
    row: int
    id: str
    name: str
    email: str
    language: str

    def reference(self, period: str) -> str:
        return f"payslip-{period}-{self.id}"


@dataclass
class Outcome:
    employee: Employee | None
    row: int
    status: str  # accepted, already (sent before), bad-row, refused, error
    detail: str = ""
    message_id: str = ""


@dataclass
class Employees:
    valid: list[Employee] = field(default_factory=list)
    bad: list[Outcome] = field(default_factory=list)


# Reading the input.


def read_employees(path: Path, payslips: Path | None) -> Employees:
    """The rows of the CSV; a bad row is kept apart with its reason."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Stop(f"cannot read {path}: {exc}", EXIT_USAGE) from exc
    result = Employees()
    # An id on two rows: which payslip belongs to whom is unclear, so neither goes.
    ids = Counter((row.get("id") or "").strip() for row in rows)
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        employee_id = (row.get("id") or "").strip()
        email = (row.get("email") or "").strip()
        language = (row.get("language") or "de").strip().lower() or "de"
        problem = ""
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,60}", employee_id):
            problem = "the id is missing or has characters other than letters, digits, . _ -"
        elif ids[employee_id] > 1:
            problem = f"the id {employee_id} is on {ids[employee_id]} rows: fix the CSV"
        elif not EMAIL.match(email):
            problem = f"no valid e-mail address ({email or 'empty'})"
        elif language not in LANGUAGES:
            problem = f"unknown language {language!r} (de, fr, it or en)"
        elif payslips is not None and not (payslips / f"{employee_id}.pdf").is_file():
            problem = f"no payslip {employee_id}.pdf in {payslips}"
        employee = Employee(number, employee_id, (row.get("name") or "").strip(), email, language)
        if problem:
            result.bad.append(Outcome(employee, number, "bad-row", problem))
        else:
            result.valid.append(employee)
    return result


# Talking to the service.


# A connection refused, reset or cut off mid-answer (the service restarting), or no answer
# in time: the call may or may not have been carried out, and is sent again.
CONNECTION_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.Timeout,
)


@dataclass(frozen=True)
class Connection:
    url: str
    username: str
    password: str
    ca_file: str | None

    def client(self) -> zeep.Client:
        session = requests.Session()
        session.verify = self.ca_file if self.ca_file else True
        session.trust_env = False
        transport = Transport(session=session, timeout=60, operation_timeout=120)
        try:
            return zeep.Client(
                f"{self.url}?wsdl",
                transport=transport,
                wsse=UsernameToken(self.username, self.password),
            )
        except Exception as exc:
            raise _connection_problem(exc, self.url) from exc


def _connection_problem(exc: BaseException, url: str) -> Stop:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return Stop(
            f"the certificate of {url} is not trusted: give the CA with --ca-file",
            EXIT_UNREACHABLE,
        )
    if isinstance(exc, CONNECTION_ERRORS):
        return Stop(f"cannot reach {url}: is the service running?", EXIT_UNREACHABLE)
    return Stop(f"cannot load the WSDL from {url}: {text[:200]}", EXIT_UNREACHABLE)


def fault_code(fault: zeep.exceptions.Fault) -> str:
    return str(fault.code or "").split(":", 1)[-1]


def call(operation: Callable[[], Any], url: str, *, attempts: int = 4) -> Any:
    """One SOAP call; temporary trouble is retried with a growing pause (2, 4, 8 s)."""
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except zeep.exceptions.Fault as fault:
            code = fault_code(fault)
            if code == "Client.AuthenticationFailed":
                raise Stop(
                    "the service refused the username or password (Client.AuthenticationFailed)",
                    EXIT_AUTH,
                ) from fault
            if code not in RETRIED_FAULTS or attempt == attempts:
                raise
        except CONNECTION_ERRORS as exc:
            if attempt == attempts:
                raise _connection_problem(exc, url) from exc
        except zeep.exceptions.TransportError as exc:  # e.g. a proxy's 502 or 503
            if exc.status_code < 500 or attempt == attempts:
                raise
        time.sleep(min(2.0**attempt, 15.0))
    raise AssertionError("unreachable")


def status_changes(
    client: zeep.Client, url: str, cursor: str | None, *, saved: bool = False
) -> Any:
    """One page of the account's recipient state changes after `cursor` (None: from the
    account's first message on), oldest first: .Change, .NextCursor, .HasMore. `saved`:
    the cursor comes from the state file."""
    try:
        return call(
            lambda: client.service.GetStatusChanges(Cursor=cursor, PageSize=CHANGES_PAGE), url
        )
    except zeep.exceptions.Fault as fault:
        code = fault_code(fault)
        if saved and code == "Client.ValidationError":
            # Edited by hand, or saved for another account or service.
            raise Stop(
                f"the service refused the journal position in the state file ({fault.message}):"
                " delete the file, and status reads the journal from the start",
                EXIT_USAGE,
            ) from fault
        raise Stop(f"GetStatusChanges failed: {code}: {fault.message}", EXIT_UNREACHABLE) from fault


# The state file.


class StateFile:
    """Where each period's run began in the account's journal, for `status`:

        {"<username> at <url>": {"2026-11": "<cursor>", "2026-12": "<cursor>"}}

    A cursor belongs to one account of one service (another account's is refused), hence
    the key. Periods are kept in the order their first `send` ran: the last one is the
    newest journal position we know, where the next period's catch-up starts.
    """

    def __init__(self, path: Path, connection: Connection) -> None:
        self.path = path
        self.account = f"{connection.username} at {connection.url}"

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
            return saved
        except (OSError, ValueError) as exc:
            raise Stop(
                f"cannot read the state file {self.path}: {exc} (delete it: status then "
                "reads the journal from the start)",
                EXIT_USAGE,
            ) from exc

    def periods(self) -> dict[str, str]:
        return dict(self._load().get(self.account, {}))

    def save_period(self, period: str, cursor: str) -> None:
        saved = self._load()
        saved.setdefault(self.account, {})[period] = cursor
        # A new file renamed over the old one: a run killed while writing cannot leave
        # half a file behind.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, prefix=".payroll-state-", delete=False
            ) as file:
                json.dump(saved, file, indent=2)
                file.write("\n")
            os.replace(file.name, self.path)
        except OSError as exc:
            raise Stop(f"cannot write the state file {self.path}: {exc}", EXIT_USAGE) from exc


def remember_start(
    client: zeep.Client, connection: Connection, state: StateFile, period: str
) -> None:
    """At a period's first `send`, save the account's current journal position: every
    change of this period's payslips comes after it. A re-run keeps the first one."""
    periods = state.periods()
    if period in periods:
        return
    # Catch up from the newest position we know (from the start without one) until no
    # change is waiting: what NextCursor then says is "now".
    cursor = next(reversed(periods.values()), None)
    saved = cursor is not None
    while True:
        page = status_changes(client, connection.url, cursor, saved=saved)
        cursor, saved = page.NextCursor, False
        if not page.HasMore:
            break
    state.save_period(period, cursor)


# Sending.


class Progress:
    """A progress bar on stderr (a line at a time when it is not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done = total, label, 0
        self._lock = threading.Lock()
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self._show(self.done + count)

    def update(self, done: int) -> None:
        with self._lock:
            self._show(done)

    def finish(self) -> None:
        """End the bar's line even if it did not reach the total (a timeout)."""
        with self._lock:
            if self.done < self.total:
                self._show(self.done, force=True)

    def _show(self, done: int, *, force: bool = False) -> None:
        changed, self.done = done != self.done, done
        now = time.monotonic()
        due = done == self.total or now - self._last > (0.1 if self._tty else 5.0)
        if not (force or (changed and due)):
            return
        self._last = now
        width = 30
        filled = width * done // max(self.total, 1)
        bar = "#" * filled + "-" * (width - filled)
        end = "\r" if self._tty and done < self.total and not force else "\n"
        print(f"{self.label} [{bar}] {done}/{self.total}", end=end, file=sys.stderr)


def batches(employees: list[Employee], payslips: Path, size: int) -> Iterator[list[Employee]]:
    """The employees in order, `size` at a time, and never more than MAX_BATCH_BYTES of
    payslips in one batch: the service refuses the whole call beyond that. A payslip
    larger than that goes alone (and is refused alone)."""
    batch: list[Employee] = []
    total = 0
    for employee in employees:
        try:
            size_of = (payslips / f"{employee.id}.pdf").stat().st_size
        except OSError:
            size_of = 0  # gone since the CSV was read: reading it will say so
        if batch and (len(batch) == size or total + size_of > MAX_BATCH_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(employee)
        total += size_of
    if batch:
        yield batch


def payslip_message(args: argparse.Namespace, employee: Employee, content: bytes) -> dict[str, Any]:
    """One SendMessages entry: an OutgoingMessage, as SendMessage takes it."""
    return {
        "Reference": employee.reference(args.period),
        "Type": args.type,
        "Recipients": {"Recipient": [{"Address": employee.email}]},
        "Subject": args.subject.format(period=args.period, name=employee.name),
        "TextBody": args.text.format(period=args.period, name=employee.name),
        "Attachments": {
            "Attachment": [
                {
                    "FileName": f"payslip-{args.period}.pdf",
                    "ContentType": "application/pdf",
                    "Content": content,
                }
            ]
        },
        "Language": employee.language,
    }


def outcome_of(employee: Employee, result: Any) -> Outcome:
    """What one SendMessages result says about one employee's payslip."""
    if result is None:
        return Outcome(employee, employee.row, "error", "the service's answer left it out")
    if result.Fault is not None:
        detail = f"{result.Fault.Code}: {result.Fault.Text}"
        return Outcome(employee, employee.row, "refused", detail)
    status = result.Status
    # An earlier run's message comes back with its original acceptance time, from before
    # this process started (the service's clock against ours: keep both in NTP sync; only
    # the summary depends on it).
    earlier = status.AcceptedAt.timestamp() < PROCESS_STARTED
    return Outcome(
        employee, employee.row, "already" if earlier else "accepted", message_id=status.MessageId
    )


def send_all(args: argparse.Namespace, connection: Connection) -> int:
    payslips = Path(args.payslips)
    employees = read_employees(Path(args.csv), payslips)
    outcomes: list[Outcome] = list(employees.bad)
    for bad in employees.bad:
        print(f"row {bad.row}: {bad.detail}; not sent", file=sys.stderr)
    local = threading.local()

    def client() -> zeep.Client:
        if not hasattr(local, "client"):
            local.client = connection.client()
        return local.client

    client()  # the WSDL once, up front: a wrong URL or certificate stops here
    if employees.valid:
        # Before the first payslip goes, so that `status` misses none of its changes
        # (wrong credentials stop here too).
        remember_start(
            client(), connection, StateFile(Path(args.state_file), connection), args.period
        )
    progress = Progress(len(employees.valid), "sending")
    stop: list[Stop] = []
    interrupted = threading.Event()

    def send_batch(batch: list[Employee], done: dict[int, Outcome]) -> None:
        """Send one batch; each employee's outcome goes into `done` by row."""
        messages, sent = [], []
        for employee in batch:
            try:
                content = (payslips / f"{employee.id}.pdf").read_bytes()
            except OSError as exc:
                done[employee.row] = Outcome(employee, employee.row, "error", str(exc)[:300])
                continue
            messages.append(payslip_message(args, employee, content))
            sent.append(employee)
        if not messages:
            return
        try:
            # Sending a batch again (a retry, or a whole re-run) is safe: each payslip's
            # Reference makes the service answer with the message it already has.
            results = call(lambda: client().service.SendMessages(Message=messages), connection.url)
        except zeep.exceptions.Fault as fault:
            code = fault_code(fault)
            if code == "Client.MessageTooLarge" and len(sent) > 1:
                # A service configured with a smaller request limit than the usual one:
                # halves until they pass.
                half = len(sent) // 2
                send_batch(sent[:half], done)
                send_batch(sent[half:], done)
                return
            # The whole call was refused: that is each payslip's answer.
            for employee in sent:
                done[employee.row] = Outcome(
                    employee, employee.row, "refused", f"{code}: {fault.message}"
                )
            return
        by_position = {result.Position: result for result in results}
        for position, employee in enumerate(sent, start=1):
            done[employee.row] = outcome_of(employee, by_position.get(position))

    def send_one(batch: list[Employee]) -> list[Outcome]:
        done: dict[int, Outcome] = {}
        reason = "not tried: the run stopped"
        try:
            if not (stop or interrupted.is_set()):
                send_batch(batch, done)
        except Stop as exc:
            stop.append(exc)
            reason = str(exc)
        except Exception as exc:  # one batch's trouble must not end the run
            reason = f"{type(exc).__name__}: {exc}"[:300]
        progress.advance(len(batch))
        return [done.get(e.row) or Outcome(e, e.row, "error", reason) for e in batch]

    pool = ThreadPoolExecutor(max_workers=args.concurrency)
    try:
        futures = [
            pool.submit(send_one, batch)
            for batch in batches(employees.valid, payslips, args.batch_size)
        ]
        for future in as_completed(futures):
            outcomes.extend(future.result())
    except KeyboardInterrupt:
        interrupted.set()  # the batches in flight finish; the rest are not started
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    print_summary(outcomes)
    if stop:
        raise stop[0]
    return (
        EXIT_OK if all(o.status in ("accepted", "already") for o in outcomes) else EXIT_SOME_FAILED
    )


def print_summary(outcomes: list[Outcome]) -> None:
    counts = Counter(o.status for o in outcomes)
    reasons = Counter(o.detail.split(":", 1)[0] for o in outcomes if o.status == "refused")
    print("\nsummary")
    print(f"  {'accepted now':24} {counts['accepted']:6}")
    print(f"  {'sent in an earlier run':24} {counts['already']:6}")
    print(f"  {'bad rows':24} {counts['bad-row']:6}")
    print(f"  {'refused by the service':24} {counts['refused']:6}")
    for reason, count in sorted(reasons.items()):
        print(f"    {reason:22} {count:6}")
    if counts["error"]:
        print(f"  {'not sent (stopped)':24} {counts['error']:6}")
    for outcome in sorted(outcomes, key=lambda o: o.row):
        if outcome.status in ("bad-row", "refused", "error"):
            who = outcome.employee.id if outcome.employee else "?"
            print(f"  row {outcome.row} ({who}): {outcome.status}: {outcome.detail}")


# Following the run.


REPORT_FIELDS = [
    "employee_id", "name", "email", "reference", "message_id", "state", "state_changed_at",
    "attempts", "last_error",
]  # fmt: skip


@dataclass
class Tracked:
    """One employee's payslip recipient, as the changes read so far tell it."""

    employee: Employee
    reference: str
    message_id: str = ""
    state: str = ""  # empty until a change (or GetStatus) says
    changed_at: datetime | None = None  # when it took this state (a second deferral is not)
    attempts: int = 0
    last_error: str = ""  # why the last attempt failed, as GetStatus's LastError
    # GetStatus's answer already holds every change up to this time: those are skipped.
    known_until: datetime | None = None

    def apply(self, change: Any) -> None:
        """A change of this recipient's state. They come oldest first, so applying each
        in turn leaves the newest: an older one never overwrites a newer state."""
        if self.known_until is not None and change.ChangedAt <= self.known_until:
            return
        if change.State != self.state:
            self.changed_at = change.ChangedAt
        self.message_id = change.MessageId
        self.state = change.State
        if change.State in ATTEMPT_STATES:
            self.attempts += 1
            # The detail of a successful attempt is the mail server's "250 OK".
            failed = change.State in ("deferred", "failed")
            self.last_error = (change.Detail or "") if failed else ""

    def ask(self, client: zeep.Client, url: str) -> None:
        """GetStatus by Reference, for a recipient whose changes came before the cursor
        (or never: the payslip was not sent)."""
        try:
            status = call(lambda: client.service.GetStatus(Reference=self.reference), url)
        except zeep.exceptions.Fault as fault:
            self.state = "not-sent" if fault_code(fault) == "Client.NotFound" else "unknown"
            self.last_error = fault_code(fault)
            return
        [recipient] = status.Recipients.Recipient
        self.message_id = status.MessageId
        self.state = recipient.State
        self.changed_at = recipient.StateChangedAt
        self.known_until = max(self.changed_at, recipient.LastAttemptAt or self.changed_at)
        self.attempts = recipient.Attempts
        self.last_error = recipient.LastError or ""

    def row(self) -> dict[str, str]:
        return {
            "employee_id": self.employee.id,
            "name": self.employee.name,
            "email": self.employee.email,
            "reference": self.reference,
            "message_id": self.message_id,
            "state": self.state or "unknown",
            "state_changed_at": self.changed_at.isoformat() if self.changed_at else "",
            "attempts": str(self.attempts) if self.state not in ("", "not-sent") else "",
            "last_error": self.last_error,
        }


def follow(args: argparse.Namespace, connection: Connection) -> int:
    employees = read_employees(Path(args.csv), None)
    client = connection.client()
    state_file = StateFile(Path(args.state_file), connection)
    cursor = state_file.periods().get(args.period)
    if cursor is None:
        print(
            f"no position saved for {args.period} in {args.state_file}: reading the "
            "account's changes from the start",
            file=sys.stderr,
        )
    # Done: final, or never sent (the service does not know it); with --until sent,
    # sent is enough.
    done_states = FINAL_STATES | {"not-sent"} | ({"sent"} if args.until == "sent" else set())
    tracked = {
        e.reference(args.period): Tracked(e, e.reference(args.period)) for e in employees.valid
    }
    progress = Progress(len(tracked), f"recipients {args.until}")
    deadline = time.monotonic() + args.timeout
    calls = changes = asked = 0
    caught_up = False
    while True:
        page = status_changes(
            client, connection.url, cursor, saved=calls == 0 and cursor is not None
        )
        calls += 1
        for change in page.Change:
            changes += 1
            if change.Reference in tracked:
                tracked[change.Reference].apply(change)
        cursor = page.NextCursor
        if page.HasMore:
            continue  # more is waiting: no pause
        if not caught_up:
            # Once, after reading up to now: a payslip with no change since the cursor
            # was sent before it (or not at all).
            caught_up = True
            for one in tracked.values():
                if not one.state:
                    one.ask(client, connection.url)
                    asked += 1
        pending = [one for one in tracked.values() if one.state not in done_states]
        progress.update(len(tracked) - len(pending))
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(args.poll, max(0.0, deadline - time.monotonic())))
    progress.finish()
    print(
        f"{changes} changes read in {calls} GetStatusChanges calls; GetStatus asked for "
        f"{asked} employees",
        file=sys.stderr,
    )
    rows = [one.row() for one in tracked.values()]
    write_report(Path(args.report), rows)
    print_states(rows)
    print(f"report: {args.report} ({len(rows)} employees, {len(pending)} not {args.until})")
    if pending:
        return EXIT_TIMEOUT
    not_sent = any(row["state"] == "not-sent" for row in rows)
    return EXIT_SOME_FAILED if employees.bad or not_sent else EXIT_OK


def print_states(rows: list[dict[str, str]]) -> None:
    """How many recipients are in each state; for deferred and failed ones, why."""
    print("\nstates")
    for state, count in sorted(Counter(row["state"] for row in rows).items()):
        print(f"  {state:24} {count:6}")
        if state in ("deferred", "failed", "not-sent", "unknown"):
            reasons = Counter(
                row["last_error"][:60] or "-" for row in rows if row["state"] == state
            )
            for reason, number in reasons.most_common():
                print(f"    {reason:60} {number:6}")


def write_report(path: Path, rows: Iterable[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


# The command line.


def dev_account() -> tuple[str, str] | None:
    path = Path("var/dev-account.txt")
    if not path.is_file():
        return None
    saved = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return saved.get("username", ""), saved.get("password", "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="payroll_client.py", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("command", choices=["send", "status"])
    parser.add_argument("--url", default="https://localhost:8443/soap/v1")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--ca-file", help="CA to trust (default: var/tls/dev-cert.pem if there)")
    parser.add_argument("--csv", required=True, help="employees: id,name,email,language")
    parser.add_argument("--period", required=True, help="pay period, e.g. 2026-11")
    parser.add_argument("--payslips", help="folder with <id>.pdf for each employee (send)")
    parser.add_argument(
        "--type", choices=["confidential", "personal", "registered"], default="confidential",
        help="confidential: the link opens it; personal: the employee logs in; registered: "
        "the employee accepts it, you get signed receipts",
    )  # fmt: skip
    parser.add_argument("--subject", default="Lohnabrechnung {period}")
    parser.add_argument(
        "--text", default="Guten Tag {name}\n\nIhre Lohnabrechnung {period} liegt bei."
    )
    parser.add_argument("--batch-size", type=int, default=50, help="payslips per call (send)")
    parser.add_argument("--concurrency", type=int, default=4, help="batches at once (send)")
    parser.add_argument(
        "--state-file", default="payroll-state.json", help="where each period's run began"
    )
    parser.add_argument("--report", default="payroll-report.csv", help="CSV written by status")
    parser.add_argument(
        "--until", choices=["final", "sent"], default="final",
        help="status: wait until every recipient is final, or sent (or final)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds status waits")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between status rounds")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,30}", args.period):
        parser.error("--period may have letters, digits, . _ - only (e.g. 2026-11)")
    if args.command == "send" and not args.payslips:
        parser.error("send needs --payslips")
    if not 1 <= args.batch_size <= MAX_BATCH_MESSAGES:
        parser.error(f"--batch-size must be between 1 and {MAX_BATCH_MESSAGES}")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    for option, template in (("--subject", args.subject), ("--text", args.text)):
        try:
            template.format(period="2026-11", name="Anna")
        except (KeyError, IndexError, ValueError):
            parser.error(f"{option} may use {{period}} and {{name}} only")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    username, password = args.username, args.password
    if not (username and password):
        saved = dev_account()
        if saved is None:
            print("give --username and --password (no var/dev-account.txt here)", file=sys.stderr)
            return EXIT_USAGE
        username, password = saved
    ca_file = args.ca_file
    if ca_file is None and Path("var/tls/dev-cert.pem").is_file():
        ca_file = "var/tls/dev-cert.pem"
    connection = Connection(args.url.removesuffix("?wsdl"), username, password, ca_file)
    try:
        return send_all(args, connection) if args.command == "send" else follow(args, connection)
    except Stop as stop:
        print(f"error: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        again = "to send the rest" if args.command == "send" else "to follow the run on"
        print(f"\ninterrupted: run the same command again {again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
