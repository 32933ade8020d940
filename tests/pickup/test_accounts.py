"""Personal and registered messages: registration with consent, login, sessions, CSRF,
the login lock, accept and refuse, auto-accept and logout, through the WSGI application
on a real database."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from soap_service import crypto
from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.pickup import LOGIN_LOCK, MAX_FAILED_LOGINS, SESSION_LIFETIME
from soap_service.persistence.tables import PickupSessionRow, RecipientAccountRow
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import Browser, Response, token_for

PASSWORD = "correct horse battery"
SESSION = "__Host-pickup-session"
CSRF = "__Host-pickup-csrf"


def states(env: Env, message_id: str) -> list[RecipientState]:
    return [r.state for r in env.status(message_id).recipients]


def accounts(env: Env) -> list[tuple[str, str, bool]]:
    with env.database.engine.connect() as connection:
        rows = connection.execute(select(RecipientAccountRow)).all()
    return [(row.address, row.password_hash, row.consent_at is not None) for row in rows]


def register(browser: Browser, token: str, password: str = PASSWORD, **extra: str) -> Response:
    form = browser.get(f"/m/{token}")
    fields = {"csrf": form.csrf(), "password": password, "repeated": password, "consent": "yes"}
    fields.update(extra)
    return browser.post(f"/m/{token}/register", fields)


def login(browser: Browser, token: str, password: str = PASSWORD) -> Response:
    form = browser.get(f"/m/{token}")
    assert '<h1 id="login">' in form.text
    return browser.post(f"/m/{token}/login", {"csrf": form.csrf(), "password": password})


def test_registering_from_a_personal_link_opens_it_and_keeps_only_a_hash(
    env: Env, app: WebApp
) -> None:
    sent = env.send("Anna@Example.ch", type=MessageType.PERSONAL)
    token = token_for(env, sent.message_id)
    browser = Browser(app)

    done = register(browser, token)
    assert done.status == 303
    assert done.headers["location"] == f"/m/{token}"
    [session_cookie] = [c for c in done.cookies if c.startswith(SESSION)]
    attributes = set(session_cookie.split("; ")[1:])
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=1800"} <= attributes
    assert not any(attribute.startswith("Domain=") for attribute in attributes)  # host-only
    [(address, password_hash, consented)] = accounts(env)
    assert (address, consented) == ("anna@example.ch", True)
    assert PASSWORD not in password_hash and crypto.verify_password(PASSWORD, password_hash)
    with env.database.engine.connect() as connection:
        [stored] = connection.execute(select(PickupSessionRow.token_hash)).scalars().all()
    assert stored == crypto.sha256(browser.cookies[SESSION].encode())

    page = browser.get(f"/m/{token}")
    assert page.status == 200
    assert '<h1 id="subject">Lohnabrechnung März</h1>' in page.text
    assert '<span id="account">Angemeldet als anna@example.ch</span>' in page.text
    assert states(env, sent.message_id) == [RecipientState.OPENED]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"password": "short", "repeated": "short"}, "mindestens 10 Zeichen"),
        ({"repeated": PASSWORD + "!"}, "stimmen nicht überein"),
        ({"consent": ""}, "Bitte geben Sie Ihr Einverständnis"),
    ],
)
def test_a_registration_that_is_not_complete_creates_nothing(
    env: Env, app: WebApp, fields: dict[str, str], error: str
) -> None:
    sent = env.send("anna@example.ch", type=MessageType.PERSONAL)
    browser = Browser(app)
    answer = register(browser, token_for(env, sent.message_id), **fields)
    assert answer.status == 400
    assert error in answer.text
    assert SESSION not in browser.cookies
    assert accounts(env) == []
    assert states(env, sent.message_id) == [RecipientState.QUEUED]
    # The rule is said beside the field, before anyone breaks it; a consent given stays.
    assert '<p id="password-rule" class="hint">Mindestens 10 Zeichen.</p>' in answer.text
    consent_box = re.search(r'<input id="consent"[^>]*>', answer.text)
    assert consent_box is not None
    assert ("checked" in consent_box.group()) is (fields.get("consent", "yes") == "yes")


def test_the_registration_form_says_the_password_rule_before_it_is_sent(
    env: Env, app: WebApp
) -> None:
    sent = env.send("anna@example.ch", type=MessageType.PERSONAL)
    form = Browser(app).get(f"/m/{token_for(env, sent.message_id)}")
    assert form.status == 200
    assert '<p id="password-rule" class="hint">Mindestens 10 Zeichen.</p>' in form.text
    assert 'aria-describedby="password-rule"' in form.text
    assert '<input id="consent" name="consent" type="checkbox" value="yes">' in form.text


def test_a_second_registration_is_refused_and_the_password_stays(env: Env, app: WebApp) -> None:
    first = env.send("anna@example.ch", type=MessageType.PERSONAL)
    second = env.send("anna@example.ch", type=MessageType.PERSONAL)
    register(Browser(app), token_for(env, first.message_id))
    [(_, password_hash, _)] = accounts(env)

    # Someone with the second link tries to register again (a forged form, since the page
    # itself now asks to log in).
    intruder = Browser(app)
    second_token = token_for(env, second.message_id)
    page = intruder.get(f"/m/{second_token}")
    assert '<h1 id="login">' in page.text
    answer = intruder.post(
        f"/m/{second_token}/register",
        {
            "csrf": page.csrf(),
            "password": "another password",
            "repeated": "another password",
            "consent": "yes",
        },
    )
    assert answer.status == 409
    assert 'data-reason="exists"' in answer.text
    assert accounts(env) == [("anna@example.ch", password_hash, True)]
    assert intruder.get(f"/m/{second_token}/register").status == 409
    assert login(Browser(app), second_token).status == 303


def test_a_later_personal_message_asks_to_log_in(env: Env, app: WebApp) -> None:
    first = env.send("anna@example.ch", type=MessageType.PERSONAL)
    register(Browser(app), token_for(env, first.message_id))
    later = env.send("anna@example.ch", type=MessageType.PERSONAL, subject="Lohnausweis 2026")
    token = token_for(env, later.message_id)
    browser = Browser(app)

    wrong = login(browser, token, "wrong password")
    assert wrong.status == 401
    assert '<p id="error" class="error" role="alert">Das Passwort ist falsch.</p>' in wrong.text
    assert states(env, later.message_id) == [RecipientState.QUEUED]

    assert login(browser, token).status == 303
    page = browser.get(f"/m/{token}")
    assert '<h1 id="subject">Lohnausweis 2026</h1>' in page.text
    assert states(env, later.message_id) == [RecipientState.OPENED]


def test_too_many_wrong_passwords_lock_the_account_for_a_while(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch", type=MessageType.PERSONAL)
    token = token_for(env, sent.message_id)
    register(Browser(app), token)
    browser = Browser(app)
    for _ in range(MAX_FAILED_LOGINS):
        assert login(browser, token, "guess the password").status == 401
    locked = login(browser, token)  # even the right password, while locked
    assert locked.status == 429
    assert "Zu viele falsche Passwörter" in locked.text
    assert SESSION not in browser.cookies

    env.clock.now += LOGIN_LOCK
    assert login(browser, token).status == 303
    # A success starts the count again.
    assert login(Browser(app), token, "guess the password").status == 401
    assert login(Browser(app), token).status == 303


@pytest.mark.parametrize("csrf", ["missing", "wrong", "no-cookie"])
def test_a_form_without_the_right_csrf_token_is_refused(env: Env, app: WebApp, csrf: str) -> None:
    sent = env.send("anna@example.ch", type=MessageType.PERSONAL)
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    page = browser.get(f"/m/{token}")
    fields = {"password": PASSWORD, "repeated": PASSWORD, "consent": "yes"}
    if csrf == "wrong":
        fields["csrf"] = crypto.new_secret_token()
    elif csrf == "no-cookie":  # the form of another browser, posted from elsewhere
        fields["csrf"] = page.csrf()
        browser.cookies.pop(CSRF)
    answer = browser.post(f"/m/{token}/register", fields)
    assert answer.status == 403
    assert 'data-reason="csrf"' in answer.text
    assert accounts(env) == []


def test_a_session_of_another_address_does_not_open_the_message(env: Env, app: WebApp) -> None:
    anna = env.send("anna@example.ch", type=MessageType.PERSONAL)
    bert = env.send("bert@example.ch", type=MessageType.PERSONAL)
    browser = Browser(app)
    register(browser, token_for(env, anna.message_id))
    page = browser.get(f"/m/{token_for(env, bert.message_id)}")
    assert '<h1 id="register">' in page.text
    assert "Lohnabrechnung" not in page.text
    assert states(env, bert.message_id) == [RecipientState.QUEUED]


def test_a_session_ends_after_its_lifetime_and_with_logout(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch", type=MessageType.PERSONAL)
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    register(browser, token)
    env.clock.now += SESSION_LIFETIME
    assert '<h1 id="login">' in browser.get(f"/m/{token}").text

    login(browser, token)
    page = browser.get(f"/m/{token}")
    assert '<h1 id="subject">' in page.text
    out = browser.post(f"/m/{token}/logout", {"csrf": page.csrf()})
    assert out.status == 303
    assert SESSION not in browser.cookies
    with env.database.engine.connect() as connection:
        remaining = connection.execute(select(PickupSessionRow)).all()
    assert len(remaining) == 0  # the expired one was forgotten at the next login
    assert '<h1 id="login">' in browser.get(f"/m/{token}").text


# Registered messages.


def test_a_registered_message_shows_only_sender_and_subject_until_accepted(
    env: Env, app: WebApp
) -> None:
    sent = env.send("anna@example.ch", type=MessageType.REGISTERED)
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    register(browser, token)

    decision = browser.get(f"/m/{token}")
    assert decision.status == 200
    assert '<h1 id="decide">Eingeschriebene Nachricht</h1>' in decision.text
    assert '<p id="subject">Lohnabrechnung März</p>' in decision.text
    assert "Nettolohn" not in decision.text
    assert browser.get(f"/m/{token}/1").status == 404  # no attachment before accepting
    assert states(env, sent.message_id) == [RecipientState.QUEUED]

    accepted = browser.post(f"/m/{token}/decision", {"csrf": decision.csrf(), "choice": "accept"})
    assert accepted.status == 303
    page = browser.get(f"/m/{token}")
    assert "Ihr Nettolohn beträgt" in page.text
    assert states(env, sent.message_id) == [RecipientState.ACCEPTED]
    [recipient_id] = env.recipient_ids(sent.message_id)
    assert env.journal(recipient_id)[1:] == [("accepted", "accepted by the recipient")]


@pytest.mark.parametrize("choice", [None, "", "maybe"])
def test_a_decision_without_a_clear_choice_changes_nothing(
    env: Env, app: WebApp, choice: str | None
) -> None:
    sent = env.send("anna@example.ch", type=MessageType.REGISTERED)
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    register(browser, token)
    decision = browser.get(f"/m/{token}")
    fields = {"csrf": decision.csrf()} | ({} if choice is None else {"choice": choice})
    assert browser.post(f"/m/{token}/decision", fields).status == 303
    assert '<h1 id="decide">' in browser.get(f"/m/{token}").text  # still asked
    assert states(env, sent.message_id) == [RecipientState.QUEUED]


def test_refusing_a_registered_message_never_shows_it(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch", type=MessageType.REGISTERED)
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    register(browser, token)
    decision = browser.get(f"/m/{token}")
    # The first click asks again, saying which message and what follows; nothing changes.
    asked = browser.post(f"/m/{token}/decision", {"csrf": decision.csrf(), "choice": "refuse"})
    assert asked.status == 200 and '<h1 id="refuse-confirm">Nachricht ablehnen?</h1>' in asked.text
    assert 'name="choice" value="refuse-confirmed"' in asked.text
    assert states(env, sent.message_id) == [RecipientState.QUEUED]
    confirmed = {"csrf": decision.csrf(), "choice": "refuse-confirmed"}
    assert browser.post(f"/m/{token}/decision", confirmed).status == 303

    page = browser.get(f"/m/{token}")
    assert page.status == 410
    assert '<h1 id="notice" data-reason="refused">Nachricht abgelehnt</h1>' in page.text
    assert '<dt>Von</dt><dd id="about-from">ACME Treuhand AG</dd>' in page.text
    assert 'id="about-received"' in page.text
    assert 'id="about-subject"' not in page.text  # a registered one's needed a login
    assert "Nettolohn" not in page.text
    assert states(env, sent.message_id) == [RecipientState.REFUSED]
    # Final: accepting afterwards changes nothing.
    browser.post(f"/m/{token}/decision", {"csrf": decision.csrf(), "choice": "accept"})
    assert states(env, sent.message_id) == [RecipientState.REFUSED]


def test_auto_accept_opens_later_registered_messages_at_once(env: Env, app: WebApp) -> None:
    first = env.send("anna@example.ch", type=MessageType.REGISTERED)
    token = token_for(env, first.message_id)
    browser = Browser(app)
    register(browser, token)
    decision = browser.get(f"/m/{token}")
    browser.post(
        f"/m/{token}/decision", {"csrf": decision.csrf(), "choice": "accept", "always": "yes"}
    )
    later = env.send("anna@example.ch", type=MessageType.REGISTERED, subject="Bonus")
    page = browser.get(f"/m/{token_for(env, later.message_id)}")
    assert '<h1 id="subject">Bonus</h1>' in page.text
    assert states(env, later.message_id) == [RecipientState.ACCEPTED]
    [recipient_id] = env.recipient_ids(later.message_id)
    assert env.journal(recipient_id)[1:] == [("accepted", "accepted automatically")]


def test_a_registered_message_not_decided_in_time_expires(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch", type=MessageType.REGISTERED, expiry_days=7)
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    register(browser, token)
    env.clock.now += timedelta(days=7)
    page = browser.get(f"/m/{token}")
    assert page.status == 410
    assert 'data-reason="expired"' in page.text
    late = browser.post(f"/m/{token}/decision", {"csrf": browser.cookies[CSRF], "choice": "accept"})
    assert late.status == 410
    assert states(env, sent.message_id) == [RecipientState.QUEUED]  # the sweep makes it expired


def test_a_confidential_link_cannot_claim_the_addresss_account(env: Env, app: WebApp) -> None:
    """Confidential links may be passed on: they prove nothing about the mailbox."""
    sent = env.send("anna@example.ch")
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    page = browser.get(f"/m/{token}")
    assert "register" not in page.text.lower()
    assert browser.get(f"/m/{token}/register").status == 404
    fields = {"csrf": browser.cookies[CSRF], "password": PASSWORD, "repeated": PASSWORD}
    answer = browser.post(f"/m/{token}/register", {**fields, "consent": "yes"})
    assert answer.status == 404
    assert accounts(env) == []


@pytest.mark.parametrize("cookie", [None, "\0", ""])
def test_a_csrf_token_without_a_real_cookie_is_refused(
    env: Env, app: WebApp, cookie: str | None
) -> None:
    from tests.pickup.conftest import get

    sent = env.send("anna@example.ch", type=MessageType.PERSONAL)
    token = token_for(env, sent.message_id)
    headers = {} if cookie is None else {"cookie": f"{CSRF}={cookie}"}
    answer = get(
        app,
        f"/m/{token}/logout",
        method="POST",
        body=b"csrf=%00",
        content_type="application/x-www-form-urlencoded",
        **headers,
    )
    assert answer.status == 403
    assert 'data-reason="csrf"' in answer.text


def test_a_token_with_line_breaks_never_reaches_a_header(env: Env, app: WebApp) -> None:
    from tests.pickup.conftest import get

    browser = Browser(app)
    browser.get("/m/" + "x" * 43)  # a CSRF cookie
    answer = browser.post("/m/abc\r\nX-Evil: 1/logout", {"csrf": browser.cookies[CSRF]})
    assert answer.status == 404
    assert all("X-Evil" not in value for _, value in answer.header_list)
    assert get(app, "/m/abc%0d%0a/logout", method="POST").status == 404


def test_the_language_the_reader_picked_stays_through_the_forms(env: Env, app: WebApp) -> None:
    sent = env.send("anna@example.ch", type=MessageType.PERSONAL)
    token = token_for(env, sent.message_id)
    browser = Browser(app)
    form = browser.get(f"/m/{token}?lang=fr")
    assert f'action="/m/{token}/register?lang=fr"' in form.text
    fields = {"csrf": form.csrf(), "password": "short", "repeated": "short", "consent": "yes"}
    refused = browser.post(f"/m/{token}/register?lang=fr", fields)
    assert refused.status == 400
    assert "Le mot de passe doit comporter au moins 10 caractères." in refused.text
    fields.update(password=PASSWORD, repeated=PASSWORD)
    done = browser.post(f"/m/{token}/register?lang=fr", fields)
    assert (done.status, done.headers["location"]) == (303, f"/m/{token}?lang=fr")
    opened = browser.get(done.headers["location"])
    assert '<html lang="fr">' in opened.text
    assert f'action="/m/{token}/logout?lang=fr"' in opened.text
    out = browser.post(f"/m/{token}/logout?lang=fr", {"csrf": browser.cookies[CSRF]})
    assert out.headers["location"] == f"/m/{token}?lang=fr"
    login_form = browser.get(out.headers["location"])
    assert '<h1 id="login">Connexion</h1>' in login_form.text
