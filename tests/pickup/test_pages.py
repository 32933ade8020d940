"""The pickup pages through the WSGI application, on a real database: what a link opens,
what it changes (state, journal), what a wrong, expired or withdrawn link shows, and the
headers that keep the page inert."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from soap_service.container import Container
from soap_service.domain.model import AttachmentDraft, Language, MessageType, RecipientState
from soap_service.settings import load_settings
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import PUBLIC_URL, get, token_for

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def states(env: Env, message_id: str) -> list[RecipientState]:
    return [r.state for r in env.status(message_id).recipients]


def test_the_link_opens_the_message_and_the_first_opening_is_recorded_once(
    env: Env, app: WebApp
) -> None:
    sent = env.send(
        "anna@example.ch",
        "bert@example.ch",
        attachments=(
            AttachmentDraft(filename="Lohn März.pdf", content_type="application/pdf", content=PDF),
        ),
    )
    token = token_for(env, sent.message_id, 1)
    page = get(app, f"/m/{token}")
    assert page.status == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<html lang="de">' in page.text
    assert "Nachricht von ACME Treuhand AG" in page.text
    assert '<h1 id="subject">Lohnabrechnung März</h1>' in page.text
    assert "Ihr Nettolohn beträgt CHF 6&#39;543.21" in page.text
    assert f'<a href="/m/{token}/1" download="Lohn März.pdf">Lohn März.pdf</a>' in page.text
    # Only this recipient is opened, with one journal event, however often it reads.
    assert states(env, sent.message_id) == [RecipientState.OPENED, RecipientState.QUEUED]
    first, second = env.recipient_ids(sent.message_id)
    assert get(app, f"/m/{token}").status == 200
    assert env.journal(first)[1:] == [("opened", "opened on the pickup page")]
    assert [kind for kind, _ in env.journal(second)] == ["queued"]
    assert env.status(sent.message_id).recipients[0].state_changed_at == env.clock.now


def test_an_attachment_downloads_byte_for_byte(env: Env, app: WebApp) -> None:
    sent = env.send(
        "anna@example.ch",
        attachments=(
            AttachmentDraft(filename="Lohn März.pdf", content_type="application/pdf", content=PDF),
        ),
    )
    token = token_for(env, sent.message_id)
    download = get(app, f"/m/{token}/1")
    assert download.status == 200
    assert download.body == PDF
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"] == (
        "attachment; filename=\"Lohn M_rz.pdf\"; filename*=UTF-8''Lohn%20M%C3%A4rz.pdf"
    )
    assert states(env, sent.message_id) == [RecipientState.OPENED]
    assert get(app, f"/m/{token}/2").status == 404


def test_the_html_body_is_shown_without_anything_that_runs_or_loads(env: Env, app: WebApp) -> None:
    html = (
        '<p onclick="steal()">Hello <b>Anna</b></p><script>alert(1)</script>'
        '<img src="https://tracker.example/pixel.gif"><a href="javascript:alert(2)">x</a>'
        '<a href="https://acme.example/faq">FAQ</a><style>body{display:none}</style>'
        '<iframe src="https://evil.example"></iframe><form action="https://evil.example"></form>'
    )
    sent = env.send("anna@example.ch", html_body=html)
    page = get(app, f"/m/{token_for(env, sent.message_id)}")
    assert page.status == 200
    start = page.text.index('<div id="html-body" class="html">') + len(
        '<div id="html-body" class="html">'
    )
    shown = page.text[start : page.text.index("</div>", start)]
    assert shown == (
        '<p>Hello <b>Anna</b></p><a rel="noopener noreferrer nofollow">x</a>'
        '<a href="https://acme.example/faq" rel="noopener noreferrer nofollow">FAQ</a>'
    )


def test_every_page_forbids_scripts_remote_content_framing_and_caching(
    env: Env, app: WebApp
) -> None:
    sent = env.send("anna@example.ch")
    for path in (f"/m/{token_for(env, sent.message_id)}", "/m/not-a-token", "/favicon.ico"):
        headers = get(app, path).headers
        policy = headers["content-security-policy"]
        assert policy.startswith("default-src 'none'; style-src 'sha256-")
        assert "script-src" not in policy and "unsafe" not in policy
        assert "frame-ancestors 'none'" in policy
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"


def tampered(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize("link", ["tampered", "short", "other-message", "empty"])
def test_a_wrong_link_shows_a_plain_page_and_changes_nothing(
    env: Env, app: WebApp, link: str
) -> None:
    sent = env.send("anna@example.ch")
    token = token_for(env, sent.message_id)
    path = {
        "tampered": f"/m/{tampered(token)}",
        "short": f"/m/{token[:20]}",
        "other-message": "/m/" + "x" * 43,
        "empty": "/m/",
    }[link]
    page = get(app, path, accept_language="fr-CH, de;q=0.8")
    assert page.status == 404
    assert '<h1 id="notice" data-reason="unknown">Lien non valable</h1>' in page.text
    assert "Traceback" not in page.text and token not in page.text
    assert states(env, sent.message_id) == [RecipientState.QUEUED]


def test_an_expired_message_shows_that_it_expired_and_is_not_opened(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch", expiry_days=1, language=Language.IT)
    env.clock.now += timedelta(days=1)
    page = get(app, f"/m/{token_for(env, sent.message_id)}")
    assert page.status == 410
    assert '<h1 id="notice" data-reason="expired">Messaggio scaduto</h1>' in page.text
    # Which message: a confidential one's link showed its subject, and still does.
    assert '<dt>Da</dt><dd id="about-from">ACME Treuhand AG</dd>' in page.text
    assert '<dd id="about-subject">Lohnabrechnung März</dd>' in page.text
    assert states(env, sent.message_id) == [RecipientState.QUEUED]


def test_an_opened_message_is_no_longer_shown_after_it_expires(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch", expiry_days=1)
    token = token_for(env, sent.message_id)
    assert get(app, f"/m/{token}").status == 200
    env.clock.now += timedelta(days=1, seconds=1)
    assert get(app, f"/m/{token}").status == 410
    assert get(app, f"/m/{token}/1").status == 410
    assert states(env, sent.message_id) == [RecipientState.OPENED]


def test_a_withdrawn_message_says_so_and_who_opened_it_before_keeps_opened(
    env: Env, app: WebApp
) -> None:
    sent = env.send("anna@example.ch", "bert@example.ch", language=Language.EN)
    first, second = (token_for(env, sent.message_id, n) for n in (1, 2))
    assert get(app, f"/m/{first}").status == 200
    env.clock.now += timedelta(minutes=5)
    cancelled = env.service.cancel(env.account, message_id=sent.message_id)
    assert [r.state for r in cancelled.recipients] == [
        RecipientState.OPENED,
        RecipientState.CANCELLED,
    ]
    assert cancelled.recipients[1].state_changed_at == env.clock.now
    page = get(app, f"/m/{second}")
    assert page.status == 410
    assert '<h1 id="notice" data-reason="withdrawn">Message withdrawn</h1>' in page.text
    # Which message: whose and when; not its subject, which the sender took back.
    assert '<dd id="about-from">ACME Treuhand AG</dd>' in page.text
    assert '<dd id="about-received">2 Mar 2026, 09:00 CET</dd>' in page.text
    assert "Lohnabrechnung" not in page.text
    assert 'id="about-subject"' not in page.text
    assert get(app, f"/m/{second}/1").status == 410
    # Who read it before may still read it.
    assert get(app, f"/m/{first}").status == 200


@pytest.mark.parametrize("message_type", [MessageType.PERSONAL, MessageType.REGISTERED])
def test_personal_and_registered_messages_ask_to_register_and_show_nothing(
    env: Env, app: WebApp, message_type: MessageType
) -> None:
    sent = env.send("Anna@Example.ch", type=message_type)
    page = get(app, f"/m/{token_for(env, sent.message_id)}")
    assert page.status == 200
    assert '<h1 id="register">Registrieren</h1>' in page.text
    assert "Diese Nachricht ist nur für anna@example.ch bestimmt." in page.text
    assert "Lohnabrechnung" not in page.text and "Nettolohn" not in page.text
    assert states(env, sent.message_id) == [RecipientState.QUEUED]


def test_the_reader_can_choose_the_language(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch")
    token = token_for(env, sent.message_id)
    page = get(app, f"/m/{token}?lang=fr")
    assert '<html lang="fr">' in page.text
    assert "Message de ACME Treuhand AG" in page.text
    assert f'<a href="/m/{token}?lang=de" hreflang="de" lang="de">Deutsch</a>' in page.text


def test_only_get_is_answered(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch")
    link = f"/m/{token_for(env, sent.message_id)}"
    # HEAD too (a mail scanner's check of the link must not open the message), and
    # OPTIONS, which the web framework would otherwise answer for every page.
    for method in ("POST", "HEAD", "OPTIONS", "PUT"):
        response = get(app, link, method=method)
        assert (response.status, response.headers["allow"]) == (405, "GET"), method
        assert response.headers["x-frame-options"] == "DENY"
    assert get(app, f"{link}/login").headers["allow"] == "POST"
    assert states(env, sent.message_id) == [RecipientState.QUEUED]


def test_a_recipient_who_opened_stays_opened_when_the_send_is_recorded_late(
    env: Env, app: WebApp
) -> None:
    """The mail arrived and was read before the worker recorded its 250."""
    from soap_service.domain.delivery import Decision, DeliveryResult

    sent = env.send("anna@example.ch")
    store = env.database.store()
    try:
        [job] = store.claim_due(
            "worker-1",
            now=env.clock.now,
            lease_until=env.clock.now + timedelta(minutes=2),
            limit=10,
        )
        assert get(app, f"/m/{token_for(env, sent.message_id)}").status == 200
        store.record_results(
            "worker-1",
            [
                DeliveryResult(
                    job=job,
                    decision=Decision(
                        state=RecipientState.SENT, next_attempt_at=None, detail="250 OK"
                    ),
                    attempted_at=env.clock.now,
                )
            ],
        )
    finally:
        store.close()
    assert states(env, sent.message_id) == [RecipientState.OPENED]
    [recipient_id] = env.recipient_ids(sent.message_id)
    assert [kind for kind, _ in env.journal(recipient_id)] == ["queued", "opened", "late-attempt"]


def test_a_database_that_is_away_gets_a_plain_page_to_try_again(
    env: Env, app: WebApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soap_service.errors import Unavailable
    from soap_service.persistence.store import SqlStore

    sent = env.send("anna@example.ch", language=Language.EN)
    token = token_for(env, sent.message_id)

    def away(self: SqlStore, token_hash: bytes) -> None:
        raise Unavailable("the database is unavailable; retry later")

    monkeypatch.setattr(SqlStore, "find_pickup", away)
    page = get(app, f"/m/{token}", accept_language="en")
    assert page.status == 503
    assert '<h1 id="notice" data-reason="unavailable">Temporarily unavailable</h1>' in page.text
    monkeypatch.undo()
    assert get(app, f"/m/{token}").status == 200


def test_every_page_names_the_operator_and_links_its_legal_pages(
    env: Env, app: WebApp, tmp_path: Path
) -> None:
    sent = env.send("anna@example.ch", language=Language.FR)
    # The default: the software's name, nothing more.
    page = get(app, f"/m/{token_for(env, sent.message_id)}")
    assert '<p class="operator" id="operator">soap-service</p>' in page.text

    settings = load_settings(
        {
            "SOAP_SERVICE_DATA_DIR": str(tmp_path),
            "SOAP_SERVICE_DATABASE_URL": env.database.url,
            "SOAP_SERVICE_PUBLIC_URL": PUBLIC_URL,
            "SOAP_SERVICE_OPERATOR_NAME": "Beispiel Post",
            "SOAP_SERVICE_OPERATOR_ADDRESS": "Beispiel Post AG; 3030 Bern",
            "SOAP_SERVICE_OPERATOR_IMPRINT_URL": "https://post.example.ch/impressum",
            "SOAP_SERVICE_OPERATOR_PRIVACY_URL": "https://post.example.ch/datenschutz",
        }
    )
    container = Container(settings, database=env.database)
    container.now = env.clock
    operated = container.wsgi_app()
    expected = (
        '<p class="operator" id="operator">Beispiel Post, Beispiel Post AG, 3030 Bern'
        ' · <a href="https://post.example.ch/impressum">{imprint}</a>'
        ' · <a href="https://post.example.ch/datenschutz">{privacy}</a></p>'
    )
    message = get(operated, f"/m/{token_for(env, sent.message_id)}")
    assert message.status == 200
    assert expected.format(imprint="Mentions légales", privacy="Protection des données") in (
        message.text
    )
    login = get(operated, "/account/login?lang=de")
    assert expected.format(imprint="Impressum", privacy="Datenschutz") in login.text
    unknown = get(operated, "/m/" + "A" * 43)
    assert unknown.status == 404 and "Beispiel Post, Beispiel Post AG" in unknown.text


def test_without_a_metrics_token_there_is_no_metrics_page(env: Env, app: WebApp) -> None:
    page = get(app, "/metrics")
    assert page.status == 404
    assert "soap_service_" not in page.text
