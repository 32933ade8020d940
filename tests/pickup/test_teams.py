"""Teams: the operator makes one with its first owner, owners invite by e-mail, members
share the logbook of the team's sender accounts (a payroll program's runs), and to anyone
else the team and its messages do not exist. Through the WSGI application on a real
database, the invitations sent by a real worker to a real SMTP server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from soap_service.container import Container
from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.model import Language, MessageType, RecipientState
from soap_service.domain.teams import Teams
from soap_service.settings import load_settings
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import PUBLIC_URL, Browser, Response
from tests.pickup.test_compose_and_logbook import compose, logged_in, sent_id, stored_states
from tests.smtp_sink import ReceivedMail, SmtpSink

JOIN_LINK = re.compile(r"https://pickup\.example\.ch(/account/teams/join/[A-Za-z0-9_-]{43})\?")


@pytest.fixture
def teams(env: Env, tmp_path: Path) -> Teams:
    """The operator's commands' view (as `soap-service team ...` has it)."""
    settings = load_settings(
        {
            "SOAP_SERVICE_DATA_DIR": str(tmp_path),
            "SOAP_SERVICE_DATABASE_URL": env.database.url,
            "SOAP_SERVICE_PUBLIC_URL": PUBLIC_URL,
        }
    )
    container = Container(settings, database=env.database)
    container.now = env.clock
    return container.teams()


def join_link(sink: SmtpSink, address: str) -> str:
    mails = [m for m in sink.received if m.recipients == (address,)]
    assert mails, f"no mail to {address}"
    found = JOIN_LINK.search(text_of(mails[-1]))
    assert found, text_of(mails[-1])
    return found[1]


def text_of(mail: ReceivedMail) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def join(browser: Browser, link: str) -> Response:
    form = browser.get(link)
    assert form.status == 200, form.text
    return browser.post(link, {"csrf": form.csrf()})


def team_id_of(response: Response) -> int:
    assert response.status == 303, response.text
    found = re.fullmatch(r"/account/teams/(\d+)", response.headers["location"])
    assert found, response.headers["location"]
    return int(found[1])


def subjects(page: Response) -> list[str]:
    return re.findall(r'<a class="subject" href="[^"]+">([^<]+)</a>', page.text)


def test_a_payroll_team_sees_its_runs_and_nobody_else_does(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink, teams: Teams
) -> None:
    # The operator: a team, its first owner, and the payroll program's sender account.
    teams.create("Lohnbüro Muster AG", "olga@example.ch", Language.DE)
    assert teams.add_account("Lohnbüro Muster AG", env.account.username)
    assert not teams.add_account("Lohnbüro Muster AG", "nobody")
    env.send("anna@example.ch", subject="Lohnabrechnung März")
    env.clock.advance(minutes=1)
    env.send("bert@example.ch", type=MessageType.REGISTERED, subject="Kündigung Bert")
    assert worker.send_account_mails() == 1
    (invitation,) = [m for m in sink.received if m.recipients == ("olga@example.ch",)]
    assert invitation.message["Subject"] == "Sie sind ins Team Lohnbüro Muster AG eingeladen"

    # The owner joins with the link, after logging in with the invited address.
    olga = logged_in(env, app, "olga@example.ch")
    team_id = team_id_of(join(olga, join_link(sink, "olga@example.ch")))
    team_page = olga.get(f"/account/teams/{team_id}")
    assert '<h1 id="team">Lohnbüro Muster AG</h1>' in team_page.text
    assert re.findall(r'<td class="role">([^<]+)</td>', team_page.text) == ["Inhaber"]
    logbook = olga.get(f"/account/teams/{team_id}/sent")
    assert subjects(logbook) == ["Kündigung Bert", "Lohnabrechnung März"]

    # She invites a member, who joins.
    invite = olga.post(
        f"/account/teams/{team_id}/invite",
        {"csrf": olga.cookies["__Host-pickup-csrf"], "address": "Max@Example.ch", "role": "member"},
    )
    assert invite.status == 303 and "invited=max%40example.ch" in invite.headers["location"]
    assert worker.send_account_mails() == 1
    max_ = logged_in(env, app, "max@example.ch")
    assert team_id_of(join(max_, join_link(sink, "max@example.ch"))) == team_id
    assert subjects(max_.get(f"/account/teams/{team_id}/sent")) == [
        "Kündigung Bert",
        "Lohnabrechnung März",
    ]
    # A member sees the team's messages; only an owner invites.
    registered = re.search(
        r'href="(/account/teams/\d+/sent/[0-9a-f-]{36})">Kündigung Bert',
        olga.get(f"/account/teams/{team_id}/sent").text,
    )
    assert registered
    detail = max_.get(registered[1])
    assert '<h1 id="subject">Kündigung Bert</h1>' in detail.text
    # A member cannot invite: the invitation route is not there for them.
    assert (
        max_.post(
            f"/account/teams/{team_id}/invite",
            {
                "csrf": max_.cookies["__Host-pickup-csrf"],
                "address": "eve@example.ch",
                "role": "owner",
            },
        ).status
        == 404
    )

    # Someone else: no team, and every team route answers 404.
    eve = logged_in(env, app, "eve@example.ch")
    csrf = {"csrf": eve.cookies["__Host-pickup-csrf"]}
    message_path = registered[1]
    message_id = message_path.rsplit("/", 1)[1]
    for path in (
        f"/account/teams/{team_id}",
        f"/account/teams/{team_id}/sent",
        f"/account/teams/{team_id}/sent.csv",
        message_path,
        f"{message_path}/receipt/submission",
        f"/account/sent/{message_id}",
        f"/account/teams/{team_id + 1}/sent",
    ):
        assert eve.get(path).status == 404, path
    for path in (
        f"{message_path}/withdraw",
        f"/account/teams/{team_id}/invite",
        f"/account/teams/{team_id}/members/1/remove",
    ):
        assert eve.post(path, {**csrf, "address": "eve@example.ch", "role": "owner"}).status == 404
    assert 'id="empty"' in eve.get("/account/teams").text
    # The invitation link was for Max and is used: it lets Eve in neither way.
    used = join_link(sink, "max@example.ch")
    assert eve.get(used).status == 410
    assert eve.post(used, csrf).status == 410


def test_an_invitation_is_for_its_address_only_and_works_once(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink, teams: Teams
) -> None:
    teams.create("Personal", "olga@example.ch", Language.FR)
    worker.send_account_mails()
    link = join_link(sink, "olga@example.ch")
    (mail,) = [m for m in sink.received if m.recipients == ("olga@example.ch",)]
    assert str(mail.message["Subject"]) == "Vous êtes invité dans l'équipe Personal"
    # Not logged in: the page says to log in or sign up first.
    anonymous = Browser(app).get(link)
    assert anonymous.status == 200 and "/account/signup" in anonymous.text
    # Logged in as another address: refused.
    other = logged_in(env, app, "eve@example.ch")
    assert join(other, link).status == 403
    olga = logged_in(env, app, "olga@example.ch")
    assert join(olga, link).status == 303
    assert Browser(app).get(link).status == 410
    assert Browser(app).get("/account/teams/join/" + "A" * 43).status == 410


def test_the_last_owner_stays_and_a_member_can_leave(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink, teams: Teams
) -> None:
    team = teams.create("Buchhaltung", "olga@example.ch", Language.DE)
    worker.send_account_mails()
    olga = logged_in(env, app, "olga@example.ch")
    join(olga, join_link(sink, "olga@example.ch"))
    csrf = {"csrf": olga.cookies["__Host-pickup-csrf"]}
    olga.post(
        f"/account/teams/{team.id}/invite", {**csrf, "address": "max@example.ch", "role": "member"}
    )
    worker.send_account_mails()
    max_ = logged_in(env, app, "max@example.ch")
    join(max_, join_link(sink, "max@example.ch"))
    members = {m.address: m for m in teams.all()[0][1]}
    olga_id, max_id = members["olga@example.ch"].person_id, members["max@example.ch"].person_id

    refused = olga.post(f"/account/teams/{team.id}/members/{olga_id}/remove", csrf)
    assert refused.status == 400 and "mindestens einen Inhaber" in refused.text
    # A member cannot remove others, but can leave.
    max_csrf = {"csrf": max_.cookies["__Host-pickup-csrf"]}
    assert max_.post(f"/account/teams/{team.id}/members/{olga_id}/remove", max_csrf).status == 404
    left = max_.post(f"/account/teams/{team.id}/members/{max_id}/remove", max_csrf)
    assert left.headers["location"] == "/account/teams"
    assert max_.get(f"/account/teams/{team.id}").status == 404
    assert [m.address for m in teams.all()[0][1]] == ["olga@example.ch"]


def test_a_persons_own_messages_stay_out_of_the_team_logbook(
    env: Env, app: WebApp, worker: DeliveryWorker, sink: SmtpSink, teams: Teams
) -> None:
    team = teams.create("Einkauf", "olga@example.ch", Language.DE)
    worker.send_account_mails()
    olga = logged_in(env, app, "olga@example.ch")
    join(olga, join_link(sink, "olga@example.ch"))
    own = sent_id(compose(olga, subject="Privat"))
    assert 'id="empty"' in olga.get(f"/account/teams/{team.id}/sent").text
    assert olga.get(f"/account/teams/{team.id}/sent/{own}").status == 404
    assert stored_states(env, own) == [RecipientState.QUEUED]
