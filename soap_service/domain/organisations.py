"""Organisations that couple their mail server to the service: their mail domains, and the
client certificate with which their server submits over the SMTP channel (mutual TLS).

Such a connection needs no password: the certificate authenticates it as the
organisation's sender account, and it may send only from the organisation's domains
(and their subdomains), in the envelope and in the From header alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
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


@dataclass(frozen=True, kw_only=True)
class Organisation:
    name: str
    account: Account
    domains: tuple[str, ...]
    client_certificate: crypto.CertificateInfo | None

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


def check_organisation(
    *, name: str, domains: list[str], client_certificate_pem: bytes | None
) -> OrganisationDraft:
    """Raises ValidationError for a bad name, domain or certificate."""
    canonical = tuple(dict.fromkeys(mail_domain(domain) for domain in domains))
    if not canonical:
        raise ValidationError("an organisation needs at least one mail domain")
    certificate = None
    if client_certificate_pem is not None:
        try:
            certificate = crypto.certificate_info(client_certificate_pem)
        except crypto.InvalidCertificate as exc:
            raise ValidationError(f"the client certificate: {exc}") from None
    return OrganisationDraft(
        name=organisation_name(name), domains=canonical, client_certificate=certificate
    )


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
    )
    store.add_organisation(organisation, now)
    return organisation
