"""Encryption at rest, the master keyring, passwords, digests and the development certificate."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from soap_service import crypto
from soap_service.crypto import DecryptionFailed, Keyring, WrappedKey
from soap_service.errors import ConfigurationError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


# Sealing.


def test_seal_and_open_roundtrip() -> None:
    sealed = crypto.Sealer(KEY).seal(b"msg-1:subject", b"Your payslip")
    assert len(sealed) == crypto.NONCE_BYTES + len(b"Your payslip") + crypto.TAG_BYTES
    assert b"Your payslip" not in sealed
    assert crypto.Sealer(KEY).open(b"msg-1:subject", bytes(sealed)) == b"Your payslip"


def test_sealing_twice_uses_fresh_nonces() -> None:
    first = crypto.Sealer(KEY).seal(b"ctx", b"same")
    second = crypto.Sealer(KEY).seal(b"ctx", b"same")
    assert first[: crypto.NONCE_BYTES] != second[: crypto.NONCE_BYTES]
    assert first != second


def test_seal_and_open_an_empty_value() -> None:
    sealed = crypto.Sealer(KEY).seal(b"ctx", b"")
    assert crypto.Sealer(KEY).open(b"ctx", sealed) == b""


@pytest.mark.parametrize("position", [0, crypto.NONCE_BYTES, -1])
def test_a_tampered_sealed_value_fails(position: int) -> None:
    sealed = crypto.Sealer(KEY).seal(b"ctx", b"Your payslip")
    sealed[position] ^= 0x01
    with pytest.raises(DecryptionFailed, match=r"failed authentication"):
        crypto.Sealer(KEY).open(b"ctx", bytes(sealed))


def test_the_wrong_context_fails() -> None:
    sealed = crypto.Sealer(KEY).seal(b"msg-1:subject", b"Your payslip")
    with pytest.raises(DecryptionFailed, match=r"failed authentication"):
        crypto.Sealer(KEY).open(b"msg-1:text", bytes(sealed))


def test_the_wrong_key_fails() -> None:
    sealed = crypto.Sealer(KEY).seal(b"ctx", b"Your payslip")
    with pytest.raises(DecryptionFailed, match=r"failed authentication"):
        crypto.Sealer(OTHER_KEY).open(b"ctx", bytes(sealed))


def test_a_value_too_short_to_be_sealed_fails() -> None:
    with pytest.raises(DecryptionFailed, match=r"too short"):
        crypto.Sealer(KEY).open(b"ctx", b"\0" * (crypto.NONCE_BYTES + crypto.TAG_BYTES - 1))


def test_one_sealer_shared_by_threads_seals_what_another_opens() -> None:
    sealer = crypto.Sealer(KEY)
    failures: list[int] = []

    def work(worker: int) -> None:
        for size in range(0, 40_000, 997):
            context = b"worker-%d:%d" % (worker, size)
            plaintext = os.urandom(size)
            sealed = sealer.seal(context, plaintext)
            if crypto.Sealer(KEY).open(context, bytes(sealed)) != plaintext:
                failures.append(size)
            if sealer.open(context, crypto.Sealer(KEY).seal(context, plaintext)) != plaintext:
                failures.append(size)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# The keyring.


def test_load_or_create_creates_a_private_file_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    first = Keyring.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    key_id = document["current"]
    assert re.fullmatch(r"k-[0-9a-f]{12}", key_id)
    assert list(document["keys"]) == [key_id]
    assert len(base64.b64decode(document["keys"][key_id])) == 32
    assert first.current_key_id == key_id
    content, inode = path.read_bytes(), path.stat().st_ino
    assert [p.name for p in path.parent.iterdir()] == ["keyring.json"]  # no temp file left

    second = Keyring.load_or_create(path)
    assert path.read_bytes() == content
    assert path.stat().st_ino == inode
    # The same keys: what one sealed, the other opens.
    sealed = first.seal_secret(b"ctx", b"secret")
    assert second.open_secret(sealed, b"ctx") == b"secret"


def test_two_created_keyrings_have_different_keys_and_ids(tmp_path: Path) -> None:
    one = Keyring.load_or_create(tmp_path / "one.json")
    two = Keyring.load_or_create(tmp_path / "two.json")
    assert one.key_ids.isdisjoint(two.key_ids)
    assert one.check_values() != two.check_values()
    sealed = one.seal_secret(b"ctx", b"secret")
    with pytest.raises(DecryptionFailed):
        two.open_secret(sealed, b"ctx")


def test_rotate_adds_a_current_key_and_old_data_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    before = Keyring.load_or_create(path)
    data_key, wrapped_k1 = before.new_data_key(b"msg-1")
    secret_k1 = before.seal_secret(b"ctx", b"secret")
    assert wrapped_k1.key_id == before.current_key_id

    k2 = Keyring.rotate(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    after = Keyring.load(path)
    assert after.current_key_id == k2 != before.current_key_id
    assert after.key_ids == {before.current_key_id, k2}
    assert (
        after.check_values()[before.current_key_id] == before.check_values()[before.current_key_id]
    )
    assert after.unwrap_data_key(wrapped_k1, b"msg-1") == data_key
    assert after.open_secret(secret_k1, b"ctx") == b"secret"
    new_key, wrapped_k2 = after.new_data_key(b"msg-2")
    assert wrapped_k2.key_id == k2
    assert after.unwrap_data_key(wrapped_k2, b"msg-2") == new_key
    # The old keyring does not know k2.
    with pytest.raises(DecryptionFailed, match=rf"'{k2}' is not in the keyring"):
        before.unwrap_data_key(wrapped_k2, b"msg-2")
    k3 = Keyring.rotate(path)
    assert k3 not in {k2, before.current_key_id}
    assert Keyring.load(path).current_key_id == k3


def test_a_data_key_unwraps_only_under_its_own_context() -> None:
    keyring = Keyring({"k1": KEY}, "k1")
    data_key, wrapped = keyring.new_data_key(b"msg-1")
    assert len(data_key) == 32
    assert data_key not in wrapped.wrapped
    with pytest.raises(DecryptionFailed):
        keyring.unwrap_data_key(wrapped, b"msg-2")
    # A data key is not a secret, and a secret is not a data key (distinct contexts).
    with pytest.raises(DecryptionFailed):
        keyring.open_secret(wrapped, b"msg-1")


def test_an_unknown_key_id_fails_to_open() -> None:
    keyring = Keyring({"k1": KEY}, "k1")
    with pytest.raises(DecryptionFailed, match=r"'k9' is not in the keyring"):
        keyring.open_secret(WrappedKey(key_id="k9", wrapped=b"\0" * 40), b"ctx")


def test_a_keyring_without_its_current_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"current key is missing"):
        Keyring({"k1": KEY}, "k2")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read the master keyring"),
        ('{"keys": {}}', "cannot read the master keyring"),
        ('{"current": "k1", "keys": {"k1": "c2hvcnQ="}}', "wrong length"),
    ],
)
def test_a_broken_keyring_file_is_a_configuration_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "keyring.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        Keyring.load(path)


def test_fingerprints_depend_on_key_id_and_field_boundaries() -> None:
    keyring = Keyring({"k1": KEY, "k2": OTHER_KEY}, "k2")
    parts = [b"subject", b"body"]
    k1 = keyring.fingerprint("k1", parts)

    assert len(k1) == 32
    assert keyring.fingerprint("k1", iter(parts)) == k1
    assert Keyring({"k1": KEY}, "k1").fingerprint("k1", parts) == k1
    assert keyring.fingerprint("k2", parts) != k1
    assert keyring.fingerprint("k1", [b"subjectb", b"ody"]) != k1
    assert keyring.fingerprint("k1", [b"subjectbody"]) != k1
    assert keyring.fingerprint("k1", [b"subject", b"body", b""]) != k1
    # Keyed: not a plain hash of the content.
    assert k1 != hashlib.sha256(b"subjectbody").digest()


# Passwords.


def test_hash_and_verify_password() -> None:
    encoded = crypto.hash_password("correct horse")
    scheme, log_n, r, p, salt, digest = encoded.split("$")
    assert (scheme, log_n, r, p) == ("scrypt", "15", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32
    assert "correct horse" not in encoded

    assert crypto.verify_password("correct horse", encoded) is True
    assert crypto.verify_password("correct horsf", encoded) is False
    assert crypto.verify_password("", encoded) is False
    assert crypto.hash_password("correct horse") != encoded  # a fresh salt every time


@pytest.mark.parametrize(
    "encoded", ["", "plain", "bcrypt$15$8$1$c2FsdA==$ZGln", "scrypt$x$8$1$c2FsdA==$ZGln"]
)
def test_verify_password_with_a_malformed_hash_is_false(encoded: str) -> None:
    assert crypto.verify_password("anything", encoded) is False


def test_generated_passwords_are_long_random_and_url_safe() -> None:
    first, second = crypto.generate_password(), crypto.generate_password()
    assert first != second
    assert len(first) == 43
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_no_generated_password_starts_like_a_command_line_option() -> None:
    # One in 64 would: `--password -x...` is then a missing value to argparse.
    assert not any(crypto.generate_password().startswith("-") for _ in range(2000))


def test_the_dummy_hash_is_a_valid_hash_and_stable() -> None:
    assert crypto.dummy_password_hash() is crypto.dummy_password_hash()
    assert crypto.dummy_password_hash().startswith("scrypt$15$8$1$")
    assert crypto.verify_password("", crypto.dummy_password_hash()) is False


# WS-Security PasswordDigest.


def test_username_token_digest_matches_the_profile_formula() -> None:
    nonce = bytes.fromhex("00112233445566778899aabbccddeeff")
    created = "2024-05-31T10:00:00Z"
    expected = base64.b64encode(
        hashlib.sha1(nonce + b"2024-05-31T10:00:00Z" + "pässword".encode()).digest()
    ).decode("ascii")

    assert crypto.username_token_digest(nonce, created, "pässword") == expected


def test_username_token_digest_known_vector() -> None:
    # Base64(SHA-1(b"abcdefgh2003-07-16T01:24:32Zpassword")), worked out once with hashlib.
    digest = crypto.username_token_digest(b"abcdefgh", "2003-07-16T01:24:32Z", "password")
    assert digest == "z3ZQ4fVSbE9E2nTK5W79yCnwlI8="


def test_constant_time_equal() -> None:
    assert crypto.constant_time_equal("abc", b"abc") is True
    assert crypto.constant_time_equal(b"abc", "abd") is False
    assert crypto.constant_time_equal("é", "é".encode()) is True


@pytest.mark.parametrize(
    ("key", "purpose", "length"),
    [
        (KEY, b"fingerprint", 32),
        (OTHER_KEY, b"pickup-token:" + b"m" * 36, 32),
        (bytes(32), b"", 32),
        (KEY, b"master-key-check", 16),
    ],
)
def test_derive_key_is_hkdf_sha256_without_salt(key: bytes, purpose: bytes, length: int) -> None:
    # Stored fingerprints, key check values and every pickup link depend on these bytes
    # staying the same.
    expected = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose).derive(key)
    assert crypto.derive_key(key, purpose, length) == expected


@pytest.mark.parametrize("length", [0, 33])
def test_derive_key_gives_one_block_at_most(length: int) -> None:
    with pytest.raises(ValueError):
        crypto.derive_key(KEY, b"x", length)


def test_process_keys_differ_and_separate_their_parts() -> None:
    key = crypto.ProcessKey()
    assert key.digest("alice", "pw") == key.digest("alice", "pw")
    assert key.digest("alice", "pw") != key.digest("alicep", "w")
    assert crypto.ProcessKey().digest("alice", "pw") != key.digest("alice", "pw")


# The development certificate.


def test_self_signed_certificate_has_the_san_entries(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    crypto.generate_self_signed_certificate(
        cert_path, key_path, hostnames=("localhost", "127.0.0.1", "::1", "soap.example.ch")
    )

    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "soap.example.ch"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert certificate.issuer == certificate.subject
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime.days == 825


def test_the_certificate_key_matches_the_certificate(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    crypto.generate_self_signed_certificate(cert_path, key_path)

    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == certificate.public_key().public_numbers()  # type: ignore[union-attr]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sorted(os.listdir(tmp_path)) == ["cert.pem", "key.pem"]  # no temp file left
