"""A person's teams (domain/teams.py).

    GET  /account/teams                                  the person's teams
    GET  /account/teams/<id>                             members; an owner invites, removes
    POST /account/teams/<id>/invite                      address, role: an invitation mail
    POST /account/teams/<id>/members/<person>/remove     (an owner, or a member leaving)
    GET  /account/teams/join/<token>                     what the invitation is
    POST /account/teams/join/<token>                     join (logged in as its address)

The team's logbook is the logbook's pages under /account/teams/<id>/sent (logbook.py). A
team the person is not in answers 404, as one that does not exist.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, request, url_for
from flask_babel import lazy_gettext
from werkzeug.exceptions import NotFound as PageNotFound
from werkzeug.wrappers import Response

from soap_service.domain.model import TeamRole
from soap_service.domain.ports import RecipientAccount
from soap_service.domain.teams import InvitationRefused, LastOwner, NoTeam, Teams
from soap_service.errors import InvalidAddress
from soap_service.web.context import csrf_matches, current_person, services
from soap_service.web.pages import choice_query, notice, page, reader_language, see

log = logging.getLogger("soap_service.teams")

blueprint = Blueprint("teams", __name__)

ROLES = {TeamRole.OWNER: lazy_gettext("Owner"), TeamRole.MEMBER: lazy_gettext("Member")}
ERRORS = {
    "invalid-address": lazy_gettext("This is not a valid e-mail address."),
    "last-owner": lazy_gettext("A team keeps at least one owner."),
}


@blueprint.get("/teams")
def overview() -> Response:
    person = current_person()
    if person is None:
        return _to_login()
    return page(
        "teams",
        reader_language(),
        link=url_for("teams.overview"),
        logout=url_for("account.logout"),
        account=person.address,
        teams=[
            {
                "name": membership.team.name,
                "role": ROLES[membership.role],
                "href": url_for("teams.team", team_id=membership.team.id) + choice_query(),
            }
            for membership in _service().memberships(person)
        ],
    )


@blueprint.get("/teams/<int:team_id>")
def team(team_id: int) -> Response:
    person = current_person()
    if person is None:
        return _to_login()
    return _team_page(person, team_id, error=None, invited=request.args.get("invited", ""))


@blueprint.post("/teams/<int:team_id>/invite")
def invite(team_id: int) -> Response:
    form = request.form.to_dict()
    if not csrf_matches(form):
        return notice("csrf", None)
    person = current_person()
    if person is None:
        return _to_login()
    try:
        role = TeamRole(form.get("role", ""))
        box = _service().invite(
            person, team_id, form.get("address", "")[:320], role, reader_language()
        )
    except (InvalidAddress, ValueError):
        return _team_page(person, team_id, error="invalid-address", invited="")
    except NoTeam:
        raise PageNotFound() from None
    log.info("team invitation queued")
    return see(url_for("teams.team", team_id=team_id) + _query(invited=box))


@blueprint.post("/teams/<int:team_id>/members/<int:person_id>/remove")
def remove(team_id: int, person_id: int) -> Response:
    if not csrf_matches(request.form.to_dict()):
        return notice("csrf", None)
    person = current_person()
    if person is None:
        return _to_login()
    try:
        _service().remove(person, team_id, person_id)
    except NoTeam:
        raise PageNotFound() from None
    except LastOwner:
        return _team_page(person, team_id, error="last-owner", invited="")
    if person_id == person.id:  # left the team
        return see(url_for("teams.overview") + choice_query())
    return see(url_for("teams.team", team_id=team_id) + choice_query())


@blueprint.route("/teams/join/<token>", methods=["GET", "POST"])
def join(token: str) -> Response:
    service = _service()
    try:
        invitation = service.invitation(token)
        person = current_person()
        if request.method == "POST":
            if not csrf_matches(request.form.to_dict()):
                return notice("csrf", None)
            if person is None:
                return _to_login()
            joined = service.join(person, token)
            return see(url_for("teams.team", team_id=joined.id) + choice_query())
    except InvitationRefused as refused:
        log.info("team invitation refused: %s", refused.reason)
        reason = "invitation-other" if refused.reason == refused.OTHER_ADDRESS else "reset-invalid"
        return notice(reason, None)
    return page(
        "join",
        reader_language(),
        link=url_for("teams.join", token=token),
        logout=url_for("account.logout"),
        account=person.address if person else None,
        team=invitation.team.name,
        role=ROLES[invitation.role],
        invited=invitation.address,
        other_address=person is not None and person.address != invitation.address,
    )


def _team_page(
    person: RecipientAccount, team_id: int, *, error: str | None, invited: str
) -> Response:
    service = _service()
    try:
        membership = service.membership(person, team_id)
        members = service.members(person, team_id)
    except NoTeam:
        raise PageNotFound() from None
    owner = membership.role is TeamRole.OWNER
    return page(
        "team",
        reader_language(),
        status=400 if error else 200,
        link=url_for("teams.team", team_id=team_id),
        logout=url_for("account.logout"),
        account=person.address,
        team=membership.team.name,
        owner=owner,
        error=ERRORS[error] if error else None,
        invited=invited,
        logbook=url_for("logbook.sent", team_id=team_id) + choice_query(),
        invite_link=url_for("teams.invite", team_id=team_id),
        roles=[(role.value, label) for role, label in ROLES.items()],
        members=[
            {
                "address": member.address,
                "role": ROLES[member.role],
                "remove": (
                    url_for("teams.remove", team_id=team_id, person_id=member.person_id)
                    if owner or member.person_id == person.id
                    else None
                ),
                "me": member.person_id == person.id,
            }
            for member in members
        ],
    )


def _to_login() -> Response:
    return see(url_for("account.login") + choice_query())


def _query(**values: str) -> str:
    chosen = request.args.get("lang")
    if chosen in ("de", "fr", "it", "en"):
        values = {"lang": chosen, **values}
    return "?" + urlencode(values)


def _service() -> Teams:
    return services().teams
