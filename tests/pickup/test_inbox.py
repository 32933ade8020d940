"""A person's inbox on the site: log in with the mailbox's account, see the messages that
came to it (and no one else's), open one through its own link, log out; through the WSGI
application on a real database."""

from __future__ import annotations

import csv
import io
import re

from soap_service import crypto
from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.pickup import MAX_FAILED_LOGINS
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import Browser, Response, token_for

PASSWORD = "correct horse battery"
SESSION = "__Host-pickup-session"
CSRF = "__Host-pickup-csrf"


def with_account(env: Env, address: str) -> None:
    store = env.database.store()
    try:
        store.add_recipient_account(
            address=address, password_hash=crypto.hash_password(PASSWORD), now=env.clock.now
        )
    finally:
        store.close()


def log_in(browser: Browser, address: str, password: str = PASSWORD, query: str = "") -> Response:
    form = browser.get(f"/account/login{query}")
    assert '<h1 id="login">' in form.text
    fields = {"csrf": form.csrf(), "address": address, "password": password}
    return browser.post(f"/account/login{query}", fields)


def subjects(page: Response) -> list[str]:
    return re.findall(r'<a class="subject" href="[^"]+">([^<]+)</a>', page.text)


def test_a_person_sees_the_messages_of_the_mailbox_newest_first_and_opens_one(
    env: Env, app: WebApp
) -> None:
    with_account(env, "anna@example.ch")
    first = env.send("Anna@Example.ch", type=MessageType.PERSONAL, subject="Lohn Oktober")
    env.clock.advance(minutes=1)
    env.send("bert@example.ch", subject="Bert's payslip")
    env.clock.advance(minutes=1)
    env.send("anna@example.ch", "bert@example.ch", subject="Lohn November")
    browser = Browser(app)
    assert browser.get("/account").headers["location"] == "/account/login"

    done = log_in(browser, " ANNA@example.ch ")
    assert (done.status, done.headers["location"]) == (303, "/account")
    inbox = browser.get("/account")
    assert inbox.status == 200
    assert subjects(inbox) == ["Lohn November", "Lohn Oktober"]  # not Bert's
    assert '<span id="account">Angemeldet als anna@example.ch</span>' in inbox.text
    assert "Persönlich" in inbox.text and "Vertraulich" in inbox.text

    # The entry's link is the recipient's own: it opens the personal message at once,
    # with the session of the site.
    link = f"/m/{token_for(env, first.message_id)}"
    assert f'href="{link}"' in inbox.text
    opened = browser.get(link)
    assert '<h1 id="subject">Lohn Oktober</h1>' in opened.text
    assert [r.state for r in env.status(first.message_id).recipients] == [RecipientState.OPENED]
    assert '<span class="state">Geöffnet</span>' in browser.get("/account").text

    out = browser.post("/account/logout", {"csrf": browser.cookies[CSRF]})
    assert (out.status, out.headers["location"]) == (303, "/account/login")
    assert SESSION not in browser.cookies
    assert browser.get("/account").status == 303


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    wrong = log_in(Browser(app), "anna@example.ch", "not the password")
    unknown = log_in(Browser(app), "nobody@example.ch", PASSWORD)
    for answer in (wrong, unknown):
        assert answer.status == 401
        assert "Die Adresse oder das Passwort ist falsch." in answer.text
        assert not any(cookie.startswith(SESSION) for cookie in answer.cookies)
    assert wrong.text.replace("anna", "nobody") == unknown.text.replace(
        unknown.csrf(), wrong.csrf()
    )


def test_the_account_locks_after_too_many_wrong_passwords(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    for _ in range(MAX_FAILED_LOGINS):
        assert log_in(Browser(app), "anna@example.ch", "wrong password").status == 401
    locked = log_in(Browser(app), "anna@example.ch")  # the right one, too late
    assert locked.status == 429
    assert "Zu viele falsche Passwörter" in locked.text


def test_forms_without_the_csrf_token_change_nothing(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    browser.get("/account/login")
    forged = browser.post("/account/login", {"address": "anna@example.ch", "password": PASSWORD})
    assert forged.status == 403
    assert not any(cookie.startswith(SESSION) for cookie in forged.cookies)
    assert log_in(browser, "anna@example.ch").status == 303
    assert browser.post("/account/logout", {"csrf": "x" * 43}).status == 403
    assert browser.get("/account").status == 200  # still logged in


def test_an_empty_inbox_and_the_readers_language(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    browser = Browser(app)
    done = log_in(browser, "anna@example.ch", query="?lang=fr")
    assert done.headers["location"] == "/account?lang=fr"
    inbox = browser.get(done.headers["location"])
    assert '<html lang="fr">' in inbox.text
    assert "Aucun message n'est encore arrivé à cette adresse." in inbox.text


def test_guesses_across_many_addresses_from_one_client_are_held_up(env: Env, app: WebApp) -> None:
    """The account lock guards one address; typed addresses are counted by client too
    (20 free failures, then a wait), so password spraying over many addresses stalls."""
    with_account(env, "anna@example.ch")
    for n in range(20):
        assert log_in(Browser(app), f"guess{n}@example.ch", "Sommer2026!").status == 401
    held = log_in(Browser(app), "anna@example.ch")  # even the right password, from here
    assert held.status == 429
    assert "Zu viele falsche Passwörter von hier aus." in held.text
    assert not any(cookie.startswith(SESSION) for cookie in held.cookies)
    env.clock.advance(seconds=2)  # the first wait over, the right password works
    assert log_in(Browser(app), "anna@example.ch").status == 303


def test_the_inbox_filters_pages_and_exports_what_came(env: Env, app: WebApp) -> None:
    with_account(env, "anna@example.ch")
    for number in range(51):
        env.send("anna@example.ch", subject=f"Lohnabrechnung {number:02d}")
        env.clock.advance(seconds=1)
    env.send("anna@example.ch", type=MessageType.REGISTERED, subject="=Kündigung")
    browser = Browser(app)
    log_in(browser, "anna@example.ch")

    first = browser.get("/account")
    assert len(subjects(first)) == 50 and subjects(first)[0] == "=Kündigung"
    older = re.search(r'<a id="next" href="([^"]+)">', first.text)
    assert older
    assert subjects(browser.get(older[1].replace("&amp;", "&"))) == [
        "Lohnabrechnung 01",
        "Lohnabrechnung 00",
    ]
    assert subjects(browser.get("/account?type=registered")) == ["=Kündigung"]
    assert subjects(browser.get("/account?words=abrechnung+07")) == ["Lohnabrechnung 07"]
    assert subjects(browser.get("/account?state=opened")) == []
    assert 'id="empty"' in browser.get("/account?from=2030-01-01").text
    for bad in ("state=lost", "from=yesterday", "cursor=forged", "cursor=" + "9" * 19 + ".1"):
        assert browser.get(f"/account?{bad}").status == 400, bad

    export = browser.get("/account/received.csv?type=registered")
    rows = list(csv.reader(io.StringIO(export.body.decode("utf-8-sig"))))
    assert rows[0] == ["MessageId", "Sender", "Type", "Subject", "ReceivedAt", "State"]
    assert [row[1:4] + row[5:] for row in rows[1:]] == [
        [env.account.organisation, "registered", "'=Kündigung", "queued"]
    ]
    assert len(browser.get("/account/received.csv").body.decode().splitlines()) == 53
    assert Browser(app).get("/account/received.csv").headers["location"] == "/account/login"
