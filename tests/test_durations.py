"""The one duration parser: the forms SPEC §3 allows, and a lossless round trip with the formatter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ffctl.core.durations import approx_duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("4h", 14400),
        ("2d", 172800),
        ("1h30m", 5400),
        ("1d2h", 93600),
        ("0m", 0),
        ("0s", 0),
        ("1d1h1m1s", 90061),
        ("120m", 7200),
        (" 45s ", 45),
    ],
)
def test_parse_duration_accepts_the_documented_forms(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "   ", "-5m", "30", "1.5h", "30x", "m30", "30m1h", "1h1h", "1 h", "h", "1H", "+5m", "1h 30m"]
)
def test_parse_duration_refuses_anything_else_with_the_allowed_forms(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert "90s, 30m, 4h, 2d, 1h30m" in message
    assert "Traceback" not in message


def test_parse_duration_refuses_non_strings() -> None:
    with pytest.raises(ValueError, match="30m"):
        parse_duration(30)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5400, "1h30m"),
        (45, "45s"),
        (172800, "2d"),
        (0, "0s"),
        (-3600, "-1h"),
        (90061, "1d1h1m1s"),
        (59.6, "1m"),
        (0.4, "0s"),
        (-0.4, "0s"),
        (-90.5, "-1m31s"),
        (3600.0, "1h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**9))
def test_format_then_parse_is_lossless(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=1, max_value=10**9))
def test_negative_durations_format_with_a_minus(seconds: int) -> None:
    assert format_duration(-seconds) == "-" + format_duration(seconds)


@given(
    st.tuples(*(st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)) for _ in range(4))).filter(
        lambda parts: any(p is not None for p in parts)
    )
)
def test_parse_sums_the_units_and_format_gives_the_canonical_form(parts: tuple[int | None, ...]) -> None:
    text = "".join(f"{amount}{unit}" for amount, unit in zip(parts, "dhms") if amount is not None)
    expected = sum((amount or 0) * size for amount, size in zip(parts, (86400, 3600, 60, 1)))
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (90, "1m30s"),
        (3599, "59m59s"),
        (9000, "2h30m"),
        (172799, "2d"),
        (150183109, "1738d6h"),
        (-5400, "-1h30m"),
        (93784, "1d2h"),
    ],
)
def test_approx_duration_keeps_the_two_largest_units(seconds: int, text: str) -> None:
    assert approx_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**9))
def test_approx_duration_is_off_by_at_most_half_its_second_unit(seconds: int) -> None:
    text = approx_duration(seconds)
    assert sum(unit in text for unit in "dhms") <= 2
    sizes = [86400, 3600, 60, 1]
    largest = next((i for i, size in enumerate(sizes) if seconds >= size), 3)
    assert abs(parse_duration(text) - seconds) <= sizes[min(largest + 1, 3)] // 2
