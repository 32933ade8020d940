"""The `soap-service` command an operator uses."""

from __future__ import annotations

import json
from pathlib import Path

import zeep
from lxml import etree

from tests.support import ServiceProcess, TlsFiles


def cli_for(tmp_path: Path, tls: TlsFiles) -> ServiceProcess:
    return ServiceProcess(
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'var' / 'db.sqlite3'}",
        tls=tls,
    )


def test_account_add_prints_the_password_once_and_refuses_a_taken_name(
    tmp_path: Path, tls: TlsFiles
) -> None:
    cli = cli_for(tmp_path, tls)
    cli.cli("init")
    assert cli.cli("db", "current").stdout.strip() == "0015"

    created = cli.cli("account", "add", "payroll-acme", "--organisation", "ACME AG")
    assert "username: payroll-acme" in created.stdout
    password = created.stdout.split("password: ")[1].split()[0]
    assert len(password) >= 40

    again = cli.cli("account", "add", "payroll-acme", check=False)
    assert again.returncode == 1
    assert "exists" in again.stderr
    assert password not in again.stdout + again.stderr

    bad = cli.cli("account", "add", "x", check=False)
    assert bad.returncode == 2
    assert "3 to 64" in bad.stderr


def test_keys_rotate_adds_a_current_key_and_keeps_the_old_one(
    tmp_path: Path, tls: TlsFiles
) -> None:
    cli = cli_for(tmp_path, tls)
    cli.cli("init")
    keyring = tmp_path / "var" / "keys" / "master-keys.json"
    assert keyring.stat().st_mode & 0o777 == 0o600
    first = json.loads(keyring.read_text())["current"]

    rotated = cli.cli("keys", "rotate").stdout
    document = json.loads(keyring.read_text())
    assert document["current"] != first
    assert document["current"] in rotated
    assert set(document["keys"]) == {first, document["current"]}


def test_receipt_certificate_prints_the_key_files_certificate(
    tmp_path: Path, tls: TlsFiles
) -> None:
    from cryptography import x509

    cli = cli_for(tmp_path, tls)
    printed = cli.cli("receipt-certificate").stdout
    stored = tmp_path / "var" / "keys" / "receipts.pem"
    assert printed == stored.read_text()
    certificate = x509.load_pem_x509_certificate(printed.encode())
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment
    key = tmp_path / "var" / "keys" / "receipts-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert cli.cli("receipt-certificate").stdout == printed  # made once, then kept


def test_signing_certificate_is_generated_once_for_the_from_address(
    tmp_path: Path, tls: TlsFiles
) -> None:
    from cryptography import x509

    cli = cli_for(tmp_path, tls)
    printed = cli.cli("signing-certificate").stdout
    assert printed == (tmp_path / "var" / "keys" / "mail-signing.pem").read_text()
    certificate = x509.load_pem_x509_certificate(printed.encode())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.RFC822Name) == ["no-reply@[127.0.0.1]"]
    usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]
    key = tmp_path / "var" / "keys" / "mail-signing-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert cli.cli("signing-certificate").stdout == printed  # made once, then kept


def test_wsdl_command_writes_the_served_document(tmp_path: Path, tls: TlsFiles) -> None:
    cli = cli_for(tmp_path, tls)
    target = tmp_path / "out.wsdl"
    cli.cli("wsdl", "--output", str(target))
    root = etree.fromstring(target.read_bytes())
    address = root.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address is not None and address.get("location") == cli.url


def test_a_wrong_setting_is_a_clear_message_not_a_trace(tmp_path: Path, tls: TlsFiles) -> None:
    cli = cli_for(tmp_path, tls)
    cli.extra_env["SOAP_SERVICE_PUBLIC_URL"] = "http://insecure.example/soap"
    result = cli.cli("init", check=False)
    assert result.returncode == 2
    assert "https://" in result.stderr
    assert "Traceback" not in result.stderr


def test_team_add_invites_its_owner_and_add_account_puts_a_sender_in_it(
    tmp_path: Path, tls: TlsFiles
) -> None:
    cli = cli_for(tmp_path, tls)
    cli.cli("init")
    cli.cli("account", "add", "payroll-acme", "--organisation", "ACME AG")
    created = cli.cli("team", "add", "Lohnbüro ACME", "--owner", "Olga@Example.ch")
    assert created.stdout.startswith("Team Lohnbüro ACME created; an invitation")
    again = cli.cli("team", "add", "Lohnbüro ACME", "--owner", "olga@example.ch", check=False)
    assert (again.returncode, again.stderr.strip()) == (
        1,
        "soap-service: a team named 'Lohnbüro ACME' exists",
    )
    bad = cli.cli("team", "add", "Einkauf", "--owner", "not an address", check=False)
    assert bad.returncode == 1 and "soap-service:" in bad.stderr
    assert cli.cli("team", "add-account", "Lohnbüro ACME", "payroll-acme").returncode == 0
    missing = cli.cli("team", "add-account", "Lohnbüro ACME", "nobody", check=False)
    assert missing.returncode == 1
    # The owner is a member once they follow the invitation; the account is in already.
    assert cli.cli("team", "list").stdout == "Lohnbüro ACME\n  sender account: payroll-acme\n"


def test_account_list_show_disable_enable_and_reset_password(tmp_path: Path, tls: TlsFiles) -> None:
    cli = cli_for(tmp_path, tls)
    cli.cli("init")
    first = cli.cli("account", "add", "payroll-acme", "--organisation", "ACME AG", "--allow-digest")
    old_password = first.stdout.split("password: ")[1].split()[0]
    cli.cli("account", "add", "hr-beta")
    assert cli.cli("account", "list").stdout == (
        "hr-beta\tenabled\thr-beta\npayroll-acme\tenabled\tACME AG\n"
    )
    reset = cli.cli("account", "reset-password", "payroll-acme")
    new_password = reset.stdout.split("password: ")[1].split()[0]
    assert new_password != old_password and len(new_password) >= 40
    assert (
        cli.cli("account", "disable", "payroll-acme").stdout == "Account payroll-acme disabled.\n"
    )
    shown = cli.cli("account", "show", "payroll-acme").stdout
    assert "state: disabled\n" in shown and "PasswordDigest: accepted\n" in shown
    for action in ("show", "disable", "enable", "reset-password"):
        missing = cli.cli("account", action, "nobody", check=False)
        assert (missing.returncode, missing.stderr) == (1, "soap-service: no account 'nobody'\n")

    # The server: a disabled account is refused; enabled again, only the new password works.
    cli.start()
    try:

        def status(password: str) -> str:
            client = cli.client("payroll-acme", password)
            try:
                client.service.GetStatus(MessageId="00000000-0000-4000-8000-000000000000")
            except zeep.exceptions.Fault as fault:
                return str(fault.code)
            return "answered"

        assert status(new_password).endswith("Client.AuthenticationFailed")
        cli.cli("account", "enable", "payroll-acme")
        assert status(old_password).endswith("Client.AuthenticationFailed")
        assert status(new_password).endswith("Client.NotFound")
    finally:
        cli.stop()
