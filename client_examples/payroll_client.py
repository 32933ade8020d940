"""The payroll run: every employee's payslip as a secure message, safe to run again.

    python payroll_client.py send --csv employees.csv --payslips DIR --period 2026-11
    python payroll_client.py status --csv employees.csv --period 2026-11 --report out.csv

`send` reads the employees (CSV: id, name, email, language) and sends each one's payslip
(DIR/<id>.pdf) as a confidential or registered message. The reference is built from the
period and the employee id, so running the same month again after a crash, a timeout or
a Ctrl-C sends nothing twice: the service answers an already sent payslip with its
original message. A bad row (no address, no payslip, an unknown language) is reported and
the other rows still go. `status` follows the run until every recipient is final (or the
timeout) and writes a CSV report.

Against `make run` no connection option is needed: the development account is read from
var/dev-account.txt and the development certificate var/tls/dev-cert.pem is trusted.

Exit codes, for a scheduler:
    0  every payslip accepted (send) / every recipient final (status)
    1  some rows were not sent (bad rows, refused by the service): see the summary
    2  wrong usage or an unreadable CSV
    3  the service refused our credentials
    4  the service could not be reached, or its certificate is not trusted
    5  status: the timeout came before every recipient was final
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
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
# What `status` stops waiting for: final, or never sent (the service does not know it).
DONE_STATES = FINAL_STATES | {"not-sent"}
# Faults worth sending again unchanged (the reference makes it safe); others are final.
RETRIED_FAULTS = {"Server.Unavailable", "Server.InternalError"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Stop(Exception):
    """Nothing more can be sent (credentials refused, service unreachable)."""

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
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return Stop(f"cannot reach {url}: is the service running?", EXIT_UNREACHABLE)
    return Stop(f"cannot load the WSDL from {url}: {text[:200]}", EXIT_UNREACHABLE)


def fault_code(fault: zeep.exceptions.Fault) -> str:
    return str(fault.code or "").split(":", 1)[-1]


def call(operation: Callable[[], Any], url: str, *, attempts: int = 4) -> Any:
    """One SOAP call; temporary trouble is retried with a growing pause."""
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
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            if attempt == attempts:
                raise _connection_problem(exc, url) from exc
        except zeep.exceptions.TransportError as exc:  # e.g. a proxy's 502 or 503
            if exc.status_code < 500 or attempt == attempts:
                raise
        time.sleep(min(2.0**attempt, 15.0))
    raise AssertionError("unreachable")


# Sending.


class Progress:
    """A progress bar on stderr (a line at a time when it is not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done = total, label, 0
        self._lock = threading.Lock()
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def advance(self) -> None:
        with self._lock:
            self.done += 1
            now = time.monotonic()
            if self.done == self.total or now - self._last > (0.1 if self._tty else 5.0):
                self._last = now
                width = 30
                filled = width * self.done // max(self.total, 1)
                bar = "#" * filled + "-" * (width - filled)
                end = "\r" if self._tty and self.done < self.total else "\n"
                print(f"{self.label} [{bar}] {self.done}/{self.total}", end=end, file=sys.stderr)


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
    progress = Progress(len(employees.valid), "sending")
    stop: list[Stop] = []

    def send_one(employee: Employee) -> Outcome:
        if stop or interrupted.is_set():
            return Outcome(employee, employee.row, "error", "not tried: the run stopped")
        try:
            return send_payslip(employee)
        except Stop as exc:
            stop.append(exc)
            return Outcome(employee, employee.row, "error", str(exc))
        except zeep.exceptions.Fault as fault:
            detail = f"{fault_code(fault)}: {fault.message}"
            return Outcome(employee, employee.row, "refused", detail)
        except Exception as exc:  # one row's trouble must not end the run
            return Outcome(employee, employee.row, "error", f"{type(exc).__name__}: {exc}"[:300])
        finally:
            progress.advance()

    def send_payslip(employee: Employee) -> Outcome:
        reference = employee.reference(args.period)
        message = {
            "Reference": reference,
            "Type": args.type,
            "Recipients": {"Recipient": [{"Address": employee.email}]},
            "Subject": args.subject.format(period=args.period, name=employee.name),
            "TextBody": args.text.format(period=args.period, name=employee.name),
            "Attachments": {
                "Attachment": [
                    {
                        "FileName": f"payslip-{args.period}.pdf",
                        "ContentType": "application/pdf",
                        "Content": (payslips / f"{employee.id}.pdf").read_bytes(),
                    }
                ]
            },
            "Language": employee.language,
        }
        result = call(lambda: client().service.SendMessage(Message=message), connection.url)
        # An earlier run's message comes back with its acceptance time, from before this
        # process started (the service's clock against ours: keep both in NTP sync; only
        # the summary depends on it).
        earlier = result.AcceptedAt.timestamp() < PROCESS_STARTED
        status = "already" if earlier else "accepted"
        return Outcome(employee, employee.row, status, message_id=result.MessageId)

    interrupted = threading.Event()
    pool = ThreadPoolExecutor(max_workers=args.concurrency)
    try:
        for future in as_completed([pool.submit(send_one, e) for e in employees.valid]):
            outcomes.append(future.result())
    except KeyboardInterrupt:
        interrupted.set()  # what is in flight finishes; the rest is not started
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


def follow(args: argparse.Namespace, connection: Connection) -> int:
    employees = read_employees(Path(args.csv), None)
    client = connection.client()
    deadline = time.monotonic() + args.timeout
    rows: dict[str, dict[str, str]] = {}
    while True:
        for employee in employees.valid:
            if rows.get(employee.id, {}).get("state") in DONE_STATES:
                continue
            rows[employee.id] = status_row(client, connection, employee, args.period)
        states = Counter(row["state"] for row in rows.values())
        print(
            "states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())), file=sys.stderr
        )
        pending = [row for row in rows.values() if row["state"] not in DONE_STATES]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(args.poll, max(0.0, deadline - time.monotonic())))
    write_report(Path(args.report), [rows[e.id] for e in employees.valid])
    print_states(list(rows.values()))
    print(f"report: {args.report} ({len(rows)} employees, {len(pending)} not final)")
    if pending:
        return EXIT_TIMEOUT
    not_sent = any(row["state"] == "not-sent" for row in rows.values())
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


def status_row(
    client: zeep.Client, connection: Connection, employee: Employee, period: str
) -> dict[str, str]:
    row = {
        "employee_id": employee.id,
        "name": employee.name,
        "email": employee.email,
        "reference": employee.reference(period),
    }
    try:
        status = call(
            lambda: client.service.GetStatus(Reference=employee.reference(period)), connection.url
        )
    except zeep.exceptions.Fault as fault:
        state = "not-sent" if fault_code(fault) == "Client.NotFound" else "unknown"
        return {**row, "message_id": "", "state": state, "state_changed_at": "",
                "attempts": "", "last_error": fault_code(fault)}  # fmt: skip
    [recipient] = status.Recipients.Recipient
    return {
        **row,
        "message_id": status.MessageId,
        "state": recipient.State,
        "state_changed_at": recipient.StateChangedAt.isoformat(),
        "attempts": str(recipient.Attempts),
        "last_error": recipient.LastError or "",
    }


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
    parser.add_argument("--type", choices=["confidential", "registered"], default="confidential")
    parser.add_argument("--subject", default="Lohnabrechnung {period}")
    parser.add_argument(
        "--text", default="Guten Tag {name}\n\nIhre Lohnabrechnung {period} liegt bei."
    )
    parser.add_argument("--concurrency", type=int, default=8, help="calls at once (send)")
    parser.add_argument("--report", default="payroll-report.csv", help="CSV written by status")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds status waits")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between status rounds")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,30}", args.period):
        parser.error("--period may have letters, digits, . _ - only (e.g. 2026-11)")
    if args.command == "send" and not args.payslips:
        parser.error("send needs --payslips")
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
        print("\ninterrupted: run the same command again to send the rest", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
