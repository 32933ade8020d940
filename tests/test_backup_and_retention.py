"""The operator's `soap-service backup`, `restore` and `retention`: on both databases, a
restore into a fresh data folder and an empty database opens a message accepted before the
backup; `retention` says whose content falls due."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from soap_service import crypto
from soap_service.container import Container
from soap_service.domain.model import MessageDraft, MessageType
from soap_service.domain.pickup import OpenedMessage
from soap_service.domain.sealing import MessageCipher
from soap_service.persistence.tables import messages
from soap_service.settings import load_settings
from tests.conftest import PostgresDatabases, database_url_for
from tests.support import ServiceProcess, TlsFiles


def service(
    folder: Path, backend: str, tls: TlsFiles, postgres: PostgresDatabases
) -> ServiceProcess:
    folder.mkdir(parents=True)
    return ServiceProcess(
        data_dir=folder / "var", database_url=database_url_for(backend, folder, postgres), tls=tls
    )


def container(process: ServiceProcess) -> Container:
    return Container(load_settings(process.env()))


def accept_a_payslip(process: ServiceProcess) -> str:
    """A message accepted by the service before the backup; its id."""
    username, _ = process.add_account()
    source = container(process)
    scope = source.open_scope()
    try:
        account = scope.store.find_account(username)
        assert account is not None
        status = scope.messages.send(
            account.account,
            MessageDraft(
                reference="payroll-2026-12-0001",
                type=MessageType.CONFIDENTIAL,
                recipients=("anna.muster@example.ch",),
                subject="Lohnabrechnung Dezember",
                text_body="Ihr Nettolohn beträgt CHF 6'543.21",
            ),
        )
    finally:
        scope.close()
        source.close()
    return status.message_id


def opened(process: ServiceProcess, message_id: str) -> OpenedMessage:
    """The message as its recipient's link opens it, on this service."""
    target = container(process)
    scope = target.open_scope()
    try:
        with target.database.engine.connect() as connection:
            row = connection.execute(select(messages).where(messages.c.id == message_id)).one()
        key = crypto.WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key))
        token = MessageCipher.unwrap(target.keyring, key, message_id).pickup_token(1)
        shown = scope.pickup.view(token)
    finally:
        scope.close()
        target.close()
    assert isinstance(shown, OpenedMessage)
    return shown


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_restore_into_a_fresh_folder_opens_a_message_accepted_before_the_backup(
    backend: str, tmp_path: Path, tls: TlsFiles, postgres: PostgresDatabases
) -> None:
    source = service(tmp_path / "before", backend, tls, postgres)
    source.cli("init")
    message_id = accept_a_payslip(source)
    backup = tmp_path / "backup"

    done = source.cli("backup", str(backup))
    assert "master-keys.json" in done.stdout
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["database"] == backend
    assert set(manifest["files"]) >= {
        "master-keys.json",
        "receipts.pem",
        "receipts-key.pem",
        "mail-signing.pem",
        "mail-signing-key.pem",
    }
    assert all((backup / name).stat().st_mode & 0o077 == 0 for name in manifest["files"])

    target = service(tmp_path / "after", backend, tls, postgres)
    restored = target.cli("restore", str(backup))
    assert "restored" in restored.stdout
    shown = opened(target, message_id)
    assert shown.subject == "Lohnabrechnung Dezember"
    assert shown.text_body == "Ihr Nettolohn beträgt CHF 6'543.21"
    assert target.cli("db", "current").stdout.strip() == "0015"
    # The same keys sign on: gateways and senders need not trust new certificates.
    for command in ("signing-certificate", "receipt-certificate"):
        assert target.cli(command).stdout == source.cli(command).stdout


@pytest.mark.parametrize(
    ("damage", "complaint"),
    [
        ("keyring", "exists: restore into a fresh data folder"),
        ("database", "not empty"),
        ("backup", "missing or damaged"),
    ],
)
def test_a_restore_refuses_to_overwrite_or_to_use_a_damaged_backup(
    damage: str, complaint: str, tmp_path: Path, tls: TlsFiles, postgres: PostgresDatabases
) -> None:
    source = service(tmp_path / "before", "sqlite", tls, postgres)
    source.cli("init")
    backup = tmp_path / "backup"
    source.cli("backup", str(backup))
    target = service(tmp_path / "after", "sqlite", tls, postgres)
    if damage == "keyring":
        target.cli("init")  # a data folder in use: its own keyring and schema
    elif damage == "database":
        target.cli("db", "upgrade")
    else:
        with (backup / "master-keys.json").open("ab") as keyring:
            keyring.write(b" ")
    refused = target.cli("restore", str(backup), check=False)
    assert refused.returncode == 2
    assert complaint in refused.stderr


def test_a_backup_goes_into_a_new_folder_only(
    tmp_path: Path, tls: TlsFiles, postgres: PostgresDatabases
) -> None:
    source = service(tmp_path / "before", "sqlite", tls, postgres)
    source.cli("init")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    refused = source.cli("backup", str(tmp_path / "full"), check=False)
    assert refused.returncode == 2
    assert "not empty" in refused.stderr


def test_the_operator_sees_whose_content_the_retention_will_delete(
    tmp_path: Path, tls: TlsFiles, postgres: PostgresDatabases
) -> None:
    process = service(tmp_path / "var", "sqlite", tls, postgres)
    process.cli("init")
    message_id = accept_a_payslip(process)  # unread: settled when it expires, in 7 days
    now = process.cli("retention").stdout
    assert now.startswith("0 message(s) whose content is deleted 30 days after settling")
    later = process.cli("retention", "--within", "40").stdout  # expired in 7, kept 30 more
    assert later.startswith("1 message(s)")
    assert message_id in later and "payroll-2026-12-0001" in later
    assert process.cli("retention", "--delete").stdout.strip().endswith("content of 0 message(s)")
