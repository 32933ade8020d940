"""Peak memory of a gunicorn worker while it accepts one 30 MiB message.

    python -m bench.memory [--mib 30] [--rounds 2]

One worker, one thread, SQLite. For each way of sending (inline base64, MTOM/XOP) the
worker's peak resident memory (VmHWM, reset before each request through
/proc/PID/clear_refs) is read after the request, and compared with its resident memory
just before: the growth is what accepting the message cost. Side by side in the same
run, the bare Spyne baseline (`bench.baseline_app`, stores nothing) receiving the same
inline request. Goal: the service's growth stays under 4 times the message size.

Results are printed and written to var/bench/memory.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from bench.send_message import (
    BASELINE_COMMAND,
    REPO,
    SERVICE_COMMAND,
    SOAP_PATH,
    Server,
    client_tls_context,
    envelope_template,
    make_tls,
)

RESULTS_FILE = REPO / "var" / "bench" / "memory.json"
GOAL = 4.0  # the bare Spyne baseline grows by over 5 times
BOUNDARY = "uuid:bench-memory"


def worker_pid(server: Server) -> int:
    assert server.process is not None
    master = server.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def inline_request(username: str, password: str, content: bytes) -> tuple[bytes, str]:
    head, tail = envelope_template(username, password, content)
    return head + uuid.uuid4().hex.encode() + tail, "text/xml; charset=utf-8"


def mtom_request(username: str, password: str, content: bytes) -> tuple[bytes, str]:
    include = (
        '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:part@bench"/>'
    )
    head, tail = envelope_template(username, password, b"")
    root = head + uuid.uuid4().hex.encode() + tail
    root = root.replace(
        b"<m:Content></m:Content>", b"<m:Content>" + include.encode() + b"</m:Content>"
    )
    body = b"".join(
        [
            f"--{BOUNDARY}\r\nContent-Type: application/xop+xml; charset=UTF-8; "
            'type="text/xml"\r\nContent-ID: <root@bench>\r\n\r\n'.encode(),
            root,
            f"\r\n--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: binary\r\nContent-ID: <part@bench>\r\n\r\n".encode(),
            content,
            f"\r\n--{BOUNDARY}--\r\n".encode(),
        ]
    )
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{BOUNDARY}"; '
        'start="<root@bench>"; start-info="text/xml"'
    )
    return body, content_type


def post(server: Server, body: bytes, content_type: str) -> int:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.port, context=client_tls_context(server.tls.ca_cert), timeout=300
    )
    try:
        connection.request("POST", SOAP_PATH, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200 and b"Fault" not in answer:
        raise RuntimeError(f"status {response.status}: {answer[:300]!r}")
    return response.status


def measure(server: Server, body: bytes, content_type: str) -> dict[str, float]:
    pid = worker_pid(server)
    before = kib(pid, "VmRSS")
    reset_peak(pid)
    status = post(server, body, content_type)
    peak = kib(pid, "VmHWM")
    return {"status": status, "rss_before_mib": before / 1024, "peak_mib": peak / 1024}


def run_target(
    name: str, command: list[str], folder: Path, tls: object, content: bytes, ways: list[str]
) -> dict[str, list[dict[str, float]]]:
    server = Server(
        name=name,
        command=command,
        data_dir=folder / name,
        tls=tls,
        workers=1,
        threads=1,  # type: ignore[arg-type]
    )
    if name == "service":
        server.cli("init")
        username, password = server.add_account()
    else:
        username, password = "bench", "bench"
    server.start()
    results: dict[str, list[dict[str, float]]] = {way: [] for way in ways}
    try:
        # A small message first: imports, caches and the database connection are in place.
        post(server, *inline_request(username, password, b"%PDF-1.4 warm-up"))
        for _ in range(ARGS.rounds):
            for way in ways:
                build = inline_request if way == "inline" else mtom_request
                body, content_type = build(username, password, content)
                results[way].append(measure(server, body, content_type))
                del body
    except Exception:
        print(f"--- {name} log:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        server.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--mib", type=int, default=30, help="attachment size")
    parser.add_argument("--rounds", type=int, default=2)
    ARGS = parser.parse_args(argv)
    size = ARGS.mib * 1024 * 1024
    content = b"%PDF-1.4" + os.urandom(size - 8)
    results: dict[str, object] = {"message_mib": ARGS.mib, "goal_factor": GOAL}
    with tempfile.TemporaryDirectory(prefix="soap-bench-memory-") as temporary:
        folder = Path(temporary)
        tls = make_tls(folder / "tls")
        results["baseline"] = run_target(
            "baseline",
            BASELINE_COMMAND,
            folder,
            tls,
            content,
            ["inline"],
        )
        results["service"] = run_target(
            "service",
            SERVICE_COMMAND,
            folder,
            tls,
            content,
            ["inline", "mtom"],
        )
    lines = []
    for target in ("baseline", "service"):
        for way, rounds in results[target].items():  # type: ignore[attr-defined]
            growth = max(r["peak_mib"] - r["rss_before_mib"] for r in rounds)
            peak = max(r["peak_mib"] for r in rounds)
            factor = growth / ARGS.mib
            rounds_done = [r["status"] for r in rounds]
            lines.append(
                f"{target:8} {way:6}: peak {peak:6.0f} MiB, growth {growth:6.0f} MiB = "
                f"{factor:.1f}x the message (statuses {rounds_done})"
            )
            results[f"{target}_{way}_growth_factor"] = factor
    results["within_goal"] = all(
        results[f"service_{way}_growth_factor"] < GOAL
        for way in ("inline", "mtom")  # type: ignore[operator]
    )
    print(json.dumps(results, indent=2))
    print("\n".join(lines))
    print(f"goal: the service's growth under {GOAL:.0f}x the message size")
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    return 0


ARGS: argparse.Namespace

if __name__ == "__main__":
    raise SystemExit(main())
