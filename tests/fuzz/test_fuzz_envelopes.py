"""Fuzzing the WSGI application with mutated envelopes (hypothesis), in-process, on a real
SQLite database: every answer must be a well-formed SOAP 1.1 success or fault with one of
the published fault codes, never an exception, a trace or a hang. Bounded in time: a few
hundred requests per run, on top of the examples hypothesis keeps from earlier runs."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from soap_service import crypto
from soap_service.container import Container
from soap_service.domain.accounts import create_account
from soap_service.errors import FaultCode
from soap_service.persistence.database import Database
from soap_service.settings import load_settings
from tests.support import SOAP11_ENV, envelope, security_header, send_message_xml

FAULT_CODES = {
    value for name, value in vars(FaultCode).items() if name.isupper() and isinstance(value, str)
}
PDF = base64.b64encode(b"%PDF-1.4\n% fuzz\n").decode()


class Target:
    def __init__(self, folder: Path) -> None:
        settings_ = load_settings(
            {
                "SOAP_SERVICE_DATA_DIR": str(folder),
                "SOAP_SERVICE_PUBLIC_URL": "https://fuzz.example/soap/v1",
                "SOAP_SERVICE_LOG_LEVEL": "WARNING",
            }
        )
        database = Database(settings_.database_url)
        database.upgrade()
        keyring = crypto.Keyring.load_or_create(settings_.master_key_file)
        store = database.store()
        try:
            credentials = create_account(
                store,
                keyring,
                username="fuzzer",
                organisation="Fuzz AG",
                allow_digest=False,
                now=lambda: datetime.now(UTC),
            )
        finally:
            store.close()
        self.username, self.password = credentials.account.username, credentials.password
        self.app = Container(settings_, database=database).wsgi_app()
        self.seeds = [
            envelope(
                send_message_xml(
                    "fuzz-1",
                    recipients=("a@example.ch", "b@example.ch"),
                    attachments=(("a.pdf", "application/pdf", PDF),),
                ),
                self.header(),
            ),
            envelope("<m:GetStatus><m:Reference>fuzz-1</m:Reference></m:GetStatus>", self.header()),
            envelope(
                "<m:CancelMessage><m:MessageId>x</m:MessageId></m:CancelMessage>", self.header()
            ),
        ]

    def header(self) -> str:
        return security_header(self.username, self.password)

    def call(self, body: bytes, content_type: str) -> tuple[str, dict[str, str], bytes]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/soap/v1",
            "SERVER_NAME": "fuzz.example",
            "SERVER_PORT": "443",
            "HTTP_HOST": "fuzz.example",
            "wsgi.url_scheme": "https",
            "QUERY_STRING": "",
            "CONTENT_TYPE": content_type,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
        }
        captured: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> None:
            captured[:] = [status, dict(headers)]

        answer = b"".join(self.app(environ, start_response))
        return captured[0], captured[1], answer


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield Target(tmp_path_factory.mktemp("fuzz"))


def byte_mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Flip, insert, delete and splice bytes of a valid envelope."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(data)))
            action = draw(st.sampled_from(["flip", "insert", "delete", "splice"]))
            if action == "flip" and position < len(data):
                data[position] = draw(st.integers(0, 255))
            elif action == "insert":
                data[position:position] = draw(
                    st.sampled_from(
                        [
                            b"<",
                            b">",
                            b"&",
                            b"]]>",
                            b"<!--",
                            b"\x00",
                            b"\xff\xfe",
                            b"&amp;",
                            b'xmlns:x="urn:x"',
                            b"<x:y/>",
                            b"</",
                            b"<?pi?>",
                            b"<![CDATA[",
                            b'"',
                            b"<!DOCTYPE d>",
                            b"<m:Extra>1</m:Extra>",
                            b'href="#id1"',
                            b'id="id1"',
                        ]
                    )
                    | st.binary(max_size=16)
                )
            elif action == "delete":
                del data[position : position + draw(st.integers(1, 32))]
            else:
                start = draw(st.integers(0, len(seed)))
                data[position:position] = seed[start : start + draw(st.integers(1, 200))]
        return bytes(data)

    return mutate()


def text_mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Valid XML with hostile values: replace each element's text with drawn text."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        root = etree.fromstring(seed)
        elements = [element for element in root.iter() if element.text and len(element) == 0]
        for element in draw(st.lists(st.sampled_from(elements), max_size=4)):
            element.text = draw(
                st.text(  # what XML 1.0 can carry: no surrogates, no control characters
                    st.characters(blacklist_categories=["Cs", "Cc"]) | st.sampled_from("\t\n\r"),
                    max_size=40,
                )
                | st.sampled_from(["", " ", "-1", "2147483648", "1e9", "personal", "ü" * 300])
            )
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")

    return mutate()


def assert_answer_is_soap(status: str, headers: dict[str, str], answer: bytes) -> None:
    code = int(status.split()[0])
    assert code in (200, 500), (status, answer[:300])
    assert headers["Content-Type"].startswith("text/xml"), headers
    root = etree.fromstring(answer)  # well-formed, or this raises
    assert root.tag == f"{{{SOAP11_ENV}}}Envelope"
    body = root.find(f"{{{SOAP11_ENV}}}Body")
    assert body is not None and len(body) == 1
    fault = body.find(f"{{{SOAP11_ENV}}}Fault")
    if code == 500:
        assert fault is not None, answer[:300]
        faultcode = (fault.findtext("faultcode") or "").split(":", 1)[-1]
        assert faultcode in FAULT_CODES, faultcode
        text = fault.findtext("faultstring") or ""
        assert "Traceback" not in text and 'File "' not in text
    else:
        assert fault is None


def assert_no_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    """No request became an internal error (a bug the fault codes would hide)."""
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("soap_service") and r.levelno >= logging.ERROR
    ]
    caplog.clear()
    assert errors == []


FUZZ = settings(
    max_examples=400,
    deadline=None,
    # caplog is cleared after each example (assert_no_internal_error).
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    database=None,
)


@FUZZ
@given(data=st.data())
def test_mutated_bytes_get_a_soap_answer(
    target: Target, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    seed = data.draw(st.sampled_from(target.seeds))
    body = data.draw(byte_mutations(seed))
    content_type = data.draw(
        st.sampled_from(["text/xml; charset=utf-8", "text/xml", "text/xml; charset=iso-8859-1"])
    )
    assert_answer_is_soap(*target.call(body, content_type))
    assert_no_internal_error(caplog)


@FUZZ
@given(data=st.data())
def test_hostile_values_get_a_soap_answer(
    target: Target, data: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    seed = data.draw(st.sampled_from(target.seeds))
    assert_answer_is_soap(*target.call(data.draw(text_mutations(seed)), "text/xml; charset=utf-8"))
    assert_no_internal_error(caplog)


def test_the_fuzzed_service_logged_no_trace(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    """The valid seeds pass, and the service logs no error for them (Spyne's own loggers,
    which repeat client faults, are silenced in the running service)."""
    caplog.set_level(logging.ERROR)
    for seed in target.seeds:
        assert_answer_is_soap(*target.call(seed, "text/xml; charset=utf-8"))
    ours = [r for r in caplog.records if r.name.startswith("soap_service")]
    assert [r.getMessage() for r in ours if r.levelno >= logging.ERROR] == []
