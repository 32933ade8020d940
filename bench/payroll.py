"""A month's payroll with the reference client: 10,000 payslips of 50 KB.

    python -m bench.payroll [--payslips 10000] [--workers 2] [--status follow|after]

A `make run`-style service on PostgreSQL (gunicorn with its default workers and threads,
`--workers` delivery workers, a local STARTTLS mail sink) receives the run from
client_examples/payroll_client.py with its defaults (SendMessages, 50 payslips a batch, 4
batches at once). Reported:

- payslips accepted per second (the client's whole run, its start-up included), the
  client's CPU time, and the time from the client's start until the last recipient is
  `sent` in the database: the goal is under 20 s on 2 cores;
- where the 2 cores went until then, in CPU seconds: the service (gunicorn and the
  delivery workers, started and running before the client), its PostgreSQL backends, and
  the stand-ins for other machines, the client and the mail sink; and the service's and
  database's CPU per payslip, which a faster or busier machine changes less than seconds;
- how long `payroll_client.py status --until sent` took to see every recipient sent
  through GetStatusChanges, started as `send` ends, as a payroll clerk would follow the
  run (`--status follow`: it shares the machine with the delivery), or once the database
  says all are sent (`--status after`: the run's figure without it);
- the client re-run on the same month, which sends nothing new;
- after all that, the account's journal read from the start in pages of 1,000 (two
  changes per payslip: queued, sent), through zeep as an integrator would and as raw
  requests (the service's share): calls, changes and seconds; then again after an
  ANALYZE of the journal's tables (right after a run their planner statistics have not
  caught up: the read must not depend on them).

Results go to var/bench/payroll.json.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import zeep
from lxml import etree
from sqlalchemy import create_engine, text
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from bench.cpu import postgres_cpu_seconds, tree_cpu_seconds
from bench.delivery import start_sink, start_workers, stop, wait_all_sent, worker_env
from bench.send_message import (
    PG_ADMIN_URL,
    REPO,
    SERVICE_COMMAND,
    SOAP11_ENV,
    SOAP_PATH,
    TNS,
    WSSE,
    Server,
    client_tls_context,
    make_tls,
    pdf_attachment,
    postgres_database,
)

RESULTS_FILE = REPO / "var" / "bench" / "payroll.json"
CLIENT = REPO / "client_examples" / "payroll_client.py"
PERIOD = "2026-11"
STATUS_POLL_SECONDS = 0.5
PAGE_SIZE = 1000


def payroll_files(folder: Path, count: int) -> tuple[Path, Path]:
    """The employees' CSV and a folder with a 50 KB payslip each (hard links to one file:
    the client reads each as it would a separate one)."""
    payslips = folder / "payslips"
    payslips.mkdir()
    original = folder / "payslip.pdf"
    original.write_bytes(pdf_attachment())
    path = folder / "employees.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "name", "email", "language"])
        for number in range(1, count + 1):
            employee_id = f"E{number:06d}"
            writer.writerow([employee_id, f"Person {number}", f"person{number}@example.ch", "de"])
            os.link(original, payslips / f"{employee_id}.pdf")
    return path, payslips


def client_command(
    server: Server, username: str, password: str, command: str, csv_path: Path, *extra: str
) -> list[str]:
    return [
        sys.executable, str(CLIENT), command,
        "--url", f"https://127.0.0.1:{server.port}{SOAP_PATH}",
        "--username", username, "--password", password,
        "--ca-file", str(server.tls.ca_cert),
        "--csv", str(csv_path), "--period", PERIOD,
        *extra,
    ]  # fmt: skip


def run_client(command: list[str], folder: Path) -> float:
    """Run the client in `folder` (its state file goes there); the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"the client failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - started


def read_journal_zeep(server: Server, username: str, password: str) -> dict[str, float]:
    """The account's status changes from the start, PAGE_SIZE at a time, through zeep."""
    session = requests.Session()
    session.verify = str(server.tls.ca_cert)
    session.trust_env = False
    client = zeep.Client(
        f"https://127.0.0.1:{server.port}{SOAP_PATH}?wsdl",
        transport=Transport(session=session, timeout=60, operation_timeout=120),
        wsse=UsernameToken(username, password),
    )
    calls = changes = 0
    cursor = None
    started = time.monotonic()
    while True:
        page = client.service.GetStatusChanges(Cursor=cursor, PageSize=PAGE_SIZE)
        calls += 1
        changes += len(page.Change)
        cursor = page.NextCursor
        if not page.HasMore:
            break
    return {"calls": calls, "changes": changes, "seconds": time.monotonic() - started}


def read_journal_raw(server: Server, username: str, password: str) -> dict[str, float]:
    """The same as raw requests on one kept-alive connection: what the service takes,
    without zeep's parsing into objects."""
    security = (
        f'<wsse:Security xmlns:wsse="{WSSE}"><wsse:UsernameToken>'
        f"<wsse:Username>{username}</wsse:Username><wsse:Password>{password}</wsse:Password>"
        "</wsse:UsernameToken></wsse:Security>"
    )
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=client_tls_context(server.tls.ca_cert), timeout=120
    )
    calls = changes = 0
    cursor: str | None = None
    started = time.monotonic()
    try:
        while True:
            after = f"<m:Cursor>{cursor}</m:Cursor>" if cursor else ""
            body = (
                f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:m="{TNS}">'
                f"<soap:Header>{security}</soap:Header><soap:Body><m:GetStatusChanges>"
                f"{after}<m:PageSize>{PAGE_SIZE}</m:PageSize></m:GetStatusChanges></soap:Body>"
                "</soap:Envelope>"
            ).encode()
            connection.request(
                "POST",
                SOAP_PATH,
                body=body,
                headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'},
            )
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"GetStatusChanges: HTTP {response.status}: {answer[:300]!r}")
            root = etree.fromstring(answer)
            calls += 1
            changes += sum(1 for _ in root.iter(f"{{{TNS}}}Change"))
            cursor = root.findtext(f".//{{{TNS}}}NextCursor")
            if root.findtext(f".//{{{TNS}}}HasMore") != "true":
                break
    finally:
        connection.close()
    return {"calls": calls, "changes": changes, "seconds": time.monotonic() - started}


def analyze(database_url: str) -> None:
    """Fresh planner statistics for the journal's tables (autovacuum would take them in its
    own time)."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for table in ("events", "messages", "recipients"):
                connection.execute(text(f"ANALYZE {table}"))
    finally:
        engine.dispose()


def client_cpu_seconds() -> float:
    """User and system CPU of the finished child processes so far (the clients)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.payroll", description=__doc__)
    parser.add_argument("--payslips", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="delivery workers")
    parser.add_argument(
        "--status", choices=["follow", "after"], default="follow",
        help="start `status --until sent` as `send` ends (follow), or once the database "
        "says every recipient is sent (after: it does not weigh on the run)",
    )  # fmt: skip
    parser.add_argument("--pg-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soap-bench-payroll-") as temporary:
        folder = Path(temporary)
        tls = make_tls(folder / "tls")
        csv_path, payslips = payroll_files(folder, args.payslips)
        sink, sink_port = start_sink(tls)
        try:
            with postgres_database(args.pg_url) as database_url:
                server = Server(
                    name="service",
                    command=SERVICE_COMMAND,
                    data_dir=folder / "service",
                    tls=tls,
                    database_url=database_url,
                    workers=min(4, 2 * (os.cpu_count() or 1)),  # the service's default
                )
                env = worker_env(server, tls, sink_port)
                server.cli("init")
                username, password = server.add_account()
                send = client_command(
                    server, username, password, "send", csv_path, "--payslips", str(payslips)
                )
                status = client_command(
                    server, username, password, "status", csv_path,
                    "--until", "sent", "--poll", str(STATUS_POLL_SECONDS), "--timeout", "1800",
                    "--report", str(folder / "report.csv"),
                )  # fmt: skip
                workers = []
                try:
                    server.start()
                    workers = start_workers(
                        env, [folder / f"worker-{n}.log" for n in range(args.workers)]
                    )
                    print(f"{args.payslips} payslips through the payroll client ...", flush=True)

                    def cpu_now() -> dict[str, float]:
                        assert server.process is not None
                        return {
                            "server": tree_cpu_seconds(server.process.pid),
                            "delivery_workers": tree_cpu_seconds(
                                *(worker.pid for worker in workers)
                            ),
                            "postgresql": postgres_cpu_seconds(database_url),
                            "mail_sink": tree_cpu_seconds(sink.pid),
                        }

                    cpu_at_start = cpu_now()
                    cpu_before = client_cpu_seconds()
                    started = time.monotonic()
                    sending = run_client(send, folder)
                    client_cpu = client_cpu_seconds() - cpu_before
                    with ThreadPoolExecutor(max_workers=1) as pool:
                        if args.status == "follow":
                            # Follows the run from where `send` saved that it began, while
                            # the database is watched for the last `sent`.
                            following = pool.submit(run_client, status, folder)
                            status_started = time.monotonic()
                            finished = wait_all_sent(database_url, args.payslips, timeout=1800)
                            cpu_at_end = cpu_now()
                        else:
                            finished = wait_all_sent(database_url, args.payslips, timeout=1800)
                            cpu_at_end = cpu_now()
                            following = pool.submit(run_client, status, folder)
                            status_started = time.monotonic()
                        status_seconds = following.result(timeout=1800)
                    rerun = run_client(send, folder)
                    print("the journal from the start ...", flush=True)
                    journal = {
                        "zeep": read_journal_zeep(server, username, password),
                        "raw": read_journal_raw(server, username, password),
                    }
                    analyze(database_url)
                    journal |= {
                        "zeep_after_analyze": read_journal_zeep(server, username, password),
                        "raw_after_analyze": read_journal_raw(server, username, password),
                    }
                finally:
                    for worker in workers:
                        stop(worker)
                    server.stop()
        finally:
            stop(sink)
    cpu_until_sent = {name: cpu_at_end[name] - cpu_at_start[name] for name in cpu_at_start} | {
        "client": client_cpu
    }
    results = {
        "payslips": args.payslips,
        "payslip_bytes": len(pdf_attachment()),
        "delivery_workers": args.workers,
        "cpus": os.cpu_count(),
        "client": "payroll_client.py defaults: SendMessages, 50 a batch, 4 batches at once",
        "client_seconds": sending,
        "client_cpu_seconds": client_cpu,
        "accepted_per_second": args.payslips / sending,
        "seconds_until_all_sent": finished - started,
        "goal_seconds_until_all_sent": 20.0,
        # Where the cores went until then: the service (gunicorn, the delivery workers),
        # its database's backends, and the stand-ins for other machines (the client until
        # it ended, the recipients' mail server); with `--status follow` the following
        # client's CPU is in none of them.
        "cpu_seconds_until_all_sent": cpu_until_sent,
        "service_and_database_cpu_ms_per_payslip": 1000
        * sum(cpu_until_sent[name] for name in ("server", "delivery_workers", "postgresql"))
        / args.payslips,
        "status_until_sent": {
            "started": "as send ended" if args.status == "follow" else "once all were sent",
            "poll_seconds": STATUS_POLL_SECONDS,
            "seconds": status_seconds,
            "saw_all_sent_after_client_start": status_started + status_seconds - started,
        },
        "rerun_seconds": rerun,
        "journal_from_start": {"page_size": PAGE_SIZE, **journal},
    }
    print(json.dumps(results, indent=2))
    print(
        f"{args.payslips} payslips: {results['accepted_per_second']:.0f} accepted/s by the "
        f"client ({client_cpu:.1f} s of CPU), all sent after "
        f"{results['seconds_until_all_sent']:.1f} s (goal: under 20 s); status --until sent "
        f"({results['status_until_sent']['started']}) took {status_seconds:.1f} s, seeing "
        f"them all sent {results['status_until_sent']['saw_all_sent_after_client_start']:.1f} "
        f"s after the client's start; a re-run of the month (nothing new) took {rerun:.1f} s"
    )
    print(
        "CPU seconds until all were sent: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu_until_sent.items())
        + f"; the service and its database: "
        f"{results['service_and_database_cpu_ms_per_payslip']:.2f} ms a payslip"
    )
    for name, read in journal.items():
        print(
            f"the journal from the start, {name}: {read['changes']:.0f} changes in "
            f"{read['calls']:.0f} calls, {read['seconds']:.2f} s"
        )
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
