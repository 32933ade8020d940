"""A person's settings: a second factor (TOTP, RFC 6238) that every login then asks for,
on the site, on a message's link and after a password reset; and the time zone their
pages' times are shown in. Through the WSGI application on a real database; the codes are
computed here from the key the page shows, as an authenticator app does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from datetime import UTC, datetime

import pytest

from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.model import MessageType
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import Browser, Response, token_for
from tests.pickup.test_inbox import PASSWORD, log_in, with_account
from tests.smtp_sink import SmtpSink

CSRF = "__Host-pickup-csrf"


def totp(key_text: str, moment: datetime) -> str:
    """RFC 6238 as an app computes it (SHA-1, 6 digits, 30 s), written out here."""
    key = base64.b32decode(key_text.replace(" ", "") + "=" * (-len(key_text.replace(" ", "")) % 8))
    counter = int(moment.timestamp()) // 30
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def turn_on(env: Env, browser: Browser) -> str:
    """Turn the second factor on; the key the page showed."""
    page = browser.get("/account/two-factor")
    assert page.status == 200
    key = re.search(r'<code id="key" class="key">([A-Z2-7 ]+)</code>', page.text)
    pending = re.search(r'name="pending" value="([^"]+)"', page.text)
    assert key and pending
    assert f"otpauth://totp/soap-service:{'anna%40example.ch'}?" in page.text.replace("&amp;", "&")
    fields = {"csrf": page.csrf(), "pending": pending[1]}
    wrong = browser.post("/account/two-factor", {**fields, "code": "000000"})
    assert wrong.status == 401
    done = browser.post("/account/two-factor", {**fields, "code": totp(key[1], env.clock())})
    assert done.headers["location"] == "/account/settings?done=two-factor-on"
    return key[1]


def code_step(response: Response) -> dict[str, str]:
    """The hidden fields of the code page a login stopped at."""
    assert response.status in (200, 401), response.text
    assert 'id="second-factor"' in response.text, response.text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', response.text))
    return fields


def test_a_login_with_the_second_factor_on_asks_for_a_fresh_code(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    log_in(browser, "anna@example.ch")
    key = turn_on(env, browser)
    assert "Eingeschaltet" in browser.get("/account/settings").text

    env.clock.advance(seconds=30)
    other = Browser(app)
    stopped = log_in(other, "anna@example.ch")
    fields = code_step(stopped)
    assert fields["next"] == "/account" and session_of(other) is None
    wrong = other.post("/account/login/code", {**fields, "code": "123456"})
    assert wrong.status == 401 and "Der Code ist falsch" in wrong.text
    code = totp(key, env.clock())
    done = other.post("/account/login/code", {**code_step(wrong), "code": code})
    assert (done.status, done.headers["location"]) == (303, "/account")
    assert other.get("/account").status == 200
    # The same code does not log in twice.
    again = Browser(app)
    replay = again.post(
        "/account/login/code", {**code_step(log_in(again, "anna@example.ch")), "code": code}
    )
    assert replay.status == 401
    # A login token is good for 5 minutes.
    late = Browser(app)
    stale = code_step(log_in(late, "anna@example.ch"))
    env.clock.advance(minutes=6)
    expired = late.post("/account/login/code", {**stale, "code": totp(key, env.clock())})
    assert expired.headers["location"] == "/account/login"
    # A forged token and a foreign `next` lead nowhere.
    forged = late.post("/account/login/code", {**stale, "token": "A" * 30, "code": "1"})
    assert forged.headers["location"] == "/account/login"
    fresh = code_step(log_in(late, "anna@example.ch"))
    env.clock.advance(seconds=30)
    away = {**fresh, "next": "https://evil.example/x", "code": totp(key, env.clock())}
    assert late.post("/account/login/code", away).headers["location"] == "/account"


def session_of(browser: Browser) -> str | None:
    return browser.cookies.get("__Host-pickup-session")


def test_a_message_link_and_a_password_reset_ask_for_the_code_too(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    log_in(browser, "anna@example.ch")
    key = turn_on(env, browser)
    env.clock.advance(seconds=30)

    message = env.send("anna@example.ch", type=MessageType.PERSONAL, subject="Lohn")
    link = f"/m/{token_for(env, message.message_id)}"
    reader = Browser(app)
    form = reader.get(link)
    stopped = reader.post(f"{link}/login", {"csrf": form.csrf(), "password": PASSWORD})
    fields = code_step(stopped)
    assert fields["next"] == link
    opened = reader.post("/account/login/code", {**fields, "code": totp(key, env.clock())})
    assert opened.headers["location"] == link
    assert '<h1 id="subject">Lohn</h1>' in reader.get(link).text


def test_turning_it_off_needs_the_password_and_a_code(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    log_in(browser, "anna@example.ch")
    key = turn_on(env, browser)
    env.clock.advance(seconds=30)
    settings = browser.get("/account/settings")
    fields = {"csrf": settings.csrf(), "current": PASSWORD, "code": totp(key, env.clock())}
    assert browser.post("/account/two-factor/off", {**fields, "current": "wrong"}).status == 401
    assert browser.post("/account/two-factor/off", {**fields, "code": "000000"}).status == 401
    done = browser.post("/account/two-factor/off", fields)
    assert done.headers["location"] == "/account/settings?done=two-factor-off"
    assert log_in(Browser(app), "anna@example.ch").status == 303  # the password alone


@pytest.mark.parametrize(
    ("zone", "shown"),
    [("", "06.12.2026, 17:00 MEZ"), ("America/New_York", "06.12.2026, 11:00 UTC-5")],
)
def test_times_are_shown_in_the_zone_the_person_chose(
    env: Env, app: WebApp, zone: str, shown: str
) -> None:
    env.clock.advance(
        seconds=(datetime(2026, 12, 6, 16, 0, tzinfo=UTC) - env.clock()).total_seconds()
    )
    env.send("anna@example.ch", subject="Lohn Dezember")
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    log_in(browser, "anna@example.ch")
    settings = browser.get("/account/settings")
    saved = browser.post("/account/settings", {"csrf": settings.csrf(), "zone": zone})
    assert saved.headers["location"] == "/account/settings?done=zone"
    assert shown in browser.get("/account").text
    refused = browser.post(
        "/account/settings", {"csrf": browser.cookies[CSRF], "zone": "Mars/Olympus"}
    )
    assert refused.status == 400


def test_a_password_reset_does_not_pass_the_second_factor(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    log_in(browser, "anna@example.ch")
    key = turn_on(env, browser)
    env.clock.advance(seconds=30)

    asker = Browser(app)
    page = asker.get("/account/reset")
    asker.post("/account/reset", {"csrf": page.csrf(), "address": "anna@example.ch"})
    assert worker.send_account_mails() == 1
    mail = [m for m in sink.received if m.recipients == ("anna@example.ch",)][-1]
    body = mail.message.get_body(("plain",))
    assert body is not None
    found = re.search(r"/account/reset/[A-Za-z0-9_-]{43}", str(body.get_content()))
    assert found
    reader = Browser(app)
    reset_form = reader.get(found[0])
    fields = {
        "csrf": reset_form.csrf(),
        "password": "a new long password",
        "repeated": "a new long password",
    }
    stopped = reader.post(found[0], fields)
    step = code_step(stopped)
    assert step["next"] == "/account" and session_of(reader) is None
    done = reader.post("/account/login/code", {**step, "code": totp(key, env.clock())})
    assert (done.status, done.headers["location"]) == (303, "/account")


def test_a_message_page_shows_times_in_the_readers_zone(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    message = env.send("anna@example.ch", type=MessageType.PERSONAL, subject="Lohn")
    browser = Browser(app)
    log_in(browser, "anna@example.ch")
    settings = browser.get("/account/settings")
    browser.post("/account/settings", {"csrf": settings.csrf(), "zone": "Asia/Tokyo"})
    page = browser.get(f"/m/{token_for(env, message.message_id)}")
    received = re.search(r'<dd id="received">([^<]+)</dd>', page.text)
    assert received and received[1] == "02.03.2026, 17:00 UTC+9", page.text
