"""Receipts of registered messages: the four kinds, what each states in the message's
language, a PAdES signature that pyHanko's validator verifies against the service's
certificate (with an RFC 3161 time stamp from a local TSA when one is configured), and one
document per receipt however often it is asked for."""

from __future__ import annotations

import functools
import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdf
import pytest
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from soap_service import crypto
from soap_service.documents.receipt_pdf import render_receipt
from soap_service.domain.model import AttachmentDraft, Language, MessageType, RecipientState
from soap_service.domain.receipts import ReceiptKind, ReceiptService
from soap_service.errors import NotFound, ValidationError
from soap_service.settings import OperatorIdentity
from tests.delivery.conftest import Env
from tests.support import free_port
from tests.tsa import local_tsa

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
        sign=lambda pdf, facts: signer.sign(pdf, reason=facts.kind.value, location="test"),
        now=env.clock,
    )


def verify(pdf: bytes, cert_file: Path, tsa_cert: Path | None = None) -> Any:
    """pyHanko's validation of the one signature: intact, valid, trusted, over the whole
    file, PAdES (ETSI.CAdES.detached); with `tsa_cert`, also its time stamp."""
    [signature] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    status = validate_pdf_signature(
        signature,
        ValidationContext(trust_roots=[load_cert_from_pemder(str(cert_file))]),
        ts_validation_context=(
            ValidationContext(trust_roots=[load_cert_from_pemder(str(tsa_cert))])
            if tsa_cert
            else None
        ),
    )
    assert (status.intact, status.valid, status.trusted, status.coverage.name) == (
        True,
        True,
        True,
        "ENTIRE_FILE",
    )
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    # PAdES baseline: the signing certificate is bound in the signed attributes, and the
    # signing time is not one of them (the time stamp says when).
    attributes = {attribute["type"].native for attribute in signature.signer_info["signed_attrs"]}
    assert "signing_certificate_v2" in attributes
    assert "signing_time" not in attributes
    return status


def text_of(pdf: bytes) -> str:
    """The text, its line breaks (a wrapped label or value) as spaces."""
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages)


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


def registered(env: Env, language: Language = Language.EN) -> str:
    return env.send(
        "Anna@Example.ch",
        type=MessageType.REGISTERED,
        language=language,
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
        "2 Mar 2026, 09:00 CET (2026-03-02T08:00:00.000000Z)",  # in Swiss time, then exactly
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


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            Language.DE,
            [
                "Aufgabequittung",
                "Der Dienst hat diese eingeschriebene Nachricht angenommen und gespeichert.",
                "Referenz des Absenders",
                "ACME Treuhand AG (Konto acme)",
                "02.03.2026, 09:00 MEZ",
                "Ausgestellt und signiert von Beispiel Post.",
                "Wankdorfallee 4",
            ],
        ),
        (
            Language.FR,
            ["Quittance de dépôt", "Référence de l'expéditeur", "2 mars 2026, 09:00 UTC+1"],
        ),
        (Language.IT, ["Riferimento del mittente", "2 mar 2026, 09:00 CET", "(conto acme)"]),
    ],
)
def test_a_receipt_is_written_in_the_messages_language_by_the_operator(
    env: Env, signing_files: tuple[Path, Path], language: Language, words: list[str]
) -> None:
    receipts = receipt_service(env, signing_files, operator=OPERATOR)
    message_id = registered(env, language)
    receipt = receipts.receipt(env.account, ReceiptKind.SUBMISSION, message_id=message_id)
    verify(receipt.pdf, signing_files[0])
    text = text_of(receipt.pdf)
    for word in words:
        assert word in text, word
    assert "Submission receipt" not in text


def test_labels_wrap_in_their_column_and_never_run_into_their_value(
    env: Env, signing_files: tuple[Path, Path]
) -> None:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from soap_service.documents.receipt_pdf import GAP, LABEL_WIDTH, LEFT

    receipts = receipt_service(env, signing_files)
    message_id = registered(env, Language.DE)
    set_state(env, message_id, RecipientState.ACCEPTED)
    receipt = receipts.receipt(
        env.account, ReceiptKind.PICKUP, message_id=message_id, recipient="anna@example.ch"
    )
    drawn: list[tuple[float, float, str, str, float]] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        if text.strip():
            drawn.append((tm[4], tm[5], text.strip(), str(font.get("/BaseFont", "")), size))

    pypdf.PdfReader(io.BytesIO(receipt.pdf)).pages[0].extract_text(visitor_text=visit)
    # Labels: bold, in the left column, smaller than the title.
    labels = [d for d in drawn if abs(d[0] - LEFT) < 0.5 and d[3].endswith("-Bold") and d[4] < 12]
    assert labels, drawn
    for _, _, text, _, size in labels:
        assert stringWidth(text, "VeraBd", size) <= LABEL_WIDTH - GAP, text
    # The long German label takes two lines of its column; its value starts beside the
    # first, in the value column.
    label_lines = [text for _, _, text, _, _ in labels]
    first = label_lines.index("Von Empfänger/in")
    assert label_lines[first : first + 2] == ["Von Empfänger/in", "angenommen"]
    top = labels[first][1]
    [value] = [d for d in drawn if abs(d[1] - top) < 0.5 and d is not labels[first]]
    assert abs(value[0] - (LEFT + LABEL_WIDTH)) < 0.5
    assert value[2].startswith("02.03.2026, 09:00 MEZ")


def test_the_pdfs_creation_date_is_the_issue_time(env: Env, receipts: ReceiptService) -> None:
    message_id = registered(env)
    receipt = receipts.receipt(env.account, ReceiptKind.SUBMISSION, message_id=message_id)
    info = pypdf.PdfReader(io.BytesIO(receipt.pdf)).metadata
    assert info is not None and info.creation_date is not None
    assert info.creation_date.replace(tzinfo=UTC) == receipt.issued_at.replace(microsecond=0)


def test_with_a_time_stamping_authority_a_receipt_is_pades_b_t(
    env: Env, signing_files: tuple[Path, Path]
) -> None:
    with local_tsa() as tsa:
        receipts = receipt_service(env, signing_files, timestamp_url=tsa.url)
        message_id = registered(env)
        receipt = receipts.receipt(env.account, ReceiptKind.SUBMISSION, message_id=message_id)
        assert len(tsa.requests) == 1  # one time stamp per receipt
        status = verify(receipt.pdf, signing_files[0], tsa_cert=tsa.certificate)
    stamp = status.timestamp_validity
    assert stamp is not None
    assert (stamp.intact, stamp.valid, stamp.trusted) == (True, True, True)
    assert abs((stamp.timestamp - datetime.now(UTC)).total_seconds()) < 300


def test_an_unreachable_time_stamping_authority_is_a_temporary_fault(
    env: Env, signing_files: tuple[Path, Path]
) -> None:
    from soap_service.errors import Unavailable

    receipts = receipt_service(env, signing_files, timestamp_url=f"http://127.0.0.1:{free_port()}/")
    message_id = registered(env)
    with pytest.raises(Unavailable, match="time stamping authority"):
        receipts.receipt(env.account, ReceiptKind.SUBMISSION, message_id=message_id)


OPERATOR = OperatorIdentity(
    name="Beispiel Post", address_lines=("Beispiel Post AG", "Wankdorfallee 4", "3030 Bern")
)


def receipt_service(
    env: Env,
    signing_files: tuple[Path, Path],
    *,
    operator: OperatorIdentity | None = None,
    timestamp_url: str | None = None,
) -> ReceiptService:
    signer = crypto.PdfSigner(*signing_files, timestamp_url=timestamp_url)
    return ReceiptService(
        store=env.database.store(),
        keyring=env.keyring,
        render=functools.partial(render_receipt, operator=operator),
        sign=lambda pdf, facts: signer.sign(pdf, reason=facts.kind.value, location="test"),
        now=env.clock,
    )
