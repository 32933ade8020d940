"""Gateway delivery's pure parts: which organisation's gateway takes an address, and how a
worker chunks the mails it writes for a gateway."""

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


def test_gateway_mails_are_read_in_chunks_bounded_by_count_and_size() -> None:
    """What a worker holds at once: at most 50 messages or 8 MiB of content a chunk, a
    larger message alone (the worker writes one chunk ahead of the one it sends)."""
    from datetime import UTC, datetime

    from soap_service import crypto
    from soap_service.delivery.worker import (
        GATEWAY_CHUNK_BYTES,
        GATEWAY_CHUNK_MESSAGES,
        _chunks,
    )
    from soap_service.domain.delivery import DeliveryJob
    from soap_service.domain.model import Language, MessageType

    def job(number: int, size: int) -> DeliveryJob:
        now = datetime(2026, 12, 6, tzinfo=UTC)
        return DeliveryJob(
            recipient_id=number,
            message_id=f"m{number}",
            position=1,
            address=f"e{number}@firm.example",
            attempts=0,
            accepted_at=now,
            expires_at=now,
            type=MessageType.CONFIDENTIAL,
            language=Language.DE,
            organisation="Firm AG",
            show_subject=False,
            sealed_subject=b"",
            data_key=crypto.WrappedKey(key_id="k", wrapped=b""),
            content_bytes=size,
        )

    payslips = [job(n, 50_000) for n in range(120)]
    assert [len(chunk) for chunk in _chunks(payslips)] == [GATEWAY_CHUNK_MESSAGES] * 2 + [20]

    mib = 1024 * 1024
    mixed = [job(1, 3 * mib), job(2, 4 * mib), job(3, 30 * mib), job(4, 1 * mib), job(5, mib)]
    chunks = _chunks(mixed)
    assert [[j.recipient_id for j in chunk] for chunk in chunks] == [[1, 2], [3], [4, 5]]
    assert all(
        len(chunk) == 1 or sum(j.content_bytes for j in chunk) <= GATEWAY_CHUNK_BYTES
        for chunk in chunks
    )
    assert [j.recipient_id for chunk in chunks for j in chunk] == [1, 2, 3, 4, 5]
    assert _chunks([]) == []
