"""Every page and download of the site that names a message, a team or a member answers
404 to a person it is not theirs, read from the site's own routes: a new route with an id
is checked here as soon as it exists, and the list of routes below must name it."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.model import Language
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env
from tests.pickup.conftest import Browser, Response
from tests.pickup.test_compose_and_logbook import compose, logged_in, sent_id
from tests.pickup.test_teams import join, join_link, teams  # noqa: F401 (a fixture)
from tests.smtp_sink import SmtpSink

# The site's routes (rule, methods). Bearer links (/m/, reset, invitations) are the
# pickup and account tests' own; those with ids of people's data are checked below.
ROUTES = {
    ("/account", ("GET",)),
    ("/account/activate", ("GET", "POST")),
    ("/account/compose", ("GET", "POST")),
    ("/account/login", ("GET", "POST")),
    ("/account/login/code", ("POST",)),
    ("/account/logout", ("POST",)),
    ("/account/password", ("GET", "POST")),
    ("/account/reset", ("GET", "POST")),
    ("/account/received.csv", ("GET",)),
    ("/account/reset/<token>", ("GET", "POST")),
    ("/account/sent", ("GET",)),
    ("/account/sent.csv", ("GET",)),
    ("/account/sent/<message_id:message_id>", ("GET",)),
    ("/account/sent/<message_id:message_id>/receipt/<kind>", ("GET",)),
    ("/account/sent/<message_id:message_id>/withdraw", ("POST",)),
    ("/account/settings", ("GET", "POST")),
    ("/account/signup", ("GET", "POST")),
    ("/account/teams", ("GET",)),
    ("/account/teams/<int:team_id>", ("GET",)),
    ("/account/teams/<int:team_id>/invite", ("POST",)),
    ("/account/teams/<int:team_id>/members/<int:person_id>/remove", ("POST",)),
    ("/account/teams/<int:team_id>/sent", ("GET",)),
    ("/account/teams/<int:team_id>/sent.csv", ("GET",)),
    ("/account/teams/<int:team_id>/sent/<message_id:message_id>", ("GET",)),
    ("/account/teams/<int:team_id>/sent/<message_id:message_id>/receipt/<kind>", ("GET",)),
    ("/account/teams/<int:team_id>/sent/<message_id:message_id>/withdraw", ("POST",)),
    ("/account/teams/join/<token>", ("GET", "POST")),
    ("/account/two-factor", ("GET", "POST")),
    ("/account/two-factor/off", ("POST",)),
    ("/m/<token:token>", ("GET",)),
    ("/m/<token:token>/<position:position>", ("GET",)),
    ("/m/<token:token>/decision", ("POST",)),
    ("/m/<token:token>/login", ("POST",)),
    ("/m/<token:token>/logout", ("POST",)),
    ("/m/<token:token>/register", ("GET", "POST")),
}
OWNED = re.compile(r"<(?:\w+:)?(message_id|team_id|person_id)>")
PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")


def site_of(app: WebApp) -> Flask:
    site: Flask = app._site  # the pages' Flask application, as app.py routes to it
    return site


def routes(site: Flask) -> set[tuple[str, tuple[str, ...]]]:
    return {
        (rule.rule, tuple(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})))
        for rule in site.url_map.iter_rules()
    }


def test_every_route_with_an_id_answers_404_to_a_stranger(
    env: Env,
    app: WebApp,
    worker: DeliveryWorker,
    sink: SmtpSink,
    teams: Any,  # noqa: F811
) -> None:
    assert routes(site_of(app)) == ROUTES
    # Lea's own registered message; her team, with the payroll account's message in it.
    lea = logged_in(env, app, "lea@example.ch")
    own = sent_id(compose(lea, type="registered"))
    team = teams.create("Lohnbüro", "lea@example.ch", Language.DE)
    teams.add_account("Lohnbüro", env.account.username)
    payroll = env.send("anna@example.ch").message_id
    worker.send_account_mails()
    join(lea, join_link(sink, "lea@example.ch"))
    lea_id = teams.all()[0][1][0].person_id
    values = {
        "team_id": str(team.id),
        "person_id": str(lea_id),
        "kind": "submission",
    }

    eve = logged_in(env, app, "eve@example.ch")
    checked = 0
    for rule, methods in sorted(ROUTES):
        if not OWNED.search(rule):
            continue
        named = {**values, "message_id": payroll if "team_id" in rule else own}
        path = PARAMETER.sub(lambda found, named=named: named[found[1]], rule)
        for method in methods:
            answer = stranger(eve, method, path)
            assert answer.status == 404, f"{method} {path}: {answer.status}"
            checked += 1
    assert checked == 11  # every route above with an id, once per method
    # The same paths work for Lea: the test is not passing on a typo.
    assert lea.get(f"/account/sent/{own}").status == 200
    assert lea.get(f"/account/teams/{team.id}/sent/{payroll}").status == 200


def stranger(browser: Browser, method: str, path: str) -> Response:
    if method == "GET":
        return browser.get(path)
    fields = {
        "csrf": browser.cookies["__Host-pickup-csrf"],
        "address": "eve@example.ch",
        "role": "owner",
    }
    return browser.post(path, fields)
