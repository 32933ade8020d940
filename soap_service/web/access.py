"""Getting into a person's account without a message's link (domain/person_accounts.py).

    GET|POST /account/signup          an address: a code is mailed to it
    GET|POST /account/activate        address, code, password, consent: the account, logged in
    GET|POST /account/reset           an address: a reset link is mailed to its account
    GET|POST /account/reset/<token>   a new password: logged in, every other session ended
    GET|POST /account/password        logged in: change the password
    GET|POST /account/settings        logged in: the time zone of the pages' times
    GET|POST /account/two-factor      logged in: turn the second factor on (a TOTP app)
    POST     /account/two-factor/off  logged in: turn it off (password and a code)
    POST     /account/login/code      a login's second step: the code from the app

The pages after a sign-up or reset request say the same whether or not the address has an
account.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, request, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from soap_service.domain.person_accounts import (
    TIME_ZONES,
    PasswordChangeRefused,
    PersonAccounts,
    SignupRefused,
)
from soap_service.domain.pickup import (
    MIN_PASSWORD_LENGTH,
    SESSION_LIFETIME,
    RegistrationRefused,
    SecondFactorNeeded,
)
from soap_service.domain.ports import RecipientAccount
from soap_service.domain.second_factor import Enrolment, SecondFactorRefused
from soap_service.errors import AuthenticationThrottled, InvalidAddress
from soap_service.web.context import (
    SESSION_COOKIE,
    client,
    csrf_matches,
    current_person,
    services,
    set_cookie,
)
from soap_service.web.pages import (
    REGISTRATION_ERRORS,
    choice_query,
    chosen_language,
    notice,
    page,
    reader_language,
    see,
)

log = logging.getLogger("soap_service.access")

blueprint = Blueprint("access", __name__)

THROTTLED = "throttled"
INVALID_ADDRESS = "invalid-address"
WRONG_CODE = "wrong-code"
WRONG_PASSWORD = "wrong-password"
WRONG_CODE_2FA = "wrong-code-2fa"
UNKNOWN_ZONE = "unknown-zone"
DEFAULT_ZONE = "Europe/Zurich"
DONE = {
    "zone": lazy_gettext("The time zone was saved."),
    "two-factor-on": lazy_gettext("The second factor is on: logins now ask for a code."),
    "two-factor-off": lazy_gettext("The second factor is off."),
}
ERRORS: dict[str, tuple[Any, int]] = {
    INVALID_ADDRESS: (lazy_gettext("This is not a valid e-mail address."), 400),
    THROTTLED: (
        lazy_gettext("Too many requests for this address or from here. Please try again later."),
        429,
    ),
    WRONG_CODE: (
        lazy_gettext("The code is wrong or no longer valid. Check it, or ask for a new one."),
        400,
    ),
    WRONG_PASSWORD: (lazy_gettext("The current password is wrong."), 401),
    WRONG_CODE_2FA: (
        lazy_gettext("The code is wrong or was used already. Type the code the app shows now."),
        401,
    ),
    UNKNOWN_ZONE: (lazy_gettext("Please choose a time zone from the list."), 400),
    **{reason: (message, 400) for reason, message in REGISTRATION_ERRORS.items()},
}


# Sign-up.


@blueprint.route("/signup", methods=["GET", "POST"])
def signup() -> Response:
    if request.method == "GET":
        return _form("signup", address="")
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    address = form.get("address", "")[:320]
    try:
        box = _service().request_signup(address, reader_language(), client())
    except InvalidAddress:
        return _form("signup", INVALID_ADDRESS, address=address)
    except AuthenticationThrottled:
        log.info("sign-up throttled")
        return _form("signup", THROTTLED, address=address)
    return see(_with_query(url_for("access.activate"), address=box, sent="1"))


@blueprint.route("/activate", methods=["GET", "POST"])
def activate() -> Response:
    if request.method == "GET":
        return _form(
            "activate",
            address=request.args.get("address", "")[:320],
            sent=request.args.get("sent") == "1",
            consent=False,
        )
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    address = form.get("address", "")[:320]
    consent = form.get("consent") == "yes"
    try:
        session = _service().activate(
            address,
            form.get("code", "")[:32],
            form.get("password", ""),
            form.get("repeated", ""),
            consent=consent,
            client=client(),
        )
    except SignupRefused:
        log.info("activation refused: wrong code")
        return _form("activate", WRONG_CODE, address=address, sent=False, consent=consent)
    except RegistrationRefused as refused:
        if refused.reason == RegistrationRefused.EXISTS:
            return notice("exists", None)
        return _form("activate", refused.reason, address=address, sent=False, consent=consent)
    except AuthenticationThrottled:
        log.info("activation throttled")
        return _form("activate", THROTTLED, address=address, sent=False, consent=consent)
    return _logged_in(session)


# Password reset.


@blueprint.route("/reset", methods=["GET", "POST"])
def reset_request() -> Response:
    if request.method == "GET":
        return _form("reset_request", address="", sent=False)
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    address = form.get("address", "")[:320]
    try:
        _service().request_reset(address, reader_language(), client())
    except InvalidAddress:
        return _form("reset_request", INVALID_ADDRESS, address=address, sent=False)
    except AuthenticationThrottled:
        log.info("reset throttled")
        return _form("reset_request", THROTTLED, address=address, sent=False)
    return _form("reset_request", address=address, sent=True)


@blueprint.route("/reset/<token>", methods=["GET", "POST"])
def reset(token: str) -> Response:
    service = _service()
    try:
        if request.method == "GET":
            return _form("reset", address=service.reset_address(token))
        form = _checked_form()
        if form is None:
            return notice("csrf", None)
        try:
            session = service.reset_password(
                token, form.get("password", ""), form.get("repeated", "")
            )
        except RegistrationRefused as refused:
            address = service.reset_address(token)
            return _form("reset", refused.reason, address=address)
    except SignupRefused:
        log.info("reset link refused")
        return notice("reset-invalid", None)
    except SecondFactorNeeded as needed:  # the password is set; the code logs in
        return second_factor_page(needed.account_id, url_for("account.inbox"))
    return _logged_in(session)


# Logged in.


@blueprint.route("/password", methods=["GET", "POST"])
def password() -> Response:
    session = request.cookies.get(SESSION_COOKIE, "")
    service = _service()
    if request.method == "GET":
        address = service.session_address(session) if session else None
        if address is None:
            return see(url_for("account.login") + choice_query())
        return _form("password", account=address, done=request.args.get("done") == "1")
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    try:
        address = service.change_password(
            session,
            form.get("current", ""),
            form.get("password", ""),
            form.get("repeated", ""),
            client(),
        )
    except (PasswordChangeRefused, RegistrationRefused) as refused:
        error = WRONG_PASSWORD if isinstance(refused, PasswordChangeRefused) else refused.reason
        return _form("password", error, account=service.session_address(session), done=False)
    except AuthenticationThrottled:
        return _form("password", THROTTLED, account=service.session_address(session), done=False)
    if address is None:
        return see(url_for("account.login") + choice_query())
    return see(_with_query(url_for("access.password"), done="1"))


# The second factor.


@blueprint.post("/login/code")
def login_code() -> Response:
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    token, next_path = form.get("token", "")[:200], _local(form.get("next", ""))
    factor = services().second_factor
    try:
        session = factor.complete_login(token, form.get("code", "")[:16], client())
    except SecondFactorRefused:
        log.info("login code refused")
        try:
            person_id = factor.pending_person(token)
        except SecondFactorRefused:  # the login took too long: start again
            return see(url_for("account.login") + choice_query())
        return second_factor_page(person_id, next_path, error=WRONG_CODE_2FA)
    except AuthenticationThrottled:
        return second_factor_page(factor.pending_person(token), next_path, error=THROTTLED)
    response = see(next_path + choice_query())
    set_cookie(response, SESSION_COOKIE, session, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


def second_factor_page(person_id: int, next_path: str, error: str | None = None) -> Response:
    """The second step of a login whose password was right: the code from the app, then
    on to `next_path` (a path of this site)."""
    message, status = ERRORS[error] if error else (None, 200)
    return page(
        "second_factor",
        reader_language(),
        status=status,
        link=url_for("access.login_code"),
        error=message,
        token=services().second_factor.pending_login(person_id),
        next=_local(next_path),
    )


@blueprint.route("/two-factor", methods=["GET", "POST"])
def two_factor() -> Response:
    person = current_person()
    if person is None:
        return see(url_for("account.login") + choice_query())
    factor = services().second_factor
    if request.method == "GET":
        if person.second_factor:
            return see(url_for("access.settings") + choice_query())
        return _enrol_page(factor.start(person), error=None)
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    try:
        factor.confirm(person, form.get("pending", "")[:300], form.get("code", "")[:16])
    except SecondFactorRefused:
        return _enrol_page(factor.start(person), error=WRONG_CODE_2FA)
    log.info("second factor turned on")
    return see(_with_query(url_for("access.settings"), done="two-factor-on"))


@blueprint.post("/two-factor/off")
def two_factor_off() -> Response:
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    person = current_person()
    if person is None:
        return see(url_for("account.login") + choice_query())
    session = request.cookies.get(SESSION_COOKIE, "")
    try:
        _service().confirm_password(session, form.get("current", ""), client())
        services().second_factor.disable(person, form.get("code", "")[:16])
    except PasswordChangeRefused:
        return _settings_page(person, error=WRONG_PASSWORD)
    except SecondFactorRefused:
        return _settings_page(person, error=WRONG_CODE_2FA)
    except AuthenticationThrottled:
        return _settings_page(person, error=THROTTLED)
    log.info("second factor turned off")
    return see(_with_query(url_for("access.settings"), done="two-factor-off"))


@blueprint.route("/settings", methods=["GET", "POST"])
def settings() -> Response:
    person = current_person()
    if person is None:
        return see(url_for("account.login") + choice_query())
    if request.method == "GET":
        return _settings_page(person, error=None, done=request.args.get("done", ""))
    form = _checked_form()
    if form is None:
        return notice("csrf", None)
    session = request.cookies.get(SESSION_COOKIE, "")
    if not _service().set_time_zone(session, form.get("zone", "")[:64]):
        return _settings_page(person, error=UNKNOWN_ZONE)
    return see(_with_query(url_for("access.settings"), done="zone"))


def _settings_page(person: RecipientAccount, *, error: str | None, done: str = "") -> Response:
    message, status = ERRORS[error] if error else (None, 200)
    return page(
        "settings",
        reader_language(),
        status=status,
        link=url_for("access.settings"),
        logout=url_for("account.logout"),
        account=person.address,
        error=message,
        done=DONE.get(done),
        zone=person.time_zone or "",
        zones=sorted(TIME_ZONES),
        default_zone=DEFAULT_ZONE,
        second_factor=person.second_factor,
        two_factor_link=url_for("access.two_factor"),
        two_factor_off=url_for("access.two_factor_off"),
        password_link=url_for("access.password"),
    )


def _enrol_page(enrolment: Enrolment, *, error: str | None) -> Response:
    message, status = ERRORS[error] if error else (None, 200)
    person = current_person()
    return page(
        "two_factor",
        reader_language(),
        status=status,
        link=url_for("access.two_factor"),
        logout=url_for("account.logout"),
        account=person.address if person else None,
        error=message,
        key_text=enrolment.key_text,
        uri=enrolment.uri,
        pending=enrolment.pending,
    )


def _local(path: str) -> str:
    """A path of this site to go on to after a login, nothing else (no open redirect)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path.split("?")[0]
    return "/account"


# Parts.


def _form(name: str, error: str | None = None, **values: Any) -> Response:
    message, status = ERRORS[error] if error else (None, 200)
    return page(
        name,
        reader_language(),
        status=status,
        link=request.path,
        error=message,
        min_password=MIN_PASSWORD_LENGTH,
        logout=url_for("account.logout"),
        **values,
    )


def _checked_form() -> dict[str, str] | None:
    form = request.form.to_dict()
    if not csrf_matches(form):
        log.info("account form refused: CSRF token missing or wrong")
        return None
    return form


def _logged_in(session: str) -> Response:
    response = see(url_for("account.inbox") + choice_query())
    set_cookie(response, SESSION_COOKIE, session, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


def _with_query(path: str, **query: str) -> str:
    chosen = chosen_language()
    if chosen is not None:
        query = {"lang": chosen.value, **query}
    return f"{path}?{urlencode(query)}"


def _service() -> PersonAccounts:
    return services().person_accounts
