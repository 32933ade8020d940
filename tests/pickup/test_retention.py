"""Retention: a settled message's bodies and attachments are deleted once its retention
period is over (subject, states, journal and receipts stay), and its link says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from soap_service.bootstrap import ensure_files
from soap_service.container import Container
from soap_service.domain.model import AttachmentDraft, MessageType, RecipientState
from soap_service.domain.receipts import ReceiptKind
from soap_service.errors import NotFound
from soap_service.persistence.tables import AttachmentRow, EventRow, MessageRow, ReceiptRow
from soap_service.settings import load_settings
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import PUBLIC_URL, get, token_for

PDF = b"%PDF-1.4\n% Lohnabrechnung\n"


@pytest.fixture
def container(env: Env, tmp_path: Path) -> Iterator[Container]:
    """The service on the env's database and clock, keeping content for 2 days."""
    settings = load_settings(
        {
            "SOAP_SERVICE_DATA_DIR": str(tmp_path / "var"),
            "SOAP_SERVICE_DATABASE_URL": env.database.url,
            "SOAP_SERVICE_PUBLIC_URL": PUBLIC_URL,
            "SOAP_SERVICE_RETENTION_DAYS": "2",
            "SOAP_SERVICE_MASTER_KEY_FILE": str(tmp_path / "keys" / "master-keys.json"),
        }
    )
    ensure_files(settings)  # the receipt signing certificate
    built = Container(settings, database=env.database)
    built.now = env.clock
    yield built


@pytest.fixture
def pages(container: Container) -> WebApp:
    return container.wsgi_app()


def count(env: Env, model: type, **where: object) -> int:
    table = model.__table__  # type: ignore[attr-defined]
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with env.database.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def due(container: Container) -> list[str]:
    store = container.database.store()
    try:
        return [m.message_id for m in container.content_retention(store).due()]
    finally:
        store.close()


def payslip(env: Env, *recipients: str, kind: MessageType = MessageType.CONFIDENTIAL) -> str:
    return env.send(
        *recipients,
        type=kind,
        html_body="<p>Lohn</p>",
        attachments=(
            AttachmentDraft(filename="lohn.pdf", content_type="application/pdf", content=PDF),
        ),
    ).message_id


def test_content_is_kept_while_a_recipient_waits(
    env: Env, container: Container, pages: WebApp
) -> None:
    message = payslip(env, "anna@example.ch", "bert@example.ch")
    assert get(pages, f"/m/{token_for(env, message, 1)}").status == 200  # Anna opens it
    env.clock.advance(days=6)  # Bert's notification waits; the message has not expired
    assert container.delete_due_content() == 0
    assert count(env, AttachmentRow, message_id=message) == 1


def test_a_settled_messages_content_goes_after_its_retention_and_the_link_says_so(
    env: Env, container: Container, pages: WebApp
) -> None:
    message = payslip(env, "anna@example.ch")
    link = f"/m/{token_for(env, message)}"
    assert get(pages, link).status == 200  # opened: settled now
    env.clock.advance(days=2, seconds=-1)
    assert due(container) == []
    env.clock.advance(seconds=2)
    assert due(container) == [message]

    assert container.delete_due_content() == 1
    assert container.delete_due_content() == 0  # once
    assert count(env, AttachmentRow, message_id=message) == 0
    with env.database.engine.connect() as connection:
        row = connection.execute(select(MessageRow).where(MessageRow.id == message)).one()
    assert (bytes(row.sealed_text_body), row.sealed_html_body) == (b"", None)
    assert row.content_deleted_at == env.clock()
    assert env.status(message).recipients[0].state is RecipientState.OPENED  # states stay
    assert count(env, EventRow, message_id=message, kind="content-deleted") == 1

    page = get(pages, link)
    assert page.status == 410
    assert '<h1 id="notice" data-reason="deleted">Inhalt gelöscht</h1>' in page.text
    assert "Aufbewahrungsfrist" in page.text


def test_an_expired_message_is_settled_when_it_expires(env: Env, container: Container) -> None:
    message = payslip(env, "anna@example.ch")  # never opened
    env.clock.advance(days=7 + 2, seconds=-1)  # expires after 7 days, kept 2 more
    assert container.delete_due_content() == 0
    env.clock.advance(seconds=2)
    assert container.delete_due_content() == 1
    assert count(env, AttachmentRow, message_id=message) == 0


def test_a_registered_message_keeps_its_receipts_made_before_its_content_goes(
    env: Env, container: Container
) -> None:
    message = payslip(env, "anna@example.ch", "bert@example.ch", kind=MessageType.REGISTERED)
    anna, bert = env.recipient_ids(message)
    store = env.database.store()
    try:
        assert store.decide(anna, RecipientState.ACCEPTED, "accepted", env.clock())
        assert store.decide(bert, RecipientState.REFUSED, "refused", env.clock())
    finally:
        store.close()
    env.clock.advance(days=2, seconds=1)
    assert container.delete_due_content() == 1
    # Submission, Anna's pickup and Bert's refusal, made before the content went.
    assert count(env, ReceiptRow, message_id=message) == 3
    scope = container.open_scope()
    try:
        kept = scope.receipts.receipt(
            env.account, ReceiptKind.PICKUP, message_id=message, recipient="anna@example.ch"
        )
        assert kept.pdf.startswith(b"%PDF")
        with pytest.raises(NotFound, match="no expiry receipt"):
            scope.receipts.receipt(
                env.account, ReceiptKind.EXPIRY, message_id=message, recipient="anna@example.ch"
            )
    finally:
        scope.close()
