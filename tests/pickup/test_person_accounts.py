"""A person's account without a message's link: sign up with the code mailed to the
address, reset a forgotten password with the link mailed to it, change it when logged in.
Through the WSGI application on a real database, the mails sent by a real worker to a real
SMTP server (STARTTLS), and read from what it received."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.model import MessageType
from soap_service.domain.person_accounts import MAX_CODE_TRIES
from soap_service.persistence.tables import account_mails
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import Browser, Response, token_for
from tests.pickup.test_inbox import PASSWORD, log_in, subjects, with_account
from tests.smtp_sink import ReceivedMail, SmtpSink

NEW_PASSWORD = "a new and long password"
CODE = re.compile(r"(\d{4}) (\d{4})")
RESET_LINK = re.compile(r"https://pickup\.example\.ch/account/reset/([A-Za-z0-9_-]{43})\?lang=\w\w")


def mails_to(sink: SmtpSink, address: str) -> list[ReceivedMail]:
    return [mail for mail in sink.received if mail.recipients == (address,)]


def text_of(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def ask(browser: Browser, path: str, address: str, query: str = "") -> Response:
    form = browser.get(f"{path}{query}")
    assert form.status == 200
    return browser.post(f"{path}{query}", {"csrf": form.csrf(), "address": address})


def activate(
    browser: Browser,
    address: str,
    code: str,
    password: str = NEW_PASSWORD,
    *,
    repeated: str | None = None,
    consent: bool = True,
) -> Response:
    form = browser.get(f"/account/activate?address={address}")
    fields = {
        "csrf": form.csrf(),
        "address": address,
        "code": code,
        "password": password,
        "repeated": password if repeated is None else repeated,
    }
    if consent:
        fields["consent"] = "yes"
    return browser.post("/account/activate", fields)


def code_in(sink: SmtpSink, address: str) -> str:
    (mail,) = mails_to(sink, address)
    found = CODE.search(text_of(mail))
    assert found, text_of(mail)
    return found[1] + found[2]


def queued(env: Env) -> int:
    with env.database.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(account_mails)).scalar_one())


def test_sign_up_with_the_code_from_the_mail_then_read_a_personal_message(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    message = env.send("anna@example.ch", type=MessageType.PERSONAL, subject="Lohn Oktober")
    browser = Browser(app)
    asked = ask(browser, "/account/signup", " Anna@Example.ch ")
    assert asked.status == 303
    location = urlsplit(asked.headers["location"])
    assert location.path == "/account/activate"
    assert parse_qs(location.query) == {"address": ["anna@example.ch"], "sent": ["1"]}
    page = browser.get(asked.headers["location"])
    assert "anna@example.ch" in page.text and 'id="sent"' in page.text

    assert worker.send_account_mails() == 1
    (mail,) = mails_to(sink, "anna@example.ch")
    assert mail.tls
    assert mail.message["Subject"] == "Ihr Code für ein Konto für sichere Nachrichten"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    code = code_in(sink, "anna@example.ch")
    assert (
        "https://pickup.example.ch/account/activate?lang=de&address=anna%40example.ch"
        in text_of(mail)
    )

    done = activate(browser, "anna@example.ch", f"{code[:4]} {code[4:]}")
    assert (done.status, done.headers["location"]) == (303, "/account")
    inbox = browser.get("/account")
    assert subjects(inbox) == ["Lohn Oktober"]
    # The account is the one a message's link asks for: the personal message opens.
    opened = browser.get(f"/m/{token_for(env, message.message_id)}")
    assert '<h1 id="subject">Lohn Oktober</h1>' in opened.text
    # A code works once.
    again = activate(Browser(app), "anna@example.ch", code)
    assert again.status == 400 and 'id="error"' in again.text
    # The new password logs in on the login page.
    assert log_in(Browser(app), "anna@example.ch", NEW_PASSWORD).status == 303


def test_a_sign_up_for_an_address_with_an_account_gets_the_same_page_and_a_mail_saying_so(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    with_account(env, "anna@example.ch")
    known = ask(Browser(app), "/account/signup", "anna@example.ch", "?lang=fr")
    unknown = ask(Browser(app), "/account/signup", "bert@example.ch", "?lang=fr")
    assert known.status == unknown.status == 303
    assert known.headers["location"].replace("anna", "bert") == unknown.headers["location"]

    assert worker.send_account_mails() == 2
    (exists,) = mails_to(sink, "anna@example.ch")
    assert exists.message["Subject"] == "Vous avez déjà un compte pour les messages sécurisés"
    assert CODE.search(text_of(exists)) is None
    assert "https://pickup.example.ch/account/reset?lang=fr" in text_of(exists)
    code_in(sink, "bert@example.ch")  # a code for the new address
    # No code was made for the address that has an account: none works for it.
    assert activate(Browser(app), "anna@example.ch", "12345678").status == 400


def test_a_code_takes_five_wrong_tries_then_not_even_the_right_one(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    ask(Browser(app), "/account/signup", "anna@example.ch")
    worker.send_account_mails()
    code = code_in(sink, "anna@example.ch")
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    for _ in range(MAX_CODE_TRIES):
        refused = activate(Browser(app), "anna@example.ch", wrong)
        assert refused.status == 400
        assert "Der Code ist falsch oder nicht mehr gültig" in refused.text
    # The wrong codes also hold up the next try a little, as wrong passwords do.
    assert activate(Browser(app), "anna@example.ch", code).status == 429
    env.clock.advance(minutes=1)
    assert activate(Browser(app), "anna@example.ch", code).status == 400
    # A new code works.
    env.clock.advance(minutes=1)
    ask(Browser(app), "/account/signup", "anna@example.ch")
    worker.send_account_mails()
    newest = CODE.findall(text_of(mails_to(sink, "anna@example.ch")[-1]))[0]
    assert activate(Browser(app), "anna@example.ch", "".join(newest)).status == 303


def test_a_code_expires_after_30_minutes_and_an_expired_mail_is_not_sent(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    ask(Browser(app), "/account/signup", "anna@example.ch")
    ask(Browser(app), "/account/signup", "bert@example.ch")
    assert worker.send_account_mails() == 2
    code = code_in(sink, "anna@example.ch")
    env.clock.advance(minutes=31)
    assert activate(Browser(app), "anna@example.ch", code).status == 400
    ask(Browser(app), "/account/signup", "carla@example.ch")
    env.clock.advance(minutes=31)  # before any worker ran
    assert worker.send_account_mails() == 0
    assert mails_to(sink, "carla@example.ch") == []


@pytest.mark.parametrize(
    ("password", "repeated", "consent", "says"),
    [
        ("short", "short", True, "mindestens 10 Zeichen"),
        (NEW_PASSWORD, NEW_PASSWORD + "!", True, "Die beiden Passwörter stimmen nicht überein"),
        (NEW_PASSWORD, NEW_PASSWORD, False, "Bitte geben Sie Ihr Einverständnis"),
    ],
)
def test_a_password_or_consent_that_does_not_do_keeps_the_code_good(
    env: Env,
    app: WebApp,
    worker: DeliveryWorker,
    sink: SmtpSink,
    password: str,
    repeated: str,
    consent: bool,
    says: str,
) -> None:
    ask(Browser(app), "/account/signup", "anna@example.ch")
    worker.send_account_mails()
    code = code_in(sink, "anna@example.ch")
    refused = activate(
        Browser(app), "anna@example.ch", code, password, repeated=repeated, consent=consent
    )
    assert refused.status == 400 and says in refused.text
    assert activate(Browser(app), "anna@example.ch", code).status == 303


def test_sign_up_requests_are_throttled_by_address(env: Env, app: WebApp) -> None:
    for _ in range(3):
        assert ask(Browser(app), "/account/signup", "anna@example.ch").status == 303
    throttled = ask(Browser(app), "/account/signup", "anna@example.ch")
    assert throttled.status == 429 and 'id="error"' in throttled.text
    assert queued(env) == 3
    assert ask(Browser(app), "/account/signup", "bert@example.ch").status == 303


def test_a_bad_address_is_said_so_and_nothing_is_queued(env: Env, app: WebApp) -> None:
    for path in ("/account/signup", "/account/reset"):
        refused = ask(Browser(app), path, "not an address")
        assert refused.status == 400
        assert "keine gültige E-Mail-Adresse" in refused.text
    assert queued(env) == 0


def test_reset_the_password_with_the_mailed_link(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    with_account(env, "anna@example.ch")
    elsewhere = Browser(app)
    assert log_in(elsewhere, "anna@example.ch").status == 303
    known = ask(Browser(app), "/account/reset", "anna@example.ch", "?lang=it")
    unknown = ask(Browser(app), "/account/reset", "bert@example.ch", "?lang=it")
    assert known.status == unknown.status == 200
    assert known.text.replace("anna", "bert") == unknown.text
    assert worker.send_account_mails() == 1  # none for an address without an account
    (mail,) = mails_to(sink, "anna@example.ch")
    assert (
        mail.message["Subject"] == "Imposti una nuova password per il Suo conto di messaggi sicuri"
    )
    found = RESET_LINK.search(text_of(mail))
    assert found, text_of(mail)
    link = f"/account/reset/{found[1]}"

    browser = Browser(app)
    form = browser.get(link)
    assert form.status == 200 and "anna@example.ch" in form.text
    fields = {"csrf": form.csrf(), "password": NEW_PASSWORD, "repeated": NEW_PASSWORD}
    done = browser.post(link, fields)
    assert (done.status, done.headers["location"]) == (303, "/account")
    assert browser.get("/account").status == 200
    # The old password is gone, and so is every session made with it.
    assert elsewhere.get("/account").status == 303
    assert log_in(Browser(app), "anna@example.ch", PASSWORD).status == 401
    assert log_in(Browser(app), "anna@example.ch", NEW_PASSWORD).status == 303
    # The link works once.
    used = Browser(app).get(link)
    assert used.status == 410 and 'data-reason="reset-invalid"' in used.text
    assert Browser(app).get("/account/reset/" + "A" * 43).status == 410


def test_a_reset_link_expires_after_an_hour(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    with_account(env, "anna@example.ch")
    ask(Browser(app), "/account/reset", "anna@example.ch")
    worker.send_account_mails()
    found = RESET_LINK.search(text_of(mails_to(sink, "anna@example.ch")[0]))
    assert found
    env.clock.advance(minutes=61)
    assert Browser(app).get(f"/account/reset/{found[1]}").status == 410


def test_change_the_password_when_logged_in(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    assert browser.get("/account/password").headers["location"] == "/account/login"
    log_in(browser, "anna@example.ch")
    form = browser.get("/account/password")
    assert form.status == 200
    fields = {"csrf": form.csrf(), "password": NEW_PASSWORD, "repeated": NEW_PASSWORD}
    wrong = browser.post("/account/password", {**fields, "current": "not the password"})
    assert wrong.status == 401 and "Das aktuelle Passwort ist falsch" in wrong.text
    done = browser.post("/account/password", {**fields, "current": PASSWORD})
    assert (done.status, done.headers["location"]) == (303, "/account/password?done=1")
    assert 'id="done"' in browser.get(done.headers["location"]).text
    assert log_in(Browser(app), "anna@example.ch", PASSWORD).status == 401
    assert log_in(Browser(app), "anna@example.ch", NEW_PASSWORD).status == 303


def test_the_login_pages_link_to_the_reset_and_sign_up(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    login = Browser(app).get("/account/login?lang=en")
    assert '<a id="forgot" href="/account/reset?lang=en">' in login.text
    assert '<a id="signup-link" href="/account/signup?lang=en">' in login.text
    message = env.send("anna@example.ch", type=MessageType.PERSONAL)
    pickup_login = Browser(app).get(f"/m/{token_for(env, message.message_id)}")
    assert '<a id="forgot" href="/account/reset">' in pickup_login.text


def test_spent_codes_and_links_are_forgotten_a_day_later(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink
) -> None:
    with_account(env, "anna@example.ch")
    ask(Browser(app), "/account/signup", "bert@example.ch")  # expires in 30 minutes
    ask(Browser(app), "/account/reset", "anna@example.ch")  # in an hour
    assert worker.send_account_mails() == 2
    assert queued(env) == 2
    env.clock.advance(hours=24, minutes=31)
    assert worker.send_account_mails() == 0
    assert queued(env) == 1  # the reset link expired less than a day ago
    env.clock.advance(minutes=30)
    worker.send_account_mails()
    assert queued(env) == 1  # the sweep is hourly
    env.clock.advance(minutes=30)
    worker.send_account_mails()
    assert queued(env) == 0
