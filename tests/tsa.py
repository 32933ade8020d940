"""A local RFC 3161 time stamping authority for tests: OpenSSL's own `openssl ts -reply`
behind a small HTTP server on 127.0.0.1, as a TSA is reached (POST of an
application/timestamp-query, answer application/timestamp-reply). Its certificate is made
here, with the critical timeStamping extended key usage RFC 3161 asks for (and no other
key usage than signing, which OpenSSL checks)."""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONFIG = """
[ tsa ]
default_tsa = local_tsa

[ local_tsa ]
dir = {folder}
serial = $dir/serial
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
crypto_device = builtin
"""


@dataclass(frozen=True)
class LocalTsa:
    url: str
    certificate: Path  # the trust anchor for its time stamps
    requests: list[int]  # one entry per time stamp it gave


def _certificate(folder: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test time stamping authority")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "tsa-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "tsa.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "serial").write_text("01\n")
    (folder / "openssl.cnf").write_text(CONFIG.format(folder=folder))


@contextmanager
def local_tsa() -> Iterator[LocalTsa]:
    with tempfile.TemporaryDirectory(prefix="tsa-") as name:
        folder = Path(name)
        _certificate(folder)
        given: list[int] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:  # one serial file
                    (folder / "query.tsq").write_bytes(query)
                    made = subprocess.run(
                        [
                            "openssl",
                            "ts",
                            "-reply",
                            "-config",
                            str(folder / "openssl.cnf"),
                            "-queryfile",
                            str(folder / "query.tsq"),
                            "-out",
                            str(folder / "reply.tsr"),
                        ],
                        capture_output=True,
                        timeout=30,
                    )
                    reply = (folder / "reply.tsr").read_bytes() if made.returncode == 0 else b""
                if not reply:
                    self.send_error(500, "openssl ts -reply made no answer")
                    return
                given.append(len(reply))
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield LocalTsa(
                url=f"http://127.0.0.1:{server.server_address[1]}/",
                certificate=folder / "tsa.pem",
                requests=given,
            )
        finally:
            server.shutdown()
            server.server_close()
