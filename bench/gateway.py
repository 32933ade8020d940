"""Gateway delivery against notification delivery, the same messages to the same sink.

    python -m bench.gateway [--messages 2000] [--rounds 3] [--attachment-kb 0 50]

1. For each size in `--attachment-kb` (0: no attachment), `--messages` confidential
   messages to employees of firm.example are queued on a fresh PostgreSQL database. In
   each round one `soap-service worker` delivers them twice: first as notifications (the
   organisation has no gateway), then, put back in the queue, as gateway mails (the
   organisation's gateway is the same STARTTLS sink): read, decrypted, written as MIME,
   S/MIME-signed and sent. The ratio compares the two rates of one round.
2. In this process: the cost of one signature (a small message and the largest size), and
   of writing a whole gateway mail with it, against writing a notification.

Results are printed and written to var/bench/gateway.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.delivery import (
    engine_run,
    plain_loop,
    queue_messages,
    requeue,
    service_env,
    start_sink,
    stop,
)
from bench.send_message import PG_ADMIN_URL, REPO, TlsFiles, make_tls, postgres_database
from soap_service import crypto
from soap_service.delivery.gateway_mail import GatewayMailWriter, MessageContent
from soap_service.delivery.notification import NotificationWriter
from soap_service.domain.delivery import DeliveryJob
from soap_service.domain.model import AttachmentDraft, Language, MessageType
from soap_service.settings import OperatorIdentity

RESULTS_FILE = REPO / "var" / "bench" / "gateway.json"
DOMAIN = "firm.example"


def pdf(kilobytes: int) -> bytes:
    """Random after the header: nothing on the way can compress it away; b"" for none."""
    return b"%PDF-1.4\n" + os.urandom(kilobytes * 1000 - 9) if kilobytes else b""


def cli(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "soap_service", *args],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )


class Samples:
    """A gateway mail writer with the generated kind of signing key, and a job to write for."""

    def __init__(self, folder: Path) -> None:
        cert, key = folder / "mail-signing.pem", folder / "mail-signing-key.pem"
        crypto.generate_mail_signing_certificate(cert, key, address="no-reply@localhost")
        self.signer = crypto.MailSigner(cert, key)
        self.writer = GatewayMailWriter(
            signer=lambda: self.signer,
            mail_from="no-reply@localhost",
            hostname="h",
            operator_name="soap-service",
        )
        # Notifications are signed too; the unsigned writer shows what signing costs.
        self.notifications = NotificationWriter(
            mail_from="no-reply@localhost",
            hostname="h",
            pickup_base_url="https://h/m/",
            operator=OperatorIdentity(),
            signer=lambda: self.signer,
        )
        self.unsigned_notifications = NotificationWriter(
            mail_from="no-reply@localhost",
            hostname="h",
            pickup_base_url="https://h/m/",
            operator=OperatorIdentity(),
            signer=None,
        )
        self.now = datetime.now(UTC)
        self.job = DeliveryJob(
            recipient_id=1,
            message_id="0" * 32,
            position=1,
            address=f"anna@{DOMAIN}",
            attempts=0,
            accepted_at=self.now,
            expires_at=self.now,
            type=MessageType.CONFIDENTIAL,
            language=Language.DE,
            organisation="Bench AG",
            show_subject=False,
            sealed_subject=b"",
            data_key=crypto.WrappedKey(key_id="k", wrapped=b""),
        )

    def content(self, kilobytes: int) -> MessageContent:
        """The queued messages' content: a short text and a PDF of `kilobytes` (or none)."""
        return MessageContent(
            subject="Payslip",
            text_body=b"Your payslip is attached.",
            html_body=None,
            attachments=(
                (
                    AttachmentDraft(
                        filename="payslip.pdf",
                        content_type="application/pdf",
                        content=pdf(kilobytes),
                    ),
                )
                if kilobytes
                else ()
            ),
        )

    def costs(self, kilobytes: int, count: int) -> dict[str, float]:
        """Microseconds per mail: one signature, a whole gateway mail, a notification."""

        def microseconds(action: Callable[[], object]) -> float:
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(count):
                    action()
                runs.append((time.perf_counter() - started) / count * 1e6)
            return min(runs)

        small, large = self.content(0), self.content(kilobytes)
        small_entity = b"Content-Type: text/plain\r\n\r\nYour payslip is attached."
        large_entity = self.writer.write(self.job, large)
        return {
            "sign_small_us": microseconds(lambda: self.signer.sign(small_entity)),
            f"sign_{kilobytes}kb_us": microseconds(lambda: self.signer.sign(large_entity)),
            "gateway_mail_small_us": microseconds(lambda: self.writer.write(self.job, small)),
            f"gateway_mail_{kilobytes}kb_us": microseconds(
                lambda: self.writer.write(self.job, large)
            ),
            "notification_us": microseconds(
                lambda: self.notifications.write(
                    self.job, token="t" * 43, subject=None, now=self.now
                )
            ),
            "notification_unsigned_us": microseconds(
                lambda: self.unsigned_notifications.write(
                    self.job, token="t" * 43, subject=None, now=self.now
                )
            ),
        }


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def compare(
    args: argparse.Namespace,
    folder: Path,
    tls: TlsFiles,
    sink_port: int,
    kilobytes: int,
    samples: Samples,
) -> dict[str, object]:
    """Rounds of notifications then gateway mails, for messages with one attachment of
    `kilobytes` (none for 0), on a database of their own; and the rate of a plain smtplib
    loop sending such a gateway mail over one connection, the most the sink takes."""
    with postgres_database(args.pg_url) as database_url:
        env = service_env(folder / f"engine-{kilobytes}", database_url, tls, sink_port)
        print(f"queueing {args.messages} messages ({kilobytes} KB attachment) ...", flush=True)
        queue_messages(env, args.messages, domain=DOMAIN, attachment_bytes=pdf(kilobytes))
        cli(env, "organisation", "add", "firm", "--domain", DOMAIN, "--gateway", "none")
        rounds = []
        for number in range(1, args.rounds + 1):
            print(f"round {number}: notifications, then the gateway ...", flush=True)
            cli(env, "organisation", "update", "firm", "--gateway", "none")
            notified = engine_run(env, args.messages, folder)
            requeue(database_url)
            cli(
                env, "organisation", "update", "firm",
                "--gateway", f"127.0.0.1:{sink_port}", "--gateway-ca", str(tls.ca_cert),
            )  # fmt: skip
            delivered = engine_run(env, args.messages, folder, state="delivered")
            requeue(database_url)
            mail = samples.writer.write(samples.job, samples.content(kilobytes))
            loop = plain_loop(env, sink_port, [(samples.job.address, mail)] * 500, nodelay=True)
            rounds.append(
                {
                    "notification_per_second": notified["per_second"],
                    "gateway_per_second": delivered["per_second"],
                    "plain_loop_gateway_mails_per_second": loop,
                    "ratio": delivered["per_second"] / notified["per_second"],
                }
            )
    keys = ("notification_per_second", "gateway_per_second", "plain_loop_gateway_mails_per_second")
    return {
        "rounds": rounds,
        "ratio": statistics.median(r["ratio"] for r in rounds),
        **{key: statistics.median(r[key] for r in rounds) for key in keys},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--attachment-kb", type=int, nargs="+", default=[0, 50], help="sizes to compare"
    )
    parser.add_argument("--pg-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    largest = max(max(args.attachment_kb), 1)
    results: dict[str, object] = {"messages": args.messages, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="soap-bench-gateway-") as temporary:
        folder = Path(temporary)
        samples = Samples(folder)
        results["per_mail"] = samples.costs(largest, 500)
        tls = make_tls(folder / "tls")
        sink, sink_port = start_sink(tls)
        try:
            for kilobytes in args.attachment_kb:
                results["sizes"][f"{kilobytes}kb"] = compare(  # type: ignore[index]
                    args, folder, tls, sink_port, kilobytes, samples
                )
        finally:
            stop(sink)
    print(json.dumps(results, indent=2))
    costs = results["per_mail"]
    print(
        f"one signature {costs['sign_small_us']:.0f} µs (small message), "  # type: ignore[index]
        f"{costs[f'sign_{largest}kb_us']:.0f} µs ({largest} KB); a whole gateway mail "  # type: ignore[index]
        f"{costs['gateway_mail_small_us']:.0f} µs / "  # type: ignore[index]
        f"{costs[f'gateway_mail_{largest}kb_us']:.0f} µs, a notification "  # type: ignore[index]
        f"{costs['notification_us']:.0f} µs"  # type: ignore[index]
    )
    for size, found in results["sizes"].items():  # type: ignore[attr-defined]
        ratios = ", ".join(f"{r['ratio']:.0%}" for r in found["rounds"])
        print(
            f"{size} attachment: gateway delivery {found['gateway_per_second']:.0f}/s against "
            f"notifications {found['notification_per_second']:.0f}/s (medians, same messages, "
            f"same sink): ratio {found['ratio']:.0%} (rounds: {ratios}); a plain smtplib loop "
            f"sends such gateway mails at {found['plain_loop_gateway_mails_per_second']:.0f}/s"
        )
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
