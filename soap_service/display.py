"""Moments as a person reads them: in their language as written in Switzerland, in a time
zone, saying which. Shared by the pages, the notifications and the receipts, so that
a payslip's expiry reads the same in the mail as on the page."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time

# Swiss time unless a reader chose another zone.
SWISS_TIME = ZoneInfo("Europe/Zurich")


def display_time(moment: datetime, language: str, zone: ZoneInfo = SWISS_TIME) -> str:
    """ "06.12.2026, 16:00 MEZ", "6 déc. 2026, 16:00 UTC+1", "6 Dec 2026, 16:00 CET"."""
    # Shown to the minute: the messages of a payroll run expire within a few minutes of
    # each other, and babel took a tenth of a delivery worker's time formatting each anew.
    return _minute(moment.astimezone(UTC).replace(second=0, microsecond=0), language, zone)


@functools.lru_cache(maxsize=1024)
def _minute(moment: datetime, language: str, zone: ZoneInfo) -> str:
    local = moment.astimezone(zone)
    locale = f"{language}_CH"
    name = format_time(local, "z", locale=locale)
    if name[:1] in "+-":  # no abbreviation in this language: the offset
        offset = local.utcoffset() or timedelta(0)
        hours, minutes = divmod(int(offset.total_seconds()) // 60, 60)
        name = f"UTC{hours:+d}" + (f":{minutes:02d}" if minutes else "")
    date = format_date(local, "medium", locale=locale)
    return f"{date}, {format_time(local, 'short', locale=locale)} {name}"
