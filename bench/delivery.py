"""Delivery throughput: the engine against a plain smtplib loop, and 10,000 payslips end to end.

    python -m bench.delivery [--messages 5000] [--payslips 10000] [--workers 2]

1. `--messages` queued messages (50 KB attachment each) on a fresh PostgreSQL database are
   delivered by one `soap-service worker` to a local STARTTLS sink (bench/relay_sink.py).
   The same notifications, written beforehand, are sent by a plain smtplib loop over one
   persistent STARTTLS connection to the same sink (with TCP_NODELAY, the loop at its
   best). Goal: the engine reaches at least 80% of the loop's messages per second.
2. `--payslips` SendMessage calls with a 50 KB PDF each, over 8 keep-alive HTTPS connections,
   to `soap-service serve` with `--workers` delivery workers running: the time from the
   first call to the last recipient `sent`. Goal: under 60 s on 2 cores, PostgreSQL.

Results are printed and written to var/bench/delivery.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.send_message import (
    PG_ADMIN_URL,
    REPO,
    SERVICE_COMMAND,
    SOAP_PATH,
    Server,
    TlsFiles,
    client_tls_context,
    envelope_template,
    free_port,
    make_tls,
    pdf_attachment,
    postgres_database,
)
from soap_service import crypto
from soap_service.bootstrap import ensure_files
from soap_service.delivery.notification import NotificationWriter
from soap_service.delivery.smtp import TlsContexts
from soap_service.domain.accounts import create_account
from soap_service.domain.messages import MessageService
from soap_service.domain.model import (
    AttachmentDraft,
    Language,
    MessageDraft,
    MessageLimits,
    MessageType,
)
from soap_service.domain.sealing import MessageCipher
from soap_service.persistence.database import Database
from soap_service.settings import load_settings

RESULTS_FILE = REPO / "var" / "bench" / "delivery.json"
ENGINE_GOAL = 0.8
END_TO_END_GOAL_SECONDS = 60.0


def utc_now() -> datetime:
    return datetime.now(UTC)


def start_sink(tls: TlsFiles) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.relay_sink",
            str(port),
            str(tls.server_cert),
            str(tls.server_key),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != b"ready":
        raise RuntimeError("the SMTP sink did not start")
    return process, port


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def service_env(data_dir: Path, database_url: str, tls: TlsFiles, sink_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOAP_SERVICE_")}
    env.update(
        {
            "SOAP_SERVICE_DATA_DIR": str(data_dir),
            "SOAP_SERVICE_DATABASE_URL": database_url,
            "SOAP_SERVICE_TLS_CERT_FILE": str(tls.server_cert),
            "SOAP_SERVICE_TLS_KEY_FILE": str(tls.server_key),
            "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink_port}",
            "SOAP_SERVICE_SMTP_CA_FILE": str(tls.ca_cert),
            "SOAP_SERVICE_LOG_LEVEL": "WARNING",
        }
    )
    return env


def worker_env(server: Server, tls: TlsFiles, sink_port: int) -> dict[str, str]:
    """The server's settings, plus where delivery workers send: the sink, trusted."""
    return {
        **server.env(),
        "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink_port}",
        "SOAP_SERVICE_SMTP_CA_FILE": str(tls.ca_cert),
        "SOAP_SERVICE_LOG_LEVEL": "WARNING",
    }


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "soap_service", "worker"],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_workers(
    env: dict[str, str], logs: list[Path], timeout: float = 120
) -> list[subprocess.Popen[bytes]]:
    """Delivery workers, started and running (their start-up done) before a run is timed:
    a service's workers are up before a payroll run begins, and starting them beside the
    client took CPU the run then lacked. They log at INFO, the service's default, to say
    when they have started."""
    workers = [start_worker({**env, "SOAP_SERVICE_LOG_LEVEL": "INFO"}, log) for log in logs]
    deadline = time.monotonic() + timeout
    try:
        for worker, log in zip(workers, logs, strict=True):
            while "started" not in log.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a delivery worker did not start:\n{log.read_text()}")
                time.sleep(0.1)
    except BaseException:
        for worker in workers:
            stop(worker)
        raise
    return workers


def count_sent(engine: object, state: str = "sent") -> int:
    with engine.connect() as connection:  # type: ignore[attr-defined]
        return connection.execute(
            text("SELECT count(*) FROM recipients WHERE state = :state"), {"state": state}
        ).scalar_one()


def wait_all_sent(database_url: str, expected: int, timeout: float, state: str = "sent") -> float:
    """Polls until `expected` recipients are in `state`; returns the time.monotonic() it
    saw it.

    Each count reads the whole table, so it is taken every half second until nine tenths
    are there, then every 50 ms: a count every 50 ms from the start cost the database
    about a tenth of a core in bench.payroll, which the service then did not have."""
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            found = count_sent(engine, state)
            if found >= expected:
                return time.monotonic()
            time.sleep(0.05 if found >= 0.9 * expected else 0.5)
        found = count_sent(engine, state)
        raise RuntimeError(f"only {found} of {expected} {state} in {timeout:.0f} s")
    finally:
        engine.dispose()


# --- 1. the engine against a plain smtplib loop ---------------------------------------------


def queue_messages(
    env: dict[str, str],
    count: int,
    *,
    domain: str = "example.ch",
    attachment_bytes: bytes | None = None,
) -> None:
    settings = load_settings(env)
    database = Database(settings.database_url)
    database.upgrade()
    keyring = crypto.Keyring.load_or_create(settings.master_key_file)
    store = database.store()
    account = create_account(
        store, keyring, username="bench", organisation="Bench AG", allow_digest=False, now=utc_now
    ).account
    service = MessageService(
        store=store,
        keyring=keyring,
        limits=MessageLimits(),
        default_language=Language.DE,
        now=utc_now,
    )
    attachment = AttachmentDraft(
        filename="payslip.pdf",
        content_type="application/pdf",
        content=pdf_attachment() if attachment_bytes is None else attachment_bytes,
    )
    for number in range(count):
        service.send(
            account,
            MessageDraft(
                reference=f"queued-{number}",
                type=MessageType.CONFIDENTIAL,
                recipients=(f"employee{number}@{domain}",),
                subject="Payslip",
                text_body="Your payslip is attached.",
                attachments=(attachment,) if attachment.content else (),
            ),
        )
    store.close()
    database.dispose()


def written_notifications(env: dict[str, str], count: int) -> list[tuple[str, bytes]]:
    """The notifications the engine will send, written here for the plain loop. The claim
    expires at once, so the worker can claim the same recipients afterwards."""
    settings = load_settings(env)
    database = Database(settings.database_url)
    keyring = crypto.Keyring.load(settings.master_key_file)
    store = database.store()
    now = utc_now()
    jobs = store.claim_due("bench-writer", now=now, lease_until=now, limit=count)
    store.close()
    database.dispose()
    ensure_files(settings)  # the mail signing key, as the worker's start makes it
    signer = crypto.MailSigner(settings.signing_cert_file, settings.signing_key_file)
    writer = NotificationWriter(
        mail_from=settings.delivery.smtp.mail_from,
        hostname=settings.delivery.smtp.hostname,
        pickup_base_url=settings.delivery.pickup_base_url,
        operator=settings.operator,
        signer=lambda: signer,  # the same signed bytes the engine sends
    )
    notifications = []
    for job in jobs:
        cipher = MessageCipher.unwrap(keyring, job.data_key, job.message_id)
        token = cipher.pickup_token(job.position)
        notifications.append(
            (job.address, writer.write(job, token=token, subject=None, now=now).data)
        )
    return notifications


def plain_loop(
    env: dict[str, str], port: int, notifications: list[tuple[str, bytes]], nodelay: bool
) -> float:
    """Messages per second of one persistent STARTTLS connection sending them in a row."""
    settings = load_settings(env)
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="bench", timeout=30)
    if nodelay:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.ehlo()
    client.starttls(context=TlsContexts.from_settings(settings.delivery.smtp).relay)
    client.ehlo()
    started = time.perf_counter()
    for address, data in notifications:
        client.sendmail(settings.delivery.smtp.mail_from, [address], data)
    elapsed = time.perf_counter() - started
    client.quit()
    return len(notifications) / elapsed


def engine_run(
    env: dict[str, str], count: int, folder: Path, state: str = "sent"
) -> dict[str, float]:
    started = time.monotonic()
    worker = start_worker(env, folder / "worker.log")
    try:
        finished = wait_all_sent(env["SOAP_SERVICE_DATABASE_URL"], count, 600, state)
    finally:
        stop(worker)
    engine = create_engine(env["SOAP_SERVICE_DATABASE_URL"])
    with engine.connect() as connection:
        first, last = connection.execute(
            text("SELECT min(last_attempt_at), max(last_attempt_at) FROM recipients")
        ).one()
    engine.dispose()
    first, last = _as_datetime(first), _as_datetime(last)
    return {
        # From the worker's first to its last attempt: the steady rate, without start-up.
        "per_second": count / max((last - first).total_seconds(), 1e-6),
        # From starting the process to seeing the last `sent`: what a newcomer waits.
        "per_second_with_startup": count / (finished - started),
    }


def requeue(database_url: str) -> None:
    """Put the delivered recipients back in the queue for the next round (benchmark only)."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE recipients SET state = 'queued', attempts = 0, last_attempt_at = NULL, "
                "next_attempt_at = NULL, last_error = NULL, lease_owner = NULL, "
                "leased_until = NULL"
            )
        )
    engine.dispose()


def _as_datetime(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


# --- 2. payslips end to end -----------------------------------------------------------------


def send_payslips(server: Server, username: str, password: str, count: int) -> tuple[int, float]:
    head, tail = envelope_template(username, password, pdf_attachment())
    context = client_tls_context(server.tls.ca_cert)
    numbers = iter(range(count))
    lock = threading.Lock()
    errors: list[str] = []

    def connection_loop() -> None:
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context)
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                break
            body = head + f"payslip-2026-11-{number:06d}".encode() + tail
            connection.request(
                "POST", SOAP_PATH, body=body, headers={"Content-Type": "text/xml; charset=utf-8"}
            )
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                errors.append(answer[:200].decode(errors="replace"))
        connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=connection_loop) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} SendMessage calls failed, e.g. {errors[0]}")
    return count, time.monotonic() - started


def end_to_end(
    folder: Path, tls: TlsFiles, sink_port: int, database_url: str, args: argparse.Namespace
) -> dict[str, float]:
    server = Server(
        name="service",
        command=SERVICE_COMMAND,
        data_dir=folder / "e2e",
        tls=tls,
        database_url=database_url,
        workers=args.server_workers,
        threads=1,
    )
    env = worker_env(server, tls, sink_port)
    server.cli("init")
    username, password = server.add_account()
    workers = []
    try:
        server.start()
        workers = start_workers(env, [folder / f"e2e-worker-{n}.log" for n in range(args.workers)])
        started = time.monotonic()
        sent, submitting = send_payslips(server, username, password, args.payslips)
        finished = wait_all_sent(database_url, sent, timeout=900)
    finally:
        for worker in workers:
            stop(worker)
        server.stop()
    return {
        "payslips": sent,
        "accepted_per_second": sent / submitting,
        "seconds_until_all_sent": finished - started,
    }


# --- main -----------------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # through the `finally` blocks that stop processes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="loop-then-engine rounds")
    parser.add_argument("--payslips", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2, help="delivery workers (part 2)")
    parser.add_argument("--server-workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    results: dict[str, object] = {"messages": args.messages, "payslips": args.payslips}
    with tempfile.TemporaryDirectory(prefix="soap-bench-delivery-") as temporary:
        folder = Path(temporary)
        tls = make_tls(folder / "tls")
        sink, sink_port = start_sink(tls)
        try:
            with postgres_database(args.pg_url) as database_url:
                env = service_env(folder / "engine", database_url, tls, sink_port)
                print(f"queueing {args.messages} messages ...", flush=True)
                queue_messages(env, args.messages)
                notifications = written_notifications(env, args.messages)
                rounds = []
                for number in range(1, args.rounds + 1):
                    # The loop, then the engine right after it: each ratio compares two
                    # runs seconds apart on a machine whose speed drifts.
                    print(f"round {number}: plain smtplib loop, then the engine ...", flush=True)
                    loop = plain_loop(env, sink_port, notifications, nodelay=True)
                    engine = engine_run(env, args.messages, folder)
                    rounds.append({"plain_loop_per_second": loop, **engine})
                    requeue(database_url)
                ratios = [r["per_second"] / r["plain_loop_per_second"] for r in rounds]
                results["rounds"] = rounds
                results["plain_loop_without_nodelay_per_second"] = plain_loop(
                    env, sink_port, notifications[:200], nodelay=False
                )
                results["plain_loop_per_second"] = statistics.median(
                    r["plain_loop_per_second"] for r in rounds
                )
                results["engine"] = {
                    "per_second": statistics.median(r["per_second"] for r in rounds),
                    # Counting the worker's start and first claim too.
                    "per_second_with_startup": statistics.median(
                        r["per_second_with_startup"] for r in rounds
                    ),
                }
                results["engine_ratio"] = statistics.median(ratios)
                results["engine_ratios"] = ratios
            if args.payslips:
                with postgres_database(args.pg_url) as database_url:
                    print(f"{args.payslips} payslips end to end ...", flush=True)
                    results["end_to_end"] = end_to_end(folder, tls, sink_port, database_url, args)
        finally:
            stop(sink)
    print(json.dumps(results, indent=2))
    print(
        f"engine {results['engine']['per_second']:.0f}/s against the plain loop's "  # type: ignore[index]
        f"{results['plain_loop_per_second']:.0f}/s (medians): ratio {results['engine_ratio']:.0%} "
        f"(rounds: {', '.join(f'{r:.0%}' for r in results['engine_ratios'])}; "  # type: ignore[attr-defined]
        f"goal >= {ENGINE_GOAL:.0%}); with the worker's start counted "
        f"{results['engine']['per_second_with_startup']:.0f}/s"  # type: ignore[index]
    )
    if "end_to_end" in results:
        seconds = results["end_to_end"]["seconds_until_all_sent"]  # type: ignore[index]
        print(f"{args.payslips} payslips: all sent after {seconds:.1f} s (goal < 60 s)")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
