"""Business-time SLA clocks: deadlines and elapsed business time as a user sees them."""

from __future__ import annotations

import pickle
import threading
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ffctl.core.calendar import WALL_CLOCK, BusinessCalendar

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
LONDON = ZoneInfo("Europe/London")
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR = 3600
MINUTE = 60
WEEKDAYS = range(5)


def hm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def rng(text: str) -> tuple[int, int]:
    a, b = text.split("-")
    return hm(a), hm(b)


def at(tz, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def office() -> BusinessCalendar:
    """The example config's calendar: Mon-Thu 09-18, Fri 09-12 + 13-17, two October holidays."""
    day = [rng("09:00-18:00")]
    return BusinessCalendar(
        timezone="Asia/Shanghai",
        hours={0: day, 1: day, 2: day, 3: day, 4: [rng("09:00-12:00"), rng("13:00-17:00")]},
        holidays=frozenset({date(2026, 10, 1), date(2026, 10, 2)}),
    )


def ten_to_six(tz: str, holidays=frozenset()) -> BusinessCalendar:
    return BusinessCalendar(tz, {d: [rng("10:00-18:00")] for d in WEEKDAYS}, holidays)


def utc(t: datetime) -> datetime:
    """The instant a possibly naive input stands for (naive means UTC), in UTC: arithmetic on
    aware datetimes in a DST zone is wall-clock arithmetic, and we want real time."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def held_deadline(cal, entered, sla, deadline, hold_from, hold_to):
    """The deadline after the clock was paused from hold_from to hold_to (the SLA module's rule)."""
    remaining = cal.between(hold_from, deadline)
    return cal.add(hold_to, remaining)


# -- deadlines in working hours ------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "monday"),
    [
        ("UTC", date(2026, 1, 12)),
        ("Europe/London", date(2026, 1, 12)),  # GMT
        ("Europe/London", date(2026, 6, 15)),  # BST
    ],
)
def test_created_monday_evening_before_a_tuesday_holiday_is_due_wednesday_afternoon(tz, monday):
    zone = ZoneInfo(tz)
    tuesday, wednesday = monday + timedelta(days=1), monday + timedelta(days=2)
    cal = ten_to_six(tz, holidays={tuesday})
    created = datetime.combine(monday, time(20, 0), tzinfo=zone)
    deadline = cal.add(created, 4 * HOUR)
    assert deadline == datetime.combine(wednesday, time(14, 0), tzinfo=zone)
    assert deadline.tzinfo is UTC


def test_a_deadline_landing_exactly_at_closing_stays_at_closing():
    cal = ten_to_six("UTC")
    start = at(UTC, 2026, 1, 12, 14)
    assert cal.add(start, 4 * HOUR) == at(UTC, 2026, 1, 12, 18)
    assert cal.add(start, 4 * HOUR + 1) == at(UTC, 2026, 1, 13, 10) + timedelta(seconds=1)


def test_two_full_working_weeks_end_at_friday_closing_not_monday_opening():
    cal = office()  # 4 x 9 h + 3 h + 4 h = 43 business hours a week
    assert cal.add(at(SHANGHAI, 2026, 9, 7, 9), 2 * 43 * HOUR) == at(SHANGHAI, 2026, 9, 18, 17)


def test_created_before_opening_counts_from_opening():
    cal = ten_to_six("UTC")
    assert cal.add(at(UTC, 2026, 1, 12, 7), HOUR) == at(UTC, 2026, 1, 12, 11)


def test_created_on_the_weekend_counts_from_monday_opening():
    cal = ten_to_six("UTC")
    assert cal.add(at(UTC, 2026, 1, 17, 12), HOUR) == at(UTC, 2026, 1, 19, 11)
    assert cal.add(at(UTC, 2026, 1, 16, 17), 2 * HOUR) == at(UTC, 2026, 1, 19, 11)


def test_friday_lunch_break_is_not_counted():
    cal = office()
    friday = (2026, 9, 25)
    assert cal.add(at(SHANGHAI, *friday, 11, 45), 30 * MINUTE) == at(SHANGHAI, *friday, 13, 15)
    assert cal.add(at(SHANGHAI, *friday, 11, 45), 15 * MINUTE) == at(SHANGHAI, *friday, 12, 0)
    assert cal.add(at(SHANGHAI, *friday, 12, 30), 30 * MINUTE) == at(SHANGHAI, *friday, 13, 30)
    assert cal.between(at(SHANGHAI, *friday, 11), at(SHANGHAI, *friday, 14)) == 2 * HOUR


def test_shanghai_office_skips_the_national_day_holidays_and_the_weekend():
    cal = office()
    # Wednesday 17:50: 10 minutes left that day; Thu/Fri are holidays, then the weekend
    assert cal.add(at(SHANGHAI, 2026, 9, 30, 17, 50), 30 * MINUTE) == at(SHANGHAI, 2026, 10, 5, 9, 20)
    assert cal.add(at(SHANGHAI, 2026, 10, 1, 10), 30 * MINUTE) == at(SHANGHAI, 2026, 10, 5, 9, 30)
    assert cal.between(at(SHANGHAI, 2026, 9, 30, 18), at(SHANGHAI, 2026, 10, 5, 9)) == 0


def test_is_open_from_opening_time_until_just_before_closing():
    cal = office()
    assert cal.is_open(at(SHANGHAI, 2026, 9, 28, 9))
    assert cal.is_open(at(SHANGHAI, 2026, 9, 28, 17, 59))
    assert not cal.is_open(at(SHANGHAI, 2026, 9, 28, 18))
    assert not cal.is_open(at(SHANGHAI, 2026, 9, 28, 8, 59))
    assert not cal.is_open(at(SHANGHAI, 2026, 9, 25, 12, 30))  # Friday lunch
    assert not cal.is_open(at(SHANGHAI, 2026, 10, 1, 10))  # holiday


def test_between_is_zero_when_the_end_is_not_after_the_start():
    cal = office()
    t = at(SHANGHAI, 2026, 9, 28, 10)
    assert cal.between(t, t) == 0
    assert cal.between(t, t - timedelta(hours=1)) == 0


# -- daylight saving -----------------------------------------------------------------------


def test_a_24x7_berlin_calendar_has_a_23_hour_and_a_25_hour_day():
    cal = BusinessCalendar("Europe/Berlin", {d: [(0, 1440)] for d in range(7)})
    assert cal.between(at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30)) == 23 * HOUR
    assert cal.between(at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)) == 25 * HOUR
    assert cal.between(at(BERLIN, 2026, 5, 10), at(BERLIN, 2026, 5, 11)) == 24 * HOUR
    # 24 real hours after Sunday midnight the local clock reads 01:00 on Monday
    assert cal.add(at(BERLIN, 2026, 3, 29), 24 * HOUR) == at(BERLIN, 2026, 3, 30, 1)
    assert cal.add(at(BERLIN, 2026, 10, 25), 24 * HOUR) == at(BERLIN, 2026, 10, 25, 23)


def test_a_nine_to_six_berlin_calendar_keeps_local_hours_across_both_changes():
    every_day = BusinessCalendar("Europe/Berlin", {d: [rng("09:00-18:00")] for d in range(7)})
    assert every_day.between(at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30)) == 9 * HOUR
    assert every_day.between(at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)) == 9 * HOUR
    weekdays = BusinessCalendar("Europe/Berlin", {d: [rng("09:00-18:00")] for d in WEEKDAYS})
    # Friday 17:00 + 2 h -> Monday 10:00 local, whichever offset Monday has
    assert weekdays.add(at(BERLIN, 2026, 3, 27, 17), 2 * HOUR) == at(BERLIN, 2026, 3, 30, 10)
    assert weekdays.add(at(BERLIN, 2026, 10, 23, 17), 2 * HOUR) == at(BERLIN, 2026, 10, 26, 10)
    assert weekdays.add(at(BERLIN, 2026, 3, 27, 17), 2 * HOUR) == at(UTC, 2026, 3, 30, 8)
    assert weekdays.add(at(BERLIN, 2026, 10, 23, 17), 2 * HOUR) == at(UTC, 2026, 10, 26, 9)


def test_a_range_over_the_changed_hour_lasts_the_real_elapsed_time():
    sunday_night = BusinessCalendar("Europe/Berlin", {6: [rng("01:00-04:00")]})
    assert sunday_night.between(at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30)) == 2 * HOUR
    assert sunday_night.between(at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)) == 4 * HOUR


def test_a_range_starting_in_the_skipped_hour_opens_when_the_clock_jumps():
    cal = BusinessCalendar("Europe/Berlin", {6: [rng("02:30-05:00")]})
    # 02:30 never happens on 29 March: open from 03:00 (the jump) to 05:00
    assert cal.between(at(BERLIN, 2026, 3, 29), at(BERLIN, 2026, 3, 30)) == 2 * HOUR
    assert cal.add(at(BERLIN, 2026, 3, 29), 1) == at(UTC, 2026, 3, 29, 1) + timedelta(seconds=1)
    # 02:30 happens twice on 25 October: open from the first one (CEST) to 05:00 CET
    assert cal.between(at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)) == 3.5 * HOUR
    assert cal.add(at(BERLIN, 2026, 10, 25), 1) == at(UTC, 2026, 10, 25, 0, 30) + timedelta(seconds=1)


# -- holds (clock paused) -----------------------------------------------------------------


def test_a_hold_over_the_holidays_pushes_the_deadline_by_the_business_time_it_covered():
    cal = office()
    entered = at(SHANGHAI, 2026, 9, 30, 17)  # Wed: 1 h left that day, then Thu/Fri holidays
    deadline = cal.add(entered, 4 * HOUR)
    assert deadline == at(SHANGHAI, 2026, 10, 5, 12)
    hold_from, hold_to = at(SHANGHAI, 2026, 9, 30, 17, 30), at(SHANGHAI, 2026, 10, 5, 10)
    new_deadline = held_deadline(cal, entered, 4 * HOUR, deadline, hold_from, hold_to)
    assert new_deadline == at(SHANGHAI, 2026, 10, 5, 13, 30)  # 30 min Wed + 1 h Mon held
    assert cal.between(entered, new_deadline) - cal.between(hold_from, hold_to) == 4 * HOUR


def test_a_hold_over_a_night_does_not_move_the_deadline():
    cal = office()
    entered = at(SHANGHAI, 2026, 9, 28, 16)
    deadline = cal.add(entered, 4 * HOUR)
    assert deadline == at(SHANGHAI, 2026, 9, 29, 11)
    night = (at(SHANGHAI, 2026, 9, 28, 20), at(SHANGHAI, 2026, 9, 29, 8))
    assert held_deadline(cal, entered, 4 * HOUR, deadline, *night) == deadline


def test_a_hold_inside_working_hours_moves_the_deadline_by_its_length():
    cal = office()
    entered = at(SHANGHAI, 2026, 9, 28, 9)
    deadline = cal.add(entered, 4 * HOUR)
    hold = (at(SHANGHAI, 2026, 9, 28, 10), at(SHANGHAI, 2026, 9, 28, 10, 45))
    assert held_deadline(cal, entered, 4 * HOUR, deadline, *hold) == at(SHANGHAI, 2026, 9, 28, 13, 45)


# -- wall clock, inputs and outputs ---------------------------------------------------------


def test_wall_clock_counts_every_second():
    start = at(BERLIN, 2026, 3, 29)
    assert WALL_CLOCK.add(start, 24 * HOUR) == at(BERLIN, 2026, 3, 30, 1)
    assert WALL_CLOCK.add(start, 1.5) == start + timedelta(seconds=1.5)
    assert WALL_CLOCK.add(start, 0).tzinfo is UTC
    assert WALL_CLOCK.between(at(BERLIN, 2026, 10, 25), at(BERLIN, 2026, 10, 26)) == 25 * HOUR
    assert WALL_CLOCK.between(at(UTC, 2026, 1, 2), at(UTC, 2026, 1, 1)) == 0
    assert WALL_CLOCK.is_open(at(UTC, 2026, 1, 1, 3))
    with pytest.raises(ValueError):
        WALL_CLOCK.add(start, -1)


def test_naive_times_are_utc_and_deadlines_come_back_in_utc():
    cal = ten_to_six("Asia/Tokyo")
    naive = datetime(2026, 1, 12, 0, 30)  # 09:30 in Tokyo
    deadline = cal.add(naive, HOUR)
    assert deadline == at(ZoneInfo("Asia/Tokyo"), 2026, 1, 12, 11)
    assert deadline.tzinfo is UTC
    assert deadline == cal.add(naive.replace(tzinfo=UTC), HOUR)
    in_new_york = naive.replace(tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert deadline == cal.add(in_new_york, HOUR)
    assert cal.between(naive, deadline) == HOUR


def test_adding_nothing_returns_the_start_even_when_closed():
    cal = office()
    sunday = at(SHANGHAI, 2026, 9, 27, 3, 17)
    assert cal.add(sunday, 0) == sunday
    assert cal.add(sunday, 0).tzinfo is UTC
    assert BusinessCalendar("UTC", {}).add(sunday, 0) == sunday


def test_fractional_seconds_are_kept_to_the_microsecond():
    cal = office()
    start = at(SHANGHAI, 2026, 9, 28, 9)
    assert cal.add(start, 0.25) == start + timedelta(microseconds=250_000)
    assert cal.between(start, start + timedelta(microseconds=1)) == pytest.approx(1e-6)


def test_overlapping_ranges_are_merged():
    cal = BusinessCalendar("UTC", {0: [(600, 780), (540, 720), (780, 800)]})
    assert cal.hours == {0: ((540, 800),)}
    assert cal.between(at(UTC, 2026, 1, 12), at(UTC, 2026, 1, 13)) == (800 - 540) * MINUTE


# -- refusals -------------------------------------------------------------------------------


def test_a_calendar_without_working_hours_cannot_produce_a_deadline():
    cal = BusinessCalendar("Asia/Shanghai", {}, holidays={date(2026, 10, 1)})
    with pytest.raises(ValueError, match="calendar has no working hours"):
        cal.add(at(UTC, 2026, 1, 1), 1)
    assert cal.between(at(UTC, 2026, 1, 1), at(UTC, 2027, 1, 1)) == 0
    assert not cal.is_open(at(UTC, 2026, 1, 5, 10))


def test_a_calendar_closed_by_holidays_for_a_decade_refuses_instead_of_looping():
    every_day = {date(2026, 1, 1) + timedelta(days=i) for i in range(12 * 366)}
    cal = BusinessCalendar("UTC", {d: [(540, 1080)] for d in WEEKDAYS}, holidays=every_day)
    with pytest.raises(ValueError, match="no deadline within 10 years"):
        cal.add(at(UTC, 2026, 1, 5), HOUR)


def test_negative_or_non_finite_slas_are_refused():
    cal = office()
    for bad in (-1, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="SLA seconds"):
            cal.add(at(UTC, 2026, 1, 5), bad)


@pytest.mark.parametrize(
    "hours",
    [
        {7: [(540, 1080)]},  # no such weekday
        {0: [(1080, 540)]},  # ends before it starts
        {0: [(540, 1441)]},  # past midnight
        {0: [(-1, 60)]},
        {0: [(540,)]},
        {0: [(9.5, 18)]},  # not whole minutes
    ],
)
def test_impossible_opening_hours_are_refused(hours):
    with pytest.raises(ValueError):
        BusinessCalendar("UTC", hours)


def test_an_unknown_timezone_is_refused_with_its_name():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        BusinessCalendar("Mars/Olympus", {0: [(540, 1080)]})


def test_a_calendar_survives_pickling_and_compares_by_value():
    cal = office()
    cal.add(at(UTC, 2026, 9, 28), HOUR)  # build some of the index first
    copy = pickle.loads(pickle.dumps(cal))
    assert copy == cal and hash(copy) == hash(cal)
    assert copy.add(at(UTC, 2026, 9, 28), HOUR) == cal.add(at(UTC, 2026, 9, 28), HOUR)
    assert copy != ten_to_six("Asia/Shanghai")


def test_concurrent_first_use_from_threads_gives_the_same_deadlines():
    starts = [at(UTC, 2024, 1, 1) + timedelta(days=37 * i, minutes=13 * i) for i in range(60)]
    expected = [office().add(s, 30 * HOUR) for s in starts]
    shared = office()
    results: dict[int, list[datetime]] = {}

    def work(n: int) -> None:
        order = starts[n:] + starts[:n]  # every thread extends the index in a different order
        got = {s: shared.add(s, 30 * HOUR) for s in order}
        results[n] = [got[s] for s in starts]

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(got == expected for got in results.values())


# -- properties over random calendars -------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Shanghai"]
INPUT_ZONES = [None, UTC, BERLIN, ZoneInfo("America/New_York"), SHANGHAI]
DST_CHANGES = [  # local dates on which the tested zones change their clocks, 2024-2028
    datetime(2024, 3, 10),
    datetime(2024, 3, 31),
    datetime(2024, 10, 27),
    datetime(2024, 11, 3),
    datetime(2025, 3, 9),
    datetime(2025, 3, 30),
    datetime(2025, 10, 26),
    datetime(2025, 11, 2),
    datetime(2026, 3, 8),
    datetime(2026, 3, 29),
    datetime(2026, 10, 25),
    datetime(2026, 11, 1),
    datetime(2027, 3, 14),
    datetime(2027, 3, 28),
    datetime(2027, 10, 31),
    datetime(2027, 11, 7),
    datetime(2028, 3, 12),
    datetime(2028, 3, 26),
    datetime(2028, 10, 29),
    datetime(2028, 11, 5),
]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def day_ranges(step: int):
    """One weekday's opening ranges: disjoint, on a grid of `step` minutes, 00:00-24:00."""
    return (
        st.lists(st.integers(0, 1440 // step), unique=True, max_size=6)
        .map(lambda marks: sorted(m * step for m in marks))
        .map(lambda m: [(m[i], m[i + 1]) for i in range(0, len(m) - 1, 2)])
    )


def calendars(step: int = 15):
    return st.builds(
        BusinessCalendar,
        timezone=st.sampled_from(ZONES),
        hours=st.dictionaries(st.integers(0, 6), day_ranges(step), max_size=7),
        holidays=st.frozensets(st.dates(date(2024, 1, 1), date(2028, 12, 31)), max_size=30),
    )


def working(step: int = 15):
    return calendars(step).filter(lambda cal: any(cal.hours.values()))


def within_reach(cal: BusinessCalendar, sla: float) -> float:
    """Cap an SLA at 200 working weeks, so a sparse random calendar still has a deadline
    within the 10 years a calendar searches."""
    weekly = sum(end - start for ranges in cal.hours.values() for start, end in ranges) * MINUTE
    return min(sla, 200 * weekly)


def near_a_clock_change():
    return st.builds(
        lambda day, offset, tz: (day + timedelta(seconds=offset)).replace(tzinfo=tz),
        st.sampled_from(DST_CHANGES),
        st.integers(-3 * 86400, 3 * 86400),
        st.sampled_from(INPUT_ZONES),
    )


instants = st.one_of(
    st.datetimes(datetime(2024, 1, 1), datetime(2028, 12, 31, 23, 59), timezones=st.sampled_from(INPUT_ZONES)),
    near_a_clock_change(),
)
slas = st.one_of(
    st.integers(0, 30 * 86400),
    st.floats(0, 30 * 86400, allow_nan=False),
    st.sampled_from([0, 1, 600, 1800, 4 * HOUR, 48 * HOUR]),
)


@PROPERTY
@given(working(), instants, slas)
def test_property_the_business_time_up_to_the_deadline_is_the_sla(cal, start, sla):
    sla = within_reach(cal, sla)
    deadline = cal.add(start, sla)
    assert cal.between(start, deadline) == pytest.approx(sla, abs=1e-6)
    assert deadline >= utc(start) and deadline.tzinfo is UTC
    if deadline > utc(start):  # the deadline is the earliest such instant: open right before it
        assert cal.is_open(deadline - timedelta(microseconds=1))


@PROPERTY
@given(working(), instants, slas, slas)
def test_property_a_longer_sla_never_has_an_earlier_deadline(cal, start, sla1, sla2):
    short, long = sorted((within_reach(cal, sla1), within_reach(cal, sla2)))
    assert cal.add(start, short) <= cal.add(start, long)


@PROPERTY
@given(calendars(), instants, instants, instants)
def test_property_business_time_adds_up_over_consecutive_spans(cal, t1, t2, t3):
    a, b, c = sorted((t1, t2, t3), key=utc)
    assert cal.between(a, c) == pytest.approx(cal.between(a, b) + cal.between(b, c), abs=1e-6)
    assert 0 <= cal.between(a, c) <= (utc(c) - utc(a)).total_seconds() + 1e-6


@PROPERTY
@given(st.one_of(calendars(), st.just(WALL_CLOCK)), instants, st.lists(instants, max_size=5))
def test_property_time_since_an_origin_is_between_with_a_sign(cal, origin, moments):
    """``since`` (the forecast's many visits against one window start) is ``between``, negative
    before the origin, to the last bit."""
    offset = cal.since(origin)
    for t in moments:
        expected = cal.between(origin, t) if utc(t) >= utc(origin) else -cal.between(t, origin)
        assert offset(t) == expected


@PROPERTY
@given(working(), instants, slas, st.floats(0, 1), st.integers(0, 10 * 86400))
def test_property_a_hold_adds_exactly_the_business_time_it_covered(cal, entered, sla, where, length):
    sla = within_reach(cal, sla)
    deadline = cal.add(entered, sla)
    hold_from = utc(entered) + (deadline - utc(entered)) * where
    assume(hold_from < deadline)
    hold_to = hold_from + timedelta(seconds=length)
    new_deadline = held_deadline(cal, entered, sla, deadline, hold_from, hold_to)
    assert new_deadline >= deadline
    held = cal.between(hold_from, hold_to)
    assert cal.between(entered, new_deadline) - held == pytest.approx(sla, abs=1e-6)


@PROPERTY
@given(calendars(step=60), instants, st.integers(0, 40 * 86400))
def test_property_between_matches_a_day_by_day_reckoning(cal, a, span):
    # Whole-hour ranges only: there, zoneinfo's own fold=0 reading of each range agrees with
    # the calendar's "first instant the clock reads it" rule, so it serves as the reference.
    zone = ZoneInfo(cal.timezone)
    lo, hi = utc(a), utc(a) + timedelta(seconds=span)
    expected = 0.0
    day = lo.astimezone(zone).date() - timedelta(days=1)
    while day <= hi.astimezone(zone).date() + timedelta(days=1):
        if day not in cal.holidays:
            for start, end in cal.hours.get(day.weekday(), ()):
                midnight = datetime.combine(day, time())
                # to UTC first: aware datetimes sharing a tzinfo subtract as wall times
                opens = (midnight + timedelta(minutes=start)).replace(tzinfo=zone).astimezone(UTC)
                closes = (midnight + timedelta(minutes=end)).replace(tzinfo=zone).astimezone(UTC)
                overlap = (min(closes, hi) - max(opens, lo)).total_seconds()
                expected += max(overlap, 0.0)
        day += timedelta(days=1)
    assert cal.between(a, hi) == pytest.approx(expected, abs=1e-6)


@PROPERTY
@given(st.sampled_from(ZONES), instants, slas, instants)
def test_property_a_24x7_calendar_is_the_wall_clock_in_every_zone(tz, start, sla, other):
    cal = BusinessCalendar(tz, {d: [(0, 1440)] for d in range(7)})
    assert cal.add(start, sla) == WALL_CLOCK.add(start, sla)
    a, b = sorted((start, other), key=utc)
    assert cal.between(a, b) == pytest.approx(WALL_CLOCK.between(a, b), abs=1e-6)
    assert cal.between(start, WALL_CLOCK.add(start, sla)) == pytest.approx(sla, abs=1e-6)


def first_instant_reading(zone: ZoneInfo, wall: datetime) -> datetime:
    """Brute force: the first UTC second at which the local clock reads `wall` or later."""
    t = wall.replace(tzinfo=UTC) - timedelta(hours=15)  # offsets are within -12 h .. +14 h
    while t.astimezone(zone).replace(tzinfo=None) < wall:
        t += timedelta(minutes=1)
    t -= timedelta(minutes=1)
    while t.astimezone(zone).replace(tzinfo=None) < wall:
        t += timedelta(seconds=1)
    return t


CHANGE_DAYS = DST_CHANGES + [  # and Santiago's and Lord Howe's
    datetime(2024, 4, 7),
    datetime(2024, 10, 6),
    datetime(2026, 4, 5),
    datetime(2026, 9, 6),
]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(
        # 30-minute shift, clock changes at midnight, negative DST, and the usual ones
        ["Australia/Lord_Howe", "America/Santiago", "Europe/Dublin", "Europe/Berlin", "America/New_York"]
    ),
    st.sampled_from(CHANGE_DAYS),
    st.integers(-1, 1),
    day_ranges(5),
)
def test_property_on_clock_change_days_ranges_run_from_when_the_clock_first_reads_them(tz, day, shift, ranges):
    zone = ZoneInfo(tz)
    d = (day + timedelta(days=shift)).date()
    cal = BusinessCalendar(tz, {d.weekday(): ranges})
    midnight = datetime.combine(d, time())
    expected = 0.0
    for start, end in cal.hours.get(d.weekday(), ()):
        opens = first_instant_reading(zone, midnight + timedelta(minutes=start))
        closes = first_instant_reading(zone, midnight + timedelta(minutes=end))
        expected += max((closes - opens).total_seconds(), 0.0)
    day_start = first_instant_reading(zone, midnight)
    day_end = first_instant_reading(zone, midnight + timedelta(days=1))
    assert cal.between(day_start, day_end) == expected


@PROPERTY
@given(working(), instants, st.integers(0, 20 * 86400))
def test_property_the_utc_day_table_counts_what_between_counts(cal, a, span):
    """``utc_days`` is how reports count business time in SQL (lateness): a day's running total
    plus its ranges before the instant, differences of two such totals equal ``between``."""
    lo, hi = utc(a), utc(a) + timedelta(seconds=span)
    first, last = int(lo.timestamp() // 86400), int(hi.timestamp() // 86400)
    table = {d: (cum, ranges) for d, cum, ranges in cal.utc_days(first, last)}
    assert sorted(table) == list(range(first, last + 1))

    def total(t: datetime) -> float:
        cum, ranges = table[int(t.timestamp() // 86400)]
        assert all(
            d * 86400 <= start < end <= (d + 1) * 86400 for start, end in ranges for d in [int(t.timestamp() // 86400)]
        )
        return cum + sum(min(t.timestamp(), end) - start for start, end in ranges if t.timestamp() > start)

    assert total(hi) - total(lo) == pytest.approx(cal.between(lo, hi), abs=1e-3)


@PROPERTY
@given(working(), instants, st.integers(0, 30 * 86400), st.integers(0, 20 * 86400 * 1000))
def test_property_a_ladder_time_has_passed_exactly_when_the_elapsed_business_time_exceeds_it(cal, a, sla, span_ms):
    """``sla replay`` counts a visit's elapsed business time E in SQL and compares it with the
    ladder's seconds instead of adding them: ``add`` is the first instant at which E reaches them,
    so E > s means the visit ran past that time and E < s that it stopped before (an E within a
    second of s goes to ``add`` itself, since the SQL counts in floats)."""
    start = utc(a)
    end = start + timedelta(milliseconds=span_ms)
    due = cal.add(start, sla)
    elapsed = cal.between(start, end)
    if elapsed > sla:
        assert end > due
    if elapsed < sla:
        assert end < due
    assert (end >= due) == (elapsed >= sla)  # a visit still running at ``end`` is due at it
