"""Private Postfix instances for tests (Debian's package), each with its own configuration
directory, queue and log; never the system's instance. Needs root (Postfix's queue belongs
to the postfix user); see ../shared/notes/postfix-in-tests.md for how this was worked out.

- `PrivatePostfix`: an organisation's outgoing mail server, relaying every mail to one host
  over enforced TLS with a client certificate. Nothing of it listens: mail goes in through
  its `sendmail`.
- `GatewayPostfix`: an organisation's receiving mail gateway: smtpd on 127.0.0.1:<port>
  (TLS none, offered or enforced, optionally requiring a client certificate), accepting any
  address of one domain into Maildirs the test reads, refusing chosen recipients."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal, Self

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


class _Instance:
    """What every private instance shares. Its folder is made at once: under /tmp, since
    Postfix's own processes (user postfix) cannot enter pytest's private temporary
    folders; `stop()` removes it."""

    def __init__(self, *, prefix: str, settings: dict[str, str] | None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.folder.chmod(0o755)
        self.settings = settings or {}

    @property
    def maillog(self) -> Path:
        return self.folder / "maillog"

    def _main(self) -> dict[str, str]:
        """This instance's main.cf settings, over the common ones."""
        raise NotImplementedError

    def _master(self) -> None:
        """This instance's changes to Debian's master.cf."""

    def _started(self) -> None:
        """Waits, after `postfix start`, until the instance is usable."""

    def start(self) -> Self:
        folder = self.folder
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "queue").mkdir(exist_ok=True)
        shutil.copy("/etc/postfix/master.cf", folder / "master.cf")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(folder / "queue"),
            "data_directory": str(folder / "data"),
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(folder),
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            **self._main(),
        }
        (folder / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        self._master()
        # No service runs chrooted (the files it reads are here).
        self._postconf("-F", "*/*/chroot = n")
        self._allow_instance()
        subprocess.run(["chown", "-R", "postfix", str(folder / "data")], check=True)
        self._postfix("set-permissions")
        self._postfix("start")
        self._started()
        return self

    def stop(self) -> None:
        subprocess.run([str(POSTFIX), "-c", str(self.folder), "stop"], capture_output=True)
        # `postfix stop` returns before the master's children have gone (a gateway's smtpd
        # still holding its port); every Postfix daemon works in the queue directory.
        deadline = time.monotonic() + 10
        while self._processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._allow_instance(allowed=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _processes(self) -> list[int]:
        """The ids of the processes working in our queue directory."""
        queue, found = str(self.folder / "queue"), []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.readlink(entry / "cwd") == queue:
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
        return found

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

    def _private_copy(self, source: Path, name: str) -> Path:
        """A copy of a key, certificate or CA in the folder, readable by Postfix's
        processes (user postfix) and removed with the folder."""
        copy = self.folder / name
        shutil.copy(source, copy)
        shutil.chown(copy, "postfix")
        copy.chmod(0o600)
        return copy

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


class PrivatePostfix(_Instance):
    """Relays every mail to `relay` over enforced TLS (verified against `ca_file`), with a
    client certificate when given."""

    def __init__(
        self,
        *,
        relay: tuple[str, int],
        ca_file: Path,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(prefix="soap-service-postfix-", settings=settings)
        self.relay = relay
        self.ca_file = ca_file
        self.client_cert = client_cert
        self.client_key = client_key

    def _main(self) -> dict[str, str]:
        host, port = self.relay
        main = {
            "myhostname": "postfix.test",
            "relayhost": f"[{host}]:{port}",
            "smtp_tls_security_level": "encrypt",
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
            cert = self._private_copy(self.client_cert, "client-cert.pem")
            key = self._private_copy(self.client_key, "client-key.pem")
            main["smtp_tls_cert_file"], main["smtp_tls_key_file"] = str(cert), str(key)
        main["smtp_tls_CAfile"] = str(self._private_copy(self.ca_file, "ca.pem"))
        return main

    def _master(self) -> None:
        # Nothing listens (no smtpd).
        self._postconf("-M#", "smtp/inet")

    def sendmail(self, raw: bytes, sender: str, recipients: list[str]) -> None:
        subprocess.run(
            [str(SENDMAIL), "-C", str(self.folder), "-i", "-f", sender, "--", *recipients],
            input=raw,
            check=True,
            capture_output=True,
            timeout=30,
        )


class GatewayPostfix(_Instance):
    """An organisation's receiving gateway on 127.0.0.1:`port`: mail to any address of
    `domain` is accepted into a Maildir (`messages()`, `wait_for()` read one address's),
    other domains are not relayed, and the addresses in `refuse` get their reply at RCPT
    ("450 4.2.1 mailbox busy"). `tls`: "none" offers no STARTTLS, "may" offers it,
    "encrypt" requires it before MAIL; both need `cert_file` and `key_file`. With
    `require_client_cert` (a CA's PEM) a client must present a certificate that CA signed,
    or its first command after STARTTLS gets 421 and the connection ends."""

    def __init__(
        self,
        *,
        port: int,
        domain: str,
        tls: Literal["none", "may", "encrypt"] = "encrypt",
        cert_file: Path | None = None,
        key_file: Path | None = None,
        require_client_cert: Path | None = None,
        refuse: dict[str, str] | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        if tls != "none" and (cert_file is None or key_file is None):
            raise ValueError(f'tls="{tls}" needs cert_file and key_file')
        if require_client_cert is not None and tls != "encrypt":
            raise ValueError('require_client_cert needs tls="encrypt"')
        super().__init__(prefix="soap-service-gateway-", settings=settings)
        self.port = port
        self.domain = domain.lower()
        self.tls = tls
        self.cert_file = cert_file
        self.key_file = key_file
        self.require_client_cert = require_client_cert
        self.refuse = refuse or {}

    @property
    def hostname(self) -> str:
        """Its name in the banner and EHLO reply."""
        return f"mx.{self.domain}"

    @property
    def mail(self) -> Path:
        """virtual_mailbox_base; every address's mail goes into its Maildir `inbox`."""
        return self.folder / "mail"

    def start(self) -> Self:
        # Postfix's master listens with SO_REUSEPORT: on a port some other server has it
        # would start all the same, and the kernel would share the connections out.
        if not self._port_free():
            raise RuntimeError(f"port {self.port} is taken")
        return super().start()

    def _port_free(self) -> bool:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                return False
        return True

    def messages(self, address: str) -> list[bytes]:
        """Every mail delivered to `address` (any case), oldest first, as stored: with
        Postfix's Return-Path, X-Original-To, Delivered-To and Received on top, and LF line
        ends. A copy per recipient, told apart by virtual(8)'s Delivered-To."""
        files = [file for sub in ("new", "cur") for file in (self.mail / "inbox" / sub).glob("*")]
        files.sort(key=lambda file: (file.stat().st_mtime, file.name))
        found = []
        for file in files:
            raw = file.read_bytes()
            head = raw.split(b"\n\n", 1)[0]
            to = re.search(rb"^Delivered-To: *(\S+)", head, re.MULTILINE | re.IGNORECASE)
            if to is not None and to[1].decode().lower() == address.lower():
                found.append(raw)
        return found

    def wait_for(self, address: str, count: int, timeout: float = 30) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(address)
            if len(found) >= count or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if len(found) < count:
            raise AssertionError(
                f"{address} got {len(found)} of {count} mails:\n{self.log_text()[-4000:]}"
            )
        return found

    def _main(self) -> dict[str, str]:
        folder = self.folder
        self.mail.mkdir(exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        # virtual(8) refuses to deliver as root; nobody owns the Maildirs (root reads them).
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        # texthash: read as it is, no postmap; keys are lower case like Postfix's lookups.
        (folder / "refuse").write_text(
            "".join(f"{address.lower()} {reply}\n" for address, reply in self.refuse.items())
        )
        main = {
            "myhostname": self.hostname,
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_base": str(self.mail),
            # Any address of the domain, all into one Maildir (the trailing slash): a
            # Maildir per address would need $1 of a regexp table, which virtual(8) refuses
            # ("regular expression substitution is not allowed").
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            # Room for 45 MiB mails (the defaults are 10 MB per mail and 50 MB per file).
            "message_size_limit": str(100 * 1024 * 1024),
            "virtual_mailbox_limit": "0",
            # Nothing relays, not even for 127.0.0.1 (mynetworks): the test's client is
            # there, and only the domain's recipients may pass.
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": (
                f"check_recipient_access texthash:{folder / 'refuse'}, reject_unauth_destination"
            ),
            # Nothing leaves either (not even a bounce), and nothing waits for DNS: a
            # client is "unknown" rather than looked up.
            "default_transport": "error:a test gateway sends no mail",
            "smtpd_peername_lookup": "no",
            # The test's client is at 127.0.0.1, an inet_interfaces address, which Postfix
            # trusts like a local sender: it would add a missing Date and Message-Id and
            # qualify bare addresses in the headers. A remote sender's mail stays as sent.
            "local_header_rewrite_clients": "",
            "smtpd_tls_security_level": self.tls,
            "smtpd_tls_loglevel": "1",
            "biff": "no",
        }
        if self.cert_file is not None and self.key_file is not None and self.tls != "none":
            main["smtpd_tls_cert_file"] = str(self._private_copy(self.cert_file, "cert.pem"))
            main["smtpd_tls_key_file"] = str(self._private_copy(self.key_file, "key.pem"))
        if self.require_client_cert is not None:
            main["smtpd_tls_ask_ccert"] = "yes"
            main["smtpd_tls_req_ccert"] = "yes"
            main["smtpd_tls_CAfile"] = str(self._private_copy(self.require_client_cert, "ca.pem"))
        return {**main, **self.settings}

    def _master(self) -> None:
        # smtpd on our port instead of 25.
        self._postconf("-M#", "smtp/inet")
        self._postconf("-M", f"{self.port}/inet = {self.port} inet n - n - - smtpd")

    def _started(self, timeout: float = 30) -> None:
        """Until our smtpd greets on the port (`postfix start` returns once the master
        listens; the banner shows it is ours, not some other server's)."""
        deadline = time.monotonic() + timeout
        last: Exception | str = "no answer"
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as client:
                    banner = client.makefile("rb").readline().decode(errors="replace")
                    client.sendall(b"QUIT\r\n")
                if banner.startswith(f"220 {self.hostname} "):
                    return
                last = banner
            except OSError as error:
                last = error
            time.sleep(0.1)
        raise RuntimeError(f"gateway on port {self.port}: {last}\n{self.log_text()[-4000:]}")
