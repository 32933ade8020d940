"""The `soap-service` command."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

from soap_service import crypto
from soap_service.container import Container
from soap_service.domain import accounts, organisations
from soap_service.domain.model import Language
from soap_service.domain.organisations import (
    Gateway,
    Organisation,
    OrganisationConflict,
    TlsPolicy,
)
from soap_service.errors import (
    AccountExists,
    ConfigurationError,
    Conflict,
    InvalidAddress,
    ServiceError,
)
from soap_service.logs import configure_logging
from soap_service.metrics import count_in, glance_text
from soap_service.ports import Listener, check_free
from soap_service.settings import Settings, load_settings
from soap_service.settings_help import settings_epilog

DEV_ACCOUNT = "demo"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        container = Container(settings)
        try:
            return int(args.handler(container, args) or 0)
        finally:
            container.close()
    except (ConfigurationError, ServiceError) as exc:
        print(f"soap-service: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soap-service", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_process_commands(commands)
    _add_account_commands(commands)
    _add_maintenance_commands(commands)
    _describe(parser, [])
    return parser


def _describe(parser: argparse.ArgumentParser, path: list[str]) -> None:
    """Every command's own --help: what it does (its one-line help), its options, and
    the settings it uses (settings_help.py)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, command in action.choices.items():
            command.description = command.description or helps.get(name)
            command.formatter_class = argparse.RawDescriptionHelpFormatter
            command.epilog = settings_epilog(" ".join([*path, name]))
            _describe(command, [*path, name])


def _add_process_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the SOAP API over HTTPS (gunicorn)")
    serve.set_defaults(handler=_serve)
    smtp = commands.add_parser(
        "smtp", help="the SMTP channel: take secure messages by mail (STARTTLS and AUTH)"
    )
    smtp.set_defaults(handler=_smtp)
    worker = commands.add_parser("worker", help="deliver notification e-mails (run one or more)")
    worker.set_defaults(handler=_worker)
    sink = commands.add_parser(
        "mail-sink", help="development SMTP server (STARTTLS) keeping mails in var/mail/"
    )
    sink.set_defaults(handler=_mail_sink)
    dev = commands.add_parser(
        "dev",
        help="serve SOAP and SMTP, deliver and catch mail on this machine: what `make run` starts",
    )
    dev.set_defaults(handler=_dev)


def _add_account_commands(commands: Any) -> None:
    account = commands.add_parser("account", help="sender accounts").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = account.add_parser("add", help="create an account and print its credentials once")
    add.add_argument("name", help="the username (3 to 64 letters, digits, . _ -)")
    add.add_argument("--organisation", help="the sender's name shown to recipients")
    add.add_argument(
        "--allow-digest",
        action="store_true",
        help="also accept PasswordDigest; this keeps the password sealed by the master key, "
        "because a digest can only be checked by someone who knows the password",
    )
    add.add_argument(
        "--show-subject",
        action="store_true",
        help="show the message's subject in notification e-mails (off: only the sender's name)",
    )
    add.add_argument(
        "--language",
        choices=[language.value for language in Language],
        help="notifications' language for messages that give none (default: the service's)",
    )
    add.add_argument(
        "--expiry-days",
        type=int,
        metavar="DAYS",
        help="days recipients have, for messages that give none (default: 7)",
    )
    add.set_defaults(handler=_account_add)
    listing = account.add_parser("list", help="every sender account: name, state, team")
    listing.set_defaults(handler=_account_list)
    show = account.add_parser("show", help="one sender account's settings")
    show.add_argument("name", help="the username")
    show.set_defaults(handler=_account_show)
    for action, disabled, what in (
        ("disable", True, "refuse the account's logins (its messages stay, delivery goes on)"),
        ("enable", False, "accept the account's logins again"),
    ):
        change = account.add_parser(action, help=what)
        change.add_argument("name", help="the username")
        change.set_defaults(handler=_account_disable, disabled=disabled)
    reset = account.add_parser(
        "reset-password", help="give the account a new password and print it once"
    )
    reset.add_argument("name", help="the username")
    reset.set_defaults(handler=_account_reset_password)
    _add_organisation_commands(commands)
    _add_team_commands(commands)
    dev = commands.add_parser(
        "dev-account", help="ensure the development account exists and print its credentials"
    )
    dev.set_defaults(handler=_dev_account)


def _add_team_commands(commands: Any) -> None:
    team = commands.add_parser(
        "team", help="teams: people who share the logbook of their sender accounts"
    ).add_subparsers(required=True, metavar="ACTION")
    add = team.add_parser("add", help="create a team and invite its first owner by e-mail")
    add.add_argument("name", help="the team's name, as its members see it")
    add.add_argument("--owner", required=True, metavar="ADDRESS", help="the first owner")
    add.add_argument(
        "--language",
        choices=[language.value for language in Language],
        help="the invitation's language (default: the service's)",
    )
    add.set_defaults(handler=_team_add)
    account = team.add_parser(
        "add-account", help="show a sender account's messages in the team's logbook"
    )
    account.add_argument("name", help="the team's name")
    account.add_argument("username", help="the sender account")
    account.set_defaults(handler=_team_add_account)
    listing = team.add_parser("list", help="every team, its members and sender accounts")
    listing.set_defaults(handler=_team_list)


def _add_organisation_commands(commands: Any) -> None:
    organisation = commands.add_parser(
        "organisation",
        help="organisations: the domains their mail servers submit from (with a client "
        "certificate) and the gateways that receive their confidential messages signed",
    ).add_subparsers(required=True, metavar="ACTION")
    add = organisation.add_parser(
        "add", help="register an organisation, its mail domains and its client certificate"
    )
    add.add_argument("name", help="a short name (lower-case letters, digits, . _ -)")
    add.add_argument(
        "--domain",
        action="append",
        required=True,
        help="a mail domain it sends from (repeat for more; subdomains are included)",
    )
    add.add_argument(
        "--client-cert",
        type=Path,
        help="the PEM certificate its mail server presents to the SMTP channel (mutual TLS)",
    )
    add.add_argument(
        "--account",
        help="the sender account its mail is submitted as (default: a new account of its name, "
        "whose credentials are printed once)",
    )
    add.add_argument("--display-name", help="the sender's name shown to recipients")
    _add_gateway_options(add)
    add.set_defaults(handler=_organisation_add)
    update = organisation.add_parser(
        "update", help="change an organisation's domains, client certificate or gateway"
    )
    update.add_argument("name")
    update.add_argument("--domain", action="append", help="its mail domains, all of them")
    certificate = update.add_mutually_exclusive_group()
    certificate.add_argument("--client-cert", type=Path, help="a new client certificate (PEM)")
    certificate.add_argument(
        "--no-client-cert", action="store_true", help="its mail server uses SMTP AUTH"
    )
    _add_gateway_options(update)
    update.set_defaults(handler=_organisation_update)
    show = organisation.add_parser("show", help="one organisation's settings")
    show.add_argument("name")
    show.set_defaults(handler=_organisation_show)
    listing = organisation.add_parser("list", help="every organisation, its domains and account")
    listing.set_defaults(handler=_organisation_list)
    remove = organisation.add_parser(
        "remove", help="remove an organisation (its account and messages stay)"
    )
    remove.add_argument("name")
    remove.set_defaults(handler=_organisation_remove)


def _add_gateway_options(parser: Any) -> None:
    parser.add_argument(
        "--gateway",
        metavar="mx|HOST:PORT|none",
        help="deliver its confidential messages as signed mails: to its domains' MX, to a "
        "host, or not at all (every recipient gets a notification; the default)",
    )
    parser.add_argument(
        "--tls",
        choices=[policy.value for policy in TlsPolicy],
        help="enforced: STARTTLS with a verified certificate (default); mutual: and the "
        "service's client certificate",
    )
    parser.add_argument(
        "--gateway-ca", type=Path, help="a CA (PEM) that verifies the gateway's certificate"
    )
    parser.add_argument(
        "--fallback",
        choices=("none", "notification"),
        help="when the gateway stays unreachable: fail (default) or send a notification",
    )


def _add_maintenance_commands(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="how the service is doing: SOAP calls and faults, SMTP mails, delivery attempts "
        "(this host's counters, as /metrics shows them) and the delivery queue",
    )
    status.set_defaults(handler=_status)
    init = commands.add_parser("init", help="create keys, certificate and database schema")
    init.set_defaults(handler=_init)
    database = commands.add_parser("db", help="database migrations").add_subparsers(
        required=True, metavar="ACTION"
    )
    upgrade = database.add_parser("upgrade", help="upgrade the schema (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=lambda c, a: c.database.upgrade(a.revision))
    downgrade = database.add_parser("downgrade", help="downgrade the schema to a revision")
    downgrade.add_argument("revision")
    downgrade.set_defaults(handler=lambda c, a: c.database.downgrade(a.revision))
    current = database.add_parser("current", help="print the schema revision")
    current.set_defaults(handler=lambda c, a: print(c.database.current_revision()))
    wsdl = commands.add_parser("wsdl", help="write the WSDL the service serves")
    wsdl.add_argument("--output", type=Path, help="file to write (default: standard output)")
    wsdl.set_defaults(handler=_wsdl)
    receipts = commands.add_parser(
        "receipt-certificate",
        help="print the certificate that signs receipts (for senders to trust)",
    )
    receipts.set_defaults(handler=_receipt_certificate)
    signing = commands.add_parser(
        "signing-certificate",
        help="print the certificate that S/MIME-signs mails to gateways (for organisations)",
    )
    signing.set_defaults(handler=_signing_certificate)
    backup = commands.add_parser(
        "backup", help="write the database, keyring and receipt keys into a new folder"
    )
    backup.add_argument("folder", type=Path, help="a new or empty folder")
    backup.set_defaults(handler=_backup)
    restore = commands.add_parser(
        "restore", help="restore a backup into a fresh data folder and an empty database"
    )
    restore.add_argument("folder", type=Path, help="a folder `soap-service backup` wrote")
    restore.set_defaults(handler=_restore)
    retention = commands.add_parser(
        "retention",
        help="list the messages whose content is due for deletion (the workers delete it)",
    )
    retention.add_argument(
        "--within", type=int, default=0, metavar="DAYS", help="also what falls due within DAYS"
    )
    retention.add_argument("--delete", action="store_true", help="delete what is due now")
    retention.set_defaults(handler=_retention)
    keys = commands.add_parser("keys", help="master keys").add_subparsers(
        required=True, metavar="ACTION"
    )
    rotate = keys.add_parser("rotate", help="add a new master key for new messages")
    rotate.set_defaults(handler=_rotate_keys)


def _serve(container: Container, args: argparse.Namespace) -> None:
    check_free([_api_listener(container.settings)])
    count_in(container.settings.metrics_dir)
    container.prepare()
    server = container.https_server()
    container.close()  # each gunicorn worker opens its own database connections
    url = container.settings.public_url
    print(f"SOAP endpoint: {url}   WSDL: {url}?wsdl", flush=True)
    server.run()


def _smtp(container: Container, args: argparse.Namespace) -> None:
    check_free([_smtp_listener(container.settings)])
    count_in(container.settings.metrics_dir)
    container.prepare()
    channel = container.smtp_channel()
    host, port = container.settings.smtp_channel.bind
    print(f"SMTP channel: {host}:{port} (STARTTLS and AUTH required)", flush=True)
    channel.run(_stop_on_signals())


def _worker(container: Container, args: argparse.Namespace) -> None:
    count_in(container.settings.metrics_dir)
    container.prepare()
    worker = container.delivery_worker()
    try:
        worker.run(_stop_on_signals())
    finally:
        worker.close()


def _mail_sink(container: Container, args: argparse.Namespace) -> None:
    check_free([_sink_listener(container.settings)])
    container.prepare()  # the development certificate
    container.close()  # the sink needs no database
    container.run_mail_sink(_stop_on_signals())


def _dev(container: Container, args: argparse.Namespace) -> int:
    """Run the service, one delivery worker and the mail sink until Ctrl-C or one stops."""
    settings = container.settings
    check_free([_api_listener(settings), _smtp_listener(settings), _sink_listener(settings)])
    container.prepare()  # once, before three processes would race to do it
    container.close()
    children = [
        subprocess.Popen([sys.executable, "-m", "soap_service", command])
        for command in ("mail-sink", "worker", "smtp", "serve")
    ]
    mail_dir = container.settings.delivery.dev_mail_dir
    print(f"Mails the service sends are kept in {mail_dir}/", flush=True)
    stop = _stop_on_signals()
    try:
        while not stop.wait(0.5):
            if any(child.poll() is not None for child in children):
                break
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    return max((child.returncode or 0) for child in children)


def _api_listener(settings: Settings) -> Listener:
    host, _, port = settings.bind.rpartition(":")
    return Listener(what="the SOAP API and pages", host=host, port=int(port), setting="BIND")


def _smtp_listener(settings: Settings) -> Listener:
    host, port = settings.smtp_channel.bind
    return Listener(what="the SMTP channel", host=host, port=port, setting="SMTP_BIND", shared=True)


def _sink_listener(settings: Settings) -> Listener:
    port = settings.delivery.dev_mail_port
    return Listener(
        what="the development mail sink",
        host="127.0.0.1",
        port=port,
        setting="DEV_MAIL_PORT",
        with_host=False,
    )


def _stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT. Ctrl-C under `soap-service dev` brings
    both at once (SIGINT from the terminal, SIGTERM from the parent). A Python signal handler
    runs between two bytecodes of the main thread, and Event.set() holds a lock that is not
    reentrant: a second handler running inside the first one's set() deadlocked the process.
    So only the first signal sets the event; the flag is set before set() takes its lock."""
    stop = threading.Event()
    signalled = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signalled
        if not signalled:
            signalled = True
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    return stop


def _status(container: Container, args: argparse.Namespace) -> None:
    print(glance_text(container.status()), end="")


def _init(container: Container, args: argparse.Namespace) -> None:
    container.prepare()
    print(f"soap-service: ready; data in {container.settings.data_dir}")


def _account_add(container: Container, args: argparse.Namespace) -> int:
    try:
        credentials = container.create_account(
            args.name,
            args.organisation,
            digest=args.allow_digest,
            show_subject=args.show_subject,
            language=Language(args.language) if args.language else None,
            expiry_days=args.expiry_days,
        )
    except AccountExists as exc:
        print(f"soap-service: {exc}", file=sys.stderr)
        return 1
    print("Account created. The password is shown only this once:")
    print(f"  username: {credentials.account.username}")
    print(f"  password: {credentials.password}")
    return 0


def _no_account(name: str) -> int:
    print(f"soap-service: no account {name!r}", file=sys.stderr)
    return 1


def _account_list(container: Container, args: argparse.Namespace) -> None:
    with closing(container.database.store()) as store:
        records = store.list_accounts()
    for record in records:
        state = "disabled" if record.disabled else "enabled"
        print(f"{record.account.username}\t{state}\t{record.account.organisation}")


def _account_show(container: Container, args: argparse.Namespace) -> int:
    with closing(container.database.store()) as store:
        record = store.find_account(args.name)
    if record is None:
        return _no_account(args.name)
    account = record.account
    print(f"username: {account.username}")
    print(f"organisation: {account.organisation}")
    print(f"state: {'disabled' if record.disabled else 'enabled'}")
    print(f"PasswordDigest: {'accepted' if record.digest_secret else 'not accepted'}")
    language = account.default_language.value if account.default_language else "(service's)"
    print(f"language: {language}")
    expiry = account.default_expiry_days or "(service's)"
    print(f"expiry days: {expiry}")
    return 0


def _account_disable(container: Container, args: argparse.Namespace) -> int:
    with closing(container.database.store()) as store:
        changed = store.set_account_disabled(args.name, args.disabled)
    if not changed:
        return _no_account(args.name)
    print(f"Account {args.name} {'disabled' if args.disabled else 'enabled'}.")
    return 0


def _account_reset_password(container: Container, args: argparse.Namespace) -> int:
    with closing(container.database.store()) as store:
        credentials = accounts.reset_password(store, container.keyring, args.name)
    if credentials is None:
        return _no_account(args.name)
    print("New password. It is shown only this once:")
    print(f"  username: {credentials.account.username}")
    print(f"  password: {credentials.password}")
    return 0


def _team_add(container: Container, args: argparse.Namespace) -> int:
    language = Language(args.language) if args.language else container.settings.default_language
    teams = container.teams()
    try:
        team = teams.create(args.name, args.owner, language)
    except (Conflict, InvalidAddress) as exc:
        print(f"soap-service: {exc}", file=sys.stderr)
        return 1
    finally:
        teams.close()
    print(f"Team {team.name} created; an invitation to own it is on its way to {args.owner}.")
    return 0


def _team_add_account(container: Container, args: argparse.Namespace) -> int:
    teams = container.teams()
    try:
        added = teams.add_account(args.name, args.username)
    finally:
        teams.close()
    if not added:
        print(
            f"soap-service: no team {args.name!r} or no account {args.username!r}", file=sys.stderr
        )
        return 1
    print(f"The messages of {args.username} show in the logbook of {args.name}.")
    return 0


def _team_list(container: Container, args: argparse.Namespace) -> None:
    teams = container.teams()
    try:
        for team, members, usernames in teams.all():
            print(team.name)
            for member in members:
                print(f"  {member.role.value}: {member.address}")
            for username in usernames:
                print(f"  sender account: {username}")
    finally:
        teams.close()


def _organisation_add(container: Container, args: argparse.Namespace) -> int:
    try:
        pem = _read(args.client_cert)
        gateway = _gateway(args, None)
        organisation, credentials = container.add_organisation(
            args.name,
            domains=args.domain,
            client_certificate_pem=pem,
            account=args.account,
            display_name=args.display_name,
            gateway=gateway,
        )
    except (AccountExists, OrganisationConflict, _Unreadable) as exc:
        print(f"soap-service: {exc}", file=sys.stderr)
        return 1
    print(f"Organisation {organisation.name} registered:")
    _print_organisation(organisation)
    if credentials is not None:
        print("Its sender account was created. The password is shown only this once:")
        print(f"  username: {credentials.account.username}")
        print(f"  password: {credentials.password}")
    return 0


def _organisation_update(container: Container, args: argparse.Namespace) -> int:
    current = _named_organisation(container, args.name)
    if current is None:
        return 1
    try:
        certificate = current.client_certificate
        if args.no_client_cert:
            certificate = None
        elif args.client_cert is not None:
            certificate = organisations.certificate(
                _read(args.client_cert), "the client certificate"
            )
        changed = dataclasses.replace(
            current,
            domains=organisations.mail_domains(args.domain) if args.domain else current.domains,
            client_certificate=certificate,
            gateway=_gateway(args, current.gateway),
        )
        container.update_organisation(changed)
    except (OrganisationConflict, _Unreadable) as exc:
        print(f"soap-service: {exc}", file=sys.stderr)
        return 1
    print(f"Organisation {changed.name} updated:")
    _print_organisation(changed)
    return 0


def _organisation_show(container: Container, args: argparse.Namespace) -> int:
    found = _named_organisation(container, args.name)
    if found is None:
        return 1
    print(found.name)
    _print_organisation(found)
    return 0


def _named_organisation(container: Container, name: str) -> Organisation | None:
    """The organisation of that name, or None after saying there is none."""
    found = container.organisation(name)
    if found is None:
        print(f"soap-service: no organisation {name!r}", file=sys.stderr)
    return found


class _Unreadable(Exception):
    """A file named on the command line cannot be read."""


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Unreadable(f"cannot read {path}: {exc.strerror}") from None


def _gateway(args: argparse.Namespace, current: Gateway | None) -> Gateway | None:
    """The gateway the options name, starting from `current` (update) or none (add)."""
    options = (args.gateway, args.tls, args.gateway_ca, args.fallback)
    if all(option is None for option in options):
        return current
    if args.gateway is None and current is None:
        raise _Unreadable("--tls, --gateway-ca and --fallback need --gateway")
    where = args.gateway or (f"{current.host}:{current.port}" if current and current.host else "mx")
    ca_pem = _read(args.gateway_ca)
    if ca_pem is None and current is not None and current.ca is not None:
        ca_pem = current.ca.pem.encode("ascii")
    return organisations.gateway_of(
        where,
        tls=TlsPolicy(args.tls) if args.tls else (current.tls if current else TlsPolicy.ENFORCED),
        ca_pem=ca_pem,
        fallback_to_notification=(
            args.fallback == "notification"
            if args.fallback
            else bool(current and current.fallback_to_notification)
        ),
    )


def _organisation_list(container: Container, args: argparse.Namespace) -> None:
    registered = container.organisations()
    if not registered:
        print("No organisations.")
    for organisation in registered:
        print(organisation.name)
        _print_organisation(organisation)


def _print_organisation(organisation: Organisation) -> None:
    print(f"  account:     {organisation.account.username} ({organisation.account.organisation})")
    print(f"  domains:     {', '.join(organisation.domains)}")
    certificate = organisation.client_certificate
    if certificate is None:
        print("  certificate: none (its mail server uses SMTP AUTH)")
    else:
        print(f"  certificate: {certificate.subject}, valid until {certificate.not_after:%Y-%m-%d}")
        print(f"               SHA-256 {certificate.sha256.hex(':').upper()}")
    gateway = organisation.gateway
    print(
        f"  gateway:     {gateway.describe()}"
        if gateway
        else "  gateway:     none (every recipient gets a notification)"
    )


def _organisation_remove(container: Container, args: argparse.Namespace) -> int:
    if container.remove_organisation(args.name.strip().lower()):
        print(f"soap-service: organisation {args.name} removed")
        return 0
    print(f"soap-service: no organisation {args.name!r}", file=sys.stderr)
    return 1


def _dev_account(container: Container, args: argparse.Namespace) -> None:
    """The account `make run` prints: created once, its password kept in the data folder
    (a development convenience; production accounts are made with `account add`)."""
    saved = container.settings.data_dir / "dev-account.txt"
    if not saved.exists():
        try:
            credentials = container.create_account(DEV_ACCOUNT, "Demo Payroll Ltd", digest=True)
        except AccountExists:
            print(
                f"soap-service: account {DEV_ACCOUNT!r} exists but {saved} is gone;"
                " create another with `soap-service account add NAME`",
                file=sys.stderr,
            )
            return
        saved.write_text(f"username={DEV_ACCOUNT}\npassword={credentials.password}\n")
        saved.chmod(0o600)
    values = dict(line.split("=", 1) for line in saved.read_text().splitlines() if "=" in line)
    host, port = container.settings.smtp_channel.bind
    print(f"Development sender account (WS-Security UsernameToken; SMTP AUTH on {host}:{port}):")
    print(f"  username: {values['username']}")
    print(f"  password: {values['password']}")
    print(f"  (kept in {saved})")


def _receipt_certificate(container: Container, args: argparse.Namespace) -> None:
    container.prepare()  # generated on first start
    print(container.settings.receipt_cert_file.read_text(), end="")


def _signing_certificate(container: Container, args: argparse.Namespace) -> None:
    container.prepare()  # generated on first start
    print(container.settings.signing_cert_file.read_text(), end="")


def _wsdl(container: Container, args: argparse.Namespace) -> None:
    from soap_service.soap.application import SoapEndpoint

    document = SoapEndpoint(container.settings.public_url).wsdl
    if args.output:
        args.output.write_bytes(document)
    else:
        sys.stdout.buffer.write(document)


def _backup(container: Container, args: argparse.Namespace) -> None:
    written = container.back_up(args.folder)
    print(f"soap-service: backup in {args.folder}: {', '.join(written)}")
    print("It holds the master keyring: keep it as safe as the keyring itself.")


def _restore(container: Container, args: argparse.Namespace) -> None:
    container.restore(args.folder)
    print(f"soap-service: restored {args.folder} into {container.settings.data_dir}")


def _retention(container: Container, args: argparse.Namespace) -> None:
    if args.delete:
        deleted = total = container.delete_due_content()
        while deleted:  # a batch a call
            deleted = container.delete_due_content()
            total += deleted
        print(f"soap-service: deleted the content of {total} message(s)")
        return
    keep = timedelta(days=container.settings.retention_days)
    now = container.now()
    with closing(container.database.store()) as store:
        due = container.content_retention(store).due(
            at=now + timedelta(days=max(args.within, 0)), limit=10_000
        )
    print(f"{len(due)} message(s) whose content is deleted {keep.days} days after settling:")
    for message in due:
        when = max(message.settled_at + keep, now)
        print(
            f"  {message.message_id}  {message.type.value:12}  settled "
            f"{message.settled_at:%Y-%m-%d %H:%M}  deleted from {when:%Y-%m-%d %H:%M} UTC  "
            f"{message.reference}"
        )


def _rotate_keys(container: Container, args: argparse.Namespace) -> None:
    settings = container.settings
    key_id = crypto.Keyring.rotate(settings.master_key_file)
    container.check_master_keys()  # registers the new key
    print(
        f"soap-service: new master key {key_id} is current; older keys stay for reading.\n"
        f"Copy {settings.master_key_file} to every host, then restart their services."
    )
