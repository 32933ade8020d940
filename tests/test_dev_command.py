"""`make run` as a newcomer meets it (`soap-service dev`, the four processes): it starts,
a first call is delivered into the mailbox folder, one Ctrl-C stops everything cleanly,
and a port already taken is said plainly before anything starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO, free_port

pytestmark = pytest.mark.e2e


def dev_env(data_dir: Path, api: int, smtp: int, sink: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOAP_SERVICE_")}
    env.update(
        {
            "SOAP_SERVICE_DATA_DIR": str(data_dir),
            "SOAP_SERVICE_BIND": f"127.0.0.1:{api}",
            "SOAP_SERVICE_SMTP_BIND": f"127.0.0.1:{smtp}",
            "SOAP_SERVICE_DEV_MAIL_PORT": str(sink),
            "SOAP_SERVICE_WORKERS": "1",
        }
    )
    return env


def soap_service(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soap_service", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout} s")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_one_ctrl_c_stops_every_process_after_a_delivered_first_call(tmp_path: Path) -> None:
    api, smtp, sink = free_port(), free_port(), free_port()
    data_dir = tmp_path / "var"
    env = dev_env(data_dir, api, smtp, sink)
    assert soap_service(env, "init").returncode == 0
    account = soap_service(env, "dev-account")
    assert account.returncode == 0, account.stderr
    password = account.stdout.split("password: ", 1)[1].split()[0]
    log = tmp_path / "dev.log"
    with log.open("wb") as output:
        dev = subprocess.Popen(
            [sys.executable, "-m", "soap_service", "dev"],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's process group: Ctrl-C reaches them all
        )
    try:
        wait_for(lambda: all(listening(port) for port in (api, smtp, sink)), "listening ports")
        first_call = subprocess.run(
            [
                sys.executable,
                "client_examples/first_call.py",
                "--url",
                f"https://localhost:{api}/soap/v1",
                "--username",
                "demo",
                "--password",
                password,
                "--ca-file",
                str(data_dir / "tls" / "dev-cert.pem"),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert first_call.returncode == 0, first_call.stderr
        mail_dir = data_dir / "mail"
        wait_for(lambda: list(mail_dir.glob("*.eml")), "mail in the mailbox folder")

        # Ctrl-C: SIGINT to the whole foreground process group, as a terminal sends it.
        started = time.monotonic()
        os.killpg(dev.pid, signal.SIGINT)
        returncode = dev.wait(timeout=25)
        print(f"stopped {time.monotonic() - started:.2f} s after Ctrl-C")
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
    assert returncode == 0
    with pytest.raises(ProcessLookupError):  # nothing of the group is left
        os.killpg(dev.pid, 0)
    assert not any(listening(port) for port in (api, smtp, sink))
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    # The console says what matters, not each process's schema check or aiosmtpd's chatter.
    assert "Context impl" not in text and "Will assume" not in text
    assert "Connection lost" not in text
    assert f"SOAP endpoint: https://localhost:{api}/soap/v1" in text
    assert "delivered 1: sent 1" in text


def test_a_taken_port_is_named_with_the_setting_that_moves_it(tmp_path: Path) -> None:
    api, smtp, sink = free_port(), free_port(), free_port()
    env = dev_env(tmp_path / "var", api, smtp, sink)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", smtp))
        taken.listen()
        result = soap_service(env, "dev")
        alone = soap_service(env, "smtp")
    expected = (
        f"soap-service: port {smtp} on 127.0.0.1 (the SMTP channel) is already in use: stop "
        f"what uses it, or choose another port, e.g. SOAP_SERVICE_SMTP_BIND=127.0.0.1:{smtp + 1}"
        " make run\n"
    )
    assert (result.returncode, result.stderr, result.stdout) == (2, expected, "")
    assert (alone.returncode, alone.stderr) == (2, expected)
    assert not listening(api) and not listening(sink)  # nothing else was started
