"""A private Postfix instance for tests (Debian's package): its own configuration
directory, queue and log, relaying every mail to one host over enforced TLS, with a client
certificate. Never the system's instance: nothing of it listens, mail goes in through its
`sendmail`. Needs root (Postfix's queue belongs to the postfix user); see
../shared/notes/postfix-in-tests.md for how this was worked out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = Path("/usr/sbin/postfix")
POSTCONF = Path("/usr/sbin/postconf")
SENDMAIL = Path("/usr/sbin/sendmail")


def available() -> str | None:
    """Why a private Postfix cannot run here, or None."""
    if not POSTFIX.exists():
        return "Debian's postfix is not installed (tests/debian-packages.sh installs it)"
    if os.geteuid() != 0:
        return "a private Postfix needs root"
    return None


class PrivatePostfix:
    """`start()` makes its folder: under /tmp, since Postfix's own processes (user postfix)
    cannot enter pytest's private temporary folders; `stop()` removes it."""

    def __init__(
        self,
        *,
        relay: tuple[str, int],
        ca_file: Path,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="soap-service-postfix-"))
        self.folder.chmod(0o755)
        self.relay = relay
        self.ca_file = ca_file
        self.client_cert = client_cert
        self.client_key = client_key
        self.settings = settings or {}

    @property
    def maillog(self) -> Path:
        return self.folder / "maillog"

    def start(self) -> PrivatePostfix:
        folder = self.folder
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "queue").mkdir(exist_ok=True)
        shutil.copy("/etc/postfix/master.cf", folder / "master.cf")
        host, port = self.relay
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(folder / "queue"),
            "data_directory": str(folder / "data"),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(folder),
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "postfix.test",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "relayhost": f"[{host}]:{port}",
            "smtp_tls_security_level": "encrypt",
            "smtp_tls_CAfile": str(self.ca_file),
            "smtp_tls_loglevel": "1",
            # A secure message has at most 100 recipients, and one transaction must carry
            # them all (the Message-ID is the message's identity).
            "default_destination_recipient_limit": "100",
            # Retry soon in tests (production keeps Postfix's defaults).
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            "queue_run_delay": "2s",
            **self.settings,
        }
        if self.client_cert is not None and self.client_key is not None:
            # Read by Postfix's smtp client, which runs as the postfix user.
            for name, source in (
                ("client-cert.pem", self.client_cert),
                ("client-key.pem", self.client_key),
            ):
                shutil.copy(source, folder / name)
                shutil.chown(folder / name, "postfix")
                (folder / name).chmod(0o600)
                main[f"smtp_tls_{name.split('-')[1].split('.')[0]}_file"] = str(folder / name)
        shutil.copy(self.ca_file, folder / "ca.pem")
        main["smtp_tls_CAfile"] = str(folder / "ca.pem")
        (folder / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        # Nothing listens (no smtpd), and no service runs chrooted (the files are here).
        self._postconf("-M#", "smtp/inet")
        self._postconf("-F", "*/*/chroot = n")
        self._allow_instance()
        subprocess.run(["chown", "-R", "postfix", str(folder / "data")], check=True)
        self._postfix("set-permissions")
        self._postfix("start")
        return self

    def stop(self) -> None:
        subprocess.run([str(POSTFIX), "-c", str(self.folder), "stop"], capture_output=True)
        self._allow_instance(allowed=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def sendmail(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        subprocess.run(
            [str(SENDMAIL), "-C", str(self.folder), "-i", "-f", sender, "--", *recipients],
            input=raw,
            check=True,
            capture_output=True,
            timeout=30,
        )

    def log_text(self) -> str:
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log_text())
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"Postfix never logged {pattern!r}:\n{self.log_text()[-4000:]}")

    def _postconf(self, *args: str) -> None:
        subprocess.run([str(POSTCONF), "-c", str(self.folder), *args], check=True)

    def _postfix(self, command: str) -> None:
        done = subprocess.run(
            [str(POSTFIX), "-c", str(self.folder), command], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"postfix {command}: {done.stdout}{done.stderr}{self.log_text()}")

    def _allow_instance(self, *, allowed: bool = True) -> None:
        """The system's instance must name ours, or `postfix -c` refuses it; it forgets
        ours again when we stop."""
        current = subprocess.run(
            [str(POSTCONF), "-h", "alternate_config_directories"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        others = [folder for folder in current if folder != str(self.folder)]
        value = " ".join([*others, str(self.folder)] if allowed else others)
        subprocess.run([str(POSTCONF), "-e", f"alternate_config_directories = {value}"], check=True)
