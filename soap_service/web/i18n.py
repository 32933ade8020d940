"""The web pages' languages: gettext catalogues, read once when the site is built, and
Flask-Babel to look words up in the language a page is written in.

The catalogues are `translations/<language>/LC_MESSAGES/messages.po`. English is the
source language: each msgid is the English text, so English needs no catalogue. They are
compiled in memory as the site starts, which needs no build step and never serves a
compiled file older than its source. `make translations` extracts the words of the
templates and the code and merges them into the catalogues; a test checks that every
catalogue translates every one of them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import flask_babel
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask

from soap_service.domain.model import Language

CATALOGUES = Path(__file__).parent / "translations"
DOMAIN = "messages"
SOURCE_LANGUAGE = Language.EN
# How each language calls itself, for the language links of every page.
LANGUAGE_NAMES = (
    (Language.DE, "Deutsch"),
    (Language.FR, "Français"),
    (Language.IT, "Italiano"),
    (Language.EN, "English"),
)


def catalogue_path(language: Language) -> Path:
    return CATALOGUES / language.value / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalogues() -> dict[Language, NullTranslations]:
    """Each language's words, compiled from its catalogue."""
    catalogues: dict[Language, NullTranslations] = {}
    for language in Language:
        if language is SOURCE_LANGUAGE:
            catalogues[language] = NullTranslations()
            continue
        with catalogue_path(language).open("rb") as file:
            catalog = read_po(file, locale=language.value, domain=DOMAIN)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        catalogues[language] = Translations(compiled, domain=DOMAIN)
    return catalogues


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
