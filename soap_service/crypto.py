"""Every cryptographic operation of the service, in one module.

- Content at rest: a fresh AES-256-GCM data key per message, wrapped by the master key
  (AES-256-GCM as well) and stored with the master key's id so keys can be rotated.
- Master keys live in a keyring file outside the database, created on first start.
- Passwords: scrypt (a slow, memory-hard hash); WS-Security PasswordDigest (SHA-1, as
  the UsernameToken profile defines it); keyed fingerprints for idempotency checks.
- The self-signed certificate used on the embedded development default.
- Signatures: receipts (PAdES, by pyHanko) and mails to organisations' gateways (S/MIME).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.hazmat.primitives.twofactor.hotp import HOTP
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from cryptography.x509.oid import NameOID

from soap_service.errors import ConfigurationError, SoapServiceError, Unavailable
from soap_service.private_files import create_exclusively, replace_atomically

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
TOKEN_TAG_BYTES = 16


class DecryptionFailed(SoapServiceError):
    """A sealed value was altered, or opened with the wrong key or context."""


@dataclass(frozen=True, kw_only=True)
class WrappedKey:
    key_id: str
    wrapped: bytes


class Sealer:
    """AES-256-GCM under one key: each sealed value is nonce || ciphertext || tag, with its
    context authenticated. Made once per key and reused (safe across threads): setting up
    the cipher costs more than sealing a short value."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, context: bytes, plaintext: bytes) -> bytearray:
        sealed = bytearray(NONCE_BYTES + len(plaintext) + TAG_BYTES)
        nonce = os.urandom(NONCE_BYTES)
        sealed[:NONCE_BYTES] = nonce
        # encrypt_into writes straight into the output buffer: a 30 MB attachment is not
        # copied once more to prepend the nonce.
        self._aead.encrypt_into(nonce, plaintext, context, memoryview(sealed)[NONCE_BYTES:])
        return sealed

    def open(self, context: bytes, sealed: bytes | bytearray) -> bytes:
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionFailed("sealed value is too short")
        view = memoryview(sealed)
        try:
            return self._aead.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], context)
        except InvalidTag:
            raise DecryptionFailed("sealed value failed authentication") from None


class Keyring:
    """The service's master keys, by id; one of them is current for new messages."""

    def __init__(self, keys: dict[str, bytes], current_key_id: str) -> None:
        if current_key_id not in keys:
            raise ConfigurationError("the keyring's current key is missing")
        self._keys = dict(keys)
        self.current_key_id = current_key_id
        self._mac_keys: dict[str, bytes] = {}
        self._sealers: dict[str, Sealer] = {}

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """Load the keyring file, creating it with one fresh key if it does not exist."""
        if not path.exists():
            key_id = new_key_id()
            create_exclusively(path, _keyring_json({key_id: AESGCM.generate_key(256)}, key_id))
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            keys = {kid: base64.b64decode(value) for kid, value in document["keys"].items()}
            current = document["current"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"cannot read the master keyring ({type(exc).__name__})"
            ) from exc
        if any(len(key) != KEY_BYTES for key in keys.values()):
            raise ConfigurationError("the master keyring holds a key of the wrong length")
        return cls(keys, current)

    @staticmethod
    def rotate(path: Path) -> str:
        """Add a new master key and make it current; older keys stay for reading."""
        keyring = Keyring.load(path)
        new_id = new_key_id()
        keys = {**keyring._keys, new_id: AESGCM.generate_key(256)}
        replace_atomically(path, _keyring_json(keys, new_id))
        return new_id

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def check_values(self) -> dict[str, bytes]:
        """For each key, a value that tells whether two hosts hold the same key without
        revealing it (HKDF of the key, for a purpose nothing else uses)."""
        return {
            key_id: derive_key(key, b"master-key-check", length=16)
            for key_id, key in self._keys.items()
        }

    def _key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise DecryptionFailed(f"master key {key_id!r} is not in the keyring") from None

    def _sealer(self, key_id: str) -> Sealer:
        sealer = self._sealers.get(key_id)
        if sealer is None:
            sealer = self._sealers[key_id] = Sealer(self._key(key_id))
        return sealer

    # Per-message data keys.

    def new_data_key(self, context: bytes) -> tuple[bytes, WrappedKey]:
        data_key = AESGCM.generate_key(256)
        wrapped = self._sealer(self.current_key_id).seal(b"data-key:" + context, data_key)
        return data_key, WrappedKey(key_id=self.current_key_id, wrapped=bytes(wrapped))

    def unwrap_data_key(self, wrapped: WrappedKey, context: bytes) -> bytes:
        return self._sealer(wrapped.key_id).open(b"data-key:" + context, wrapped.wrapped)

    # Small secrets kept by the service (the PasswordDigest shared secret).

    def seal_secret(self, context: bytes, secret: bytes) -> WrappedKey:
        sealed = self._sealer(self.current_key_id).seal(b"secret:" + context, secret)
        return WrappedKey(key_id=self.current_key_id, wrapped=bytes(sealed))

    def open_secret(self, sealed: WrappedKey, context: bytes) -> bytes:
        return self._sealer(sealed.key_id).open(b"secret:" + context, sealed.wrapped)

    # Keyed fingerprints: compare content without storing a guessable plain hash of it.

    def fingerprint(self, key_id: str, parts: Iterable[bytes]) -> bytes:
        return self._mac(key_id, b"fingerprint", parts)

    # Tokens the service hands out and must recognise again (paging cursors).

    def sign_token(self, purpose: bytes, data: bytes) -> bytes:
        """A 16-byte tag of `data` under the current key, for this purpose only."""
        return self._mac(self.current_key_id, b"token:" + purpose, [data])[:TOKEN_TAG_BYTES]

    def token_is_genuine(self, purpose: bytes, data: bytes, tag: bytes) -> bool:
        """Whether `tag` is sign_token's for this data, under any key of the keyring (a
        token signed before a key rotation stays good)."""
        return any(
            hmac.compare_digest(
                self._mac(key_id, b"token:" + purpose, [data])[:TOKEN_TAG_BYTES], tag
            )
            for key_id in sorted(self._keys)
        )

    def _mac(self, key_id: str, purpose: bytes, parts: Iterable[bytes]) -> bytes:
        mac_key = self._mac_keys.get(key_id + ":" + purpose.hex())
        if mac_key is None:
            mac_key = derive_key(self._key(key_id), purpose)
            self._mac_keys[key_id + ":" + purpose.hex()] = mac_key
        mac = hmac.new(mac_key, digestmod=hashlib.sha256)
        for part in parts:
            # Length-prefixed, so that moving bytes between fields changes the result.
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()


def new_key_id() -> str:
    """Random, so that keys made on two hosts can never share an id."""
    return "k-" + secrets.token_hex(6)


def _keyring_json(keys: dict[str, bytes], current: str) -> bytes:
    document = {
        "version": 1,
        "current": current,
        "keys": {kid: base64.b64encode(key).decode("ascii") for kid, key in keys.items()},
    }
    return json.dumps(document, indent=2).encode("utf-8")


# Passwords.

_SCRYPT_LOG_N, _SCRYPT_R, _SCRYPT_P = 15, 8, 1


def generate_password() -> str:
    """A random password of 256 bits, printable and safe in XML and shells, and never
    starting with "-", which a command line would take for an option."""
    while True:
        password = secrets.token_urlsafe(32)
        if not password.startswith("-"):
            return password


def new_secret_token() -> str:
    """256 random bits as URL- and cookie-safe text (sessions, CSRF)."""
    return secrets.token_urlsafe(32)


def new_code(digits: int) -> str:
    """A random code of decimal digits, for a person to type from a mail."""
    return f"{secrets.randbelow(10**digits):0{digits}d}"


# A second factor: TOTP (RFC 6238) as authenticator apps know it, SHA-1, 6 digits, 30 s.

TOTP_STEP_SECONDS = 30
_TOTP_DIGITS = 6


def new_totp_secret() -> bytes:
    return os.urandom(20)  # 160 bits, as RFC 4226 recommends


def totp_code(secret: bytes, step: int) -> str:
    """The code of time step `step` (seconds since the epoch // 30)."""
    return HOTP(secret, _TOTP_DIGITS, hashes.SHA1()).generate(step).decode("ascii")


def totp_uri(secret: bytes, account: str, issuer: str) -> str:
    """The otpauth:// link an authenticator app reads."""
    totp = TOTP(secret, _TOTP_DIGITS, hashes.SHA1(), TOTP_STEP_SECONDS)
    return totp.get_provisioning_uri(account, issuer)


def totp_key_text(secret: bytes) -> str:
    """The secret as a person types it into an app: base32, in groups of four."""
    text = base64.b32encode(secret).decode("ascii").rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, _SCRYPT_LOG_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        [
            "scrypt",
            str(_SCRYPT_LOG_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, log_n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(log_n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def dummy_password_hash() -> str:
    """A valid hash of a password nobody knows: checking unknown usernames against it takes
    as long as checking a real account, so response times do not reveal which names exist."""
    return hash_password(generate_password())


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log_n, r=r, p=p).derive(password.encode("utf-8"))


def username_token_digest(nonce: bytes, created: str, password: str) -> str:
    """Base64(SHA-1(nonce + created + password)), WS-Security UsernameToken profile 1.0."""
    digest = hashlib.sha1(nonce + created.encode("utf-8") + password.encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


def constant_time_equal(left: str | bytes, right: str | bytes) -> bool:
    if isinstance(left, str):
        left = left.encode("utf-8")
    if isinstance(right, str):
        right = right.encode("utf-8")
    return hmac.compare_digest(left, right)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def derive_key(key: bytes, purpose: bytes, length: int = KEY_BYTES) -> bytes:
    """A key for one purpose, from a key meant for another: HKDF-SHA256 (RFC 5869) with no
    salt and at most one output block (32 bytes), which is two HMACs. Written out because
    cryptography's HKDF object costs several times that to set up, once per message; a
    test holds the two equal."""
    if not 0 < length <= hashlib.sha256().digest_size:
        raise ValueError("derive_key gives 1 to 32 bytes")
    pseudorandom_key = hmac.digest(bytes(hashlib.sha256().digest_size), key, "sha256")
    return hmac.digest(pseudorandom_key, purpose + b"\x01", "sha256")[:length]


def token_text(token: bytes) -> str:
    """A token as it goes into a URL: base64url without padding."""
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")


class ProcessKey:
    """A random key that lives only in this process's memory, for cache keys."""

    def __init__(self) -> None:
        self._key = os.urandom(KEY_BYTES)

    def digest(self, *parts: str) -> bytes:
        # Keyed BLAKE2b is a MAC, built into Python: checked on every request, it costs a
        # fraction of an OpenSSL HMAC's set-up. Nothing outside this process sees it.
        mac = hashlib.blake2b(key=self._key, digest_size=32)
        for part in parts:
            encoded = part.encode("utf-8")
            mac.update(len(encoded).to_bytes(8, "big"))
            mac.update(encoded)
        return mac.digest()


# Client certificates that organisations' mail servers present (the SMTP channel).


@dataclass(frozen=True, kw_only=True)
class CertificateInfo:
    pem: str
    sha256: bytes  # of the DER form: what a TLS peer's certificate is matched by
    subject: str
    not_after: dt.datetime


class InvalidCertificate(SoapServiceError):
    """Not one PEM certificate."""


def certificate_info(pem: bytes) -> CertificateInfo:
    """The first certificate in `pem`, checked and described."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidCertificate("not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    der = certificate.public_bytes(serialization.Encoding.DER)
    return CertificateInfo(
        pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        sha256=sha256(der),
        subject=certificate.subject.rfc4514_string(),
        not_after=certificate.not_valid_after_utc,
    )


# Development certificate.


def generate_self_signed_certificate(
    cert_path: Path, key_path: Path, hostnames: Iterable[str] = ("localhost", "127.0.0.1")
) -> None:
    """Write a self-signed ECDSA certificate for local development (valid 825 days),
    replacing what is there; the caller keeps two processes from doing it at once."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soap-service development")])
    certificate = _self_signed(
        key,
        subject,
        days=825,
        extensions=[
            (x509.SubjectAlternativeName(names), False),
            (x509.BasicConstraints(ca=True, path_length=0), True),
        ],
    )
    _write_key_and_certificate(key, certificate, cert_path, key_path)


# Receipts: PDF documents signed with the service's own key (PAdES, by pyHanko).


def generate_receipt_signing_certificate(
    cert_path: Path, key_path: Path, *, organisation: str = "soap-service"
) -> None:
    """Write a self-signed RSA-3072 certificate (10 years) for signing receipts, replacing
    what is there; the caller keeps two processes from doing it at once. Senders who
    check receipts trust this certificate (`soap-service receipt-certificate` prints it);
    an operator may give a certificate from a CA instead."""
    _write_signing_certificate(
        cert_path,
        key_path,
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} receipts"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ],
        extra_extensions=[],
    )


# Gateway delivery: mails S/MIME-signed with the service's own key.


def generate_mail_signing_certificate(
    cert_path: Path, key_path: Path, *, address: str, organisation: str = "soap-service"
) -> None:
    """Write a self-signed ECDSA P-256 certificate (10 years) for S/MIME-signing the mails
    that gateways receive, for `address` (the From of those mails), replacing what is
    there. Organisations trust it (`soap-service signing-certificate` prints it); an
    operator may give one from a CA instead (RSA or EC).

    ECDSA (RFC 5753, allowed by S/MIME 4.0, RFC 8551) because every mail is signed: a
    P-256 signature takes some 30 microseconds, an RSA-3072 one over 2 milliseconds."""
    _write_signing_certificate(
        cert_path,
        key_path,
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} secure messages"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, address),
        ],
        extra_extensions=[
            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
            (x509.SubjectAlternativeName([_rfc822_name(address)]), False),
        ],
        key=ec.generate_private_key(ec.SECP256R1()),
    )


def _rfc822_name(address: str) -> x509.RFC822Name:
    """The address as a certificate's rfc822Name, a domain literal too (RFC 5280 takes
    RFC 5321's Mailbox: `no-reply@[127.0.0.1]`, the default on a bare IP host).

    cryptography checks the value with `email.utils.parseaddr`, which from Python 3.13
    refuses domain literals; the settings have already checked the address, so such a name
    is made without that check, and the certificate is the same on every Python."""
    try:
        return x509.RFC822Name(address)
    except ValueError:
        if not address.rpartition("@")[2].startswith("["):
            raise
        return x509.RFC822Name._init_without_validation(address)


def _write_signing_certificate(
    cert_path: Path,
    key_path: Path,
    subject: list[x509.NameAttribute[str]],
    *,
    extra_extensions: list[tuple[x509.ExtensionType, bool]],
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> None:
    """A self-signed certificate (10 years; RSA-3072 unless another key is given) whose key
    signs documents and mails (digital signature and non-repudiation: what receipts and
    signed mails are for)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=3072)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = _self_signed(
        key,
        x509.Name(subject),
        days=3650,
        extensions=[
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (usage, True),
            *extra_extensions,
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ],
    )
    _write_key_and_certificate(key, certificate, cert_path, key_path)


def _matching_pair(
    cert_path: Path, key_path: Path, what: str
) -> tuple[x509.Certificate, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
    """A certificate and its key from files; a key replaced without its certificate (or
    the other way round) would sign everything invalidly: refused at start instead."""
    try:
        certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"the {what} key or certificate is unreadable") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"the {what} key must be RSA or EC")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ConfigurationError(f"the {what} key does not match its certificate")
    return certificate, key


class MailSigner:
    """Detached S/MIME signatures (RFC 8551, application/pkcs7-signature) with a key and
    certificate from files, loaded once."""

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self._certificate, self._key = _matching_pair(cert_path, key_path, "mail signing")

    def sign(self, entity: bytes) -> bytes:
        """The DER signature of a MIME entity, exactly as given (its CRLF line ends are
        the canonical form the recipient verifies)."""
        return (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(entity)
            .add_signer(self._certificate, self._key, hashes.SHA256())
            .sign(
                serialization.Encoding.DER,
                [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
            )
        )


def _self_signed(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    subject: x509.Name,
    *,
    days: int,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256())


def _write_key_and_certificate(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    cert_path: Path,
    key_path: Path,
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first, certificate last: a certificate on disk always has its key beside it.
    replace_atomically(key_path, key_pem)
    replace_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM))


class PdfSigner:
    """Signs PDF documents with a key and certificate from files, loaded once: PAdES
    baseline signatures (ETSI.CAdES.detached, ETSI EN 319 142-1), B-B, or B-T with an
    RFC 3161 time stamp from `timestamp_url` when an operator configures a time stamping
    authority."""

    def __init__(self, cert_path: Path, key_path: Path, timestamp_url: str | None = None) -> None:
        from pyhanko.sign import signers

        try:
            # pyHanko's load() is not annotated.
            self._signer = signers.SimpleSigner.load(str(key_path), str(cert_path))  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                "the receipt signing key or certificate is unreadable"
            ) from exc
        if self._signer is None:
            raise ConfigurationError("the receipt signing key or certificate is unreadable")
        _matching_pair(cert_path, key_path, "receipt signing")
        self._timestamp_url = timestamp_url

    def sign(self, pdf: bytes, *, reason: str, location: str) -> bytes:
        import io

        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers
        from pyhanko.sign.timestamps.common_utils import TimestampRequestError
        from pyhanko.sign.timestamps.requests_client import HTTPTimeStamper

        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        timestamper = (
            HTTPTimeStamper(self._timestamp_url, timeout=10)  # type: ignore[no-untyped-call]
            if self._timestamp_url
            else None
        )
        try:
            # Without an output stream given, sign_pdf writes to a new BytesIO (pyHanko's docs).
            signed: io.BytesIO = signers.sign_pdf(
                writer,
                signers.PdfSignatureMetadata(
                    field_name="Receipt",
                    reason=reason,
                    location=location,
                    subfilter=fields.SigSeedSubFilter.PADES,
                ),
                signer=self._signer,
                timestamper=timestamper,
                # Room for the signature, its certificate and a time stamp token, reserved
                # up front: else pyHanko asks the authority twice (a trial run measures it),
                # and authorities count (and may charge for) every time stamp.
                bytes_reserved=16384 if timestamper else None,
            )
        except TimestampRequestError as exc:
            raise Unavailable(
                "the time stamping authority did not answer; try again later"
            ) from exc
        return signed.getvalue()
