"""Organisations that couple their mail server to the service: their mail domains, the
client certificate with which their server submits over the SMTP channel (mutual TLS),
and their gateway, to which confidential messages for their domains are delivered as
signed mails (business customers).

A submission with the certificate needs no password: it authenticates the connection as
the organisation's sender account, which may send only from the organisation's domains
(and their subdomains), in the envelope and in the From header alike.

A gateway is reached over TLS that is never weaker than its policy says: enforced (STARTTLS,
the certificate verified against the system's roots or the CA the operator gave, the name
checked) or mutual (also the service's client certificate). Only `fallback_to_notification`
lets a recipient whose gateway stays unreachable get a notification instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import idna

from soap_service import crypto
from soap_service.domain.model import Account
from soap_service.errors import SoapServiceError, ValidationError

if TYPE_CHECKING:
    from soap_service.domain.ports import OrganisationStore

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# A DNS name: labels of letters, digits and hyphens (IDNA in its A-label form).
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class OrganisationConflict(SoapServiceError):
    """The name, a domain or the certificate belongs to another organisation already."""


class TlsPolicy(StrEnum):
    ENFORCED = "enforced"  # STARTTLS, the gateway's certificate verified, its name checked
    MUTUAL = "mutual"  # and the service's client certificate


@dataclass(frozen=True, kw_only=True)
class Gateway:
    """Where and how an organisation's confidential messages are delivered as mails."""

    host: str | None  # None: each recipient domain's mail exchangers (MX)
    port: int = 25
    tls: TlsPolicy = TlsPolicy.ENFORCED
    # A CA to verify the gateway's certificate with, besides the system's roots.
    ca: crypto.CertificateInfo | None = None
    # When the gateway cannot be reached as the policy asks until the retry time is over:
    # a notification to the recipient instead of `failed`.
    fallback_to_notification: bool = False

    def describe(self) -> str:
        where = f"{self.host}:{self.port}" if self.host else "the domains' MX"
        trust = f"CA {self.ca.subject}" if self.ca else "the system's CAs"
        fallback = "notification" if self.fallback_to_notification else "none"
        return f"{where}, {self.tls.value} TLS ({trust}), fallback: {fallback}"


@dataclass(frozen=True, kw_only=True)
class Organisation:
    name: str
    account: Account
    domains: tuple[str, ...]
    client_certificate: crypto.CertificateInfo | None
    gateway: Gateway | None = None

    def sends_from(self, address: str) -> bool:
        return sends_from(self.domains, address)


def sends_from(domains: tuple[str, ...], address: str) -> bool:
    """Whether `address` is in one of `domains` or a subdomain of one."""
    domain = address.rpartition("@")[2].rstrip(".").lower()
    return any(domain == own or domain.endswith("." + own) for own in domains)


def organisation_name(name: str) -> str:
    name = name.strip().lower()
    if not _NAME.match(name):
        raise ValidationError(
            "an organisation's name is 2 to 64 lower-case letters, digits, dots, dashes "
            "or underscores"
        )
    return name


def mail_domain(domain: str) -> str:
    """A mail domain in its canonical form (lower case, IDNA A-labels)."""
    try:
        ascii_domain = idna.encode(domain.strip().rstrip("."), uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ValidationError(f"{domain!r:.80} is not a domain name such as example.ch") from None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 2 or not all(map(_LABEL.match, labels)):
        raise ValidationError(f"{domain!r:.80} is not a domain name such as example.ch")
    return ascii_domain


@dataclass(frozen=True, kw_only=True)
class OrganisationDraft:
    """An organisation checked and ready to be stored, before its account is known."""

    name: str
    domains: tuple[str, ...]
    client_certificate: crypto.CertificateInfo | None
    gateway: Gateway | None = None


def check_organisation(
    *,
    name: str,
    domains: list[str],
    client_certificate_pem: bytes | None,
    gateway: Gateway | None = None,
) -> OrganisationDraft:
    """Raises ValidationError for a bad name, domain or certificate."""
    return OrganisationDraft(
        name=organisation_name(name),
        domains=mail_domains(domains),
        client_certificate=certificate(client_certificate_pem, "the client certificate"),
        gateway=gateway,
    )


def mail_domains(domains: list[str]) -> tuple[str, ...]:
    canonical = tuple(dict.fromkeys(mail_domain(domain) for domain in domains))
    if not canonical:
        raise ValidationError("an organisation needs at least one mail domain")
    return canonical


def certificate(pem: bytes | None, what: str) -> crypto.CertificateInfo | None:
    if pem is None:
        return None
    try:
        return crypto.certificate_info(pem)
    except crypto.InvalidCertificate as exc:
        raise ValidationError(f"{what}: {exc}") from None


def gateway_of(
    where: str,
    *,
    tls: TlsPolicy = TlsPolicy.ENFORCED,
    ca_pem: bytes | None = None,
    fallback_to_notification: bool = False,
) -> Gateway | None:
    """A gateway from how an operator names it: `mx`, `host:port` (or `host`, port 25), or
    `none` (no gateway: every recipient gets a notification)."""
    where = where.strip().lower()
    if where == "none":
        return None
    host: str | None = None
    port = 25
    if where != "mx":
        name, _, port_text = where.partition(":") if where.count(":") == 1 else (where, "", "")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            raise ValidationError(f"{where!r:.80}: the port must be a number from 1 to 65535")
        host = mail_domain(name) if not _is_ip(name) else name
        port = int(port_text) if port_text else 25
    return Gateway(
        host=host,
        port=port,
        tls=tls,
        ca=certificate(ca_pem, "the gateway's CA"),
        fallback_to_notification=fallback_to_notification,
    )


def _is_ip(name: str) -> bool:
    return bool(re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name))


def conflict_with(draft: OrganisationDraft, existing: list[Organisation]) -> str | None:
    """What of the draft belongs to an organisation already, if anything (checked before
    an account is made for it; the database's unique keys stay the last word)."""
    for organisation in existing:
        if organisation.name == draft.name:
            return f"an organisation named {draft.name!r} exists"
        taken = set(draft.domains) & set(organisation.domains)
        if taken:
            return f"{sorted(taken)[0]} belongs to the organisation {organisation.name!r}"
        theirs = organisation.client_certificate
        ours = draft.client_certificate
        if theirs is not None and ours is not None and theirs.sha256 == ours.sha256:
            return f"the certificate is registered for the organisation {organisation.name!r}"
    return None


def register_organisation(
    store: OrganisationStore, draft: OrganisationDraft, *, account_username: str, now: datetime
) -> Organisation:
    """Store a checked organisation as the account's; raises ValidationError (no such
    account) or OrganisationConflict."""
    record = store.find_account(account_username)
    if record is None:
        raise ValidationError(f"there is no sender account {account_username!r:.80}")
    organisation = Organisation(
        name=draft.name,
        account=record.account,
        domains=draft.domains,
        client_certificate=draft.client_certificate,
        gateway=draft.gateway,
    )
    store.add_organisation(organisation, now)
    return organisation


class GatewayDirectory:
    """Which organisation's gateway receives the confidential messages for an address: the
    organisation of its domain, or of the nearest parent domain (the same domains an
    organisation's server may send from)."""

    def __init__(self, organisations: list[Organisation]) -> None:
        self._by_domain = {
            domain: organisation
            for organisation in organisations
            if organisation.gateway is not None
            for domain in organisation.domains
        }

    def __bool__(self) -> bool:
        return bool(self._by_domain)

    def organisation_for(self, address: str) -> Organisation | None:
        domain = address.rpartition("@")[2].rstrip(".").lower()
        if not domain.isascii():  # organisations' domains are kept in their ASCII form
            try:
                domain = mail_domain(domain)
            except ValidationError:
                return None
        while domain:
            found = self._by_domain.get(domain)
            if found is not None:
                return found
            domain = domain.partition(".")[2]
        return None
