"""A person writes a message on the site, with attachments, and follows it in the logbook:
each recipient's state, filters, pages, CSV, withdrawing, receipts; and nobody else's
message answers anything but 404. Through the WSGI application on a real database, the
notifications sent by a real worker to a real SMTP server."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from soap_service.bootstrap import ensure_files
from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.model import RecipientState
from soap_service.persistence.tables import attachments, messages, recipients
from soap_service.settings import load_settings
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import PUBLIC_URL, Browser, Response, get
from tests.pickup.test_inbox import log_in, with_account
from tests.smtp_sink import SmtpSink

PDF = b"%PDF-1.4\n% a contract\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
CSV_FILE = b"Name;Betrag\nAnna;100\n"
MESSAGE_PAGE = re.compile(r"^/account/sent/([0-9a-f-]{36})$")


def logged_in(env: Env, app: WebApp, address: str = "lea@example.ch") -> Browser:
    with_account(env, address)
    browser = Browser(app)
    assert log_in(browser, address).status == 303
    return browser


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = f"----form{uuid.uuid4().hex}"
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for filename, content_type, content in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="attachments"; '
            f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def compose(
    browser: Browser,
    files: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    **fields: str,
) -> Response:
    form = browser.get("/account/compose")
    assert form.status == 200, form.text
    reference = re.search(r'name="reference" value="([^"]+)"', form.text)
    assert reference
    values = {
        "csrf": form.csrf(),
        "reference": reference[1],
        "type": "confidential",
        "recipients": "anna@example.ch",
        "subject": "Arbeitsvertrag",
        "text": "Guten Tag\r\nDer Vertrag liegt bei.",
        "language": "de",
        "expiry": "7",
        **fields,
    }
    body, boundary = multipart(values, list(files))
    return post_multipart(browser, "/account/compose", body, boundary)


def post_multipart(browser: Browser, path: str, body: bytes, boundary: str) -> Response:
    jar = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    return get(
        browser.app,
        path,
        method="POST",
        body=body,
        content_type=f"multipart/form-data; boundary={boundary}",
        cookie=jar,
    )


def sent_id(response: Response) -> str:
    assert response.status == 303, response.text
    found = MESSAGE_PAGE.match(response.headers["location"])
    assert found, response.headers["location"]
    return found[1]


def count(env: Env, table: object, **where: object) -> int:
    query = select(func.count()).select_from(table)  # type: ignore[arg-type]
    for name, value in where.items():
        query = query.where(getattr(table.c, name) == value)  # type: ignore[attr-defined]
    with env.database.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def stored_states(env: Env, message_id: str) -> list[RecipientState]:
    query = (
        select(recipients.c.state)
        .where(recipients.c.message_id == message_id)
        .order_by(recipients.c.position)
    )
    with env.database.engine.connect() as connection:
        return [RecipientState(state) for state in connection.execute(query).scalars()]


def states(page: Response) -> list[str]:
    return re.findall(r'<td class="state">([^<]+)</td>', page.text)


def test_a_message_with_two_attachments_is_sent_delivered_and_followed_in_the_logbook(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    browser = logged_in(env, app)
    files = [("Vertrag.pdf", "application/pdf", PDF), ("Lohn.csv", "text/csv", CSV_FILE)]
    done = compose(browser, files, recipients="anna@example.ch, bert@example.ch")
    message_id = sent_id(done)
    assert count(env, attachments, message_id=message_id) == 2

    detail = browser.get(done.headers["location"])
    assert '<h1 id="subject">Arbeitsvertrag</h1>' in detail.text
    assert states(detail) == ["Wartend", "Wartend"]
    assert worker.run_once() == 2
    notification = next(m for m in sink.received if m.recipients == ("anna@example.ch",))
    # Recipients see the person as the sender.
    assert "lea@example.ch" in notification.message["Subject"]
    assert states(browser.get(done.headers["location"])) == ["Benachrichtigt", "Benachrichtigt"]

    listed = browser.get("/account/sent")
    assert re.findall(r'<a class="subject" href="([^"]+)">Arbeitsvertrag</a>', listed.text) == [
        f"/account/sent/{message_id}"
    ]


def test_a_form_sent_twice_is_one_message(env: Env, app: WebApp) -> None:
    browser = logged_in(env, app)
    form = browser.get("/account/compose")
    reference = re.search(r'name="reference" value="([^"]+)"', form.text)
    assert reference
    fields = {
        "csrf": form.csrf(),
        "reference": reference[1],
        "type": "personal",
        "recipients": "anna@example.ch",
        "subject": "Lohnausweis",
        "text": "",
        "language": "fr",
        "expiry": "3",
    }
    first = post_multipart(browser, "/account/compose", *multipart(fields, []))
    again = post_multipart(browser, "/account/compose", *multipart(fields, []))
    assert sent_id(first) == sent_id(again)
    assert count(env, messages) == 1


@pytest.mark.parametrize(
    ("fields", "files", "says"),
    [
        ({"recipients": "anna@example.ch, not an address"}, [], "Eine Empfängeradresse"),
        ({"recipients": ""}, [], "unvollständig oder ungültig"),
        ({"type": "urgent"}, [], "unvollständig oder ungültig"),
        ({}, [("setup.exe", "application/octet-stream", b"MZ\x90\x00")], "nicht erlaubt"),
    ],
)
def test_a_message_that_cannot_go_says_why_and_keeps_what_was_typed(
    env: Env,
    app: WebApp,
    fields: dict[str, str],
    files: list[tuple[str, str, bytes]],
    says: str,
) -> None:
    browser = logged_in(env, app)
    refused = compose(browser, files, subject="Bitte lesen", **fields)
    assert refused.status == 400
    assert says in refused.text
    assert 'value="Bitte lesen"' in refused.text
    assert ("Bitte wählen Sie die Anhänge erneut" in refused.text) == bool(files)
    assert count(env, messages) == 0


def test_more_than_a_message_may_hold_is_refused_before_it_is_read(env: Env, app: WebApp) -> None:
    browser = logged_in(env, app)
    too_much = b"%PDF-1.4\n" + b"0" * (34 * 1024 * 1024)  # 30 MiB + the bodies + 1 MiB
    refused = compose(browser, [("gross.pdf", "application/pdf", too_much)])
    assert refused.status == 413
    assert 'data-reason="too-large"' in refused.text
    assert count(env, messages) == 0


def test_the_logbook_filters_pages_and_exports(env: Env, app: WebApp) -> None:
    browser = logged_in(env, app)
    for number in range(51):
        compose(browser, subject=f"Lohnabrechnung {number:02d}")
        env.clock.advance(seconds=1)
    compose(browser, type="registered", subject="=Kündigung", recipients="carl@example.ch")

    first = browser.get("/account/sent")
    subjects = re.findall(r'<a class="subject" href="[^"]+">([^<]+)</a>', first.text)
    assert len(subjects) == 50 and subjects[0] == "=Kündigung"
    older = re.search(r'<a id="next" href="([^"]+)">', first.text)
    assert older
    second = browser.get(older[1].replace("&amp;", "&"))
    assert re.findall(r'<a class="subject" href="[^"]+">([^<]+)</a>', second.text) == [
        "Lohnabrechnung 01",
        "Lohnabrechnung 00",
    ]
    registered = browser.get("/account/sent?type=registered")
    assert re.findall(r'class="subject" href="[^"]+">([^<]+)<', registered.text) == ["=Kündigung"]
    words = browser.get("/account/sent?words=abrechnung+07")
    assert re.findall(r'class="subject" href="[^"]+">([^<]+)<', words.text) == ["Lohnabrechnung 07"]
    none = browser.get("/account/sent?from=2030-01-01")
    assert 'id="empty"' in none.text
    assert browser.get("/account/sent?from=yesterday").status == 400
    assert browser.get("/account/sent?cursor=forged").status == 400

    export = browser.get("/account/sent.csv?type=registered")
    assert export.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(export.body.decode("utf-8-sig"))))
    assert rows[0][:4] == ["MessageId", "Reference", "Type", "Subject"]
    assert [(row[2], row[3], row[6], row[7]) for row in rows[1:]] == [
        ("registered", "'=Kündigung", "carl@example.ch", "queued")
    ]
    everything = browser.get("/account/sent.csv")
    assert len(list(csv.reader(io.StringIO(everything.body.decode("utf-8-sig"))))) == 53


def test_withdraw_a_message_and_fetch_the_receipts_of_a_registered_one(
    env: Env, app: WebApp, tmp_path: Path
) -> None:
    # The receipt signing key, where the app's settings look for it (made at a first start).
    settings = {
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": env.database.url,
        "PUBLIC_URL": PUBLIC_URL,
    }
    ensure_files(load_settings({f"SOAP_SERVICE_{k}": v for k, v in settings.items()}))
    browser = logged_in(env, app)
    confidential = sent_id(compose(browser))
    withdrawn = browser.post(
        f"/account/sent/{confidential}/withdraw", {"csrf": browser.cookies["__Host-pickup-csrf"]}
    )
    assert withdrawn.status == 303
    assert states(browser.get(f"/account/sent/{confidential}")) == ["Zurückgezogen"]
    assert stored_states(env, confidential) == [RecipientState.CANCELLED]

    registered = sent_id(compose(browser, type="registered"))
    detail = browser.get(f"/account/sent/{registered}")
    link = f"/account/sent/{registered}/receipt/submission"
    assert f'href="{link}"' in detail.text
    pdf = browser.get(link)
    assert pdf.status == 200 and pdf.body.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    # No pickup receipt before the recipient accepted.
    assert browser.get(f"{link[:-10]}pickup?recipient=anna@example.ch").status == 404


def test_another_persons_messages_answer_404_on_every_route(env: Env, app: WebApp) -> None:
    lea = logged_in(env, app, "lea@example.ch")
    registered = sent_id(compose(lea, type="registered"))
    max_ = logged_in(env, app, "max@example.ch")
    csrf = {"csrf": max_.cookies["__Host-pickup-csrf"]}
    unknown = str(uuid.uuid4())
    for message_id in (registered, unknown):
        assert max_.get(f"/account/sent/{message_id}").status == 404
        assert max_.post(f"/account/sent/{message_id}/withdraw", csrf).status == 404
        assert max_.get(f"/account/sent/{message_id}/receipt/submission").status == 404
    assert max_.get("/account/sent/not-a-message-id").status == 404
    assert 'id="empty"' in max_.get("/account/sent").text
    assert len(max_.get("/account/sent.csv").body.decode("utf-8-sig").splitlines()) == 1
    assert stored_states(env, registered) == [RecipientState.QUEUED]
    # Without a session, every page sends to the login.
    anonymous = Browser(app)
    for path in (
        "/account/compose",
        "/account/sent",
        "/account/sent.csv",
        f"/account/sent/{registered}",
    ):
        assert anonymous.get(path).headers["location"] == "/account/login"


def test_only_the_compose_page_runs_a_script_and_only_its_own(env: Env, app: WebApp) -> None:
    browser = logged_in(env, app)
    form = browser.get("/account/compose")
    script = re.search(r"<script>(.*)</script>", form.text, re.DOTALL)
    assert script
    digest = base64.b64encode(hashlib.sha256(script[1].encode()).digest()).decode()
    policy = form.headers["content-security-policy"]
    assert policy.endswith(f"; script-src 'sha256-{digest}'; connect-src 'self'")
    assert "unsafe" not in policy
    for path in ("/account", "/account/sent", "/account/password", "/account/login"):
        other = browser.get(path)
        assert "<script" not in other.text
        assert "script-src" not in other.headers["content-security-policy"]
