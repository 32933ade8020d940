"""Interoperability: Java JAX-WS (Debian's jaxws: wsimport and the RI runtime, on the
machine's JDK). wsimport generates stubs from the WSDL served over HTTPS; the generated
classes have plain typed fields; the client (client_examples/java/SendAndStatus.java)
sends two recipients and two attachments under a WS-Security UsernameToken, inline and
as MTOM/XOP, reads the status as XMLGregorianCalendar times, and reads a fault. The same
with stubs generated from the WSDL as it was before its message parts were named
`parameters` (issue 15): an integrator's stubs from then still work against the service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import Sender
from tests.support import REPO, ServiceProcess, stored_attachments

pytestmark = pytest.mark.e2e

CLIENT = REPO / "client_examples" / "java" / "SendAndStatus.java"
# The committed WSDL before its parts were named `parameters` (the wire is the same).
PREVIOUS_WSDL = Path(__file__).parent / "wsdl" / "messaging-v1-before-wrapped-parts.wsdl"
PACKAGE = "ch.example.soapservice"
# The JAX-WS RI runtime as Debian installs it.
RUNTIME_JARS = (
    "jaxws-api jaxb-api jws-api jaxws-rt jaxb-runtime jaxb-impl jaxb-core saaj-impl "
    "streambuffer stax-ex gmbal mimepull javax.activation metro-policy "
    "glassfish-management-api FastInfoset ha-api"
).split()


@dataclass(frozen=True)
class JavaClient:
    sources: Path
    classpath: str
    trust_options: tuple[str, ...]


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module", params=["served", "previous"])
def java_client(
    service: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> JavaClient:
    """Stubs from the WSDL the service serves, or from the previous committed one; either
    way the client reads the served WSDL at run time, as a deployed client does."""
    for tool in ("wsimport", "javac", "java", "keytool"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make test` installs jaxws and a JDK")
    folder = tmp_path_factory.mktemp("java")
    truststore = folder / "trust.p12"
    run(
        [
            "keytool", "-importcert", "-noprompt", "-alias", "test-ca",
            "-file", str(service.tls.ca_cert), "-keystore", str(truststore),
            "-storetype", "PKCS12", "-storepass", "changeit",
        ]
    )  # fmt: skip
    trust = (
        f"-Djavax.net.ssl.trustStore={truststore}",
        "-Djavax.net.ssl.trustStorePassword=changeit",
        "-Djavax.net.ssl.trustStoreType=PKCS12",
    )
    sources = folder / "src"
    sources.mkdir()
    run(
        [
            "wsimport",
            "-keep",
            "-Xnocompile",
            "-p",
            PACKAGE,
            "-s",
            str(sources),
            f"{service.url}?wsdl" if request.param == "served" else str(PREVIOUS_WSDL),
        ],
        env={**os.environ, "WSIMPORT_OPTS": " ".join(trust)},
    )
    jars = [f"/usr/share/java/{name}.jar" for name in RUNTIME_JARS]
    classes = folder / "classes"
    generated = sorted(str(path) for path in (sources / PACKAGE.replace(".", "/")).glob("*.java"))
    run(["javac", "-nowarn", "-cp", ":".join(jars), "-d", str(classes), *generated, str(CLIENT)])
    return JavaClient(
        sources=sources / PACKAGE.replace(".", "/"),
        classpath=":".join([str(classes), *jars]),
        trust_options=trust,
    )


def test_generated_classes_have_plain_typed_fields(java_client: JavaClient) -> None:
    def fields(name: str) -> dict[str, str]:
        text = (java_client.sources / f"{name}.java").read_text()
        return dict(
            (field, kind) for kind, field in re.findall(r"protected ([\w<>.\[\]]+) (\w+);", text)
        )

    for path in java_client.sources.glob("*.java"):
        if path.name != "ObjectFactory.java":  # its factory methods for root elements only
            assert "JAXBElement" not in path.read_text(), path.name
        assert not re.search(r"\bisSet\w+\(|Specified\b", path.read_text()), path.name
    assert fields("OutgoingMessage") == {
        "reference": "String",
        "type": "MessageType",
        "recipients": "RecipientList",
        "subject": "String",
        "textBody": "String",
        "htmlBody": "String",
        "attachments": "AttachmentList",
        "language": "Language",
        "expiryDays": "Integer",  # optional: null when absent
    }
    assert fields("RecipientStatus")["attempts"] == "int"
    assert fields("RecipientStatus")["stateChangedAt"] == "XMLGregorianCalendar"
    assert fields("MessageStatus")["acceptedAt"] == "XMLGregorianCalendar"
    assert fields("Attachment")["content"] == "byte[]"


@pytest.mark.parametrize("mtom", [False, True], ids=["inline", "mtom"])
def test_jaxws_sends_reads_status_and_gets_a_fault(
    java_client: JavaClient, service: ServiceProcess, sender: Sender, tmp_path: Path, mtom: bool
) -> None:
    files = {
        "lohn-november.pdf": b"%PDF-1.4\n" + os.urandom(60_000),
        "beilage.pdf": os.urandom(999),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    done = run(
        [
            "java", *java_client.trust_options, "-cp", java_client.classpath, "SendAndStatus",
            f"{service.url}?wsdl", sender.username, sender.password,
            f"java-{uuid.uuid4().hex[:12]}", str(mtom).lower(),
            *(str(tmp_path / name) for name in files),
        ]
    )  # fmt: skip
    facts: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        facts.setdefault(key, []).append(value)

    [message_id] = facts["message_id"]
    assert stored_attachments(service, message_id) == list(files.items())
    assert facts["state"] == ["queued"]
    accepted = datetime.fromisoformat(facts["accepted_at"][0].split("[")[0])
    expires = datetime.fromisoformat(facts["expires_at"][0].split("[")[0])
    assert (expires - accepted).days == 7
    recipients = [line.split(" ") for line in facts["recipient"]]
    assert [(address, state, attempts) for address, state, attempts, _ in recipients] == [
        ("anna.muster@example.ch", "queued", "0"),
        ("bert.beispiel@example.ch", "queued", "0"),
    ]
    assert facts["faultcode"] == ["Client.NotFound"]
    assert facts["faultstring"] == ["no message with this MessageId"]
    # MTOM or not went over the wire, as the service's request log says.
    body = "mtom" if mtom else "xml"
    assert f"soap op=SendMessage account={sender.username} outcome=ok body={body}" in (
        service.log_text()
    )
