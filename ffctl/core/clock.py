"""Time as users write it and as ffctl stores it (aware UTC).

One parser for every time a user gives: ``--now``, CSV cells, command options. ISO 8601 with or
without an offset, and the forms Excel exports: ``YYYY/MM/DD HH:MM[:SS]`` and ``YYYY/MM/DD``.
A time without an offset is in the given zone (``[defaults] timezone``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from functools import lru_cache
from typing import overload
from zoneinfo import ZoneInfo

from ffctl.i18n import _

UTC = timezone.utc
_SLASHED = re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_time(text: str, tz: str = "UTC") -> datetime:
    """Parse a user-given time into an aware UTC datetime; ValueError with a plain reason."""
    parsed = parse_wall_time(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz))
    return parsed.astimezone(UTC)


def parse_wall_time(text: str) -> datetime:
    """A user-given time as written: aware when it names its offset, else naive (a wall time of
    the zone the caller applies). ValueError with a plain reason."""
    value = text.strip()
    if not value:
        raise ValueError(_("empty time"))
    m = _SLASHED.match(value)
    if m:
        y, mo, d, hh, mm, ss = m.groups()
        try:
            parsed = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        except ValueError as exc:
            raise ValueError(_("not a real date/time: {exc}").format(exc=exc)) from None
    else:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise ValueError(
                "not a time: use ISO 8601 (2026-11-25T09:30:00+08:00), YYYY/MM/DD HH:MM[:SS] or YYYY/MM/DD"
            ) from None
    return parsed


def parse_date(text: str) -> date:
    """A calendar date: YYYY-MM-DD or YYYY/MM/DD (a time part, if any, is ignored)."""
    value = text.strip()
    m = _SLASHED.match(value)
    try:
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError("not a date: use YYYY-MM-DD or YYYY/MM/DD") from None


@overload
def local(dt: datetime, tz: str) -> datetime: ...
@overload
def local(dt: None, tz: str) -> None: ...
def local(dt: datetime | None, tz: str) -> datetime | None:
    """An aware datetime shown in zone ``tz``."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(zone(tz))


def iso(dt: datetime | None, tz: str) -> str | None:
    """ISO 8601 with offset in zone ``tz`` (the JSON form), seconds precision."""
    shown = local(dt, tz)
    return shown.isoformat(timespec="seconds") if shown else None


def jsonable(value, tz: str):
    """``value`` with its times as ISO 8601 in zone ``tz`` and its dates as ISO text (lists for
    tuples and sets), ready for ``json.dumps``."""
    if isinstance(value, datetime):
        return iso(value, tz)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v, tz) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v, tz) for v in value]
    return value


def shown(dt: datetime | None, tz: str) -> str:
    """A time in a message, in zone ``tz`` with its offset: ``2026-03-02 17:00+08:00``."""
    moment = local(dt, tz)
    return moment.isoformat(" ", "minutes") if moment else "?"


def local_date(dt: datetime, tz: str) -> date:
    return local(dt, tz).date()


def start_of_day(d: date, tz: str) -> datetime:
    return datetime.combine(d, time(0, 0), tzinfo=zone(tz)).astimezone(UTC)
