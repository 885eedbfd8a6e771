"""Durations as people write them in config and on the command line: ``90s``, ``30m``, ``1h30m``.

The one duration parser of ffctl: SLAs, escalation delays, dwell limits and CLI options all
go through :func:`parse_duration`, and everything shown to a person goes through
:func:`format_duration`, so the two forms always agree.
"""

from __future__ import annotations

import re

from ffctl.i18n import N_, _

DURATION_FORMS = N_("a whole number with units d, h, m, s, largest first, e.g. 90s, 30m, 4h, 2d, 1h30m")
#: How far ffctl plans: no configured duration is longer, and no deadline is looked for further
#: out (a calendar that cannot reach one within it is practically always closed).
HORIZON_DAYS = 3653

_UNIT_SECONDS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``90s``, ``30m``, ``4h``, ``2d``, ``1h30m`` or ``0m``.

    Units are d, h, m, s, in that order, each at most once, with whole numbers. Anything else
    raises ``ValueError`` with a message saying which forms are allowed.
    """
    if not isinstance(text, str):
        raise ValueError(_("expected a duration such as 30m, got {text!r}").format(text=text))
    cleaned = text.strip()
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        shown = repr(text) if cleaned else _("an empty value")
        raise ValueError(_("invalid duration {shown}: use {forms}").format(shown=shown, forms=_(DURATION_FORMS)))
    return sum(int(amount) * seconds for amount, (_unit, seconds) in zip(match.groups(), _UNIT_SECONDS) if amount)


def format_duration(seconds: int | float) -> str:
    """The shortest duration text for ``seconds``, rounded to whole seconds: ``1h30m``, ``45s``, ``2d``, ``0s``.

    Negative durations (time left after a deadline passed) get a leading minus: ``-1h``.
    """
    whole = int(abs(seconds) + 0.5)  # round half up, symmetric around zero
    if whole == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT_SECONDS:
        amount, whole = divmod(whole, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return ("-" if seconds < 0 else "") + "".join(parts)


def approx_duration(seconds: int | float, units: int = 2) -> str:
    """``seconds`` to its ``units`` largest units, rounded: ``1738d4h``, ``2h30m``, ``45s``.

    For figures a person reads at a glance (report medians, totals over SLA), where
    ``1738d3h31m49s`` would be exact and unreadable. Config and audit texts use
    :func:`format_duration`.
    """
    whole = int(abs(seconds) + 0.5)
    sizes = [size for _unit, size in _UNIT_SECONDS]
    first = next((i for i, size in enumerate(sizes) if whole >= size), len(sizes) - 1)
    step = sizes[min(first + units - 1, len(sizes) - 1)]
    rounded = (whole + step // 2) // step * step
    return format_duration(-rounded if seconds < 0 else rounded)
