"""S/MIME signatures of the mails gateways receive: made with cryptography, checked with
OpenSSL's own `openssl smime -verify` (a real verifier), and refused when tampered with."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from soap_service import crypto
from soap_service.errors import ConfigurationError
from tests.support import smime_verify

ENTITY = (
    b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n"
    b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xc3\xbcezi Anna\r\n"
    b"--inner\r\nContent-Type: application/pdf; name=payslip.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--inner--\r\n"
)


def signed_mail(signature: bytes, entity: bytes) -> bytes:
    import base64

    encoded = base64.encodebytes(signature).replace(b"\n", b"\r\n")
    return (
        b"From: soap-service <no-reply@secure.example>\r\nTo: anna@firm.example\r\n"
        b"Subject: Payslip\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        b'micalg=sha-256; boundary="outer"\r\n\r\n'
        b"--outer\r\n" + entity + b"\r\n--outer\r\n"
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n"
        + encoded
        + b"\r\n--outer--\r\n"
    )


@pytest.fixture
def signing_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "mail-signing.pem", tmp_path / "mail-signing-key.pem"
    crypto.generate_mail_signing_certificate(cert, key, address="no-reply@secure.example")
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_signature_and_refuses_a_tampered_mail(
    signing_files: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = signing_files
    signature = crypto.MailSigner(cert, key).sign(ENTITY)
    verified = smime_verify(signed_mail(signature, ENTITY), cert, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert b"Verification successful" in verified.stderr
    assert verified.stdout.replace(b"\r\n", b"\n") == ENTITY.replace(b"\r\n", b"\n")

    tampered = smime_verify(
        signed_mail(signature, ENTITY.replace(b"Anna", b"Eve!")), cert, tmp_path
    )
    assert tampered.returncode != 0
    assert b"Verification successful" not in tampered.stderr


def test_the_certificate_is_for_email_protection_of_the_from_address(
    signing_files: tuple[Path, Path],
) -> None:
    info = crypto.certificate_info(signing_files[0].read_bytes())
    assert "no-reply@secure.example" in info.subject
    assert "secure messages" in info.subject


def test_a_key_that_is_not_the_certificates_is_refused(
    signing_files: tuple[Path, Path], tmp_path: Path
) -> None:
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other-key.pem"
    crypto.generate_mail_signing_certificate(other_cert, other_key, address="x@secure.example")
    with pytest.raises(ConfigurationError, match="does not match its certificate"):
        crypto.MailSigner(signing_files[0], other_key)
    with pytest.raises(ConfigurationError, match="unreadable"):
        crypto.MailSigner(tmp_path / "missing.pem", other_key)
