"""xmllint (libxml2's own tool, Debian's libxml2-utils) checks the published schema and
what actually goes over the wire: a captured SendMessage and GetStatus request and both
answers validate against the schema the WSDL publishes."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from lxml import etree

from tests.e2e.conftest import Sender
from tests.support import REPO, ServiceProcess, envelope, security_header, send_message_xml

pytestmark = pytest.mark.e2e

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
XS = "http://www.w3.org/2001/XMLSchema"


@pytest.fixture(scope="module")
def xmllint() -> str:
    found = shutil.which("xmllint")
    if found is None:
        pytest.fail("xmllint is missing: `make test` installs libxml2-utils")
    return found


def lint(xmllint: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [xmllint, "--noout", *arguments], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    """The schema inside the committed WSDL, with the namespaces it inherits declared."""
    wsdl = etree.parse(str(REPO / "wsdl" / "messaging-v1.wsdl"))
    [schema] = wsdl.getroot().iter(f"{{{XS}}}schema")
    standalone = etree.fromstring(etree.tostring(schema))  # keeps the in-scope namespaces
    target = tmp_path / "messaging-v1.xsd"
    target.write_bytes(etree.tostring(standalone, xml_declaration=True, encoding="utf-8"))
    return target


def payload(document: bytes, target: Path) -> Path:
    """The operation element of a SOAP envelope, as a document of its own."""
    body = etree.fromstring(document).find(f"{{{SOAP11}}}Body")
    assert body is not None
    target.write_bytes(etree.tostring(body[0], xml_declaration=True, encoding="utf-8"))
    return target


def test_the_wsdl_is_well_formed_and_its_schema_compiles(xmllint: str, schema_file: Path) -> None:
    assert lint(xmllint, str(REPO / "wsdl" / "messaging-v1.wsdl")).returncode == 0
    # An empty instance against the schema: xmllint compiles the schema first and says
    # so if it cannot ("failed to compile").
    probe = schema_file.parent / "probe.xml"
    probe.write_text('<GetStatus xmlns="urn:soap-service:messaging:v1"/>')
    result = lint(xmllint, "--schema", str(schema_file), str(probe))
    assert "failed to compile" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr


def test_captured_requests_and_answers_validate(
    xmllint: str, schema_file: Path, service: ServiceProcess, sender: Sender, tmp_path: Path
) -> None:
    header = security_header(sender.username, sender.password)
    attachments = (
        ("a.pdf", "application/pdf", "JVBERi0xLjQK"),
        ("b.pdf", "application/pdf", "AAEC"),
    )
    send = envelope(
        send_message_xml(
            f"lint-{uuid.uuid4().hex[:10]}",
            recipients=("anna@example.ch", "bert@example.ch"),
            attachments=attachments,
        ),
        header,
    )
    answer = service.post(send)
    assert answer.status_code == 200, answer.text[:300]
    message_id = etree.fromstring(answer.content).findtext(
        ".//{urn:soap-service:messaging:v1}MessageId"
    )
    status = envelope(f"<m:GetStatus><m:MessageId>{message_id}</m:MessageId></m:GetStatus>", header)
    status_answer = service.post(status)
    assert status_answer.status_code == 200

    documents = {
        "send-request.xml": send,
        "send-response.xml": answer.content,
        "status-request.xml": status,
        "status-response.xml": status_answer.content,
    }
    files = [payload(document, tmp_path / name) for name, document in documents.items()]
    result = lint(xmllint, "--schema", str(schema_file), *map(str, files))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" validates") == 4, result.stderr

    # And the check can fail: an answer with an unknown state does not validate.
    broken = (tmp_path / "status-response.xml").read_text().replace(">queued<", ">lost<", 1)
    (tmp_path / "broken.xml").write_text(broken)
    refused = lint(xmllint, "--schema", str(schema_file), str(tmp_path / "broken.xml"))
    assert refused.returncode != 0 and "lost" in refused.stderr
