"""SMTP submission: messages per second with a 50 KB PDF over 4 parallel authenticated
STARTTLS connections, the SMTP channel on PostgreSQL against a bare aiosmtpd sink in the
same run that speaks the same protocol (STARTTLS, AUTH PLAIN), parses the MIME, decodes
the attachment and stores nothing. Goal: the channel reaches at least 0.5 of the sink's
rate.

    python -m bench.smtp_submission [--seconds 10] [--rounds 3] [--connections 4]

Rounds alternate sink and channel; each ratio compares a channel run with the sink run
just before it, and the summary gives the median. After each channel run the messages in
its database must equal the 250 answers. Results are printed and written to
var/bench/smtp_submission.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.send_message import PG_ADMIN_URL, REPO, TlsFiles, free_port, make_tls, pdf_attachment
from bench.send_message import postgres_database as new_postgres_database

RESULTS_FILE = REPO / "var" / "bench" / "smtp_submission.json"
GOAL_RATIO = 0.5
ID_MARK = b"@@MESSAGE-ID@@"


def mail_template(attachment: bytes) -> tuple[bytes, bytes]:
    """A payslip mail split around its Message-ID: each one sent is a new message."""
    content = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    mail = (
        b"From: Payroll <payroll@firm.example>\r\n"
        b"To: anna@example.ch\r\n"
        b"Subject: Payslip November\r\n"
        b"Message-ID: <" + ID_MARK + b"@bench.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour payslip is attached.\r\n"
        b'--b1\r\nContent-Type: application/pdf; name="payslip.pdf"\r\n'
        b'Content-Disposition: attachment; filename="payslip.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + content + b"--b1--\r\n"
    )
    head, tail = mail.split(ID_MARK)
    return head, tail


@dataclass
class Target:
    """A server process in its own process group, on a free port."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Started, and ready once its port answers with a greeting."""
        os.sync()  # the previous target's writes must not be paid for by this one
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock,
            ):
                if sock.recv(100).startswith(b"220"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class Run:
    target: str
    sent: int = 0
    errors: int = 0
    first_error: str = ""
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def load(
    port: int,
    tls: TlsFiles,
    login: tuple[str, str],
    template: tuple[bytes, bytes],
    *,
    connections: int,
    warmup: float,
    seconds: float,
    name: str,
) -> tuple[Run, int]:
    """Each connection sends back to back; only 250 answers count. (run, all 250s)."""
    run = Run(target=name)
    lock = threading.Lock()
    counting = threading.Event()
    stop = threading.Event()
    total = [0]
    context = ssl.create_default_context(cafile=str(tls.ca_cert))

    def connection() -> None:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
        # Without it each mail waits for a delayed ACK (Nagle): the client's 40 ms, not
        # the server's time, would be measured.
        assert client.sock is not None
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.starttls(context=context)
        client.ehlo()
        client.login(*login)
        head, tail = template
        try:
            while not stop.is_set():
                data = head + uuid.uuid4().hex.encode() + tail
                started = time.perf_counter()
                client.mail("payroll@firm.example")
                client.rcpt("anna@example.ch")
                code, answer = client.data(data)
                elapsed = time.perf_counter() - started
                with lock:
                    if code == 250:
                        total[0] += 1
                    if counting.is_set() and not stop.is_set():
                        if code == 250:
                            run.sent += 1
                            run.latencies.append(elapsed)
                        else:
                            run.errors += 1
                            run.first_error = run.first_error or f"{code} {answer.decode()}"
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()

    threads = [threading.Thread(target=connection) for _ in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    counting.set()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    run.seconds = time.perf_counter() - started
    for thread in threads:
        thread.join(120)
    return run, total[0]


def stored_messages(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM messages")).scalar_one())
    finally:
        engine.dispose()


def service_env(folder: Path, tls: TlsFiles, database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOAP_SERVICE_")}
    env.update(
        {
            "SOAP_SERVICE_DATA_DIR": str(folder),
            "SOAP_SERVICE_DATABASE_URL": database_url,
            "SOAP_SERVICE_TLS_CERT_FILE": str(tls.server_cert),
            "SOAP_SERVICE_TLS_KEY_FILE": str(tls.server_key),
            "SOAP_SERVICE_SMTP_BIND": f"127.0.0.1:{port}",
            "SOAP_SERVICE_LOG_LEVEL": "WARNING",
        }
    )
    return env


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "soap_service", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"soap-service {' '.join(args)}: {done.stderr}")
    return done.stdout


def run_sink(
    folder: Path, tls: TlsFiles, template: tuple[bytes, bytes], args: argparse.Namespace
) -> Run:
    port = free_port()
    sink = Target(
        name="sink",
        command=[
            sys.executable,
            "-m",
            "bench.smtp_sink_baseline",
            str(port),
            str(tls.server_cert),
            str(tls.server_key),
        ],
        env=dict(os.environ),
        log_path=folder / "sink.log",
        port=port,
    )
    try:
        sink.start()
        run, _ = load(
            port,
            tls,
            ("bench", "any"),
            template,
            connections=args.connections,
            warmup=args.warmup,
            seconds=args.seconds,
            name="sink",
        )
        return run
    finally:
        sink.stop()


def run_channel(
    folder: Path, tls: TlsFiles, template: tuple[bytes, bytes], args: argparse.Namespace
) -> Run:
    port = free_port()
    with new_postgres_database(args.pg_url) as database_url:
        env = service_env(folder / f"channel-{port}", tls, database_url, port)
        cli(env, "init")
        output = cli(env, "account", "add", f"bench-{uuid.uuid4().hex[:6]}")
        username = re.search(r"username: (\S+)", output)
        password = re.search(r"password: (\S+)", output)
        assert username and password, output
        channel = Target(
            name="channel",
            command=[sys.executable, "-m", "soap_service", "smtp"],
            env=env,
            log_path=folder / "channel.log",
            port=port,
        )
        try:
            channel.start()
            run, accepted = load(
                port,
                tls,
                (username.group(1), password.group(1)),
                template,
                connections=args.connections,
                warmup=args.warmup,
                seconds=args.seconds,
                name="channel",
            )
        finally:
            channel.stop()
        stored = stored_messages(database_url)
        if stored != accepted:
            raise RuntimeError(f"{accepted} mails answered 250 but {stored} messages stored")
        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--pg-url", default=PG_ADMIN_URL)
    args = parser.parse_args()

    template = mail_template(pdf_attachment())
    ratios, rounds = [], []
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        folder = Path(tmp)
        tls = make_tls(folder / "tls")
        for number in range(1, args.rounds + 1):
            sink = run_sink(folder, tls, template, args)
            channel = run_channel(folder, tls, template, args)
            for run in (sink, channel):
                if not run.sent:
                    raise SystemExit(f"bench: {run.target} took nothing: {run.first_error}")
            ratio = channel.rate / sink.rate if sink.rate else 0.0
            ratios.append(ratio)
            rounds.append(
                {
                    "sink_per_second": round(sink.rate, 1),
                    "channel_per_second": round(channel.rate, 1),
                    "channel_p50_ms": round(statistics.median(channel.latencies) * 1000, 1),
                    "sink_p50_ms": round(statistics.median(sink.latencies) * 1000, 1),
                    "errors": channel.errors + sink.errors,
                    "ratio": round(ratio, 3),
                }
            )
            print(
                f"round {number}: sink {sink.rate:.0f}/s, channel {channel.rate:.0f}/s "
                f"(p50 {rounds[-1]['channel_p50_ms']} ms), ratio {ratio:.0%}",
                flush=True,
            )
    median = statistics.median(ratios)
    results = {
        "connections": args.connections,
        "attachment_bytes": len(template[0]) + len(template[1]),
        "rounds": rounds,
        "median_ratio": round(median, 3),
        "goal_ratio": GOAL_RATIO,
        "host": socket.gethostname(),
    }
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    verdict = "met" if median >= GOAL_RATIO else "NOT met"
    print(
        f"SMTP submission on PostgreSQL: the channel at {median:.0%} of the sink's rate "
        f"(median of {len(ratios)} rounds; goal >= {GOAL_RATIO:.0%}: {verdict})"
    )


if __name__ == "__main__":
    main()
