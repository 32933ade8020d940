"""Whether the ports a command will listen on are free, asked before it starts: a port
already taken (another `make run`, another program) is said plainly, with the setting that
moves it, instead of a server retrying and ending in a traceback."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from soap_service.errors import ConfigurationError
from soap_service.settings import PREFIX


@dataclass(frozen=True, kw_only=True)
class Listener:
    what: str  # "the API", "the SMTP channel"
    host: str
    port: int
    setting: str  # the variable that moves it, without the prefix
    with_host: bool = True  # its value is host:port, else a port alone
    # Several processes may listen on it together (SO_REUSEPORT, as the SMTP channel
    # does): a port another of them holds is free for this one.
    shared: bool = False

    def another(self) -> str:
        """The setting with the next port: what to try instead."""
        port = self.port + 1
        return (
            f"{PREFIX}{self.setting}={self.host}:{port}"
            if self.with_host
            else (f"{PREFIX}{self.setting}={port}")
        )


def check_free(listeners: list[Listener]) -> None:
    """Raise ConfigurationError naming every port in `listeners` that is taken."""
    taken = [listener for listener in listeners if not _free(listener)]
    if not taken:
        return
    lines = [
        f"port {listener.port} on {listener.host} ({listener.what}) is already in use: "
        f"stop what uses it, or choose another port, e.g. {listener.another()} make run"
        for listener in taken
    ]
    raise ConfigurationError("\n  ".join(lines))


def _free(listener: Listener) -> bool:
    host, port = listener.host.strip("[]"), listener.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers bind: a port in TIME_WAIT after a restart counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if listener.shared:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise ConfigurationError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return True
