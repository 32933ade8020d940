"""A month's payroll with the reference client: 10,000 payslips of 50 KB.

    python -m bench.payroll [--payslips 10000] [--workers 2]

A `make run`-style service on PostgreSQL (gunicorn with its default workers and threads,
`--workers` delivery workers, a local STARTTLS mail sink) receives the run from
client_examples/payroll_client.py (its default concurrency, 8). Reported: payslips
accepted per second (the client's whole run, its start-up included) and the time from the
client's start until the last recipient is `sent`; beside them, the client re-run on the
same month, which sends nothing new. Results go to var/bench/payroll.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.delivery import start_sink, start_worker, stop, wait_all_sent, worker_env
from bench.send_message import (
    PG_ADMIN_URL,
    REPO,
    SERVICE_COMMAND,
    Server,
    make_tls,
    pdf_attachment,
    postgres_database,
)

RESULTS_FILE = REPO / "var" / "bench" / "payroll.json"
CLIENT = REPO / "client_examples" / "payroll_client.py"


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


def run_client(
    server: Server, username: str, password: str, csv_path: Path, payslips: Path
) -> float:
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, str(CLIENT), "send",
            "--url", f"https://127.0.0.1:{server.port}/soap/v1",
            "--username", username, "--password", password,
            "--ca-file", str(server.tls.ca_cert),
            "--csv", str(csv_path), "--payslips", str(payslips), "--period", "2026-11",
        ],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the client failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.payroll", description=__doc__)
    parser.add_argument("--payslips", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="delivery workers")
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
                workers = []
                try:
                    server.start()
                    workers = [
                        start_worker(env, folder / f"worker-{n}.log") for n in range(args.workers)
                    ]
                    print(f"{args.payslips} payslips through the payroll client ...", flush=True)
                    started = time.monotonic()
                    sending = run_client(server, username, password, csv_path, payslips)
                    finished = wait_all_sent(database_url, args.payslips, timeout=1800)
                    rerun = run_client(server, username, password, csv_path, payslips)
                finally:
                    for worker in workers:
                        stop(worker)
                    server.stop()
        finally:
            stop(sink)
    results = {
        "payslips": args.payslips,
        "payslip_bytes": len(pdf_attachment()),
        "delivery_workers": args.workers,
        "client_seconds": sending,
        "accepted_per_second": args.payslips / sending,
        "seconds_until_all_sent": finished - started,
        "rerun_seconds": rerun,
    }
    print(json.dumps(results, indent=2))
    print(
        f"{args.payslips} payslips: {results['accepted_per_second']:.0f} accepted/s by the "
        f"client, all sent after {results['seconds_until_all_sent']:.1f} s; a re-run of the "
        f"month (nothing new) took {rerun:.1f} s"
    )
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
