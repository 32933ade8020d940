"""How the service is doing, as an operator's Prometheus and `soap-service status` see it,
against real processes: a server with two gunicorn workers, the SMTP channel and a
delivery worker, each counting in its own process; the counts add up."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
import zeep
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Stack, new_reference, wait_until
from tests.smtp_sink import SmtpSink
from tests.support import ServiceProcess, SmtpChannelProcess, TlsFiles

pytestmark = pytest.mark.e2e

TOKEN = "metrics-token-of-the-operator-0123"


def scrape(service: ServiceProcess, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return service.session().get(f"{service.base_url}/metrics", headers=headers, timeout=30)


def samples(service: ServiceProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = scrape(service)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def send(stack: Stack, *addresses: str) -> str:
    """A confidential message to `addresses`: its id."""
    result = stack.client.service.SendMessage(
        Message={
            "Reference": new_reference(),
            "Type": "confidential",
            "Recipients": {"Recipient": [{"Address": address} for address in addresses]},
            "Subject": "Lohnabrechnung",
            "TextBody": "Ihre Lohnabrechnung liegt bei.",
        }
    )
    return str(result.MessageId)


def test_metrics_and_status_add_up_every_process_of_the_host(
    tmp_path: Path, tls: TlsFiles, start_sink: Callable[..., SmtpSink]
) -> None:
    service = ServiceProcess(
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'var' / 'db.sqlite3'}",
        tls=tls,
        workers=2,
        extra_env={"SOAP_SERVICE_METRICS_TOKEN": TOKEN},
    ).start()
    username, password = service.add_account()
    stack = Stack(service=service, tls=tls, username=username, password=password)
    channel = SmtpChannelProcess(service=service).start()
    sink = start_sink()
    try:
        # Without the token, nothing; the page exists only with one configured.
        assert scrape(service, token=None).status_code == 401
        assert scrape(service, token="x" * 34).status_code == 401

        worker = stack.start_worker(sink, "worker")
        send(stack, "anna@example.ch", "bert@example.ch")
        send(stack, "carla@example.ch")
        wrong = Stack(service=service, tls=tls, username=username, password="not the password")
        with pytest.raises(zeep.exceptions.Fault, match="username or password"):
            send(wrong, "anna@example.ch")
        with pytest.raises(zeep.exceptions.Fault):
            stack.client.service.GetStatus(MessageId="00000000-0000-4000-8000-000000000000")

        with channel.connect(login=(username, password)) as client:
            mail = EmailMessage()
            mail["From"], mail["To"], mail["Subject"] = "payroll@acme.example", "x", "Lohn"
            mail["Message-ID"] = f"<{new_reference()}@acme.example>"
            mail.set_content("Ihre Lohnabrechnung liegt bei.")
            client.send_message(mail, to_addrs=[f"dora@example.ch{channel.SUFFIX}"])
            refused = EmailMessage()
            refused["From"], refused["To"], refused["Subject"] = "payroll@acme.example", "x", "y"
            refused.set_content("Anbei.")
            refused.add_attachment(b"MZ\x90\x00", "application", "octet-stream", filename="a.exe")
            with pytest.raises(smtplib.SMTPDataError) as refusal:
                client.send_message(refused, to_addrs=[f"eva@example.ch{channel.SUFFIX}"])
        code = str(refusal.value.smtp_code)

        # Four recipients sent: the three from SOAP and the one from SMTP.
        sent = ("soap_service_deliveries_total", (("state", "sent"),))
        wait_until(lambda: samples(service).get(sent) == 4.0, "4 deliveries counted", timeout=60)
        seen = samples(service)
        api = "soap_service_api_calls_total"
        assert seen[(api, (("operation", "SendMessage"), ("outcome", "ok")))] == 2.0
        failed_login = (("operation", "SendMessage"), ("outcome", "Client.AuthenticationFailed"))
        assert seen[(api, failed_login)] == 1.0
        assert seen[(api, (("operation", "GetStatus"), ("outcome", "Client.NotFound")))] == 1.0
        count = "soap_service_api_call_seconds_count"
        assert seen[(count, (("operation", "SendMessage"),))] == 3.0
        smtp = "soap_service_smtp_submissions_total"
        assert seen[(smtp, (("outcome", "accepted"),))] == 1.0
        assert seen[(smtp, (("outcome", code),))] == 1.0
        assert seen[("soap_service_recipients_waiting", ())] == 0.0
        assert seen[("soap_service_recipients_due", ())] == 0.0
        assert seen[("soap_service_oldest_due_seconds", ())] == 0.0

        # With the worker stopped, a message waits: the queue shows it.
        worker.stop()
        send(stack, "fritz@example.ch")
        queued = samples(service)
        assert queued[("soap_service_recipients_waiting", ())] == 1.0
        assert queued[("soap_service_recipients_due", ())] == 1.0
        assert queued[("soap_service_oldest_due_seconds", ())] > 0.0  # due since it came

        status = service.cli("status").stdout
        assert re.search(
            r"^  SendMessage +3 ok +[\d.]+ ms  faults: Client.AuthenticationFailed 1$",
            status,
            re.MULTILINE,
        ), status
        assert re.search(r"^  GetStatus +0 ok +[\d.]+ ms  faults: Client.NotFound 1$", status, re.M)
        assert f"SMTP channel: {code} 1, accepted 1\n" in status
        assert "Delivery attempts: sent 4, delivered 0, deferred 0, failed 0\n" in status
        assert re.search(r"^Queue: 1 waiting, 1 due now, the oldest due for \d+ s$", status, re.M)
    finally:
        channel.stop()
        stack.stop()
