"""What the lists of messages share (the logbook of sent messages, the inbox of received
ones): the filters read from the query, the days they name in the reader's zone, the CSV
export's cells, and the query that keeps the reader's language."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta

from flask import request
from werkzeug.wrappers import Response

from soap_service.web.pages import reader_zone

FILTERS = ("state", "type", "from", "to", "words")


def chosen_filters() -> dict[str, str]:
    """The filters the reader chose, as typed (each cut to 200 characters)."""
    return {name: request.args.get(name, "")[:200] for name in FILTERS}


def period(chosen: dict[str, str]) -> tuple[datetime | None, datetime | None]:
    """The start of the `from` day and of the day after `to`, in the reader's zone;
    ValueError for a date that cannot be read."""
    return _day_start(chosen["from"]), _day_start(chosen["to"], days_after=1)


def _day_start(value: str, *, days_after: int = 0) -> datetime | None:
    if not value:
        return None
    day = date.fromisoformat(value) + timedelta(days=days_after)
    return datetime.combine(day, time(0), tzinfo=reader_zone())


def language_query() -> dict[str, str]:
    """The reader's pick of language (?lang=), for the links a list makes."""
    chosen = request.args.get("lang")
    return {"lang": chosen} if chosen in ("de", "fr", "it", "en") else {}


def csv_download(name: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Response:
    """A CSV file of `rows`, each cell a spreadsheet would run as a formula kept as text."""
    written = io.StringIO()
    writer = csv.writer(written)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return Response(
        "\ufeff" + written.getvalue(),  # a BOM: spreadsheet programs then read UTF-8
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _cell(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
