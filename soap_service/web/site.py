"""The web pages as one Flask application (today the recipient's pickup pages): routing,
requests, cookies and forms by Flask and Werkzeug, words from the catalogues (i18n.py).

Every answer carries the same strict headers (pages.py), and a browser without a CSRF
secret gets one; every POST must carry it back (double submit, context.py). A request's
domain services are opened on first use and closed when it ends. Errors become pages in
one place, pages.failed.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, g, request
from jinja2 import StrictUndefined
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.wrappers import Response

from soap_service import crypto
from soap_service.domain.model import Language, MessageLimits
from soap_service.settings import OperatorIdentity
from soap_service.web import access, account, compose, logbook, pickup, teams
from soap_service.web.context import CSRF_COOKIE, OPEN_SCOPE, PageScope, set_cookie
from soap_service.web.i18n import init_languages
from soap_service.web.pages import SECURITY_HEADERS, display_time, failed, file_size

# The largest form a page posts (a password twice and a few fields); more is refused.
MAX_FORM_BYTES = 8192


def create_site(
    *,
    pickup_path: str,
    default_language: Language,
    limits: MessageLimits,
    open_scope: Callable[[], PageScope],
    operator: OperatorIdentity,
) -> Flask:
    """The pages; `pickup_path` is where the links live (e.g. "/m/")."""
    app = Flask(__name__, static_folder=None)
    # Flask escapes only templates named .html and the like: ours are .html.j2. Every
    # value is escaped, and a name missing from a page is an error, not an empty string.
    app.jinja_options = {**app.jinja_options, "autoescape": True, "undefined": StrictUndefined}
    # Sizes and times are written in the page's language, so while it is rendered.
    app.jinja_env.filters.update(file_size=file_size, display_time=display_time)
    # Who runs the service, in every page's footer.
    app.jinja_env.globals["operator"] = operator
    app.config.update(MAX_CONTENT_LENGTH=MAX_FORM_BYTES, MAX_FORM_MEMORY_SIZE=MAX_FORM_BYTES)
    app.extensions[OPEN_SCOPE] = open_scope
    app.config[compose.LIMITS] = limits
    init_languages(app, default_language)
    app.register_blueprint(pickup.blueprint, url_prefix=pickup_path.rstrip("/"))
    app.register_blueprint(account.blueprint, url_prefix="/account")
    app.register_blueprint(access.blueprint, url_prefix="/account")
    app.register_blueprint(compose.blueprint, url_prefix="/account")
    app.register_blueprint(logbook.blueprint, url_prefix="/account")
    app.register_blueprint(teams.blueprint, url_prefix="/account")

    @app.before_request
    def _start() -> None:
        g.default_language = default_language
        # A new CSRF secret for a browser that has none; sent along with the answer.
        g.csrf_cookie = request.cookies.get(CSRF_COOKIE)
        g.csrf = g.csrf_cookie or crypto.new_secret_token()
        rule = request.url_rule
        if rule is not None and request.method in ("HEAD", "OPTIONS"):
            # Werkzeug answers them for every GET route; a HEAD of a link must not open it.
            raise MethodNotAllowed(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))

    @app.after_request
    def _secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():  # a page may say its own policy
            response.headers.setdefault(name, value)
        if g.get("csrf_cookie") is None and "csrf" in g:
            set_cookie(response, CSRF_COOKIE, g.csrf)
        return response

    @app.teardown_request
    def _close(_: BaseException | None) -> None:
        scope = g.pop("scope", None)
        if scope is not None:
            scope.close()

    app.register_error_handler(Exception, failed)
    return app
