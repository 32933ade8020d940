"""The web pages' languages: the service's catalogues (catalogues.py), read once when the
site is built, and Flask-Babel to look words up in the language a page is written in.
"""

from __future__ import annotations

from typing import Any

import flask_babel
from babel.support import NullTranslations
from flask import Flask

from soap_service.catalogues import DOMAIN, read_catalogues
from soap_service.domain.model import Language

# How each language calls itself, for the language links of every page.
LANGUAGE_NAMES = (
    (Language.DE, "Deutsch"),
    (Language.FR, "Français"),
    (Language.IT, "Italiano"),
    (Language.EN, "English"),
)


class _CatalogueDomain(flask_babel.Domain):
    """Flask-Babel's domain, answered from the catalogues read at start-up (its own would
    look for compiled .mo files on disk)."""

    def __init__(self, catalogues: dict[Language, NullTranslations]) -> None:
        super().__init__(domain=DOMAIN)
        self._loaded = {(language.value, DOMAIN): words for language, words in catalogues.items()}

    def get_translations_cache(self, ctx: Any) -> dict[tuple[str, str], NullTranslations]:
        return self._loaded


class _Babel(flask_babel.Babel):
    def __init__(self, domain: _CatalogueDomain) -> None:
        self._catalogue_domain = domain
        super().__init__()

    @property
    def domain_instance(self) -> _CatalogueDomain:
        return self._catalogue_domain


def init_languages(app: Flask, default_language: Language) -> None:
    """Words and date formats for `app`'s pages. A page says its language with
    `written_in` (the reader's pick, the message's, the browser's or the default)."""
    babel = _Babel(_CatalogueDomain(read_catalogues()))
    babel.init_app(app, default_locale=default_language.value)


def written_in(language: Language) -> Any:
    """A context in which gettext and the templates' `_` answer in `language`."""
    return flask_babel.force_locale(language.value)
