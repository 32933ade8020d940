"""Organisations, their mail domains and their mail servers' client certificates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from soap_service import crypto
from soap_service.domain.organisations import Organisation, OrganisationConflict
from soap_service.persistence.accounts import account_of
from soap_service.persistence.tables import accounts, organisation_domains, organisations
from soap_service.persistence.transactions import Transactions


class OrganisationQueries(Transactions):
    def add_organisation(self, organisation: Organisation, created_at: datetime) -> None:
        certificate = organisation.client_certificate
        try:
            with self._transaction() as connection:
                organisation_id = connection.execute(
                    insert(organisations)
                    .values(
                        name=organisation.name,
                        account_id=organisation.account.id,
                        client_cert_sha256=certificate.sha256 if certificate else None,
                        client_cert_pem=certificate.pem if certificate else None,
                        created_at=created_at,
                    )
                    .returning(organisations.c.id)
                ).scalar_one()
                connection.execute(
                    insert(organisation_domains),
                    [
                        {"domain": domain, "organisation_id": organisation_id}
                        for domain in organisation.domains
                    ],
                )
        except IntegrityError as exc:
            raise OrganisationConflict(
                f"the name {organisation.name!r}, one of the domains or the certificate "
                "belongs to another organisation"
            ) from exc

    def organisations(self, *, active_only: bool = False) -> list[Organisation]:
        query = (
            select(
                organisations.c.id.label("organisation_id"),
                organisations.c.name,
                organisations.c.client_cert_pem,
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
                client_certificate=(
                    crypto.certificate_info(row.client_cert_pem.encode("ascii"))
                    if row.client_cert_pem
                    else None
                ),
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
