"""The examples an integrator copies work against the real service."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import Sender
from tests.support import REPO, ServiceProcess


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
