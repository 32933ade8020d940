"""Every word of the pages and account mails in every language: the catalogues translate
exactly what the templates and the code ask for, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from soap_service.catalogues import SOURCE_LANGUAGE, catalogue_path
from soap_service.domain.model import Language

PACKAGE = Path(__file__).parents[2] / "soap_service"
KEYWORDS = {"_": None, "gettext": None, "lazy_gettext": None, "pgettext": ((1, "c"), 2)}
METHODS = [
    ("web/**.py", "python"),
    ("delivery/**.py", "python"),
    ("documents/**.py", "python"),
    ("web/templates/**.j2", "jinja2"),
]


def asked_for() -> set[tuple[str | None, str]]:
    """(context, msgid) of every text the pages and account mails use, as `make
    translations` extracts them."""
    found = set()
    for _, _, message, _, context in extract_from_dir(str(PACKAGE), METHODS, keywords=KEYWORDS):
        found.add((context, message))
    return found


TRANSLATED = [language for language in Language if language is not SOURCE_LANGUAGE]


def test_the_extraction_finds_the_pages_words() -> None:
    words = asked_for()
    assert ("heading", "Log in") in words and ("button", "Log in") in words
    assert (None, "Message from %(organisation)s") in words  # a template's
    assert (None, "The password is wrong.") in words  # the code's
    assert len(words) >= 45


@pytest.mark.parametrize("language", TRANSLATED, ids=lambda language: language.value)
def test_each_catalogue_translates_exactly_what_the_pages_use(language: Language) -> None:
    with catalogue_path(language).open("rb") as file:
        catalog = read_po(file, locale=language.value)
    assert not catalog.fuzzy
    entries = {(message.context, message.id): message for message in catalog if message.id}
    assert set(entries) == asked_for()
    for key, message in entries.items():
        assert message.string, f"{language.value}: {key} is not translated"
        assert "fuzzy" not in message.flags, f"{language.value}: {key} is fuzzy"
    # Babel's own checks: the same %(name)s placeholders as the English text.
    assert not list(catalog.check()), list(catalog.check())


@pytest.mark.parametrize(
    ("language", "written"),
    [
        ("de", ["57 Byte", "48,8 kB", "1,5 MB"]),
        # French puts a narrow no-break space before the unit.
        ("fr", ["57\u202fo", "48,8\u202fko", "1,5\u202fMo"]),
        ("it", ["57 byte", "48,8 kB", "1,5 MB"]),
        ("en", ["57 byte", "48.8 kB", "1.5 MB"]),
    ],
)
def test_file_sizes_are_written_as_each_language_writes_them(
    language: str, written: list[str]
) -> None:
    from flask import Flask

    from soap_service.web.i18n import init_languages, written_in
    from soap_service.web.pages import file_size

    app = Flask(__name__)
    init_languages(app, Language.DE)
    with app.test_request_context(), written_in(Language(language)):
        assert [file_size(size) for size in (57, 48_800, 1_500_000)] == written


@pytest.mark.parametrize(
    ("language", "winter", "summer"),
    [
        ("de", "06.12.2026, 16:00 MEZ", "06.07.2026, 17:00 MESZ"),
        ("fr", "6 déc. 2026, 16:00 UTC+1", "6 juil. 2026, 17:00 UTC+2"),
        ("it", "6 dic 2026, 16:00 CET", "6 lug 2026, 17:00 CEST"),
        ("en", "6 Dec 2026, 16:00 CET", "6 Jul 2026, 17:00 CEST"),
    ],
)
def test_times_are_written_in_swiss_time_as_each_language_writes_them(
    language: str, winter: str, summer: str
) -> None:
    from datetime import UTC, datetime

    from flask import Flask

    from soap_service.web.i18n import init_languages, written_in
    from soap_service.web.pages import display_time

    app = Flask(__name__)
    init_languages(app, Language.DE)
    with app.test_request_context(), written_in(Language(language)):
        assert display_time(datetime(2026, 12, 6, 15, tzinfo=UTC)) == winter
        assert display_time(datetime(2026, 7, 6, 15, tzinfo=UTC)) == summer


def test_the_two_half_past_twos_of_the_autumn_night_read_apart_and_seconds_not_at_all() -> None:
    """Moments are shown to the minute (display_time keeps what it wrote, by minute): the
    hour that comes twice when summer time ends must keep its two names."""
    from datetime import UTC, datetime

    from soap_service.display import display_time

    summer = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    winter = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert display_time(summer, "de") == "25.10.2026, 02:30 MESZ"
    assert display_time(winter, "de") == "25.10.2026, 02:30 MEZ"
    assert display_time(summer.replace(second=59, microsecond=999), "de") == (
        "25.10.2026, 02:30 MESZ"
    )
    assert display_time(summer, "fr") == "25 oct. 2026, 02:30 UTC+2"


# Italian addresses the reader formally (Lei) throughout: sentences in the Lei form with
# its pronouns capitalised (Le, Suo, Sua), buttons and links in the infinitive. These are
# the informal forms a translation slips into.
INFORMAL_ITALIAN = re.compile(
    r"\b(tu|tuo|tua|tuoi|tue|ti|hai|puoi|devi|vuoi)\b"
    r"|^(Accedi|Esci|Accetta|Rifiuta|Torna|Registrati|Mostra|Inserisci|Scegli|Apri|Invia|"
    r"Salva|Conferma|Crea|Imposta|Scarica|Ritira|Attiva|Disattiva|Invita|Rimuovi|Lascia)\b"
)
LOWER_COURTESY = re.compile(r"\b(suo|sua|suoi|sue)\b")


def test_italian_addresses_the_reader_formally_everywhere() -> None:
    from soap_service.delivery import report_mail
    from soap_service.delivery.texts import TEXTS

    with catalogue_path(Language.IT).open("rb") as file:
        catalog = read_po(file, locale="it")
    texts = [message.string for message in catalog if message.id]
    texts += list(TEXTS[Language.IT].values())
    # The mails a sender gets about its messages (failures, receipts).
    texts += [report_mail._FAILURE_TEXT[Language.IT], report_mail._RECEIPT_TEXT[Language.IT]]
    assert isinstance(texts[0], str)
    informal = [text for text in texts if INFORMAL_ITALIAN.search(str(text))]
    assert informal == []
    assert [text for text in texts if LOWER_COURTESY.search(str(text))] == []
    assert "Accedere" in texts and "Le ha inviato" in TEXTS[Language.IT]["intro"]
