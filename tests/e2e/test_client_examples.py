"""The examples an integrator copies work against the real service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.e2e.conftest import Sender
from tests.support import REPO, ServiceProcess, SmtpChannelProcess


def test_first_call_example_sends_and_reads_status(service: ServiceProcess, sender: Sender) -> None:
    for extra in ([], ["--digest"]):
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "client_examples" / "first_call.py"),
                "--url",
                service.url,
                "--username",
                sender.username,
                "--password",
                sender.password,
                "--ca-file",
                str(service.tls.ca_cert),
                "--to",
                "eve@example.ch",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("accepted ")
        assert "  eve@example.ch: queued" in result.stdout


def test_first_call_shows_each_type_a_receipt_and_a_cancel(
    service: ServiceProcess, sender: Sender, tmp_path: Path
) -> None:
    def first_call(*extra: str) -> str:
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "client_examples" / "first_call.py"),
                *("--url", service.url, "--username", sender.username),
                *("--password", sender.password, "--ca-file", str(service.tls.ca_cert)),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,  # where a receipt is saved
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    for message_type in ("personal", "registered"):
        said = first_call("--type", message_type, "--to", "eve@example.ch")
        message_id = said.split()[1]
        assert "  eve@example.ch: queued" in said
        assert f"first_call.py --cancel {message_id}" in said
    # The last one is registered: the next steps it printed name its receipt.
    assert f"first_call.py --receipt {message_id} --kind pickup --recipient eve@example.ch" in said
    saved = first_call("--receipt", message_id)
    receipt = tmp_path / f"receipt-submission-{message_id}.pdf"
    assert saved.startswith("submission receipt issued ")
    assert saved.rstrip().endswith(f"saved as {receipt.name}")
    assert receipt.read_bytes().startswith(b"%PDF-")
    assert first_call("--cancel", message_id) == "  eve@example.ch: cancelled\n"
    status = service.client(sender.username, sender.password).service.GetStatus(
        MessageId=message_id
    )
    assert status.Type == "registered"


def test_the_raw_envelopes_work_with_curl(service: ServiceProcess, sender: Sender) -> None:
    result = subprocess.run(
        [
            "bash",
            str(REPO / "client_examples" / "raw" / "curl.sh"),
            service.url,
            sender.username,
            sender.password,
            str(service.tls.ca_cert),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    send, status = result.stdout.split("--- GetStatus")
    assert "<tns:SendMessageResponse>" in send and "<tns:State>queued</tns:State>" in send
    message_id = send.split("<tns:MessageId>")[1].split("<")[0]
    assert f"<tns:MessageId>{message_id}</tns:MessageId>" in status
    assert "<tns:Address>anna.muster@example.ch</tns:Address>" in status


@pytest.mark.parametrize("envelope", ["SendMessage.xml", "GetStatus.xml"])
def test_the_raw_envelopes_stay_well_formed_whatever_the_password(envelope: str) -> None:
    """curl.sh fills the placeholders in with sed, the first on each line: a generated
    password may hold "--", which no comment may (it failed one run in a hundred)."""
    filled = subprocess.run(
        ["sed", "-e", "s|USERNAME|user|", "-e", "s|PASSWORD|a--b-|", "-e", "s|REFERENCE|r|"],
        input=(REPO / "client_examples" / "raw" / envelope).read_bytes(),
        capture_output=True,
        check=True,
    ).stdout
    root = etree.fromstring(filled)
    assert b"a--b-" in etree.tostring(root)


def test_the_smtp_example_sends_a_payslip_found_by_its_message_id(
    service: ServiceProcess, sender: Sender
) -> None:
    channel = SmtpChannelProcess(service=service).start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "client_examples" / "smtp_payslip.py"),
                "--server",
                f"127.0.0.1:{channel.port}",
                "--username",
                sender.username,
                "--password",
                sender.password,
                "--ca-file",
                str(service.tls.ca_cert),
                "--to",
                "eve@example.ch",
                "--type",
                "r",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        channel.stop()
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith("250 2.0.0 Ok: stored as secure message ")
    reference = second.removeprefix("Reference (the Message-ID): ")
    status = sender.client.service.GetStatus(Reference=reference)
    assert status.MessageId == first.rsplit(" ", 1)[1]
    assert status.Type == "registered"
    assert [r.Address for r in status.Recipients.Recipient] == ["eve@example.ch"]
