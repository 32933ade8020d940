"""Throughput of SendMessage with a 50 KB PDF attachment, persisted and encrypted, against a
bare Spyne baseline under the same gunicorn settings, in one run.

    python -m bench.send_message [--seconds 15] [--connections 8] [--workers 2]

Targets, one after the other on fresh state: the baseline (`bench.baseline_app`), the real
service on SQLite (new data folder) and on PostgreSQL (new database, dropped afterwards).
The goal: the real service reaches at least 50% of the baseline's requests per second on
each backend. Results are printed and written to var/bench/send_message.json.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import re
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trustme
from sqlalchemy import create_engine, text

from soap_service.soap.types import TNS

REPO = Path(__file__).resolve().parents[1]
RESULTS_FILE = REPO / "var" / "bench" / "send_message.json"
PG_ADMIN_URL = os.environ.get(
    "SOAP_SERVICE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP_PATH = "/soap/v1"
ATTACHMENT_BYTES = 50 * 1024
GOAL_RATIO = 0.5
REFERENCE_MARK = b"@@REFERENCE@@"
SUCCESS_MARK = b"SendMessageResult"
# How each target is started; the same gunicorn settings come from the environment.
SERVICE_COMMAND = [sys.executable, "-m", "soap_service", "serve"]
BASELINE_COMMAND = [sys.executable, "-m", "bench.baseline_app"]


# --- what is sent --------------------------------------------------------------------------


def pdf_attachment() -> bytes:
    """50 KB that look like a PDF to the attachment policy; random after the header so that
    nothing on the way (TLS, the database) can compress it away."""
    header = b"%PDF-1.4\n"
    return header + os.urandom(ATTACHMENT_BYTES - len(header))


def envelope_template(username: str, password: str, attachment: bytes) -> tuple[bytes, bytes]:
    """The SendMessage envelope split around its Reference: the client joins the two halves
    around a fresh reference per request, so every request is a new message (a real insert,
    never an idempotent replay) at the cost of one bytes join."""
    content = base64.b64encode(attachment).decode("ascii")
    security = (
        f'<wsse:Security xmlns:wsse="{WSSE}"><wsse:UsernameToken>'
        f"<wsse:Username>{username}</wsse:Username>"
        f"<wsse:Password>{password}</wsse:Password>"
        "</wsse:UsernameToken></wsse:Security>"
    )
    body = (
        "<m:SendMessage><m:Message>"
        f"<m:Reference>{REFERENCE_MARK.decode()}</m:Reference>"
        "<m:Type>confidential</m:Type>"
        "<m:Recipients><m:Recipient><m:Address>anna@example.ch</m:Address></m:Recipient>"
        "</m:Recipients>"
        "<m:Subject>Payslip</m:Subject><m:TextBody>Your payslip is attached.</m:TextBody>"
        "<m:Attachments><m:Attachment><m:FileName>payslip.pdf</m:FileName>"
        f"<m:ContentType>application/pdf</m:ContentType><m:Content>{content}</m:Content>"
        "</m:Attachment></m:Attachments>"
        "</m:Message></m:SendMessage>"
    )
    document = (
        f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENV}" '
        f'xmlns:m="{TNS}"><soap:Header>{security}</soap:Header><soap:Body>{body}</soap:Body>'
        "</soap:Envelope>"
    ).encode()
    head, tail = document.split(REFERENCE_MARK)
    return head, tail


# --- server processes ----------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(folder / "ca.pem", folder / "server-chain.pem", folder / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_cert))
    server.private_key_and_cert_chain_pem.write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A gunicorn process group (`python -m MODULE ...`) configured by SOAP_SERVICE_*."""

    name: str
    command: list[str]
    data_dir: Path
    tls: TlsFiles
    database_url: str | None = None
    workers: int = 2
    threads: int | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def env(self) -> dict[str, str]:
        # Nothing from the caller's SOAP_SERVICE_* may leak in: both targets must get the
        # same settings, set here.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOAP_SERVICE_")}
        env.update(
            {
                "SOAP_SERVICE_DATA_DIR": str(self.data_dir),
                "SOAP_SERVICE_BIND": f"127.0.0.1:{self.port}",
                "SOAP_SERVICE_PUBLIC_URL": f"https://127.0.0.1:{self.port}{SOAP_PATH}",
                "SOAP_SERVICE_TLS_CERT_FILE": str(self.tls.server_cert),
                "SOAP_SERVICE_TLS_KEY_FILE": str(self.tls.server_key),
                "SOAP_SERVICE_WORKERS": str(self.workers),
            }
        )
        if self.threads is not None:
            env["SOAP_SERVICE_THREADS"] = str(self.threads)
        if self.database_url is not None:
            env["SOAP_SERVICE_DATABASE_URL"] = self.database_url
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "soap_service", *args],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"soap-service {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def add_account(self) -> tuple[str, str]:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        output = self.cli("account", "add", name)  # PasswordText only: the default
        password = re.search(r"password: (\S+)", output)
        if password is None:
            raise RuntimeError(f"no password in the output of account add:\n{output}")
        return name, password.group(1)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The previous target's writes (600 MB on SQLite) may still be going to disk: a
        # target whose commits wait for the disk would pay for them.
        os.sync()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env(),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: stop() reaches the gunicorn workers too.
                start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready when ?wsdl answers 200: both the service and the baseline serve it, and
        it writes nothing to the database."""
        deadline = time.monotonic() + timeout
        context = client_tls_context(self.tls.ca_cert)
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=context, timeout=5
                )
                try:
                    connection.request("GET", f"{SOAP_PATH}?wsdl")
                    if connection.getresponse().status == 200:
                        return
                finally:
                    connection.close()
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def client_tls_context(ca_cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_cert))


# --- load generation -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    port: int
    ca_cert: Path
    head: bytes
    tail: bytes
    reference_prefix: str
    # Wall-clock times (time.time(), shared by all client processes).
    start_at: float
    measure_from: float
    measure_until: float


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)  # measured window only
    ok_in_window: int = 0
    ok_total: int = 0  # warm-up and tail included: what the database must hold
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)

    def merge(self, other: LoadResult) -> None:
        self.latencies_ms += other.latencies_ms
        self.ok_in_window += other.ok_in_window
        self.ok_total += other.ok_total
        self.errors.update(other.errors)
        self.error_samples += other.error_samples[: max(0, 5 - len(self.error_samples))]


def _connect(plan: LoadPlan, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    # Opened during the warm-up and kept alive: the window measures requests, not handshakes.
    connection = http.client.HTTPSConnection("127.0.0.1", plan.port, context=context, timeout=60)
    connection.connect()
    return connection


def _post(connection: http.client.HTTPSConnection, body: bytes) -> tuple[int, bytes]:
    connection.putrequest("POST", SOAP_PATH, skip_accept_encoding=True)
    connection.putheader("Content-Type", "text/xml; charset=utf-8")
    connection.putheader("SOAPAction", '""')
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    return response.status, response.read()


def _connection_loop(plan: LoadPlan, number: int, result: LoadResult, lock: threading.Lock) -> None:
    """One keep-alive connection sending back to back until the window closes."""
    context = client_tls_context(plan.ca_cert)
    mine = LoadResult()
    prefix = f"{plan.reference_prefix}-{number}-".encode()
    sequence = 0
    connection: http.client.HTTPSConnection | None = None
    while time.time() < plan.start_at:
        time.sleep(0.01)
    try:
        while time.time() < plan.measure_until:
            sequence += 1
            body = b"".join((plan.head, prefix, str(sequence).encode(), plan.tail))
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = _connect(plan, context)
                status, answer = _post(connection, body)
            except (OSError, http.client.HTTPException) as exc:
                mine.errors[type(exc).__name__] += 1
                _sample(mine, f"{type(exc).__name__}: {exc}")
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.05)  # a server that refuses connections must not spin us
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            if status == 200 and SUCCESS_MARK in answer:
                mine.ok_total += 1
                # Counted by completion time: the window holds whole requests only.
                if plan.measure_from <= time.time() < plan.measure_until:
                    mine.ok_in_window += 1
                    mine.latencies_ms.append(elapsed_ms)
            else:
                code = re.search(rb"<faultcode>[^<:]*:?([^<]*)</faultcode>", answer)
                mine.errors[f"HTTP {status} {code.group(1).decode() if code else ''}".strip()] += 1
                _sample(mine, answer[:300].decode(errors="replace"))
    finally:
        if connection is not None:
            connection.close()
        with lock:
            result.merge(mine)


def _sample(result: LoadResult, text: str) -> None:
    if len(result.error_samples) < 5:
        result.error_samples.append(text)


ConnectionLoop = Callable[[Any, int, LoadResult, threading.Lock], None]


def run_client_process(
    plan: LoadPlan, connections: list[int], loop: ConnectionLoop | None = None
) -> LoadResult:
    """Drive `connections` keep-alive connections from threads of this process, each with
    `loop` (by default SendMessage's)."""
    result = LoadResult()
    lock = threading.Lock()
    threads = [
        threading.Thread(target=loop or _connection_loop, args=(plan, number, result, lock))
        for number in connections
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def generate_load(
    plan: LoadPlan,
    connections: int,
    processes: int,
    pool: Any,
    loop: ConnectionLoop | None = None,
) -> LoadResult:
    # Connections are spread over client processes so that the client's GIL cannot cap the
    # baseline. Measured here: 1 and 2 processes give the same baseline rate (the client
    # needs about a third of a core), 4 are slower (more processes competing for 2 cores).
    shares = [list(range(i, connections, processes)) for i in range(processes)]
    pending = [
        pool.apply_async(run_client_process, (plan, share, loop)) for share in shares if share
    ]
    total = LoadResult()
    for job in pending:
        # A batch call takes a few hundred milliseconds: the slowest may outlast the window.
        total.merge(job.get(timeout=plan.measure_until - time.time() + 300))
    return total


# --- CPU accounting -----------------------------------------------------------------------
#
# The client, the server and PostgreSQL share the machine's cores, and other work on the
# machine (a test run...) skews requests per second. CPU time per request, read from
# /proc for each party over the measured window, does not depend on that, and the CPU no
# party used shows how much other work there was.


@dataclass(frozen=True)
class CpuSample:
    machine_total: float  # seconds of all cores, busy or idle
    machine_busy: float
    server: float
    database: float
    client: float


def _process_times(database_name: str | None, server_group: int) -> tuple[float, float, float]:
    """CPU seconds of the server's process group, of the PostgreSQL backends serving
    `database_name`, and of this benchmark's own process group (the client)."""
    ticks = os.sysconf("SC_CLK_TCK")
    client_group = os.getpgrp()
    server = database = client = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            # A backend's title names its database: "postgres: 15/main: user db host".
            title = Path(entry.path, "cmdline").read_bytes() if database_name else b""
        except OSError:
            continue  # the process has ended
        fields = stat.rsplit(")", 1)[1].split()
        group, cpu = int(fields[2]), (int(fields[11]) + int(fields[12])) / ticks
        if group == server_group:
            server += cpu
        elif group == client_group:
            client += cpu
        elif database_name and f" {database_name} ".encode() in title.replace(b"\0", b" "):
            database += cpu
    return server, database, client


def cpu_sample(database_name: str | None, server_group: int) -> CpuSample:
    with open("/proc/stat") as stat:
        jiffies = [int(value) for value in stat.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = jiffies[3] + jiffies[4]  # idle and iowait
    server, database, client = _process_times(database_name, server_group)
    return CpuSample(
        machine_total=sum(jiffies[:8]) / ticks,
        machine_busy=(sum(jiffies[:8]) - idle) / ticks,
        server=server,
        database=database,
        client=client,
    )


@dataclass(frozen=True)
class CpuUse:
    """Shares of the machine over the window, and server CPU per successful request."""

    machine_busy: float
    server: float
    database: float
    client: float
    other: float
    server_ms_per_request: float
    database_ms_per_request: float


def cpu_use(before: CpuSample, after: CpuSample, requests: int) -> CpuUse:
    total = after.machine_total - before.machine_total or 1.0
    server = after.server - before.server
    database = after.database - before.database
    client = after.client - before.client
    busy = after.machine_busy - before.machine_busy
    per_request = 1000 / requests if requests else float("nan")
    return CpuUse(
        machine_busy=busy / total,
        server=server / total,
        database=database / total,
        client=client / total,
        other=max(0.0, busy - server - database - client) / total,
        server_ms_per_request=server * per_request,
        database_ms_per_request=database * per_request,
    )


class WindowSampler:
    """Samples CPU at the start and the end of the measured window, from a thread."""

    def __init__(self, plan: LoadPlan, server_group: int, database_name: str | None) -> None:
        self._samples: list[CpuSample] = []
        self._thread = threading.Thread(
            target=self._run, args=(plan, server_group, database_name), daemon=True
        )
        self._thread.start()

    def _run(self, plan: LoadPlan, server_group: int, database_name: str | None) -> None:
        for moment in (plan.measure_from, plan.measure_until):
            time.sleep(max(0.0, moment - time.time()))
            self._samples.append(cpu_sample(database_name, server_group))

    def result(self, requests: int) -> CpuUse:
        self._thread.join()
        before, after = self._samples
        return cpu_use(before, after, requests)


# --- targets -------------------------------------------------------------------------------


@dataclass
class TargetResult:
    target: str
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    ok_in_window: int
    ok_total: int
    errors: dict[str, int]
    error_samples: list[str]
    cpu: CpuUse
    stored_messages: int | None = None
    stored_attachments: int | None = None
    ratio_to_baseline: float | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def measure(
    server: Server,
    head: bytes,
    tail: bytes,
    args: argparse.Namespace,
    pool: Any,
    database_name: str | None = None,
) -> TargetResult:
    start_at = time.time() + 0.5  # time for the client processes to pick the plan up
    plan = LoadPlan(
        port=server.port,
        ca_cert=server.tls.ca_cert,
        head=head,
        tail=tail,
        reference_prefix=f"bench-{uuid.uuid4().hex[:8]}",
        start_at=start_at,
        measure_from=start_at + args.warmup,
        measure_until=start_at + args.warmup + args.seconds,
    )
    assert server.process is not None
    # The server runs in its own session: its process group id is its pid.
    sampler = WindowSampler(plan, server.process.pid, database_name)
    load = generate_load(plan, args.connections, args.client_processes, pool)
    return TargetResult(
        target=server.name,
        requests_per_second=load.ok_in_window / args.seconds,
        p50_ms=percentile(load.latencies_ms, 0.50),
        p95_ms=percentile(load.latencies_ms, 0.95),
        ok_in_window=load.ok_in_window,
        ok_total=load.ok_total,
        errors=dict(load.errors),
        error_samples=load.error_samples,
        cpu=sampler.result(load.ok_in_window),
    )


def stored_counts(database_url: str, plaintext_probe: bytes) -> tuple[int, int]:
    """Messages and attachments in the database; fails if an attachment is stored in the
    clear (the probe is a random slice of the sent PDF)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            messages = connection.execute(text("SELECT count(*) FROM messages")).scalar_one()
            attachments = connection.execute(text("SELECT count(*) FROM attachments")).scalar_one()
            sample = connection.execute(
                text("SELECT sealed_content FROM attachments LIMIT 1")
            ).scalar()
    finally:
        engine.dispose()
    if sample is not None and plaintext_probe in bytes(sample):
        raise RuntimeError("an attachment is stored unencrypted")
    return int(messages), int(attachments)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"soap_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        raise SystemExit(
            f"bench: cannot create a PostgreSQL database at {admin_url} ({type(exc).__name__});"
            " start PostgreSQL with `bash tests/postgres-up.sh` or pass --backends sqlite"
        ) from exc
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_baseline(
    folder: Path, tls: TlsFiles, attachment: bytes, args: argparse.Namespace, pool: Any
) -> TargetResult:
    server = Server(
        name="baseline",
        command=BASELINE_COMMAND,
        data_dir=folder / "baseline",
        tls=tls,
        workers=args.workers,
        threads=args.threads,
    )
    head, tail = envelope_template("bench", "not-checked", attachment)
    try:
        server.start()
        return measure(server, head, tail, args, pool)
    finally:
        server.stop()


def run_service(
    backend: str,
    database_url: str,
    folder: Path,
    tls: TlsFiles,
    attachment: bytes,
    args: argparse.Namespace,
    pool: Any,
) -> TargetResult:
    server = Server(
        name=backend,
        command=SERVICE_COMMAND,
        data_dir=folder / backend,
        tls=tls,
        database_url=database_url,
        workers=args.workers,
        threads=args.threads,
    )
    try:
        server.cli("init")  # schema first, so that `account add` has its table
        username, password = server.add_account()
        head, tail = envelope_template(username, password, attachment)
        server.start()
        database_name = None if backend == "sqlite" else database_url.rsplit("/", 1)[-1]
        result = measure(server, head, tail, args, pool, database_name)
    finally:
        server.stop()
    probe = attachment[len(attachment) // 2 : len(attachment) // 2 + 64]
    result.stored_messages, result.stored_attachments = stored_counts(database_url, probe)
    if result.error_count:
        print(f"{backend}: server log tail:\n{server.log_tail(15)}", file=sys.stderr)
    return result


# --- report --------------------------------------------------------------------------------


# Above this share of the machine used by nobody in the benchmark, the figures are suspect.
OTHER_LOAD_WARNING = 0.10


def print_table(baseline: TargetResult, results: list[TargetResult]) -> None:
    rows = [baseline, *results]
    header = (
        f"{'target':<10} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'errors':>6} "
        f"{'stored':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        stored = "-" if row.stored_messages is None else str(row.stored_messages)
        ratio = "-" if row.ratio_to_baseline is None else f"{row.ratio_to_baseline:.0%}"
        print(
            f"{row.target:<10} {row.requests_per_second:>8.1f} {row.p50_ms:>7.1f} "
            f"{row.p95_ms:>7.1f} {row.error_count:>6} {stored:>7} {ratio:>6}"
        )
    for row in rows:
        for kind, count in row.errors.items():
            print(f"  {row.target} error {kind}: {count}")
    print()
    print_cpu_table(rows)


def median_ratios(rounds: list[tuple[TargetResult, list[TargetResult]]]) -> dict[str, float]:
    ratios: dict[str, list[float]] = {}
    for _, results in rounds:
        for row in results:
            ratios.setdefault(row.target, []).append(row.ratio_to_baseline or 0.0)
    return {target: statistics.median(values) for target, values in ratios.items()}


def print_summary(rounds: list[tuple[TargetResult, list[TargetResult]]]) -> None:
    print(f"\n== summary over {len(rounds)} round(s): median requests per second")
    baselines = [baseline.requests_per_second for baseline, _ in rounds]
    print(f"{'baseline':<10} {statistics.median(baselines):>8.1f}")
    per_target: dict[str, list[TargetResult]] = {}
    for _, results in rounds:
        for row in results:
            per_target.setdefault(row.target, []).append(row)
    ratios = median_ratios(rounds)
    for target, rows in per_target.items():
        rps = statistics.median(row.requests_per_second for row in rows)
        cpu = statistics.median(row.cpu.server_ms_per_request for row in rows)
        print(
            f"{target:<10} {rps:>8.1f}   median ratio {ratios[target]:.0%} "
            f"(goal >= {GOAL_RATIO:.0%}; rounds: "
            + ", ".join(f"{row.ratio_to_baseline or 0:.0%}" for row in rows)
            + f"); server {cpu:.2f} ms CPU per request"
        )


def print_cpu_table(rows: list[TargetResult]) -> None:
    print("CPU over the measured window (shares of the whole machine):")
    header = (
        f"{'target':<10} {'server ms/req':>13} {'db ms/req':>9} {'busy':>5} {'server':>6} "
        f"{'db':>4} {'client':>6} {'other':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        cpu = row.cpu
        print(
            f"{row.target:<10} {cpu.server_ms_per_request:>13.2f} "
            f"{cpu.database_ms_per_request:>9.2f} {cpu.machine_busy:>5.0%} {cpu.server:>6.0%} "
            f"{cpu.database:>4.0%} {cpu.client:>6.0%} {cpu.other:>5.0%}"
        )
    for row in rows:
        if row.cpu.other > OTHER_LOAD_WARNING:
            print(
                f"  warning: {row.cpu.other:.0%} of the machine went to other work during "
                f"{row.target}: its requests per second are understated"
            )


def check(results: list[TargetResult]) -> list[str]:
    """What makes the run invalid: stored rows that do not match the successes."""
    problems = []
    for row in results:
        if row.stored_messages != row.ok_total:
            problems.append(
                f"{row.target}: {row.stored_messages} messages stored, "
                f"{row.ok_total} successful responses"
            )
        if row.stored_attachments != row.stored_messages:
            problems.append(
                f"{row.target}: {row.stored_attachments} attachments for "
                f"{row.stored_messages} messages"
            )
    return problems


def write_json(
    rounds: list[tuple[TargetResult, list[TargetResult]]], args: argparse.Namespace
) -> None:
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "SendMessage, one 50 KB PDF attachment, PasswordText",
        "settings": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup,
            "connections": args.connections,
            "client_processes": args.client_processes,
            "workers": args.workers,
            "threads": args.threads,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
        },
        "goal_ratio": GOAL_RATIO,
        "median_ratios": median_ratios(rounds),
        "rounds": [[asdict(row) for row in [baseline, *results]] for baseline, results in rounds],
    }
    RESULTS_FILE.write_text(json.dumps(_without_nan(document), indent=2) + "\n")


def _without_nan(value: Any) -> Any:
    """NaN (no successful request to take a percentile of) is not JSON: null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nan(item) for item in value]
    return value


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.send_message", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per target")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time first")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="client processes sharing them"
    )
    # Five: one round's ratio drifts by +-7 points with the shared machine's speed; the
    # median of five is steadier than that of three.
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    # Measured on 2 cores: 3 single-threaded workers serve the service best (2 leave the
    # CPU idle while one waits for SQLite's write lock or PostgreSQL; 4, or threads, spend
    # more CPU per request switching). The baseline gets the same.
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers, all targets")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker, all targets")
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (the baseline always runs)",
    )
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="PostgreSQL to create a db on")
    args = parser.parse_args(argv)
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    return args


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    # SystemExit unwinds through the `finally` blocks that stop the servers and drop the
    # PostgreSQL database; the default SIGTERM would leave them behind.
    raise SystemExit(128 + signum)


def run_round(
    number: int,
    folder: Path,
    tls: TlsFiles,
    attachment: bytes,
    args: argparse.Namespace,
    pool: Any,
) -> tuple[TargetResult, list[TargetResult]]:
    """The baseline, then each backend right after it: each ratio compares two runs
    minutes apart at most, whatever else the shared machine did over the whole bench."""
    folder = folder / f"round-{number}"
    print(f"round {number}: baseline ...", flush=True)
    baseline = run_baseline(folder, tls, attachment, args, pool)
    results: list[TargetResult] = []
    for backend in args.backends:
        print(f"round {number}: {backend} ...", flush=True)
        if backend == "sqlite":
            url = f"sqlite:///{folder / 'sqlite' / 'service.sqlite3'}"
            results.append(run_service(backend, url, folder, tls, attachment, args, pool))
        else:
            with postgres_database(args.pg_url) as url:
                results.append(run_service(backend, url, folder, tls, attachment, args, pool))
    for row in results:
        row.ratio_to_baseline = (
            row.requests_per_second / baseline.requests_per_second
            if baseline.requests_per_second
            else 0.0
        )
    return baseline, results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    attachment = pdf_attachment()
    # Spawned (not forked) client processes: they start clean, without this process's
    # database engines or open files.
    context = multiprocessing.get_context("spawn")
    rounds: list[tuple[TargetResult, list[TargetResult]]] = []
    print(
        f"{args.rounds} round(s); gunicorn: {args.workers} workers x {args.threads} threads, "
        f"{args.connections} client connections",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="soap-bench-") as temporary,
        context.Pool(args.client_processes) as pool,
    ):
        folder = Path(temporary)
        tls = make_tls(folder / "tls")
        for number in range(1, args.rounds + 1):
            rounds.append(run_round(number, folder, tls, attachment, args, pool))
    for number, (baseline, results) in enumerate(rounds, start=1):
        print(f"\n== round {number}")
        print_table(baseline, results)
    print_summary(rounds)
    write_json(rounds, args)
    print(f"results: {RESULTS_FILE.relative_to(REPO)}")
    problems = [problem for _, results in rounds for problem in check(results)]
    for problem in problems:
        print(f"bench: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
