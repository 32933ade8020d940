"""The service's words in its languages: gettext catalogues, compiled in memory when read.

The catalogues are `translations/<language>/LC_MESSAGES/messages.po`. English is the
source language: each msgid is the English text, so English needs no catalogue. Compiling
them as the service starts needs no build step and never serves a compiled file older
than its source. The pages (web/i18n.py) and the account mails (delivery/account_mail.py)
read them; `make translations` extracts the words of both and merges them into the
catalogues, and a test checks that every catalogue translates every one of them.
"""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from soap_service.domain.model import Language

CATALOGUES = Path(__file__).parent / "translations"
DOMAIN = "messages"
SOURCE_LANGUAGE = Language.EN


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
