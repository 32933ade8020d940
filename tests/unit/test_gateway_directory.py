"""GatewayDirectory: which organisation's gateway takes an address (pure)."""

from __future__ import annotations

from soap_service.domain.model import Account
from soap_service.domain.organisations import Gateway, GatewayDirectory, Organisation

ACCOUNT = Account(id=1, username="firm", organisation="Firm AG")


def organisation(name: str, *domains: str, gateway: bool = True) -> Organisation:
    return Organisation(
        name=name,
        account=ACCOUNT,
        domains=domains,
        client_certificate=None,
        gateway=Gateway(host="mx." + domains[0]) if gateway else None,
    )


DIRECTORY = GatewayDirectory(
    [
        organisation("firm", "firm.example", "xn--mller-kva.example"),
        organisation("branch", "zurich.firm.example"),
        organisation("submitter", "sender.example", gateway=False),
    ]
)


def test_an_address_in_an_organisations_domain_or_subdomain_is_its_gateways() -> None:
    assert DIRECTORY.organisation_for("anna@firm.example").name == "firm"  # type: ignore[union-attr]
    assert DIRECTORY.organisation_for("Anna@HR.Firm.Example").name == "firm"  # type: ignore[union-attr]
    # The nearest registered parent wins.
    assert DIRECTORY.organisation_for("bob@zurich.firm.example").name == "branch"  # type: ignore[union-attr]
    assert DIRECTORY.organisation_for("bob@a.zurich.firm.example").name == "branch"  # type: ignore[union-attr]
    # Unicode domains are matched in their ASCII form.
    assert DIRECTORY.organisation_for("hans@müller.example").name == "firm"  # type: ignore[union-attr]


def test_other_addresses_and_organisations_without_gateway_have_none() -> None:
    assert DIRECTORY.organisation_for("anna@notfirm.example") is None
    assert DIRECTORY.organisation_for("anna@example") is None
    assert DIRECTORY.organisation_for("carla@sender.example") is None
    assert DIRECTORY.organisation_for("x@-bad-.example\u00e9") is None
    assert not GatewayDirectory([organisation("submitter", "sender.example", gateway=False)])
