"""Organisations: their mail domains, their mail servers' client certificates, their
gateways."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from soap_service import crypto
from soap_service.domain.organisations import (
    Gateway,
    Organisation,
    OrganisationConflict,
    TlsPolicy,
)
from soap_service.persistence.accounts import account_of
from soap_service.persistence.tables import accounts, organisation_domains, organisations
from soap_service.persistence.transactions import Transactions


class OrganisationQueries(Transactions):
    def add_organisation(self, organisation: Organisation, created_at: datetime) -> None:
        try:
            with self._transaction() as connection:
                organisation_id = connection.execute(
                    insert(organisations)
                    .values(
                        name=organisation.name,
                        account_id=organisation.account.id,
                        created_at=created_at,
                        **_settings(organisation),
                    )
                    .returning(organisations.c.id)
                ).scalar_one()
                _insert_domains(connection, organisation_id, organisation.domains)
        except IntegrityError as exc:
            raise _conflict(organisation) from exc

    def update_organisation(self, organisation: Organisation) -> bool:
        """Its domains, certificate and gateway as given; False if there is none of its
        name. Raises OrganisationConflict if a domain or the certificate is taken."""
        try:
            with self._transaction() as connection:
                found = connection.execute(
                    update(organisations)
                    .where(organisations.c.name == organisation.name)
                    .values(**_settings(organisation))
                    .returning(organisations.c.id)
                ).scalar_one_or_none()
                if found is None:
                    return False
                connection.execute(
                    delete(organisation_domains).where(
                        organisation_domains.c.organisation_id == found
                    )
                )
                _insert_domains(connection, found, organisation.domains)
        except IntegrityError as exc:
            raise _conflict(organisation) from exc
        return True

    def organisations(self, *, active_only: bool = False) -> list[Organisation]:
        query = (
            select(
                organisations.c.id.label("organisation_id"),
                organisations.c.name,
                organisations.c.client_cert_pem,
                organisations.c.gateway_host,
                organisations.c.gateway_port,
                organisations.c.gateway_tls,
                organisations.c.gateway_ca_pem,
                organisations.c.gateway_fallback,
                accounts,
            )
            .join(accounts, accounts.c.id == organisations.c.account_id)
            .order_by(organisations.c.name)
        )
        if active_only:
            query = query.where(accounts.c.disabled.is_(False))
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(query).all()
            domains: dict[int, list[str]] = {}
            for domain_row in connection.execute(
                select(organisation_domains).order_by(organisation_domains.c.domain)
            ):
                domains.setdefault(domain_row.organisation_id, []).append(domain_row.domain)
        return [
            Organisation(
                name=row.name,
                account=account_of(row),
                domains=tuple(domains.get(row.organisation_id, ())),
                client_certificate=_certificate(row.client_cert_pem),
                gateway=_gateway(row),
            )
            for row in rows
        ]

    def remove_organisation(self, name: str) -> bool:
        with self._transaction() as connection:
            found = connection.execute(
                select(organisations.c.id).where(organisations.c.name == name)
            ).scalar_one_or_none()
            if found is None:
                return False
            connection.execute(
                delete(organisation_domains).where(organisation_domains.c.organisation_id == found)
            )
            connection.execute(delete(organisations).where(organisations.c.id == found))
        return True


def _settings(organisation: Organisation) -> dict[str, Any]:
    """The organisations row's columns that an update may change."""
    certificate = organisation.client_certificate
    gateway = organisation.gateway
    return {
        "client_cert_sha256": certificate.sha256 if certificate else None,
        "client_cert_pem": certificate.pem if certificate else None,
        "gateway_host": gateway.host if gateway else None,
        "gateway_port": gateway.port if gateway else None,
        "gateway_tls": gateway.tls.value if gateway else None,
        "gateway_ca_pem": gateway.ca.pem if gateway and gateway.ca else None,
        "gateway_fallback": bool(gateway and gateway.fallback_to_notification),
    }


def _insert_domains(connection: Connection, organisation_id: int, domains: tuple[str, ...]) -> None:
    connection.execute(
        insert(organisation_domains),
        [{"domain": domain, "organisation_id": organisation_id} for domain in domains],
    )


def _conflict(organisation: Organisation) -> OrganisationConflict:
    return OrganisationConflict(
        f"the name {organisation.name!r}, one of the domains or the certificate "
        "belongs to another organisation"
    )


def _certificate(pem: str | None) -> crypto.CertificateInfo | None:
    return crypto.certificate_info(pem.encode("ascii")) if pem else None


def _gateway(row: Any) -> Gateway | None:
    if row.gateway_tls is None:
        return None
    return Gateway(
        host=row.gateway_host,
        port=row.gateway_port or 25,
        tls=TlsPolicy(row.gateway_tls),
        ca=_certificate(row.gateway_ca_pem),
        fallback_to_notification=bool(row.gateway_fallback),
    )
