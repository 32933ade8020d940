"""Interoperability: PHP's own SoapClient (Debian's php-cli and php-soap) loads the WSDL over
HTTPS, sends a message with two recipients and two attachments under a WS-Security
UsernameToken, reads its status with the times parsed, and gets a fault it can read. The
script is the example integrators copy: client_examples/php/send_and_status.php."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import Sender
from tests.support import REPO, ServiceProcess, stored_attachments

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "client_examples" / "php" / "send_and_status.php"
BATCH_SCRIPT = REPO / "client_examples" / "php" / "batch_and_changes.php"


@contextmanager
def transaction_held_open(database_url: str, *, seconds: float) -> Iterator[None]:
    """On PostgreSQL, a transaction with an id of its own stays open for `seconds` from
    now, in a thread (elsewhere nothing: SQLite's changes show at their commit)."""
    if not database_url.startswith("postgresql"):
        yield
        return
    engine = create_engine(database_url)
    begun = threading.Event()

    def hold() -> None:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_current_xact_id()"))
            begun.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert begun.wait(10)
        yield
    finally:
        thread.join()
        engine.dispose()


@pytest.fixture(scope="module")
def php() -> str:
    found = shutil.which("php")
    if found is None:
        pytest.fail("php is not installed: `make test` installs php-cli and php-soap")
    return found


def test_php_soapclient_sends_reads_status_and_gets_a_fault(
    php: str, service: ServiceProcess, sender: Sender, tmp_path: Path
) -> None:
    files = {
        "lohn-november.pdf": b"%PDF-1.4\n" + os.urandom(40_000),
        "beilage.pdf": os.urandom(777),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    reference = f"php-{uuid.uuid4().hex[:12]}"
    run = subprocess.run(
        [
            php,
            str(SCRIPT),
            f"{service.url}?wsdl",
            sender.username,
            sender.password,
            str(service.tls.ca_cert),
            reference,
            *(str(tmp_path / name) for name in files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    answer = json.loads(run.stdout)

    assert stored_attachments(service, answer["message_id"]) == list(files.items())
    assert answer["state"] == "queued"
    accepted = datetime.fromisoformat(answer["accepted_at"])
    assert (datetime.fromisoformat(answer["expires_at"]) - accepted).days == 7
    assert [r["address"] for r in answer["recipients"]] == [
        "anna.muster@example.ch",
        "bert.beispiel@example.ch",
    ]
    for recipient in answer["recipients"]:
        assert recipient["state"] == "queued"
        assert (
            abs((datetime.fromisoformat(recipient["state_changed_at"]) - accepted).total_seconds())
            < 1
        )
    assert answer["fault"] == {
        "faultcode": "soap:Client.NotFound",  # the QName as sent: prefix bound to SOAP 1.1
        "faultstring": "no message with this MessageId",
    }
    assert "UsernameToken" in answer["request"] and sender.password in answer["request"]


def test_php_soapclient_sends_a_batch_and_follows_the_journal(
    php: str, service: ServiceProcess, tmp_path: Path
) -> None:
    username, password = service.add_account()  # its own journal: nothing else in it
    run_id = f"php-run-{uuid.uuid4().hex[:8]}"
    # Another transaction, begun before the batch and ended 1.5 s later: on PostgreSQL
    # the run's changes show only then, and the script must poll until they do.
    with transaction_held_open(service.database_url, seconds=1.5):
        run = subprocess.run(
            [
                php, str(BATCH_SCRIPT), f"{service.url}?wsdl", username, password,
                str(service.tls.ca_cert), run_id,
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    answer = json.loads(run.stdout)

    results = answer["results"]
    assert [(r["position"], r["reference"], r["fault"]) for r in results] == [
        (1, f"{run_id}-1", None),
        (2, f"{run_id}-2", "Client.InvalidAddress"),
        (3, f"{run_id}-3", None),
    ]
    assert results[0]["message_id"] and results[2]["message_id"]
    assert results[1]["message_id"] is None
    assert answer["changes"] == [
        [f"{run_id}-1", "anna.muster@example.ch", "queued"],
        [f"{run_id}-3", "bert.beispiel@example.ch", "queued"],
    ]
    assert sorted(answer["listed"]) == [[f"{run_id}-1", "queued"], [f"{run_id}-3", "queued"]]
