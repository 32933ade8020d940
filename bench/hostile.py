"""What hostile requests cost the service, before anyone has looked at their credentials.

    python -m bench.hostile [--repeat 5]

One gunicorn worker with one thread (so that all of its CPU is the request's), SQLite.
Each hostile request is sent `--repeat` times, each on a new HTTPS connection; for each,
the fault code it got and the worker's CPU time (user + system, from /proc) the request
cost, median and worst. Side by side, in the same run: a valid SendMessage with a 50 KB
attachment (the baseline a request should cost) and a 56 MiB body that is too large.
Memory: the worker's resident size once warm, after the burst, and its peak during it.

Then 20 wrong passwords in a row for one account: what they cost in all (each check is a
scrypt; the throttle refuses most of them before it).

Goals (issue 12): every hostile request answered with its own fault in under 100 ms of
server CPU; the worker's memory back within 10% of its warm size after the burst.
Results are printed and written to var/bench/hostile.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.memory import kib, reset_peak, worker_pid
from bench.send_message import (
    REPO,
    SERVICE_COMMAND,
    SOAP_PATH,
    WSSE,
    Server,
    client_tls_context,
    envelope_template,
    make_tls,
)

RESULTS_FILE = REPO / "var" / "bench" / "hostile.json"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:soap-service:messaging:v1"
CPU_GOAL_MS = 100.0
MEMORY_GOAL = 0.10


def envelope(body: str, header: str = "") -> bytes:
    return (
        f'<soap:Envelope xmlns:soap="{SOAP11_ENV}" xmlns:m="{TNS}">'
        f"<soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def security(username: str, password: str) -> str:
    return (
        f'<wsse:Security xmlns:wsse="{WSSE}"><wsse:UsernameToken>'
        f"<wsse:Username>{username}</wsse:Username><wsse:Password>{password}</wsse:Password>"
        "</wsse:UsernameToken></wsse:Security>"
    )


GET_STATUS = "<m:GetStatus><m:Reference>x</m:Reference></m:GetStatus>"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[str, str], bytes]  # (username, password) -> body
    expected: str  # the fault code, or "ok"


CASES = [
    Case(
        "valid SendMessage, 50 KB attachment",
        lambda u, p: (lambda h, t: h + uuid.uuid4().hex.encode() + t)(
            *envelope_template(u, p, b"%PDF-1.4" + os.urandom(50 * 1024 - 8))
        ),
        "ok",
    ),
    Case(
        "1.5 million namespace declarations (26 MiB), no credentials",
        lambda u, p: envelope(
            GET_STATUS,
            "<x:h " + " ".join(f'xmlns:p{n}="u"' for n in range(1_500_000)) + "/>",
        ),
        "Client.MalformedRequest",
    ),
    Case(
        "49,000 empty elements in an unknown header, no credentials",
        lambda u, p: envelope(GET_STATUS, "<x:h xmlns:x='urn:x'>" + "<a/>" * 49_000 + "</x:h>"),
        "Client.MalformedRequest",
    ),
    Case(
        "49,000 elements of distinct names in a header, no credentials",
        lambda u, p: envelope(
            GET_STATUS,
            "<x:h xmlns:x='urn:x'>" + "".join(f"<e{n}/>" for n in range(49_000)) + "</x:h>",
        ),
        "Client.MalformedRequest",
    ),
    Case(
        "30,000 elements of distinct names under SendMessages, no credentials",
        lambda u, p: envelope(
            "<m:SendMessages>" + "".join(f"<m:e{n}/>" for n in range(30_000)) + "</m:SendMessages>"
        ),
        "Client.MalformedRequest",
    ),
    Case(
        "31,000 elements under SendMessages",
        lambda u, p: envelope(
            "<m:SendMessages>" + "<m:Message/>" * 31_000 + "</m:SendMessages>", security(u, p)
        ),
        "Client.ValidationError",
    ),
    Case(
        "100,000 attributes on one element",
        lambda u, p: envelope(
            "<m:GetStatus " + " ".join(f'a{n}="1"' for n in range(100_000)) + "/>",
            security(u, p),
        ),
        "Client.MalformedRequest",
    ),
    Case(
        "100,000 elements under GetStatus",
        lambda u, p: envelope(
            "<m:GetStatus>" + "<a/>" * 100_000 + "</m:GetStatus>", security(u, p)
        ),
        "Client.MalformedRequest",
    ),
    Case(
        "nesting 10,000 deep",
        lambda u, p: envelope(
            "<m:GetStatus>" + "<a>" * 10_000 + "</a>" * 10_000 + "</m:GetStatus>", security(u, p)
        ),
        "Client.MalformedRequest",
    ),
    Case(
        "a 56 MiB body (too large)",
        lambda u, p: envelope(
            f"<m:GetStatus><m:Reference>{'x' * (56 * 2**20)}</m:Reference></m:GetStatus>",
            security(u, p),
        ),
        "Client.MessageTooLarge",
    ),
]


def cpu_ms(pid: int) -> float:
    """The CPU time of all the process's threads, to the nanosecond (/proc's schedstat;
    its stat counts in 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e6


def send(server: Server, body: bytes) -> str:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=client_tls_context(server.tls.ca_cert), timeout=300
    )
    try:
        connection.request("POST", SOAP_PATH, body=body, headers={"Content-Type": "text/xml"})
        answer = connection.getresponse().read()
    finally:
        connection.close()
    if b"faultcode" not in answer:
        return "ok"
    return answer.split(b"<faultcode>soap:", 1)[1].split(b"<", 1)[0].decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soap-bench-hostile-") as temporary:
        folder = Path(temporary)
        server = Server(
            name="service",
            command=SERVICE_COMMAND,
            data_dir=folder / "service",
            tls=make_tls(folder / "tls"),
            workers=1,
            threads=1,  # type: ignore[arg-type]
        )
        server.cli("init")
        username, password = server.add_account()
        server.start()
        try:
            results = measure(server, username, password, args.repeat)
        finally:
            server.stop()
    report(results)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2))
    print(f"results: {RESULTS_FILE.relative_to(REPO)}")
    return 0


def measure(server: Server, username: str, password: str, repeat: int) -> dict[str, object]:
    pid = worker_pid(server)
    for _ in range(3):  # warm: imports, caches, the database connection
        send(server, CASES[0].build(username, password))
    warm_kib = kib(pid, "VmRSS")
    reset_peak(pid)
    cases = []
    for case in CASES:
        body = case.build(username, password)
        costs, answers = [], set()
        for _ in range(repeat):
            before = cpu_ms(pid)
            answers.add(send(server, body))
            costs.append(cpu_ms(pid) - before)
        cases.append(
            {
                "name": case.name,
                "bytes": len(body),
                "answers": sorted(answers),
                "expected": case.expected,
                "cpu_ms_median": statistics.median(costs),
                "cpu_ms_max": max(costs),
            }
        )
    before = cpu_ms(pid)
    wrong = envelope(GET_STATUS, security(username, "wrong-password"))
    answers = [send(server, wrong) for _ in range(20)]
    wrong_passwords = {
        "cpu_ms": cpu_ms(pid) - before,
        "checked": answers.count("Client.AuthenticationFailed"),
        "throttled": answers.count("Client.AuthenticationThrottled"),
    }
    return {
        "wrong_passwords": wrong_passwords,
        "worker_warm_mib": warm_kib / 1024,
        "worker_after_mib": kib(pid, "VmRSS") / 1024,
        "worker_peak_mib": kib(pid, "VmHWM") / 1024,
        "cases": cases,
    }


def report(results: dict[str, object]) -> None:
    print(f"{'request':64} {'answer':26} {'CPU ms':>8} {'worst':>7}")
    cases = results["cases"]
    assert isinstance(cases, list)
    for case in cases:
        answer = ",".join(case["answers"])
        mark = (
            "" if case["answers"] == [case["expected"]] else "  (expected " + case["expected"] + ")"
        )
        print(
            f"{case['name']:64} {answer:26} {case['cpu_ms_median']:8.1f} "
            f"{case['cpu_ms_max']:7.1f}{mark}"
        )
    warm, after = float(results["worker_warm_mib"]), float(results["worker_after_mib"])  # type: ignore[arg-type]
    print(
        f"worker memory: {warm:.0f} MiB warm, {after:.0f} MiB after the burst "
        f"({(after - warm) / warm:+.0%}), peak {float(results['worker_peak_mib']):.0f} MiB"  # type: ignore[arg-type]
    )
    wrong = results["wrong_passwords"]
    assert isinstance(wrong, dict)
    print(
        f"20 wrong passwords in a row for one account: {wrong['cpu_ms']:.0f} ms of CPU in all "
        f"({wrong['checked']} checked, {wrong['throttled']} refused before the check)"
    )
    hostile = [case for case in cases if case["expected"] != "ok"]
    print(
        f"goals: CPU under {CPU_GOAL_MS:.0f} ms per hostile request: "
        f"{all(c['cpu_ms_max'] < CPU_GOAL_MS for c in hostile)}; "
        f"memory within {MEMORY_GOAL:.0%} of warm: {after <= warm * (1 + MEMORY_GOAL)}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
