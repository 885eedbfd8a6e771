"""Business-time SLA clocks: deadlines and elapsed time counted in a calendar's working hours.

Pure: no store, no CLI, stdlib only. Every instant is handled as integer microseconds since
the Unix epoch, so sums and differences are exact and ``between(start, add(start, s)) == s``.

Opening ranges are local wall times. A range boundary is mapped to the *first instant at which
the local clock reads that time or later*: an ambiguous time (autumn fall-back) is its first
occurrence, and a time skipped by a spring-forward gap opens or closes the moment the clock
jumps. A range is then the real elapsed time between its two instants (a 00:00-24:00 day in
Europe/Berlin lasts 23 h in March and 25 h in October).

Speed: the calendar keeps a lazily extended index over local days -- each day's open
intervals in UTC and the running total of business time at each midnight. ``add`` and
``between`` are then two binary searches plus a walk over one day's ranges (O(log days));
building the index costs a few microseconds per day, once per calendar.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ffctl.core.durations import HORIZON_DAYS
from ffctl.i18n import _

__all__ = ["BusinessCalendar", "Clock", "WALL_CLOCK", "WallClock"]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_ORDINAL = _EPOCH_NAIVE.toordinal()
_US = 1_000_000
_MINUTE_US = 60 * _US
_DAY_US = 86_400 * _US
# A deadline further than this from its start means the calendar is (practically) always closed;
# config check refuses a calendar that cannot hold a node's SLA and ladder within it.
MAX_SEARCH_DAYS = HORIZON_DAYS
_CHUNK_DAYS = 256  # days added to the index per extension
# Keep one day of margin at both ends of the datetime range (local midnights are computed
# for day + 1, and zone offsets may push UTC instants past datetime.min/max).
_MIN_ORDINAL = date.min.toordinal() + 2
_MAX_ORDINAL = date.max.toordinal() - 2

Interval = tuple[int, int]  # [open, close) in epoch microseconds


class Clock(Protocol):
    """What an SLA needs from a clock: BusinessCalendar and WALL_CLOCK both provide it."""

    def add(self, start: datetime, seconds: float) -> datetime: ...
    def between(self, a: datetime, b: datetime) -> float: ...
    def since(self, origin: datetime) -> Callable[[datetime], float]: ...
    def is_open(self, t: datetime) -> bool: ...


def _to_us(moment: datetime) -> int:
    """Epoch microseconds of an instant; a naive datetime is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        delta = moment - _EPOCH
    except TypeError:  # a tzinfo whose utcoffset() is None: naive, hence UTC
        delta = moment.replace(tzinfo=UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(0, 0, us)  # positional: measurably faster than microseconds=


def _offset_us(offset: timedelta) -> int:
    return (offset.days * 86_400 + offset.seconds) * _US + offset.microseconds


def _seconds_to_us(seconds: float) -> int:
    if isinstance(seconds, int):
        if seconds < 0:
            raise ValueError(f"SLA seconds must be >= 0, got {seconds}")
        return seconds * _US
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"SLA seconds must be a finite number >= 0, got {seconds}")
    return round(seconds * _US)


def _normalise_hours(
    hours: Mapping[int, Iterable[tuple[int, int]]],
) -> dict[int, tuple[Interval, ...]]:
    """Validate weekday -> ranges, sort them and merge overlapping or touching ones."""
    normalised: dict[int, tuple[Interval, ...]] = {}
    for weekday, ranges in hours.items():
        if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise ValueError(f"weekday must be an int 0 (Mon) .. 6 (Sun), got {weekday!r}")
        cleaned: list[Interval] = []
        for item in ranges:
            try:
                start, end = item
            except (TypeError, ValueError):
                raise ValueError(f"weekday {weekday}: a range is (start_minute, end_minute), got {item!r}") from None
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= 1440):
                raise ValueError(
                    f"weekday {weekday}: range {item!r} must be whole minutes with 0 <= start < end <= 1440"
                )
            cleaned.append((start, end))
        cleaned.sort()
        merged: list[Interval] = []
        for start, end in cleaned:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        if merged:
            normalised[weekday] = tuple(merged)
    return normalised


def _resolve_zone(timezone_: str | tzinfo) -> tuple[tzinfo, str]:
    if isinstance(timezone_, str):
        try:
            return ZoneInfo(timezone_), timezone_
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {timezone_!r} (use an IANA name such as 'Asia/Shanghai')") from None
    if isinstance(timezone_, tzinfo):
        return timezone_, str(getattr(timezone_, "key", timezone_))
    raise ValueError(f"timezone must be an IANA name, got {timezone_!r}")


class BusinessCalendar:
    """Working hours per weekday and holidays, in one timezone; counts business seconds."""

    def __init__(
        self,
        timezone: str | tzinfo,
        hours: Mapping[int, Iterable[tuple[int, int]]],
        holidays: Iterable[date] = frozenset(),
    ) -> None:
        self._tz, self._tz_name = _resolve_zone(timezone)
        self._hours = _normalise_hours(hours)
        self._holidays = frozenset(h.date() if isinstance(h, datetime) else h for h in holidays)
        for h in self._holidays:
            if not isinstance(h, date):
                raise ValueError(f"a holiday must be a date, got {h!r}")
        self._holiday_ordinals = frozenset(h.toordinal() for h in self._holidays)
        # (first ordinal, day starts [n+1], running business us at each start [n+1], open
        # intervals per day [n]); replaced whole, never mutated, so readers need no lock.
        self._index: tuple[int, list[int], list[int], list[tuple[Interval, ...]]] | None = None
        self._lock = threading.Lock()

    # -- what it is -------------------------------------------------------------------------

    @property
    def timezone(self) -> str:
        return self._tz_name

    @property
    def hours(self) -> dict[int, tuple[Interval, ...]]:
        return dict(self._hours)

    @property
    def holidays(self) -> frozenset[date]:
        return self._holidays

    def __repr__(self) -> str:
        return (
            f"BusinessCalendar(timezone={self._tz_name!r}, hours={self._hours!r}, holidays={sorted(self._holidays)!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BusinessCalendar):
            return NotImplemented
        return (self._tz_name, self._hours, self._holidays) == (
            other._tz_name,
            other._hours,
            other._holidays,
        )

    def __hash__(self) -> int:
        return hash((self._tz_name, tuple(sorted(self._hours.items())), self._holidays))

    def __reduce__(self):  # the index and the lock are caches: rebuild them after unpickling
        return (BusinessCalendar, (self._tz, self._hours, self._holidays))

    # -- the clock --------------------------------------------------------------------------

    def add(self, start: datetime, seconds: float) -> datetime:
        """The deadline: the instant at which `seconds` of business time have elapsed after `start`.

        Closed at `start`: the clock starts at the next opening. A deadline that lands exactly
        on a closing time stays there. Returns an aware UTC datetime.
        """
        need = _seconds_to_us(seconds)
        t = _to_us(start)
        if seconds > 0 and not self._hours:
            raise ValueError(_("calendar has no working hours"))
        if need == 0:
            return _from_us(t)
        index = self._index
        if index is not None and index[1][0] <= t < index[1][-1]:  # the usual case, inlined
            i = bisect_right(index[1], t) - 1
        else:
            index, i = self._locate(t)
        first, starts, cum, days = index
        start_ordinal = first + i
        reached = cum[i]
        for open_, close in days[i]:
            if t <= open_:
                break
            reached += (t if t < close else close) - open_
        target = reached + need
        # The deadline falls in the day j with cum[j] < target <= cum[j + 1].
        if target <= cum[i + 1]:
            j = i
        else:
            k = bisect_left(cum, target, i + 1)
            while k == len(cum):
                end_ordinal = first + len(days)
                if end_ordinal > start_ordinal + MAX_SEARCH_DAYS:
                    raise ValueError(self._too_closed(start))
                index = self._covering(end_ordinal, end_ordinal + 1)
                first, starts, cum, days = index
                k = bisect_left(cum, target, start_ordinal - first + 1)
            j = k - 1
            if first + j > start_ordinal + MAX_SEARCH_DAYS:
                raise ValueError(self._too_closed(start))
        left = target - cum[j]
        for open_, close in days[j]:
            if left <= close - open_:
                return _from_us(open_ + left)
            left -= close - open_
        raise AssertionError(_("business-time index is inconsistent"))  # pragma: no cover

    def between(self, a: datetime, b: datetime) -> float:
        """Business seconds in [a, b); 0 if b <= a."""
        ta, tb = _to_us(a), _to_us(b)
        if tb <= ta or not self._hours:
            return 0.0
        return (self._reached(tb) - self._reached(ta)) / _US

    def since(self, origin: datetime) -> Callable[[datetime], float]:
        """Business seconds from ``origin`` to an instant, negative before it: ``between`` with a
        sign, for many instants against one origin (the origin's part counted once)."""
        if not self._hours:
            return lambda t: 0.0
        base = self._reached(_to_us(origin))
        return lambda t: (self._reached(_to_us(t)) - base) / _US

    def is_open(self, t: datetime) -> bool:
        """Whether `t` is in working time (an opening time is open, a closing time is not)."""
        if not self._hours:
            return False
        us = _to_us(t)
        index, i = self._locate(us)
        for open_, close in index[3][i]:
            if open_ <= us < close:
                return True
        return False

    def utc_days(self, first: int, last: int) -> list[tuple[int, float, tuple[tuple[float, float], ...]]]:
        """Business time by UTC day, for counting it in SQL (report lateness): for each day
        ``d`` in [first, last] (days since 1970-01-01 UTC), ``(d, cum, ranges)``: the business
        seconds from the start of ``first`` to d's 00:00 UTC, and d's open ranges as epoch
        seconds. Then ``between(a, b) = B(b) - B(a)`` with, for t on day d,
        ``B(t) = cum + sum(min(t, end) - start for start, end in ranges if t > start)``."""
        lo, hi = first * _DAY_US, (last + 1) * _DAY_US
        # local days overlapping [lo, hi), with a day's margin for zone offsets
        self._covering(
            _from_us(lo).astimezone(self._tz).toordinal() - 1, _from_us(hi).astimezone(self._tz).toordinal() + 2
        )
        assert self._index is not None  # _covering just built it
        _first, _starts, _cum, days = self._index
        opens = [iv for day in days for iv in day if iv[1] > lo and iv[0] < hi]
        base = self._reached(lo)
        out = []
        k = 0
        for d in range(first, last + 1):
            start, end = d * _DAY_US, (d + 1) * _DAY_US
            cum = (self._reached(start) - base) / _US
            while k < len(opens) and opens[k][1] <= start:
                k += 1
            ranges = []
            j = k
            while j < len(opens) and opens[j][0] < end:
                a, b = max(opens[j][0], start), min(opens[j][1], end)
                if a < b:
                    ranges.append((a / _US, b / _US))
                j += 1
            out.append((d, cum, tuple(ranges)))
        return out

    # -- internals --------------------------------------------------------------------------

    def _too_closed(self, start: datetime) -> str:
        return _(
            "no deadline within {value} years of {isoformat}: the calendar has (almost) no working time "
            "(check its hours and holidays)"
        ).format(value=MAX_SEARCH_DAYS // 365, isoformat=start.astimezone(self._tz).isoformat(" ", "minutes"))

    def _reached(self, t: int) -> int:
        """Business microseconds from the index origin to instant `t`."""
        index, i = self._locate(t)
        reached = index[2][i]
        for open_, close in index[3][i]:
            if t <= open_:
                break
            reached += (t if t < close else close) - open_
        return reached

    def _locate(self, t: int):
        """The index snapshot covering instant `t` and the position of t's day in it."""
        index = self._index
        if index is None or not index[1][0] <= t < index[1][-1]:
            # the local date is a hint (a fall-back over midnight can blur it by a day)
            ordinal = _from_us(t).astimezone(self._tz).toordinal()
            index = self._covering(ordinal - 1, ordinal + 2)
        return index, bisect_right(index[1], t) - 1

    def _covering(self, lo: int, hi: int):
        """An index snapshot covering local days [lo, hi), extending the current one if needed."""
        index = self._index
        if index is not None and index[0] <= lo and hi <= index[0] + len(index[3]):
            return index
        if lo < _MIN_ORDINAL or hi > _MAX_ORDINAL:
            raise ValueError(_("time is outside the range a business calendar can count"))
        with self._lock:
            index = self._index
            if index is None:
                stop = min(max(hi, lo + _CHUNK_DAYS), _MAX_ORDINAL)
                starts, days, totals = self._build(lo, stop)
                cum = [0]
                for total in totals:
                    cum.append(cum[-1] + total)
                index = (lo, starts, cum, days)
            else:
                first, starts, cum, days = index
                if lo < first:
                    new_first = max(min(lo, first - _CHUNK_DAYS), _MIN_ORDINAL)
                    new_starts, new_days, totals = self._build(new_first, first)
                    running = cum[0] - sum(totals)
                    new_cum = []
                    for total in totals:
                        new_cum.append(running)
                        running += total
                    starts = new_starts[:-1] + starts
                    cum = new_cum + cum
                    days = new_days + days
                    first = new_first
                stop = first + len(days)
                if hi > stop:
                    new_stop = min(max(hi, stop + _CHUNK_DAYS), _MAX_ORDINAL)
                    new_starts, new_days, totals = self._build(stop, new_stop)
                    running = cum[-1]
                    new_cum = []
                    for total in totals:
                        running += total
                        new_cum.append(running)
                    starts = starts + new_starts[1:]
                    cum = cum + new_cum
                    days = days + new_days
                index = (first, starts, cum, days)
            self._index = index
        return index

    def _build(self, first: int, stop: int):
        """For local days [first, stop): their starts (plus the end of the last), open
        intervals and business microseconds."""
        starts: list[int] = []
        days: list[tuple[Interval, ...]] = []
        totals: list[int] = []
        day_start, start_offset = self._midnight(first)
        starts.append(day_start)
        for ordinal in range(first, stop):
            day_end, end_offset = self._midnight(ordinal + 1)
            starts.append(day_end)
            ranges = self._hours.get((ordinal - 1) % 7)  # ordinal 1 (0001-01-01) is a Monday
            if not ranges or ordinal in self._holiday_ordinals:
                intervals: tuple[Interval, ...] = ()
            elif start_offset is not None and start_offset == end_offset:
                # no clock change today: wall minutes are plain offsets from midnight
                intervals = tuple((day_start + a * _MINUTE_US, day_start + b * _MINUTE_US) for a, b in ranges)
            else:
                intervals = self._transition_day(ordinal, ranges, day_start, day_end)
            days.append(intervals)
            totals.append(sum(b - a for a, b in intervals))
            day_start, start_offset = day_end, end_offset
        return starts, days, totals

    def _midnight(self, ordinal: int) -> tuple[int, int | None]:
        """When local day `ordinal` starts, and the UTC offset then (None if midnight is
        ambiguous or skipped, i.e. the clock changes right there)."""
        wall = _EPOCH_NAIVE + timedelta(days=ordinal - _EPOCH_ORDINAL)
        aware = wall.replace(tzinfo=self._tz)
        offset = aware.utcoffset()
        if offset is not None and offset == aware.replace(fold=1).utcoffset():
            offset_us = _offset_us(offset)
            return (ordinal - _EPOCH_ORDINAL) * _DAY_US - offset_us, offset_us
        return self._wall_to_us(wall), None

    def _transition_day(
        self, ordinal: int, ranges: tuple[Interval, ...], day_start: int, day_end: int
    ) -> tuple[Interval, ...]:
        """Open intervals on a day whose UTC offset changes: map each boundary on its own."""
        wall_midnight = _EPOCH_NAIVE + timedelta(days=ordinal - _EPOCH_ORDINAL)

        def instant(minute: int) -> int:
            if minute == 0:
                return day_start
            if minute == 1440:
                return day_end
            us = self._wall_to_us(wall_midnight + timedelta(minutes=minute))
            return min(max(us, day_start), day_end)

        intervals: list[Interval] = []
        for a, b in ranges:
            open_, close = instant(a), instant(b)
            if open_ >= close:  # the whole range was skipped by the clock change
                continue
            if intervals and open_ <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], close))
            else:
                intervals.append((open_, close))
        return tuple(intervals)

    def _wall_to_us(self, wall: datetime) -> int:
        """The first instant at which the local clock reads `wall` (naive, local) or later."""
        tz = self._tz
        u0 = _to_us(wall.replace(tzinfo=tz))  # fold=0: the first occurrence if ambiguous
        if _from_us(u0).astimezone(tz).replace(tzinfo=None) == wall:
            return u0
        # `wall` is skipped by a spring-forward gap: find the jump, to the second (zone
        # transitions are whole seconds). fold=1 lands before it, fold=0 after it.
        u1 = _to_us(wall.replace(tzinfo=tz, fold=1))
        before = self._offset_at(u1)
        lo, hi = u1 // _US, -(-u0 // _US)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._offset_at(mid * _US) == before:
                lo = mid
            else:
                hi = mid
        return hi * _US

    def _offset_at(self, us: int) -> timedelta | None:
        return _from_us(us).astimezone(self._tz).utcoffset()


class WallClock:
    """24x7 wall-clock time, for nodes without a calendar. Same API as BusinessCalendar."""

    def add(self, start: datetime, seconds: float) -> datetime:
        return _from_us(_to_us(start) + _seconds_to_us(seconds))

    def between(self, a: datetime, b: datetime) -> float:
        elapsed = _to_us(b) - _to_us(a)
        return elapsed / _US if elapsed > 0 else 0.0

    def since(self, origin: datetime) -> Callable[[datetime], float]:
        base = _to_us(origin)
        return lambda t: (_to_us(t) - base) / _US

    def is_open(self, t: datetime) -> bool:
        return True

    def __repr__(self) -> str:
        return "WALL_CLOCK"


WALL_CLOCK = WallClock()
