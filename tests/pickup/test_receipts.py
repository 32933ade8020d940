"""Receipts of registered messages: the four kinds, what each states, a signature that
pyHanko's validator verifies against the service's certificate, and one document per
receipt however often it is asked for."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from pathlib import Path

import pypdf
import pytest
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from soap_service import crypto
from soap_service.documents.receipt_pdf import render_receipt
from soap_service.domain.model import AttachmentDraft, MessageType, RecipientState
from soap_service.domain.receipts import ReceiptKind, ReceiptService
from soap_service.errors import NotFound, ValidationError
from tests.delivery.conftest import Env

PDF = b"%PDF-1.4\n% Lohnabrechnung\n"
CSV = b"Lohnart;Betrag\n"
HTML = "<p>Guten Tag</p>"


@pytest.fixture(scope="module")
def signing_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("receipt-keys")
    crypto.generate_receipt_signing_certificate(
        folder / "receipts.pem", folder / "receipts-key.pem", organisation="Test Service"
    )
    return folder / "receipts.pem", folder / "receipts-key.pem"


@pytest.fixture
def receipts(env: Env, signing_files: tuple[Path, Path]) -> ReceiptService:
    signer = crypto.PdfSigner(*signing_files)
    store = env.database.store()
    return ReceiptService(
        store=store,
        keyring=env.keyring,
        render=render_receipt,
        sign=lambda pdf, kind: signer.sign(pdf, reason=kind.value, location="test"),
        now=env.clock,
    )


def verify(pdf: bytes, cert_file: Path) -> None:
    [signature] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    status = validate_pdf_signature(
        signature, ValidationContext(trust_roots=[load_cert_from_pemder(str(cert_file))])
    )
    assert (status.intact, status.valid, status.trusted, status.coverage.name) == (
        True,
        True,
        True,
        "ENTIRE_FILE",
    )


def text_of(pdf: bytes) -> str:
    return " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def set_state(env: Env, message_id: str, state: RecipientState) -> None:
    store = env.database.store()
    try:
        [recipient_id] = env.recipient_ids(message_id)
        if state is RecipientState.EXPIRED:
            env.clock.now += timedelta(days=8)
            store.expire_due(now=env.clock.now, limit=100)
        else:
            assert store.decide(recipient_id, state, "by the test", env.clock.now)
    finally:
        store.close()


def registered(env: Env) -> str:
    return env.send(
        "Anna@Example.ch",
        type=MessageType.REGISTERED,
        html_body=HTML,
        attachments=(
            AttachmentDraft(filename="Lohn März.pdf", content_type="application/pdf", content=PDF),
            AttachmentDraft(filename="lohnarten.csv", content_type="text/csv", content=CSV),
        ),
    ).message_id


def test_the_submission_receipt_states_the_message_and_is_signed(
    env: Env, receipts: ReceiptService, signing_files: tuple[Path, Path]
) -> None:
    message_id = registered(env)
    receipt = receipts.receipt(env.account, ReceiptKind.SUBMISSION, message_id=message_id)
    assert (receipt.kind, receipt.message_id, receipt.recipient) == (
        ReceiptKind.SUBMISSION,
        message_id,
        None,
    )
    assert receipt.filename == f"receipt-submission-{message_id}.pdf"
    verify(receipt.pdf, signing_files[0])
    text = text_of(receipt.pdf)
    for fact in (
        "Submission receipt",
        message_id,
        "ACME Treuhand AG (account acme)",
        "Anna@example.ch",  # as the sender gave it
        "Lohnabrechnung März",
        "02.03.2026 09:00:00",  # accepted at START, shown in Swiss time
        hashlib.sha256("Ihr Nettolohn beträgt CHF 6'543.21".encode()).hexdigest(),
        hashlib.sha256(HTML.encode()).hexdigest(),
        "Lohn März.pdf",
        hashlib.sha256(PDF).hexdigest(),
        "lohnarten.csv",
        hashlib.sha256(CSV).hexdigest(),
    ):
        assert fact in text, fact


@pytest.mark.parametrize(
    ("kind", "state", "event"),
    [
        (ReceiptKind.PICKUP, RecipientState.ACCEPTED, "Accepted by the recipient"),
        (ReceiptKind.REFUSAL, RecipientState.REFUSED, "Refused by the recipient"),
        (ReceiptKind.EXPIRY, RecipientState.EXPIRED, "Expired"),
    ],
)
def test_a_recipient_receipt_is_given_once_its_event_happened(
    env: Env,
    receipts: ReceiptService,
    signing_files: tuple[Path, Path],
    kind: ReceiptKind,
    state: RecipientState,
    event: str,
) -> None:
    message_id = registered(env)
    with pytest.raises(NotFound):  # not yet
        receipts.receipt(env.account, kind, message_id=message_id, recipient="anna@example.ch")
    set_state(env, message_id, state)

    receipt = receipts.receipt(
        env.account, kind, message_id=message_id, recipient="ANNA@example.ch"
    )
    verify(receipt.pdf, signing_files[0])
    assert receipt.recipient == "Anna@example.ch"
    text = text_of(receipt.pdf)
    assert event in text and "Anna@example.ch" in text
    # The other kinds are not due.
    for other in set(ReceiptKind) - {kind, ReceiptKind.SUBMISSION}:
        with pytest.raises(NotFound):
            receipts.receipt(env.account, other, message_id=message_id, recipient="anna@example.ch")


def test_a_receipt_is_the_same_document_every_time(env: Env, receipts: ReceiptService) -> None:
    message_id = registered(env)
    first = receipts.receipt(env.account, ReceiptKind.SUBMISSION, message_id=message_id)
    env.clock.now += timedelta(hours=1)
    again = receipts.receipt(env.account, ReceiptKind.SUBMISSION, reference="ref-1")
    assert (again.pdf, again.issued_at) == (first.pdf, first.issued_at)


def test_receipts_are_for_registered_messages_of_the_sender_only(
    env: Env, receipts: ReceiptService
) -> None:
    confidential = env.send("anna@example.ch").message_id
    with pytest.raises(ValidationError, match="registered messages only"):
        receipts.receipt(env.account, ReceiptKind.SUBMISSION, message_id=confidential)
    message_id = registered(env)
    with pytest.raises(ValidationError, match="needs the RecipientAddress"):
        receipts.receipt(env.account, ReceiptKind.PICKUP, message_id=message_id)
    with pytest.raises(NotFound, match="no such recipient"):
        receipts.receipt(
            env.account, ReceiptKind.PICKUP, message_id=message_id, recipient="bert@example.ch"
        )
    other = type(env.account)(id=env.account.id + 1, username="other", organisation="Other")
    with pytest.raises(NotFound):
        receipts.receipt(other, ReceiptKind.SUBMISSION, message_id=message_id)


def test_a_signing_key_that_does_not_match_its_certificate_is_refused(
    signing_files: tuple[Path, Path], tmp_path: Path
) -> None:
    from soap_service.errors import ConfigurationError

    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other-key.pem"
    crypto.generate_receipt_signing_certificate(other_cert, other_key)
    with pytest.raises(ConfigurationError, match="does not match"):
        crypto.PdfSigner(signing_files[0], other_key)
