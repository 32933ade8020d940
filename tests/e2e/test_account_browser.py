"""A person's account in a real browser (Debian's chromium through Playwright) against the
real HTTPS server and delivery worker: sign up with the code from the mail that reached a
real SMTP server, read a personal message, forget the password and set a new one through
the mailed link, change it. Each page photographed at desktop and phone width."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.stack import Stack, new_reference, wait_until
from tests.e2e.test_pickup_browser import (  # noqa: F401 (a fixture)
    PDF,
    WIDTHS,
    browser,
    read_link,
    register_in,
    shoot,
)
from tests.pickup.test_second_factor_and_settings import totp
from tests.smtp_sink import ReceivedMail, SmtpSink

pytestmark = pytest.mark.e2e

CODE = re.compile(r"(\d{4}) (\d{4})")
JOIN_LINK = re.compile(r"https://\S+/account/teams/join/[A-Za-z0-9_-]{43}\?lang=de")
RESET_LINK = re.compile(r"https://\S+/account/reset/[A-Za-z0-9_-]{43}\?lang=de")
FIRST_PASSWORD = "Herbst am Bodensee 2026"
NEW_PASSWORD = "Winter im Jura 2027"
PLAN = "Raum;Fläche\nKüche;12\n".encode()


def mail_to(sink: SmtpSink, address: str, count: int) -> ReceivedMail:
    """The `count`th account mail that reached `address` (waiting for it)."""
    mails = wait_until(
        lambda: [
            m
            for m in sink.received
            if m.recipients == (address,) and m.message_id.startswith("<account-")
        ][count - 1 :],
        f"account mail {count} to {address}",
        timeout=30,
    )
    return mails[0]


def text_of(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def click(page: Any, button: str) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=button).click()


def test_sign_up_read_forget_the_password_reset_it_and_change_it(
    delivering: tuple[Stack, SmtpSink],
    browser: Any,  # noqa: F811
) -> None:
    stack, sink = delivering
    address = f"lea.{uuid.uuid4().hex[:8]}@example.ch"
    site = stack.service.base_url
    stack.client.service.SendMessage(
        Message={
            "Reference": new_reference(),
            "Type": "personal",
            "Recipients": {"Recipient": [{"Address": address}]},
            "Subject": "Arbeitsvertrag",
            "TextBody": "Guten Tag\nIhr Vertrag liegt bei.",
            "Language": "de",
        }
    )

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="de-CH")
    page = context.new_page()
    page.goto(f"{site}/account/login")
    with page.expect_navigation():
        page.get_by_role("link", name="Noch kein Konto? Eröffnen Sie eines").click()
    assert page.locator("#signup").inner_text() == "Konto eröffnen"
    shoot_both(page, "account-signup-de")
    page.fill("#address", address)
    click(page, "Code senden")
    assert page.locator("#sent").inner_text().startswith(f"Wenn {address} E-Mails")
    assert page.input_value("#address") == address
    shoot_both(page, "account-activate-de")

    code = "".join(CODE.findall(text_of(mail_to(sink, address, 1)))[0])
    page.fill("#code", code)
    page.fill("#password", FIRST_PASSWORD)
    page.fill("#repeated", FIRST_PASSWORD)
    page.check("#consent")
    click(page, "Konto eröffnen")
    assert page.url == f"{site}/account"
    with page.expect_navigation():
        page.get_by_text("Arbeitsvertrag", exact=True).click()
    assert page.locator("#subject").inner_text() == "Arbeitsvertrag"
    click(page, "Abmelden")

    # Forgotten: the login page's link, the address, the mailed link, a new password.
    with page.expect_navigation():
        page.get_by_role("link", name="Passwort vergessen?").click()
    shoot_both(page, "account-reset-request-de")
    page.fill("#address", address)
    click(page, "Link senden")
    assert page.locator("#sent").count() == 1
    shoot_both(page, "account-reset-sent-de")
    link = RESET_LINK.search(text_of(mail_to(sink, address, 2)))
    assert link, text_of(mail_to(sink, address, 2))
    page.goto(link[0])
    assert address in page.locator("main").inner_text()
    shoot_both(page, "account-reset-de")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#repeated", NEW_PASSWORD)
    click(page, "Passwort festlegen")
    assert page.url == f"{site}/account?lang=de"  # the mail's link said the language

    with page.expect_navigation():
        page.get_by_role("link", name="Einstellungen").click()
    shoot_both(page, "account-settings-de")
    with page.expect_navigation():
        page.get_by_role("link", name="Zweiten Faktor einschalten").click()
    assert page.locator("#key").inner_text().count(" ") == 7  # 32 base32 letters in 8 groups
    shoot_both(page, "account-two-factor-de")
    page.go_back()
    with page.expect_navigation():
        page.get_by_role("link", name="Passwort ändern").click()
    page.fill("#current", NEW_PASSWORD)
    page.fill("#password", FIRST_PASSWORD)
    page.fill("#repeated", FIRST_PASSWORD)
    click(page, "Passwort ändern")
    assert page.locator("#done").inner_text() == "Ihr Passwort wurde geändert."
    shoot_both(page, "account-password-de")

    # The second factor, by keyboard: turn it on with a code from the key, log out, log
    # in again with the password and the next code.
    with page.expect_navigation():
        page.get_by_role("link", name="Einstellungen").click()
    with page.expect_navigation():
        page.get_by_role("link", name="Zweiten Faktor einschalten").click()
    key = page.locator("#key").inner_text()
    page.fill("#code", totp(key, datetime.now(UTC)))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#two-factor-state").inner_text().startswith("Eingeschaltet")
    click(page, "Abmelden")
    page.goto(f"{site}/account/login")
    page.fill("#address", address)
    page.fill("#password", FIRST_PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("#second-factor").count() == 1
    shoot_both(page, "account-second-factor-de")
    # The step after the one just used: apps and the service allow a step of drift.
    page.fill("#code", totp(key, datetime.now(UTC) + timedelta(seconds=30)))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{site}/account"
    context.close()


def shoot_both(page: Any, name: str) -> None:
    """The page at each width, as it is now (no new request: a form's answer stays)."""
    for device, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 800})
        shoot(page, f"{name}-{device}")
    page.set_viewport_size({"width": WIDTHS["desktop"], "height": 800})


def sign_up(page: Any, sink: SmtpSink, site: str, address: str) -> None:
    """Sign up on the site with the code the mail brings; logged in afterwards."""
    page.goto(f"{site}/account/signup")
    page.fill("#address", address)
    click(page, "Code senden")
    code = "".join(CODE.findall(text_of(mail_to(sink, address, 1)))[0])
    page.fill("#code", code)
    page.fill("#password", FIRST_PASSWORD)
    page.fill("#repeated", FIRST_PASSWORD)
    page.check("#consent")
    click(page, "Konto eröffnen")
    assert page.url == f"{site}/account"


def notification_to(sink: SmtpSink, address: str) -> ReceivedMail:
    return wait_until(
        lambda: next(
            (
                m
                for m in sink.received
                if m.recipients == (address,) and not m.message_id.startswith("<account-")
            ),
            None,
        ),
        f"the notification to {address}",
        timeout=30,
    )


def test_a_person_signs_up_sends_with_two_attachments_and_sees_the_message_opened(
    delivering: tuple[Stack, SmtpSink],
    browser: Any,  # noqa: F811
) -> None:
    stack, sink = delivering
    site = stack.service.base_url
    sender = f"paul.{uuid.uuid4().hex[:8]}@example.ch"
    recipient = f"rita.{uuid.uuid4().hex[:8]}@example.ch"
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="de-CH")
    page = context.new_page()
    sign_up(page, sink, site, sender)

    with page.expect_navigation():
        page.get_by_role("link", name="Neue Nachricht").click()
    page.check("input[name=type][value=personal]")
    page.fill("#recipients", recipient)
    page.fill("#subject", "Offerte Umbau")
    page.fill("#text", "Guten Tag\nDie Offerte und der Plan liegen bei.")
    page.set_input_files(
        "#attachments",
        [
            {"name": "Offerte.pdf", "mimeType": "application/pdf", "buffer": PDF},
            {
                "name": "Plan.csv",
                "mimeType": "text/csv",
                "buffer": "Raum;Fläche\nKüche;12\n".encode(),
            },
        ],
    )
    shoot_both(page, "account-compose-de")
    with page.expect_navigation():  # sent by the page's script, which then shows the result
        page.get_by_role("button", name="Senden").click()
    assert page.url.startswith(f"{site}/account/sent/")
    assert page.locator("#subject").inner_text() == "Offerte Umbau"
    message_page = page.url

    # The recipient: the notification, registration, the message and both attachments.
    reader = browser.new_context(locale="de-CH").new_page()
    mail = notification_to(sink, recipient)
    assert sender in str(mail.message["Subject"])
    reader.goto(read_link(mail.message))
    register_in(reader)
    assert reader.locator("#subject").inner_text() == "Offerte Umbau"
    attachments = reader.locator("#attachments").inner_text()
    assert "Offerte.pdf" in attachments and "Plan.csv" in attachments
    reader.context.close()

    page.goto(message_page)
    assert page.locator("#recipients .state").all_inner_texts() == ["Geöffnet"]
    shoot_both(page, "account-sent-message-de")
    with page.expect_navigation():
        page.get_by_role("link", name="Gesendete Nachrichten").first.click()
    assert "Offerte Umbau" in page.locator("#entries").inner_text()
    shoot_both(page, "account-logbook-de")
    context.close()


def test_a_registered_message_is_refused_from_the_inbox(
    delivering: tuple[Stack, SmtpSink],
    browser: Any,  # noqa: F811
) -> None:
    stack, sink = delivering
    site = stack.service.base_url
    address = f"vera.{uuid.uuid4().hex[:8]}@example.ch"
    sent = stack.client.service.SendMessage(
        Message={
            "Reference": new_reference(),
            "Type": "registered",
            "Recipients": {"Recipient": [{"Address": address}]},
            "Subject": "Mahnung",
            "TextBody": "Guten Tag",
            "Language": "de",
        }
    )
    notification_to(sink, address)
    context = browser.new_context(viewport={"width": 390, "height": 800}, locale="de-CH")
    page = context.new_page()
    sign_up(page, sink, site, address)
    with page.expect_navigation():
        page.get_by_text("Mahnung", exact=True).click()
    assert page.locator("#decide").inner_text() == "Eingeschriebene Nachricht"
    with page.expect_navigation():
        page.get_by_role("button", name="Ablehnen").click()
    assert page.locator("#refuse-confirm").inner_text() == "Nachricht ablehnen?"
    shoot(page, "pickup-refuse-de-phone")
    with page.expect_navigation():
        page.get_by_role("button", name="Ja, ablehnen").click()
    assert page.locator("#notice").inner_text() == "Nachricht abgelehnt"
    page.goto(f"{site}/account")
    assert page.locator("#entries .state").all_inner_texts() == ["Abgelehnt"]
    context.close()
    [refused] = stack.recipients(sent.MessageId)
    assert refused.State == "refused"


def test_a_team_member_sees_the_teams_payroll_runs_and_a_non_member_does_not(
    delivering: tuple[Stack, SmtpSink],
    browser: Any,  # noqa: F811
) -> None:
    stack, sink = delivering
    site = stack.service.base_url
    team = f"Lohnbüro {uuid.uuid4().hex[:6]}"
    owner = f"olga.{uuid.uuid4().hex[:8]}@example.ch"
    stack.service.cli("team", "add", team, "--owner", owner)
    stack.service.cli("team", "add-account", team, stack.username)
    for month in ("Januar", "Februar"):
        stack.client.service.SendMessage(
            Message={
                "Reference": new_reference(),
                "Type": "confidential",
                "Recipients": {"Recipient": [{"Address": "anna.muster@example.ch"}]},
                "Subject": f"Lohnabrechnung {month} {team}",
                "TextBody": "Guten Tag",
                "Language": "de",
            }
        )
    invitation = mail_to(sink, owner, 1)
    link = re.search(
        r"https://\S+/account/teams/join/[A-Za-z0-9_-]{43}\?lang=de", text_of(invitation)
    )
    assert link, text_of(invitation)

    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="de-CH")
    page = context.new_page()
    page.goto(link[0])
    shoot_both(page, "account-team-invitation-de")
    # No account yet: sign up with the invited address, then follow the link again.
    page.goto(f"{site}/account/signup")
    page.fill("#address", owner)
    click(page, "Code senden")
    code = "".join(CODE.findall(text_of(mail_to(sink, owner, 2)))[0])
    page.fill("#code", code)
    page.fill("#password", FIRST_PASSWORD)
    page.fill("#repeated", FIRST_PASSWORD)
    page.check("#consent")
    click(page, "Konto eröffnen")
    page.goto(link[0])
    click(page, "Dem Team beitreten")
    with page.expect_navigation():
        page.get_by_role("link", name="Teams", exact=True).click()
    assert page.locator("#team-list").inner_text().startswith(team)
    shoot_both(page, "account-teams-de")
    with page.expect_navigation():
        page.get_by_role("link", name=team).click()
    assert page.locator("#team").inner_text() == team
    shoot_both(page, "account-team-de")
    with page.expect_navigation():
        page.get_by_role("link", name="Nachrichten des Teams").click()
    runs = page.locator("#entries .subject").all_inner_texts()
    assert runs == [f"Lohnabrechnung Februar {team}", f"Lohnabrechnung Januar {team}"]
    shoot_both(page, "account-team-logbook-de")
    team_logbook = page.url.split("?")[0]
    context.close()

    outsider = browser.new_context(locale="de-CH").new_page()
    sign_up(outsider, sink, site, f"eve.{uuid.uuid4().hex[:8]}@example.ch")
    response = outsider.goto(team_logbook)
    assert response is not None and response.status == 404
    assert team not in outsider.content()
    outsider.context.close()
