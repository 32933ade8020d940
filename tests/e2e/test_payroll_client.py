"""The reference payroll client end to end: a real server, a real worker and a real SMTP
sink; a run of 50 employees, a re-run that sends nothing new, a run killed half-way and
resumed, a CSV with bad rows, and the errors a payroll clerk meets."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, wait_until
from tests.smtp_sink import SmtpSink
from tests.support import REPO, count_messages

pytestmark = pytest.mark.e2e

CLIENT = REPO / "client_examples" / "payroll_client.py"


def employees(
    folder: Path,
    count: int,
    *,
    extra_rows: list[dict[str, str]] | None = None,
    payslip_bytes: int = 2000,
) -> Path:
    """A CSV of `count` employees and a payslip for each in folder/payslips."""
    payslips = folder / "payslips"
    payslips.mkdir(parents=True, exist_ok=True)
    rows = []
    for number in range(1, count + 1):
        employee_id = f"E{number:04d}"
        rows.append(
            {
                "id": employee_id,
                "name": f"Person {number}",
                "email": f"person{number}@example.ch",
                "language": ("de", "fr", "it", "en")[number % 4],
            }
        )
        (payslips / f"{employee_id}.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(payslip_bytes))
    rows += extra_rows or []
    path = folder / "employees.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["id", "name", "email", "language"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def client_command(
    stack: Stack, command: str, csv_path: Path, period: str, *extra: str
) -> list[str]:
    return [
        sys.executable, str(CLIENT), command,
        "--url", stack.service.url,
        "--username", stack.username, "--password", stack.password,
        "--ca-file", str(stack.tls.ca_cert),
        "--csv", str(csv_path), "--period", period,
        *extra,
    ]  # fmt: skip


def run_client(
    stack: Stack, command: str, csv_path: Path, period: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        client_command(stack, command, csv_path, period, *extra),
        capture_output=True, text=True, timeout=300, cwd=csv_path.parent,
    )  # fmt: skip


def summary_count(output: str, label: str) -> int:
    for line in output.splitlines():
        if line.strip().startswith(label):
            return int(line.split()[-1])
    raise AssertionError(f"no {label!r} in:\n{output}")


def mails_per_address(sink: SmtpSink) -> Counter[str]:
    return Counter(address for mail in list(sink.received) for address in mail.recipients)


def test_a_run_of_50_then_a_rerun_that_sends_nothing_new(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, sink = delivering
    csv_path = employees(tmp_path, 50)
    first = run_client(stack, "send", csv_path, "2026-11", "--payslips", str(tmp_path / "payslips"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary_count(first.stdout, "accepted now") == 50
    assert summary_count(first.stdout, "sent in an earlier run") == 0
    wait_until(lambda: len(sink.received) >= 50, "50 notifications", timeout=60)

    again = run_client(stack, "send", csv_path, "2026-11", "--payslips", str(tmp_path / "payslips"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary_count(again.stdout, "accepted now") == 0
    assert summary_count(again.stdout, "sent in an earlier run") == 50
    assert count_messages(stack.service.database_url) == 50
    time.sleep(1)  # the worker polls every 50 ms: anything new would have gone by now
    assert mails_per_address(sink) == {f"person{n}@example.ch": 1 for n in range(1, 51)}

    report = tmp_path / "report.csv"
    status = run_client(stack, "status", csv_path, "2026-11", "--report", str(report),
                        "--timeout", "1", "--poll", "0.5")  # fmt: skip
    # Confidential payslips stay `sent` until read: not final, so the timeout says so.
    assert status.returncode == 5, status.stdout + status.stderr
    assert summary_count(status.stdout, "sent") == 50
    with report.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["employee_id"] for row in rows] == [f"E{n:04d}" for n in range(1, 51)]
    assert {row["state"] for row in rows} == {"sent"}
    assert all(row["message_id"] and row["state_changed_at"] for row in rows)


def test_a_run_killed_half_way_and_resumed_sends_everyone_once(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, sink = delivering
    # 1 MB payslips, one at a time: the run lasts long enough to be killed half-way.
    csv_path = employees(tmp_path, 50, payslip_bytes=1_000_000)
    command = client_command(
        stack, "send", csv_path, "2026-12", "--payslips", str(tmp_path / "payslips"),
        "--concurrency", "1",
    )  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_until(
        lambda: count_messages(stack.service.database_url) >= 10 or process.poll() is not None,
        "10 payslips accepted",
        timeout=120,
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    accepted_before = count_messages(stack.service.database_url)
    assert 10 <= accepted_before < 50, accepted_before

    resumed = run_client(
        stack, "send", csv_path, "2026-12", "--payslips", str(tmp_path / "payslips")
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    fresh = summary_count(resumed.stdout, "accepted now")
    earlier = summary_count(resumed.stdout, "sent in an earlier run")
    assert fresh + earlier == 50
    # Those the killed run had sent, less the one it may have had in flight.
    assert earlier >= accepted_before - 1, resumed.stdout + resumed.stderr
    assert count_messages(stack.service.database_url) == 50
    wait_until(lambda: len(sink.received) >= 50, "50 notifications", timeout=60)
    time.sleep(1)
    assert mails_per_address(sink) == {f"person{n}@example.ch": 1 for n in range(1, 51)}


def test_bad_rows_are_reported_and_the_others_still_go(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, _ = delivering
    csv_path = employees(
        tmp_path,
        3,
        extra_rows=[
            {"id": "E9001", "name": "No Mail", "email": "", "language": "de"},
            {"id": "E9002", "name": "Klingon", "email": "k@example.ch", "language": "tlh"},
            {"id": "E9003", "name": "No Payslip", "email": "n@example.ch", "language": "de"},
            {"id": "E0001", "name": "Twice", "email": "t@example.ch", "language": "de"},
            {"id": "bad id!", "name": "Odd", "email": "o@example.ch", "language": "de"},
        ],
    )
    done = run_client(stack, "send", csv_path, "2026-11", "--payslips", str(tmp_path / "payslips"))
    assert done.returncode == 1, done.stdout + done.stderr
    # E0001 is on two rows: neither goes (whose payslip is it?).
    assert summary_count(done.stdout, "accepted now") == 2
    assert summary_count(done.stdout, "bad rows") == 6
    for row, reason in (
        (2, "the id E0001 is on 2 rows"),
        (5, "no valid e-mail address"),
        (6, "unknown language 'tlh'"),
        (7, "no payslip E9003.pdf"),
        (8, "the id E0001 is on 2 rows"),
        (9, "the id is missing or has characters"),
    ):
        assert f"row {row} " in done.stdout and reason in done.stdout, (row, done.stdout)
    assert count_messages(stack.service.database_url) == 2

    # status reports the row that was never sent as such (the others wait to be read).
    report = tmp_path / "report.csv"
    status = run_client(stack, "status", csv_path, "2026-11", "--report", str(report),
                        "--timeout", "2", "--poll", "0.5")  # fmt: skip
    assert status.returncode == 5, status.stdout + status.stderr
    with report.open(newline="") as file:
        states = {row["employee_id"]: row["state"] for row in csv.DictReader(file)}
    assert states["E9003"] == "not-sent"
    assert states["E0002"] != "not-sent" and states["E0003"] != "not-sent"


def test_a_wrong_password_an_unreachable_service_and_an_untrusted_certificate(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, _ = delivering
    csv_path = employees(tmp_path, 2)
    payslips = ("--payslips", str(tmp_path / "payslips"))

    wrong = client_command(stack, "send", csv_path, "2026-11", *payslips)
    wrong[wrong.index("--password") + 1] = "not-the-password"
    done = subprocess.run(wrong, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 3
    assert "refused the username or password" in done.stderr

    away = client_command(stack, "send", csv_path, "2026-11", *payslips)
    away[away.index("--url") + 1] = "https://127.0.0.1:9/soap/v1"
    done = subprocess.run(away, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert (done.returncode, "cannot reach" in done.stderr) == (4, True), done.stderr

    untrusted = client_command(stack, "send", csv_path, "2026-11", *payslips)
    del untrusted[untrusted.index("--ca-file") : untrusted.index("--ca-file") + 2]
    done = subprocess.run(untrusted, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert (done.returncode, "is not trusted" in done.stderr) == (4, True), done.stderr
    assert count_messages(stack.service.database_url) == 0
