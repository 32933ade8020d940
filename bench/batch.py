"""Payslips accepted per second: SendMessages (a batch per call) against SendMessage (one per
call), on PostgreSQL, in one run.

    python -m bench.batch [--seconds 10] [--batch-size 50] [--rounds 3]

Two targets, each `soap-service serve` on a new PostgreSQL database (dropped afterwards),
in interleaved rounds (single, batch, single, batch...):

- `single`: SendMessage with one payslip (a 50 KB PDF, random after its header, one
  recipient, a new Reference) per call;
- `batch`: SendMessages with `--batch-size` such payslips per call, each its own Reference.

The same client for both: `--connections` keep-alive HTTPS connections sending back to back,
spread over `--client-processes` processes; `--warmup` seconds are not counted, then
`--seconds` are. A payslip counts when its call completes in the window with HTTP 200 and,
in a batch, when its entry's result holds a Status; an entry with a Fault is an error,
counted by code. After each run the messages stored must equal the payslips accepted
(warm-up included), with one attachment each, not in the clear; otherwise the run fails.

The goal: SendMessages accepts at least 3 times as many payslips per second as SendMessage
(the median of the rounds' ratios). Results are printed and written to var/bench/batch.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.send_message import (
    OTHER_LOAD_WARNING,
    PG_ADMIN_URL,
    REFERENCE_MARK,
    REPO,
    SERVICE_COMMAND,
    SUCCESS_MARK,
    CpuUse,
    LoadPlan,
    LoadResult,
    Server,
    TlsFiles,
    WindowSampler,
    _connect,
    _post,
    _sample,
    _stop_on_sigterm,
    _without_nan,
    client_tls_context,
    envelope_template,
    generate_load,
    make_tls,
    pdf_attachment,
    percentile,
    postgres_database,
    stored_counts,
)

RESULTS_FILE = REPO / "var" / "bench" / "batch.json"
GOAL_RATIO = 3.0
MAX_BATCH = 100  # SendMessages' limit (the WSDL's maxOccurs)
BATCH_SUCCESS_MARK = b"SendMessagesResult"
STATUS_MARK = b"<tns:Status>"
FAULT_CODE = re.compile(rb"<tns:Fault>\s*<tns:Code>([^<]*)</tns:Code>")
TARGETS = ("single", "batch")


# --- what is sent --------------------------------------------------------------------------


def batch_parts(head: bytes, tail: bytes, size: int) -> tuple[bytes, ...]:
    """SendMessage's envelope made a SendMessages of `size` copies of its Message, split
    around their References: the client puts a fresh reference between each two parts."""
    before, rest = (head + REFERENCE_MARK + tail).split(b"<m:SendMessage>")
    message, after = rest.split(b"</m:SendMessage>")
    document = before + b"<m:SendMessages>" + message * size + b"</m:SendMessages>" + after
    return tuple(document.split(REFERENCE_MARK))


@dataclass(frozen=True)
class BatchPlan(LoadPlan):
    """A LoadPlan whose body has one Reference per entry: head, ref, middle..., ref, tail."""

    middles: tuple[bytes, ...] = ()
    batch: bool = False  # SendMessages (results counted per entry) or SendMessage

    @property
    def entries(self) -> int:
        return len(self.middles) + 1

    def body(self, prefix: bytes) -> bytes:
        pieces = [self.head]
        for number, part in enumerate((*self.middles, self.tail), start=1):
            pieces += (prefix, str(number).encode(), part)
        return b"".join(pieces)

    def outcome(self, status: int, answer: bytes) -> tuple[int, list[str]]:
        """Payslips accepted by one call, and the kind of each error."""
        if status != 200 or (BATCH_SUCCESS_MARK if self.batch else SUCCESS_MARK) not in answer:
            code = re.search(rb"<faultcode>[^<:]*:?([^<]*)</faultcode>", answer)
            return 0, [f"HTTP {status} {code.group(1).decode() if code else ''}".strip()]
        if not self.batch:
            return 1, []
        accepted = answer.count(STATUS_MARK)
        faults = [f"entry {code.decode()}" for code in FAULT_CODE.findall(answer)]
        return accepted, faults + ["entry without result"] * (self.entries - accepted - len(faults))


# --- load generation (as in bench.send_message, counting payslips) ------------------------


def _connection_loop(
    plan: BatchPlan, number: int, result: LoadResult, lock: threading.Lock
) -> None:
    """One keep-alive connection sending back to back until the window closes; ok_* count
    payslips, latencies_ms calls."""
    context = client_tls_context(plan.ca_cert)
    mine = LoadResult()
    sequence = 0
    connection: http.client.HTTPSConnection | None = None
    while time.time() < plan.start_at:
        time.sleep(0.01)
    try:
        while time.time() < plan.measure_until:
            sequence += 1
            body = plan.body(f"{plan.reference_prefix}-{number}-{sequence}-".encode())
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
                time.sleep(0.05)
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            accepted, errors = plan.outcome(status, answer)
            mine.ok_total += accepted
            if plan.measure_from <= time.time() < plan.measure_until:
                mine.ok_in_window += accepted
                mine.latencies_ms.append(elapsed_ms)
            mine.errors.update(errors)
            if errors:
                fault = re.search(rb"<tns:Fault>.*?</tns:Fault>", answer)
                _sample(mine, (fault.group(0) if fault else answer[:300]).decode(errors="replace"))
    finally:
        if connection is not None:
            connection.close()
        with lock:
            result.merge(mine)


# --- targets -------------------------------------------------------------------------------


@dataclass
class RunResult:
    target: str
    batch_size: int
    payslips_per_second: float
    calls_per_second: float
    p50_ms: float  # per call
    p95_ms: float
    accepted_in_window: int
    accepted_total: int  # warm-up and tail included: what the database must hold
    errors: dict[str, int]
    error_samples: list[str]
    cpu: CpuUse  # ms figures per accepted payslip
    stored_messages: int | None = None
    stored_attachments: int | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_target(
    target: str, folder: Path, tls: TlsFiles, attachment: bytes, args: argparse.Namespace, pool: Any
) -> RunResult:
    size = args.batch_size if target == "batch" else 1
    with postgres_database(args.pg_url) as database_url:
        server = Server(
            name=target,
            command=SERVICE_COMMAND,
            data_dir=folder / target,
            tls=tls,
            database_url=database_url,
            workers=args.workers,
            threads=args.threads,
        )
        try:
            server.cli("init")
            username, password = server.add_account()
            head, tail = envelope_template(username, password, attachment)
            parts = batch_parts(head, tail, size) if target == "batch" else (head, tail)
            server.start()
            start_at = time.time() + 0.5
            plan = BatchPlan(
                port=server.port,
                ca_cert=tls.ca_cert,
                head=parts[0],
                tail=parts[-1],
                reference_prefix=f"bench-{uuid.uuid4().hex[:8]}",
                start_at=start_at,
                measure_from=start_at + args.warmup,
                measure_until=start_at + args.warmup + args.seconds,
                middles=parts[1:-1],
                batch=target == "batch",
            )
            assert server.process is not None
            sampler = WindowSampler(plan, server.process.pid, database_url.rsplit("/", 1)[-1])
            load = generate_load(
                plan, args.connections, args.client_processes, pool, _connection_loop
            )
        finally:
            server.stop()
        probe = attachment[len(attachment) // 2 : len(attachment) // 2 + 64]
        stored = stored_counts(database_url, probe)
    if load.errors:
        print(f"{target}: server log tail:\n{server.log_tail(15)}", file=sys.stderr)
    return RunResult(
        target=target,
        batch_size=size,
        payslips_per_second=load.ok_in_window / args.seconds,
        calls_per_second=len(load.latencies_ms) / args.seconds,
        p50_ms=percentile(load.latencies_ms, 0.50),
        p95_ms=percentile(load.latencies_ms, 0.95),
        accepted_in_window=load.ok_in_window,
        accepted_total=load.ok_total,
        errors=dict(load.errors),
        error_samples=load.error_samples,
        cpu=sampler.result(load.ok_in_window),
        stored_messages=stored[0],
        stored_attachments=stored[1],
    )


def ratio(single: RunResult, batch: RunResult) -> float:
    return (
        batch.payslips_per_second / single.payslips_per_second
        if single.payslips_per_second
        else 0.0
    )


# --- report --------------------------------------------------------------------------------


def print_round(number: int, rows: list[RunResult]) -> None:
    print(f"\n== round {number}: ratio {ratio(*rows):.2f}x")
    header = (
        f"{'target':<7} {'size':>4} {'calls/s':>7} {'payslips/s':>10} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'errors':>6} {'stored':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.target:<7} {row.batch_size:>4} {row.calls_per_second:>7.1f} "
            f"{row.payslips_per_second:>10.1f} {row.p50_ms:>7.0f} {row.p95_ms:>7.0f} "
            f"{row.error_count:>6} {row.stored_messages:>7}"
        )
    for row in rows:
        for kind, count in row.errors.items():
            print(f"  {row.target} error {kind}: {count}")
    print("CPU over the measured window (shares of the whole machine), ms per payslip:")
    header = (
        f"{'target':<7} {'server ms':>9} {'db ms':>6} {'busy':>5} {'server':>6} {'db':>4} "
        f"{'client':>6} {'other':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        cpu = row.cpu
        print(
            f"{row.target:<7} {cpu.server_ms_per_request:>9.2f} "
            f"{cpu.database_ms_per_request:>6.2f} {cpu.machine_busy:>5.0%} {cpu.server:>6.0%} "
            f"{cpu.database:>4.0%} {cpu.client:>6.0%} {cpu.other:>5.0%}"
        )
        if cpu.other > OTHER_LOAD_WARNING:
            print(f"  warning: {cpu.other:.0%} of the machine went to other work: rerun")


def print_summary(rounds: list[list[RunResult]]) -> float:
    print(f"\n== summary over {len(rounds)} round(s): medians")
    for index, target in enumerate(TARGETS):
        rows = [pair[index] for pair in rounds]
        print(
            f"{target:<7} {statistics.median(r.payslips_per_second for r in rows):>8.1f} "
            f"payslips/s, server "
            f"{statistics.median(r.cpu.server_ms_per_request for r in rows):.2f} ms CPU, "
            f"db {statistics.median(r.cpu.database_ms_per_request for r in rows):.2f} ms CPU "
            "per payslip"
        )
    ratios = [ratio(*pair) for pair in rounds]
    median = statistics.median(ratios)
    print(
        f"ratio {median:.2f}x (goal >= {GOAL_RATIO:g}x; rounds: "
        + ", ".join(f"{value:.2f}x" for value in ratios)
        + ")"
    )
    return median


def check(rows: list[RunResult]) -> list[str]:
    problems = []
    for row in rows:
        if row.stored_messages != row.accepted_total:
            problems.append(
                f"{row.target}: {row.stored_messages} messages stored, "
                f"{row.accepted_total} payslips accepted"
            )
        if row.stored_attachments != row.stored_messages:
            problems.append(
                f"{row.target}: {row.stored_attachments} attachments for "
                f"{row.stored_messages} messages"
            )
    return problems


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per target")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time first")
    parser.add_argument("--batch-size", type=int, default=50, help="payslips per SendMessages")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="client processes sharing them"
    )
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="PostgreSQL to create a db on")
    args = parser.parse_args(argv)
    if not 1 <= args.batch_size <= MAX_BATCH:
        parser.error(f"--batch-size must be 1 to {MAX_BATCH}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    attachment = pdf_attachment()
    context = multiprocessing.get_context("spawn")  # clean client processes
    rounds: list[list[RunResult]] = []
    print(
        f"{args.rounds} round(s) on PostgreSQL; gunicorn: {args.workers} workers x "
        f"{args.threads} threads; {args.connections} connections; batches of "
        f"{args.batch_size}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="soap-bench-batch-") as temporary,
        context.Pool(args.client_processes) as pool,
    ):
        folder = Path(temporary)
        tls = make_tls(folder / "tls")
        for number in range(1, args.rounds + 1):
            pair = []
            for target in TARGETS:
                print(f"round {number}: {target} ...", flush=True)
                pair.append(
                    run_target(target, folder / f"round-{number}", tls, attachment, args, pool)
                )
            rounds.append(pair)
    for number, pair in enumerate(rounds, start=1):
        print_round(number, pair)
    median = print_summary(rounds)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "SendMessages against SendMessage, 50 KB PDF payslips, PostgreSQL",
        "settings": {k: v for k, v in vars(args).items() if k != "pg_url"}
        | {"cpus": os.cpu_count()},
        "goal_ratio": GOAL_RATIO,
        "median_ratio": median,
        "rounds": [
            {"ratio": ratio(*pair), "runs": [asdict(row) for row in pair]} for pair in rounds
        ],
    }
    RESULTS_FILE.write_text(json.dumps(_without_nan(document), indent=2) + "\n")
    print(f"results: {RESULTS_FILE.relative_to(REPO)}")
    problems = [problem for pair in rounds for problem in check(pair)]
    for problem in problems:
        print(f"bench: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
