"""Every command's --help says what it does, its options and the settings it uses; the
settings it lists are exactly the ones the service reads."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

from soap_service.cli import _parser
from soap_service.settings import PREFIX, load_settings
from soap_service.settings_help import DESCRIBED, USED_BY
from tests.support import REPO


class Recording(dict[str, str]):
    """An environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield " ".join((*path, name)), command
                yield from commands(command, (*path, name))


def test_every_setting_the_service_reads_is_described_and_nothing_else() -> None:
    environment = Recording()
    load_settings(environment)
    read = {name.removeprefix(PREFIX) for name in environment.asked}
    assert read == set(DESCRIBED)


def test_every_command_says_what_it_does_and_which_settings_it_uses() -> None:
    found = dict(commands(_parser()))
    assert {"serve", "worker", "account add", "organisation update", "db upgrade"} <= set(found)
    assert set(USED_BY) <= set(found)  # no settings listed for a command that is not there
    for name, command in found.items():
        text = command.format_help()
        assert command.description, name
        assert "settings it uses (environment variables; see the README):" in text, name
        assert f"{PREFIX}DATA_DIR" in text or name == "wsdl", name


def test_worker_help_as_an_operator_reads_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "soap_service", "worker", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: soap-service worker [-h]\n\ndeliver notification")
    assert (
        "  SOAP_SERVICE_SMTP_RELAY                host:port of a relay (default: the mail sink "
        "in development; MX)\n" in result.stdout
    )
    assert f"{PREFIX}BIND " not in result.stdout  # the API's, not the worker's
