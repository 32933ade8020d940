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
