"""The reference payroll client end to end: a real server, a real worker and a real SMTP
sink; a run of 50 employees, a re-run that sends nothing new, a run whose client or whose
server is killed half-way, a CSV with bad rows, a payslip the service refuses alone in its
batch, batches split at 30 MiB, `status` following the run through GetStatusChanges from
the state file, and the errors a payroll clerk meets."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

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


def soap_calls(stack: Stack) -> Counter[tuple[str, str]]:
    """(operation, outcome) of each of the account's calls, from the server's log."""
    line = rf"soap op=(\S+) account={re.escape(stack.username)} outcome=(\S+)"
    return Counter(re.findall(line, stack.service.log_text()))


def read_report(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as file:
        return {row["employee_id"]: row for row in csv.DictReader(file)}


def saved_periods(state_file: Path) -> dict[str, str]:
    """The state file's periods and cursors (one account in these tests)."""
    [periods] = json.loads(state_file.read_text()).values()
    return dict(periods)


def asked_get_status(output: str) -> int:
    found = re.search(r"GetStatus asked for (\d+) employees", output)
    assert found, output
    return int(found.group(1))


def test_a_run_of_50_then_a_rerun_that_sends_nothing_new(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, sink = delivering
    csv_path = employees(tmp_path, 50)
    first = run_client(stack, "send", csv_path, "2026-11", "--payslips", str(tmp_path / "payslips"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary_count(first.stdout, "accepted now") == 50
    assert summary_count(first.stdout, "sent in an earlier run") == 0
    # One batch of 50 (the default batch size), one payslip at a time on the progress bar.
    assert soap_calls(stack)["SendMessages", "ok"] == 1
    assert soap_calls(stack)["SendMessage", "ok"] == 0
    assert "sending [##############################] 50/50" in first.stderr
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
    # Read from the journal, from where the first run began: not one GetStatus.
    assert asked_get_status(status.stderr) == 0
    assert soap_calls(stack)["GetStatus", "ok"] == 0


def slow_run_under_way(
    stack: Stack, tmp_path: Path, period: str, *, batch_size: int
) -> tuple[Path, subprocess.Popen[str]]:
    """50 payslips of 1 MB sent `batch_size` at a time, one batch after the other, long
    enough to be interrupted half-way: the CSV and the client, once 10 are accepted."""
    csv_path = employees(tmp_path, 50, payslip_bytes=1_000_000)
    command = client_command(
        stack, "send", csv_path, period, "--payslips", str(tmp_path / "payslips"),
        "--batch-size", str(batch_size), "--concurrency", "1",
    )  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_until(
        lambda: count_messages(stack.service.database_url) >= 10 or process.poll() is not None,
        "10 payslips accepted",
        timeout=120,
    )
    return csv_path, process


def test_a_run_killed_half_way_and_resumed_sends_everyone_once(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, sink = delivering
    csv_path, process = slow_run_under_way(stack, tmp_path, "2026-12", batch_size=5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    accepted_before = count_messages(stack.service.database_url)
    assert 10 <= accepted_before < 50, accepted_before
    # The killed run saved where the period began before its first payslip went.
    state_file = tmp_path / "payroll-state.json"
    began = saved_periods(state_file)["2026-12"]

    resumed = run_client(
        stack, "send", csv_path, "2026-12", "--payslips", str(tmp_path / "payslips")
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    fresh = summary_count(resumed.stdout, "accepted now")
    earlier = summary_count(resumed.stdout, "sent in an earlier run")
    assert fresh + earlier == 50
    # Those the killed run had sent (a batch in flight may have been stored after the kill).
    assert earlier >= accepted_before, resumed.stdout + resumed.stderr
    assert count_messages(stack.service.database_url) == 50
    wait_until(lambda: len(sink.received) >= 50, "50 notifications", timeout=60)
    time.sleep(1)
    assert mails_per_address(sink) == {f"person{n}@example.ch": 1 for n in range(1, 51)}
    # The re-run kept the first run's position, and status follows both runs from it.
    assert saved_periods(state_file) == {"2026-12": began}
    report = tmp_path / "report.csv"
    status = run_client(stack, "status", csv_path, "2026-12", "--report", str(report),
                        "--until", "sent", "--timeout", "60", "--poll", "0.2")  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert {row["state"] for row in read_report(report).values()} == {"sent"}
    assert asked_get_status(status.stderr) == 0


def test_the_server_killed_half_way_and_restarted_sends_everyone_once(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, sink = delivering
    csv_path, process = slow_run_under_way(stack, tmp_path, "2026-10", batch_size=2)
    assert process.poll() is None, "the run ended before the server could be killed"
    # The server dies without a goodbye, a batch in flight or not, and comes back: the
    # client sends the batch it has no answer for again, and goes on.
    stack.service.kill()
    stack.service.start()
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stdout + stderr
    # All accepted by this run, a batch stored just before the kill included: its resend
    # was answered with the messages stored then.
    assert summary_count(stdout, "accepted now") == 50, stdout

    # Run again: nothing new.
    again = run_client(stack, "send", csv_path, "2026-10", "--payslips", str(tmp_path / "payslips"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary_count(again.stdout, "sent in an earlier run") == 50
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
    # The journal says nothing of E9003: GetStatus, once, says it was never sent.
    assert asked_get_status(status.stderr) == 1
    assert soap_calls(stack)["GetStatus", "Client.NotFound"] == 1


def test_a_payslip_the_service_refuses_alone_and_the_rest_of_its_batch_goes(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, sink = delivering
    csv_path = employees(tmp_path, 6)
    # A script named .pdf: the attachment policy refuses it by its content.
    (tmp_path / "payslips" / "E0003.pdf").write_bytes(b"#!/bin/sh\necho payday\n")
    payslips = ("--payslips", str(tmp_path / "payslips"))

    done = run_client(stack, "send", csv_path, "2026-11", *payslips)
    assert done.returncode == 1, done.stdout + done.stderr
    assert soap_calls(stack)["SendMessages", "ok"] == 1  # the six in one batch
    assert summary_count(done.stdout, "accepted now") == 5
    assert summary_count(done.stdout, "refused by the service") == 1
    assert summary_count(done.stdout, "Client.AttachmentRejected") == 1
    assert re.search(
        r"row 4 \(E0003\): refused: Client.AttachmentRejected: .*its content is a script",
        done.stdout,
    ), done.stdout
    assert count_messages(stack.service.database_url) == 5

    # Run again: the five are not sent twice, and the script is still refused.
    again = run_client(stack, "send", csv_path, "2026-11", *payslips)
    assert again.returncode == 1, again.stdout + again.stderr
    assert summary_count(again.stdout, "sent in an earlier run") == 5
    assert summary_count(again.stdout, "refused by the service") == 1
    assert count_messages(stack.service.database_url) == 5

    report = tmp_path / "report.csv"
    status = run_client(stack, "status", csv_path, "2026-11", "--report", str(report),
                        "--until", "sent", "--timeout", "60", "--poll", "0.2")  # fmt: skip
    assert status.returncode == 1, status.stdout + status.stderr  # one not sent
    states = {key: row["state"] for key, row in read_report(report).items()}
    assert states == {f"E{n:04d}": "not-sent" if n == 3 else "sent" for n in range(1, 7)}
    wait_until(lambda: len(sink.received) >= 5, "5 notifications", timeout=60)
    assert "person3@example.ch" not in mails_per_address(sink)


def test_batches_are_split_to_stay_under_30_mib_of_payslips(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, _ = delivering
    # 4 payslips of 10 MB: 40 MB in all, over the service's 30 MiB per call.
    csv_path = employees(tmp_path, 4, payslip_bytes=10_000_000)
    done = run_client(stack, "send", csv_path, "2026-11", "--payslips", str(tmp_path / "payslips"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary_count(done.stdout, "accepted now") == 4
    # Three and one, split before sending: the service never had to refuse a batch.
    assert soap_calls(stack) == {("SendMessages", "ok"): 2, ("GetStatusChanges", "ok"): 1}
    assert count_messages(stack.service.database_url) == 4


def test_status_follows_the_run_through_the_journal_from_the_state_file(
    delivering: tuple[Stack, SmtpSink], tmp_path: Path
) -> None:
    stack, sink = delivering
    # Another period first: its changes come before this one's in the journal.
    earlier_csv = employees(tmp_path / "earlier", 3)
    earlier = run_client(
        stack, "send", earlier_csv, "2026-08", "--payslips", str(tmp_path / "earlier" / "payslips"),
        "--state-file", str(tmp_path / "payroll-state.json"),
    )  # fmt: skip
    assert earlier.returncode == 0, earlier.stdout + earlier.stderr
    # One address the mail server refuses for good, one it puts off until told otherwise.
    sink.script.rcpt_replies["person5@example.ch"] = "550 5.1.1 No such user here"
    sink.script.rcpt_replies["person7@example.ch"] = "451 4.3.0 Mailbox busy, try later"
    csv_path = employees(tmp_path, 20)
    payslips = ("--payslips", str(tmp_path / "payslips"))
    sent = run_client(stack, "send", csv_path, "2026-09", *payslips, "--batch-size", "7")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert soap_calls(stack)["SendMessages", "ok"] == 1 + 3  # 7, 7 and 6
    state_file = tmp_path / "payroll-state.json"
    periods = saved_periods(state_file)
    assert list(periods) == ["2026-08", "2026-09"]

    def get_status(number: int) -> tuple[Any, Any]:
        told = stack.client.service.GetStatus(Reference=f"payslip-2026-09-E{number:04d}")
        [recipient] = told.Recipients.Recipient
        return told, recipient

    wait_until(lambda: len(sink.received) >= 3 + 18, "18 notifications more", timeout=60)
    wait_until(lambda: get_status(5)[1].State == "failed", "person5 failed", timeout=60)
    wait_until(lambda: get_status(7)[1].Attempts >= 2, "two attempts for person7", timeout=60)
    report = tmp_path / "report.csv"
    follow = ("--report", str(report), "--until", "sent", "--poll", "0.2")
    asked_before = soap_calls(stack)["GetStatus", "ok"]
    waiting = run_client(stack, "status", csv_path, "2026-09", *follow, "--timeout", "1")
    assert waiting.returncode == 5, waiting.stdout + waiting.stderr
    assert "recipients sent [############################--] 19/20" in waiting.stderr
    rows = read_report(report)
    assert rows["E0007"]["state"] == "deferred"
    assert "451 4.3.0 Mailbox busy" in rows["E0007"]["last_error"]
    assert int(rows["E0007"]["attempts"]) >= 2
    assert (rows["E0005"]["state"], rows["E0005"]["attempts"]) == ("failed", "1")
    assert "550 5.1.1 No such user here" in rows["E0005"]["last_error"]

    del sink.script.rcpt_replies["person7@example.ch"]
    done = run_client(stack, "status", csv_path, "2026-09", *follow, "--timeout", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary_count(done.stdout, "sent") == 19
    assert summary_count(done.stdout, "failed") == 1
    assert "recipients sent [##############################] 20/20" in done.stderr
    # All from the journal, starting where 2026-09 began (2026-08's changes are before it).
    assert asked_get_status(waiting.stderr) == asked_get_status(done.stderr) == 0
    assert soap_calls(stack)["GetStatus", "ok"] == asked_before
    rows = read_report(report)
    assert list(rows) == [f"E{n:04d}" for n in range(1, 21)]
    for number, row in enumerate(rows.values(), start=1):
        told, recipient = get_status(number)
        assert row["reference"] == told.Reference == f"payslip-2026-09-E{number:04d}"
        assert row["message_id"] == told.MessageId
        assert row["email"] == recipient.Address == f"person{number}@example.ch"
        assert row["state"] == recipient.State == ("failed" if number == 5 else "sent")
        assert row["state_changed_at"] == recipient.StateChangedAt.isoformat()
        assert row["attempts"] == str(recipient.Attempts)
        assert row["last_error"] == (recipient.LastError or "")
    assert int(rows["E0007"]["attempts"]) >= 3  # deferred twice or more, then sent

    # Again with the state file: the same report. Sending again keeps the saved position.
    again = run_client(stack, "status", csv_path, "2026-09", *follow)
    assert again.returncode == 0, again.stdout + again.stderr
    assert read_report(report) == rows
    resent = run_client(stack, "send", csv_path, "2026-09", *payslips)
    assert summary_count(resent.stdout, "sent in an earlier run") == 20
    assert saved_periods(state_file) == periods

    # Without the state file: the journal from the start, the same report.
    fresh = run_client(stack, "status", csv_path, "2026-09", *follow,
                       "--state-file", str(tmp_path / "elsewhere.json"))  # fmt: skip
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "reading the account's changes from the start" in fresh.stderr
    assert read_report(report) == rows

    # A position altered in the file is refused by the service: said so, exit code 2.
    saved = json.loads(state_file.read_text())
    [account] = saved
    cursor = saved[account]["2026-09"]
    saved[account]["2026-09"] = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]
    state_file.write_text(json.dumps(saved))
    altered = run_client(stack, "status", csv_path, "2026-09", *follow)
    assert altered.returncode == 2, altered.stdout + altered.stderr
    assert "refused the journal position in the state file" in altered.stderr


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
    assert not (tmp_path / "payroll-state.json").exists()
