"""The ffctl config: TOML parsed and validated into frozen, typed objects (SPEC §3).

``load_config`` / ``parse_config`` either return a :class:`Config` that every other module can
trust without re-checking, or raise :class:`~ffctl.core.errors.ConfigError` listing every problem
found at once, each naming the file, the dotted key and what is wrong.

Stays light on purpose (every command loads the config): stdlib only at import time; croniter
is imported while validating ``[schedule]`` and ``ffctl.core.calendar`` when a calendar is asked for.
"""

from __future__ import annotations

import os
import re
import sys
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as the tomli backport
    import tomli as tomllib

from ffctl import i18n
from ffctl.core.configcache import record_env, record_file
from ffctl.core.durations import HORIZON_DAYS, format_duration, parse_duration
from ffctl.core.errors import ConfigError, ConfigProblem, NotFound
from ffctl.core.secrets import mask_endpoint, mask_url, url_problem
from ffctl.i18n import N_, _

# ---------------------------------------------------------------------------------------------
# Vocabulary the config may use. Keys here are part of the file format users write.

#: Order attributes a workflow ``match`` or a node ``when`` may test.
MATCH_KEYS = ("channel", "region", "tier", "customer", "category", "sku", "has_custom_items", "priority", "sales_rep")
#: Attributes of an order's lines: the order matches if any of its lines has a listed value.
LINE_MATCH_KEYS = frozenset({"category", "sku"})
_BOOL_MATCH_KEYS = frozenset({"has_custom_items"})

ESCALATION_ACTIONS = ("remind", "escalate", "notify", "auto_approve", "auto_reject")
AUTO_KINDS = ("allocate", "ship")
RULE_PRIORITIES = ("low", "normal", "high")
DWELL_CLOCKS = ("wall", "calendar")
SCHEDULE_JOBS = ("sla_sweep", "notify_send", "rules_run", "daily_report")
#: The only order field that names a person, usable wherever recipients are listed.
ORDER_RECIPIENTS = ("order.sales_rep",)

#: KPI target name -> how it is measured; rates are fractions 0..1, the others are times.
KPI_TARGETS = {
    "order_confirmation_minutes": "minutes",
    "allocation_minutes": "minutes",
    "pick_accuracy": "rate",
    "on_time_shipping": "rate",
    "fill_rate": "rate",
    "perfect_order": "rate",
    "cycle_time_hours": "hours",
    "sla_attainment": "rate",
    "return_rate": "rate",
}

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_TOP_KEYS = (
    "database",
    "defaults",
    "calendars",
    "roles",
    "users",
    "workflows",
    "nodes",
    "rules",
    "notify",
    "schedule",
    "kpi",
    "import_profiles",
    "forecast",
)
_NODE_KEYS = ("owner", "sla", "calendar", "warn_at", "critical", "escalation", "when", "auto", "forecast_alert")
_FORECAST_KEYS = ("window", "min_history", "sample")
_STEP_KEYS = ("after", "action", "to", "reason")
_RULE_COMMON_KEYS = ("kind", "notify", "priority")
_EMAIL_KEYS = (
    "host",
    "port",
    "sender",
    "username",
    "password_env",
    "starttls",
    "tls",
    "ca_file",
    "plain_login_on_loopback",
)
#: Channels reached by an HTTP POST, on a user or a role (a team's group chat belongs to the role).
HTTP_CHANNELS = ("webhook", "wecom", "dingtalk", "feishu", "slack")
#: ... and those whose vendor signs requests with a shared secret (the plain webhook: X-Ffctl-Signature).
SIGNED_CHANNELS = frozenset({"webhook", "dingtalk", "feishu"})
_CHANNEL_KEYS = ("url", "url_env", "secret_env")
#: What an import profile may map to: the columns of the orders import (core/imports/kinds.py KINDS,
#: which this light module cannot import; core/profiles.py checks that the two agree).
PROFILE_TARGETS = {
    "orders": (
        ("order_id", "customer", "sku", "qty"),
        ("line_no", "channel", "region", "unit_price", "created_at", "promised_ship_date", "priority", "sales_rep"),
    )
}
PROFILE_TIMES = ("created_at", "promised_ship_date")  # the columns a profile's date_format reads
_PROFILE_KEYS = ("kind", "base", "columns", "constants", "date_format", "skip", "fill_down")

DEFAULT_WARN_AT = 0.75


# ---------------------------------------------------------------------------------------------
# The typed config


class FrozenDict(dict):
    """A read-only dict: config mappings cannot change after loading, yet stay JSON- and pickle-friendly."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("config mappings are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict) -> FrozenDict:
        return self

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


@dataclass(frozen=True)
class CalendarConfig:
    name: str
    timezone: str
    #: weekday (0 = Monday .. 6 = Sunday) -> sorted (start, end) minutes since midnight; all 7 days present, () = closed
    hours: Mapping[int, tuple[tuple[int, int], ...]]
    holidays: frozenset[date]


@dataclass(frozen=True)
class ChannelTarget:
    """Where an HTTP channel posts: a URL written in the file or named by an environment variable
    (robot URLs carry their token), and the variable holding the signing secret, if any."""

    channel: str
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None

    def resolve_url(self) -> str | None:
        """The URL to post to now; None when its variable is not set."""
        if self.url is not None:
            return self.url
        found = os.environ.get(self.url_env or "", "").strip()
        return found or None

    def secret(self) -> str | None:
        """The signing secret from its variable; None when there is none (or it is not set)."""
        return os.environ.get(self.secret_env) if self.secret_env else None

    def shown(self) -> str:
        """The target as config check shows it: the URL masked, secrets by their variable's name."""
        where = mask_endpoint(self.url) if self.url is not None else f"${self.url_env}"
        return where + (_(", signed with ${variable}").format(variable=self.secret_env) if self.secret_env else "")


@dataclass(frozen=True)
class RoleConfig:
    name: str
    members: tuple[str, ...]
    escalate_to: str | None
    channels: Mapping[str, ChannelTarget] = field(default_factory=lambda: FrozenDict())


@dataclass(frozen=True)
class UserConfig:
    name: str
    email: str | None
    webhook: str | None  # the plain webhook's URL when the file writes it (url_env: see channels)
    channels: Mapping[str, ChannelTarget] = field(default_factory=lambda: FrozenDict())


@dataclass(frozen=True)
class WorkflowConfig:
    name: str
    match: Mapping[str, tuple]
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class EscalationStep:
    index: int  # position in the node's ladder, 0-based; stable key for "fired once"
    after_seconds: int  # time past the deadline, on the node's clock
    action: str
    to: tuple[str, ...]  # recipients of a `notify` step; () for the other actions
    reason: str | None


@dataclass(frozen=True)
class NodeConfig:
    name: str
    owner: str | None
    sla_seconds: int
    calendar: str | None
    warn_at: float
    critical: bool
    escalation: tuple[EscalationStep, ...]
    when: Mapping[str, tuple]
    auto: str | None
    forecast_alert: float | None = None  # p_breach at which the sweep warns the assignees (SPEC 9.4)


@dataclass(frozen=True)
class ForecastConfig:
    """``[forecast]``: what history the breach forecast learns from (core/forecast.py)."""

    window_seconds: int = 30 * 86400  # completed visits of the last 30 days
    min_history: int = 20  # fewer completed visits in the window: no figure, say so
    sample: int = 2000  # at most the node's most recent visits of the window


@dataclass(frozen=True)
class RuleConfig:
    name: str
    kind: str
    notify: tuple[str, ...]
    priority: str
    params: Mapping[str, object]


@dataclass(frozen=True)
class ImportProfile:
    """``[import_profiles.NAME]``: how another system's export becomes ffctl's orders file."""

    name: str
    columns: Mapping[str, str]  # source column, as the file spells it -> ffctl column
    constants: Mapping[str, str] = field(default_factory=lambda: FrozenDict())  # ffctl column -> value
    date_formats: tuple[str, ...] = ()  # strptime formats for created_at / promised_ship_date
    skip: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: FrozenDict())  # source column -> values
    fill_down: tuple[str, ...] = ()  # source columns only an order's first row carries
    kind: str = "orders"
    base: str | None = None  # a built-in profile this one extends


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int
    sender: str
    username: str | None = None
    password_env: str | None = None
    starttls: bool = False
    tls: bool = False  # implicit TLS from the first byte (port 465)
    ca_file: str | None = None  # trust these CAs instead of the system's (a company CA, a test relay)
    plain_login_on_loopback: bool = False  # allow a password without TLS to a relay on this machine

    def login_allowed(self) -> bool:
        """Whether a password may be sent: over TLS, or in clear to loopback when allowed."""
        return self.tls or self.starttls or (self.plain_login_on_loopback and is_loopback(self.host))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves this machine."""
    import ipaddress

    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class NotifyConfig:
    log: str | None = None
    email: EmailConfig | None = None
    max_attempts: int = 5
    webhook_timeout_seconds: float = 5.0


class UnknownName(NotFound, KeyError):
    """A node, role or calendar name the config does not define (exit 1 if it reaches the CLI)."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Config:
    file: str
    database_url: str | None
    timezone: str
    calendars: Mapping[str, CalendarConfig]
    roles: Mapping[str, RoleConfig]
    users: Mapping[str, UserConfig]
    workflows: tuple[WorkflowConfig, ...]
    nodes: Mapping[str, NodeConfig]
    rules: tuple[RuleConfig, ...]
    notify: NotifyConfig
    schedule: Mapping[str, str]
    kpi_targets: Mapping[str, float]
    #: ``[kpi.baseline]``: where each KPI stood before a change (same keys as the targets)
    kpi_baseline: Mapping[str, float] = field(default_factory=FrozenDict)
    #: things `config check` points out that are allowed but probably not meant (never errors)
    warnings: tuple[str, ...] = ()
    import_profiles: Mapping[str, ImportProfile] = field(default_factory=lambda: FrozenDict())
    forecast: ForecastConfig = ForecastConfig()
    #: ``[defaults] language`` ("zh-CN" or "en"); None: the locale's (ffctl/i18n.py)
    language: str | None = None
    _calendar_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def directory(self) -> Path:
        """The directory holding the config file; relative paths in it are resolved against this."""
        return Path(os.path.abspath(self.file)).parent

    def workflow_for(self, attrs: Mapping[str, object]) -> WorkflowConfig | None:
        """The first workflow, in file order, whose ``match`` fits the order's attributes."""
        return next((wf for wf in self.workflows if matches(wf.match, attrs)), None)

    def calendar(self, node: str):
        """The clock of ``node``: a BusinessCalendar for its calendar, or WALL_CLOCK when it has none."""
        from ffctl.core.calendar import WALL_CLOCK, BusinessCalendar

        if node not in self.nodes:
            raise UnknownName(
                _("unknown node {node!r}{did_you_mean}").format(node=node, did_you_mean=_did_you_mean(node, self.nodes))
            )
        name = self.nodes[node].calendar
        if name is None:
            return WALL_CLOCK
        cached = self._calendar_cache.get(name)
        if cached is None:
            spec = self.calendars[name]
            cached = BusinessCalendar(
                timezone=spec.timezone,
                hours={day: list(ranges) for day, ranges in spec.hours.items()},
                holidays=spec.holidays,
            )
            self._calendar_cache[name] = cached
        return cached

    def escalation_chain(self, role: str | None) -> tuple[str, ...]:
        """Roles above ``role``, nearest first: its escalate_to, that role's escalate_to, ...

        () for a role at the top, for None, and for a name that is not a role.
        """
        chain: list[str] = []
        current = self.roles.get(role) if role else None
        while (
            current is not None
            and current.escalate_to
            and current.escalate_to not in chain
            and current.escalate_to != role
        ):
            chain.append(current.escalate_to)
            current = self.roles.get(current.escalate_to)
        return tuple(chain)

    def channel_target(self, name: str, channel: str) -> ChannelTarget | None:
        """The HTTP channel ``channel`` of a user or a role (a team's group chat), or None."""
        holder = self.roles.get(name) or self.users.get(name)
        return holder.channels.get(channel) if holder is not None else None

    def members(self, role_or_user: str) -> tuple[str, ...]:
        """The people a name stands for: a role's members, or (name,) for a user or a role member.

        () for ``order.sales_rep`` (the caller resolves it from the order) and for unknown names.
        """
        role = self.roles.get(role_or_user)
        if role is not None:
            return role.members
        if role_or_user in self.users or any(role_or_user in r.members for r in self.roles.values()):
            return (role_or_user,)
        return ()


# ---------------------------------------------------------------------------------------------
# Matching orders against `match` / `when` (data, never code)


def matches(spec: Mapping[str, tuple], attrs: Mapping[str, object]) -> bool:
    """Whether an order with ``attrs`` fits ``spec`` (a workflow's match or a node's when).

    Every key of ``spec`` must fit; a key fits when the order's value is one of the listed values
    (strings compare case-insensitively). For ``category`` and ``sku`` the order may give a
    collection (its lines' values) and fits if any of them is listed. A missing attribute never
    fits. An empty spec matches every order.
    """
    for key, wanted in spec.items():
        actual = attrs.get(key)
        if actual is None:
            return False
        if isinstance(actual, (str, bytes)) or not isinstance(actual, Iterable) or isinstance(actual, Mapping):
            actual = (actual,)
        allowed = {_match_value(key, w) for w in wanted}
        if not any(_match_value(key, v) in allowed for v in actual if v is not None):
            return False
    return True


def _match_value(key: str, value: object) -> object:
    """The comparable form of a match value: booleans for flags, case-folded text otherwise."""
    if key in _BOOL_MATCH_KEYS:
        if isinstance(value, str):
            return value.strip().casefold() in ("true", "yes", "1", "y", "t")
        return bool(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        value = str(value).lower()
    return str(value).strip().casefold()


def _covers(earlier: Mapping[str, tuple], later: Mapping[str, tuple]) -> bool:
    """Whether every order matching ``later`` also matches ``earlier`` (so ``later`` is never reached)."""
    for key, wanted in earlier.items():
        if key not in later:
            return False
        if not {_match_value(key, v) for v in later[key]} <= {_match_value(key, v) for v in wanted}:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Loading


def example_config_text() -> str:
    """The shipped config.example.toml (packaged copy, or the source checkout's)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "config.example.toml", here.parent / "config.example.toml"):
        if candidate.exists():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError(_("config.example.toml is missing from this installation"))


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the config at ``path``; raises ConfigError listing every problem."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        error = ConfigError([ConfigProblem(file, "", _("no such config file"))])
        error.message = _("no config file at {path}").format(path=file)
        error.hint = _(
            "Run `ffctl init` to write one from the example, or point --config / FFCTL_CONFIG at your config."
        )
        raise error from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem(file, "", _("is a directory, not a config file"))]) from None
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(file, "", _("cannot read the config file: {value}").format(value=exc.strerror or exc))]
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = _("the file is not UTF-8 text (TOML must be UTF-8); save it as UTF-8 and try again")
        raise ConfigError([ConfigProblem(file, "", message, line)]) from None
    from ffctl.core import configcache

    config = configcache.get(file, raw)
    if config is None:
        with configcache.recording() as inputs:
            config = parse_config(text, file)
        configcache.put(file, raw, config, inputs)
    return config


def parse_config(text: str, file: str = "ffctl.toml") -> Config:
    """Parse and validate config text; ``file`` names it in messages and anchors relative paths."""
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(file, str(exc), text)]) from None
    except RecursionError:  # arrays or tables nested thousands deep: no config needs that
        raise ConfigError(
            [
                ConfigProblem(
                    file,
                    "",
                    _(
                        "invalid TOML: values are nested too deeply "
                        "(arrays or inline tables inside each other, thousands deep)"
                    ),
                )
            ]
        ) from None
    checker = _Checker(file, Path(os.path.abspath(file)).parent)
    config = checker.build(data)
    if checker.problems:
        unique = list({str(p): p for p in checker.problems}.values())
        # report in the order the sections appear in the file (checking order differs: nodes before workflows)
        position = {name: i for i, name in enumerate(data)}
        unique.sort(key=lambda p: position.get(re.split(r"[.\[]", p.key, maxsplit=1)[0], -1))
        raise ConfigError(unique)
    return config


def _syntax_problem(file: str, message: str, text: str) -> ConfigProblem:
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", message)
    line: int | None = None
    if found:
        line = int(found.group(1))
        lines = text.splitlines()
        shown = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        if _MAY_HOLD_SECRET.search(shown):  # a broken `url = "postgresql://u:pw@..."` line is never echoed
            shown = _("(the line is not shown: it may hold a password)")
        message = _("{problem} at column {column}").format(problem=message[: found.start()], column=found.group(2)) + (
            f": {shown}" if shown else ""
        )
    elif message.rstrip().endswith("(at end of document)"):
        line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
        message = message.rstrip().removesuffix("(at end of document)").rstrip() + _(" (at the end of the file)")
    return ConfigProblem(file, "", _("invalid TOML: {problem}").format(problem=message[:1].lower() + message[1:]), line)


# ---------------------------------------------------------------------------------------------
# Validation: one pass per section, collecting every problem


_MISSING: Any = object()
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_HOUR_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FLAG_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_MAY_HOLD_SECRET = re.compile(r"(?i)://|@|\burl\b|pass|secret|token")

_KIND_NAMES = {
    "str": N_("a string"),
    "int": N_("a whole number"),
    "number": N_("a number"),
    "bool": N_("true or false"),
    "list": N_("a list"),
    "table": N_("a table"),
}


def _is_kind(value: object, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    if kind == "table":
        return isinstance(value, dict)
    raise ValueError(kind)


def _describe_value(value: object) -> str:
    """'a string ("30")', 'an integer (30)', 'a table' - what the file actually holds."""
    if isinstance(value, bool):
        return _("a boolean ({value})").format(value=str(value).lower())
    if isinstance(value, int):
        return _("an integer ({value})").format(value=value)
    if isinstance(value, float):
        return _("a number ({value})").format(value=value)
    if isinstance(value, str):
        return _("a string ({quote})").format(quote=_quote(value))
    if isinstance(value, dict):
        return _("a table")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, datetime):
        return _("a date-time ({value})").format(value=value.isoformat())
    if isinstance(value, date):
        return _("a date ({value})").format(value=value.isoformat())
    if isinstance(value, time):
        return _("a time ({value})").format(value=value.isoformat())
    return type(value).__name__


def _quote(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(parent: str, name: str) -> str:
    """Dotted key as TOML would spell it: nodes.credit_review.sla, nodes."odd name".sla."""
    part = name if _BARE_KEY.fullmatch(name) else _quote(name)
    return f"{parent}.{part}" if parent else part


def _closest(name: str, choices: Iterable[str]) -> str | None:
    """The choice a typo most likely meant: same letters in another case, a close spelling, or an abbreviation."""
    choices = list(choices)
    folded = name.casefold()
    for choice in choices:
        if choice.casefold() == folded:
            return choice
    import difflib  # only when something is misspelled

    close = difflib.get_close_matches(name, choices, n=1)
    if close:
        return close[0]
    prefixed = [
        c
        for c in choices
        if len(c) >= 3 and (folded.startswith(c.casefold()) or (len(folded) >= 3 and c.casefold().startswith(folded)))
    ]
    return prefixed[0] if len(prefixed) == 1 else None


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = _closest(name, choices)
    return _(" (did you mean {close!r}?)").format(close=close) if close else ""


def _suggest(name: str, choices: Iterable[str], *, listing: bool = True) -> str:
    """A did-you-mean, else (for short vocabularies) the list of what is allowed."""
    choices = list(choices)
    hint = _did_you_mean(name, choices)
    if hint or not listing or not choices or len(choices) > 12:
        return hint
    return _(" (expected one of: {names})").format(names=", ".join(choices))


#: Abbreviations people write for a zone (not zone names themselves), most likely meaning first:
#: ffctl's users are in China first, so CST is China Standard Time before US Central.
_ZONE_ABBREVIATIONS = {
    "CST": ("Asia/Shanghai", "America/Chicago"),
    "BJT": ("Asia/Shanghai",),
    "CCT": ("Asia/Shanghai",),
    "CHINA": ("Asia/Shanghai",),
    "BEIJING": ("Asia/Shanghai",),
    "HKT": ("Asia/Hong_Kong",),
    "TWT": ("Asia/Taipei",),
    "JST": ("Asia/Tokyo",),
    "KST": ("Asia/Seoul",),
    "SGT": ("Asia/Singapore",),
    "IST": ("Asia/Kolkata", "Europe/Dublin"),
    "ICT": ("Asia/Bangkok",),
    "WIB": ("Asia/Jakarta",),
    "PST": ("America/Los_Angeles",),
    "PDT": ("America/Los_Angeles",),
    "MDT": ("America/Denver",),
    "CDT": ("America/Chicago",),
    "EDT": ("America/New_York",),
    "BST": ("Europe/London",),
    "CEST": ("Europe/Berlin",),
    "AEST": ("Australia/Sydney",),
    "AEDT": ("Australia/Sydney",),
}


def _zones_meant_by(name: str) -> tuple[str, ...]:
    """Real zones for an abbreviation or a UTC offset ("CST", "GMT+8"), most likely first."""
    key = name.strip().upper()
    if key in _ZONE_ABBREVIATIONS:
        return _ZONE_ABBREVIATIONS[key]
    found = re.fullmatch(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?00)?", key)
    if found and 0 <= int(found.group(2)) <= 14:
        hours = int(found.group(2))
        fixed = (
            "UTC" if hours == 0 else f"Etc/GMT{'-' if found.group(1) == '+' else '+'}{hours}"
        )  # Etc signs are inverted
        return (("Asia/Shanghai",) if (found.group(1), hours) == ("+", 8) else ()) + (fixed,)
    return ()


def hhmm(minutes: int) -> str:
    """Minutes after midnight as ``HH:MM``, as calendars are written (the summary prints them too)."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass
class _Names:
    """Names defined anywhere in the file, collected before checking so references can be resolved."""

    roles: list[str]
    users: list[str]
    people: set[str]
    nodes: list[str]
    calendars: list[str]


class _Checker:
    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        self.misspelled: set[tuple[str, str]] = set()  # (table key, the key a typo was probably meant to be)
        self.broken_matches: set[str] = set()  # workflows whose match had problems: no shadowing verdicts on them

    def problem(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, key, message))

    def warning(self, key: str, message: str) -> None:
        self.warnings.append(ConfigProblem(self.file, key, message))

    # --- shapes and scalars -------------------------------------------------------------------

    def table(self, value: object, key: str) -> dict | None:
        if isinstance(value, dict):
            return value
        self.problem(key, _("expected a table, got {got}").format(got=_describe_value(value)))
        return None

    def section(self, parent: dict, name: str, key: str) -> dict:
        value = parent.get(name, _MISSING)
        if value is _MISSING:
            return {}
        found = self.table(value, key)
        return found if found is not None else {}

    def named_tables(self, tables: dict, section: str) -> dict[str, dict]:
        """The tables of a [section.NAME] collection; non-tables are reported and left out."""
        out = {}
        for name, value in tables.items():
            found = self.table(value, _join(section, name))
            if found is not None:
                out[name] = found
        return out

    def known_keys(self, table: dict, allowed: Iterable[str], key: str, *, noun: str = "key") -> None:
        allowed = list(allowed)
        for name in table:
            if name not in allowed:
                self.problem(
                    key,
                    _("unknown {noun} {name!r}{suggest}").format(noun=noun, name=name, suggest=_suggest(name, allowed)),
                )
                close = _closest(name, allowed)
                if close is not None:
                    self.misspelled.add((key, close))

    def missing(self, key: str, name: str, hint: str) -> None:
        """Report a required key, unless a misspelling of it was already reported."""
        if (key, name) not in self.misspelled:
            self.problem(_join(key, name), _("missing{hint}").format(hint=hint))

    def get(
        self,
        table: dict,
        name: str,
        key: str,
        kind: str,
        *,
        required: bool = False,
        default: Any = None,
        hint: str = "",
    ) -> Any:
        value = table.get(name, _MISSING)
        if value is _MISSING:
            if required:
                self.missing(key, name, hint)
            return default
        if not _is_kind(value, kind):
            self.problem(
                _join(key, name),
                _("expected {value}, got {got}").format(value=_(_KIND_NAMES[kind]), got=_describe_value(value)),
            )
            return default
        return value

    def text(self, table: dict, name: str, key: str, *, required: bool = False, hint: str = "") -> str | None:
        value = self.get(table, name, key, "str", required=required, hint=hint)
        if value is not None and not value.strip():
            self.problem(_join(key, name), _("must not be empty"))
            return None
        return value

    def choice(
        self,
        table: dict,
        name: str,
        key: str,
        choices: tuple[str, ...],
        *,
        default: str | None = None,
        required: bool = False,
        hint: str = "",
    ) -> str | None:
        value = self.get(table, name, key, "str", required=required, hint=hint)
        if value is None:
            return default
        if value not in choices:
            self.problem(
                _join(key, name),
                _("unknown {name} {value!r}{suggest}").format(name=name, value=value, suggest=_suggest(value, choices)),
            )
            return default
        return value

    def names(
        self, table: dict, name: str, key: str, *, required: bool = False, hint: str = ""
    ) -> tuple[str, ...] | None:
        """A list of names (members, recipients, nodes); None when absent or not a list."""
        value = table.get(name, _MISSING)
        lkey = _join(key, name)
        if value is _MISSING:
            if required:
                self.missing(key, name, hint)
            return None
        if isinstance(value, str):
            self.problem(
                lkey,
                _("expected a list, e.g. [{quote}], got {got}").format(quote=_quote(value), got=_describe_value(value)),
            )
            return None
        if not isinstance(value, list):
            self.problem(lkey, _("expected a list of names, got {got}").format(got=_describe_value(value)))
            return None
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.problem(f"{lkey}[{i}]", _("expected a name, got {got}").format(got=_describe_value(item)))
            else:
                out.append(item)
        return tuple(out)

    def duration(self, table: dict, name: str, key: str, *, required: bool = False, hint: str = "") -> int | None:
        value = table.get(name, _MISSING)
        dkey = _join(key, name)
        if value is _MISSING:
            if required:
                self.missing(key, name, hint)
            return None
        if not isinstance(value, str):
            self.problem(
                dkey, _('expected a duration in quotes such as "30m", got {got}').format(got=_describe_value(value))
            )
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.problem(dkey, str(exc))
            return None
        if seconds > HORIZON_DAYS * 86400:  # a deadline that far out is past what any clock computes
            self.problem(
                dkey,
                _("duration {value!r} is too long: at most {days}d (10 years)").format(
                    value=value.strip(), days=HORIZON_DAYS
                ),
            )
            return None
        return seconds

    def timezone(self, name: str, key: str) -> bool:
        try:
            zoneinfo.ZoneInfo(name)
            return True
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            meant = _zones_meant_by(name)
            if meant:
                hint = _(" (did you mean {zones}?)").format(zones=_(" or ").join(f"'{z}'" for z in meant))
            else:
                hint = _did_you_mean(name, sorted(zoneinfo.available_timezones()))
            self.problem(
                key,
                _("unknown time zone {name!r}{hint}; use an IANA name such as Asia/Shanghai or UTC").format(
                    name=name, hint=hint
                ),
            )
            return False

    def reference(self, name: str, defined: list[str], key: str, noun: str) -> bool:
        if name in defined:
            return True
        self.problem(
            key,
            _("unknown {noun} {name!r}{suggest}").format(
                noun=noun, name=name, suggest=_suggest(name, defined, listing=False)
            ),
        )
        return False

    def recipients(self, names: tuple[str, ...] | None, key: str, known: _Names) -> None:
        """Each name must be a role, a person (a user or a role member) or order.sales_rep."""
        for i, name in enumerate(names or ()):
            ikey = f"{key}[{i}]"
            if name in known.roles or name in known.people or name in ORDER_RECIPIENTS:
                continue
            if name.startswith("order."):
                self.problem(
                    ikey,
                    _("unknown recipient {name!r}: order.sales_rep is the only order field that names a person").format(
                        name=name
                    ),
                )
                continue
            candidates = [*known.roles, *sorted(known.people), *ORDER_RECIPIENTS]
            self.problem(
                ikey,
                _("unknown recipient {name!r}: not a role, a user or order.sales_rep{did_you_mean}").format(
                    name=name, did_you_mean=_did_you_mean(name, candidates)
                ),
            )

    def match_spec(self, value: object, key: str) -> FrozenDict:
        """A workflow's `match` or a node's `when`: order attribute -> tuple of accepted values."""
        if value is _MISSING:
            return FrozenDict()
        spec = self.table(value, key)
        if spec is None:
            return FrozenDict()
        self.known_keys(spec, MATCH_KEYS, key)
        out: dict[str, tuple] = {}
        for attr, wanted in spec.items():
            if attr not in MATCH_KEYS:
                continue
            akey = _join(key, attr)
            if isinstance(wanted, list) and not wanted:
                self.problem(akey, _("an empty list matches no order; remove the key to accept any value"))
                continue
            listed = wanted if isinstance(wanted, list) else [wanted]
            accepted = []
            for i, item in enumerate(listed):
                ikey = f"{akey}[{i}]" if isinstance(wanted, list) else akey
                if attr in _BOOL_MATCH_KEYS:
                    ok, expected = isinstance(item, bool), _("true or false")
                elif attr == "priority":
                    ok, expected = (
                        (isinstance(item, str) and bool(item.strip())) or _is_kind(item, "int"),
                        _("a priority (text or a whole number)"),
                    )
                else:
                    ok, expected = isinstance(item, str) and bool(item.strip()), _("a string")
                if ok:
                    accepted.append(item)
                else:
                    self.problem(
                        ikey, _("expected {expected}, got {got}").format(expected=expected, got=_describe_value(item))
                    )
            out[attr] = tuple(accepted)
        return FrozenDict(out)

    # --- sections -----------------------------------------------------------------------------

    def build(self, data: dict) -> Config:
        self.known_keys(data, _TOP_KEYS, "", noun="section")
        sections = {name: self.section(data, name, name) for name in _TOP_KEYS}
        roles_raw = self.named_tables(sections["roles"], "roles")
        users_raw = self.named_tables(sections["users"], "users")
        nodes_raw = self.named_tables(sections["nodes"], "nodes")
        calendars_raw = self.named_tables(sections["calendars"], "calendars")
        members = {
            m
            for r in roles_raw.values()
            if isinstance(r.get("members"), list)
            for m in r["members"]
            if isinstance(m, str)
        }
        known = _Names(
            roles=list(sections["roles"]),
            users=list(sections["users"]),
            people=members | set(sections["users"]),
            nodes=list(sections["nodes"]),
            calendars=list(sections["calendars"]),
        )

        database_url = self.database(sections["database"])
        defaults = sections["defaults"]
        self.known_keys(defaults, ("timezone", "language"), "defaults")
        language = self.choice(defaults, "language", "defaults", i18n.LANGUAGES)
        timezone = self.text(defaults, "timezone", "defaults")
        if timezone is not None:
            self.timezone(timezone, "defaults.timezone")
        timezone = timezone or "UTC"

        calendars = {name: self.calendar(name, raw, timezone) for name, raw in calendars_raw.items()}
        roles = {name: self.role(name, raw, known) for name, raw in roles_raw.items()}
        self.escalation_cycles(roles)
        users = {name: self.user(name, raw, known) for name, raw in users_raw.items()}
        nodes = {name: self.node(name, raw, known) for name, raw in nodes_raw.items()}
        workflows = tuple(
            self.workflow(name, raw, known, nodes)
            for name, raw in self.named_tables(sections["workflows"], "workflows").items()
        )
        self.unreachable_workflows(workflows)
        rules = tuple(
            self.rule(name, raw, known) for name, raw in self.named_tables(sections["rules"], "rules").items()
        )
        self.calendar_room(calendars, nodes, rules)
        self.workflows_without_stock(workflows, nodes)
        self.roles_nobody_holds(roles)
        notify = self.notify(sections["notify"])
        schedule = self.schedule(sections["schedule"])
        kpi_targets, kpi_baseline = self.kpi(sections["kpi"])
        profiles = {
            name: self.import_profile(name, raw)
            for name, raw in self.named_tables(sections["import_profiles"], "import_profiles").items()
        }
        forecast = self.forecast(sections["forecast"])

        return Config(
            file=self.file,
            database_url=database_url,
            timezone=timezone,
            calendars=FrozenDict(calendars),
            roles=FrozenDict(roles),
            users=FrozenDict(users),
            workflows=workflows,
            nodes=FrozenDict(nodes),
            rules=rules,
            notify=notify,
            schedule=FrozenDict(schedule),
            kpi_targets=FrozenDict(kpi_targets),
            kpi_baseline=FrozenDict(kpi_baseline),
            warnings=tuple(str(w) for w in self.warnings),
            import_profiles=FrozenDict({k: v for k, v in profiles.items() if v is not None}),
            forecast=forecast,
            language=language,
        )

    def database(self, table: dict) -> str | None:
        if "password" in table:
            self.problem(
                "database.password",
                _("put the password in the url (it is masked whenever ffctl prints it), or use PGPASSWORD / ~/.pgpass"),
            )
        self.known_keys({k: v for k, v in table.items() if k != "password"}, ("url",), "database")
        url = self.text(table, "url", "database")
        if url is None:
            return None
        url = url.strip()
        problem = url_problem(url)
        if problem is not None:
            self.problem("database.url", _("{mask_url!r}: {problem}").format(mask_url=mask_url(url), problem=problem))
            return None
        return self.sqlite_next_to_config(url)

    def sqlite_next_to_config(self, url: str) -> str:
        """sqlite:///ffctl.db -> sqlite:////dir/of/config/ffctl.db; absolute paths and :memory: stay."""
        found = re.fullmatch(r"(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?", url)
        if not found:
            return url
        scheme, path, query = found.group(1), found.group(2), found.group(3) or ""
        if not path or path == ":memory:" or path.startswith("file:") or Path(path).is_absolute():
            return url
        return f"{scheme}:///{self.base_dir / Path(path).expanduser()}{query}"

    def calendar(self, name: str, table: dict, default_timezone: str) -> CalendarConfig:
        key = _join("calendars", name)
        self.known_keys(table, ("timezone", "hours", "holidays"), key)
        timezone = self.text(table, "timezone", key)
        if timezone is not None:
            self.timezone(timezone, _join(key, "timezone"))
        hours = self.hours(table, key)
        holidays = self.holidays(table.get("holidays", _MISSING), _join(key, "holidays"))
        return CalendarConfig(name, timezone or default_timezone, FrozenDict(hours), holidays)

    def hours(self, table: dict, key: str) -> dict[int, tuple[tuple[int, int], ...]]:
        hkey = _join(key, "hours")
        days: dict[int, tuple[tuple[int, int], ...]] = {day: () for day in range(7)}
        if "hours" not in table:
            if (key, "hours") in self.misspelled:
                return days
            self.problem(
                hkey,
                _(
                    'missing; give working hours per weekday, e.g. hours = { mon = "09:00-18:00", fri = '
                    '["09:00-12:00", "13:00-17:00"] }'
                ),
            )
            return days
        spec = self.table(table["hours"], hkey)
        if spec is None:
            return days
        self.known_keys(spec, WEEKDAYS, hkey, noun="weekday")
        for day_name, value in spec.items():
            if day_name not in WEEKDAYS:
                continue
            dkey = _join(hkey, day_name)
            texts = value if isinstance(value, list) else [value]
            ranges = []
            for i, text in enumerate(texts):
                rkey = f"{dkey}[{i}]" if isinstance(value, list) else dkey
                parsed = self.hour_range(text, rkey)
                if parsed is not None:
                    ranges.append(parsed)
            ranges.sort()
            for (start_a, end_a), (start_b, end_b) in zip(ranges, ranges[1:]):
                if start_b < end_a:
                    shown_a, shown_b = f"{hhmm(start_a)}-{hhmm(end_a)}", f"{hhmm(start_b)}-{hhmm(end_b)}"
                    self.problem(
                        dkey, _("hour ranges {shown_a} and {shown_b} overlap").format(shown_a=shown_a, shown_b=shown_b)
                    )
            days[WEEKDAYS.index(day_name)] = tuple(ranges)
        if not any(spec.get(day) for day in WEEKDAYS):
            self.problem(hkey, _("no working hours on any day: an SLA on this calendar would never run out"))
        return days

    def hour_range(self, text: object, key: str) -> tuple[int, int] | None:
        form = _('expected HH:MM-HH:MM, e.g. "09:00-18:00"')
        if not isinstance(text, str):
            self.problem(key, _("{form}, got {got}").format(form=form, got=_describe_value(text)))
            return None
        found = _HOUR_RANGE.fullmatch(text.strip())
        if not found:
            self.problem(key, _("bad hour range {text!r}: {form}").format(text=text, form=form))
            return None
        sh, sm, eh, em = (int(g) for g in found.groups())
        if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em != 0):
            self.problem(
                key, _("bad hour range {text!r}: hours run 00:00 to 24:00 and minutes 00 to 59").format(text=text)
            )
            return None
        start, end = sh * 60 + sm, eh * 60 + em
        if start >= end:
            self.problem(
                key,
                _(
                    "bad hour range {text!r}: the start must be before the end (a range cannot cross midnight; split "
                    "it over two days)"
                ).format(text=text),
            )
            return None
        return (start, end)

    def holidays(self, value: object, key: str) -> frozenset[date]:
        if value is _MISSING:
            return frozenset()
        if not isinstance(value, list):
            self.problem(
                key, _('expected a list of dates, e.g. ["2026-10-01"], got {got}').format(got=_describe_value(value))
            )
            return frozenset()
        days = set()
        for i, item in enumerate(value):
            ikey = f"{key}[{i}]"
            if isinstance(item, datetime) or isinstance(item, time):
                self.problem(ikey, _("expected a date (YYYY-MM-DD), got {got}").format(got=_describe_value(item)))
            elif isinstance(item, date):
                days.add(item)
            elif isinstance(item, str) and _ISO_DATE.fullmatch(item.strip()):
                try:
                    days.add(date.fromisoformat(item.strip()))
                except ValueError:
                    self.problem(ikey, _("not a real date: {item!r}").format(item=item))
            else:
                self.problem(ikey, _("expected a date (YYYY-MM-DD), got {got}").format(got=_describe_value(item)))
        return frozenset(days)

    def role(self, name: str, table: dict, known: _Names) -> RoleConfig:
        key = _join("roles", name)
        self.known_keys(table, ("members", "escalate_to", *HTTP_CHANNELS), key)
        members = self.names(table, "members", key) or ()
        for member in {m for m in members if members.count(m) > 1}:
            self.problem(_join(key, "members"), _("{member!r} is listed more than once").format(member=member))
        escalate_to = self.text(table, "escalate_to", key)
        if escalate_to is not None and not self.reference(escalate_to, known.roles, _join(key, "escalate_to"), "role"):
            escalate_to = None
        if name in known.users:
            self.problem(
                _join("users", name),
                _("{name!r} is both a role and a user; recipients would be ambiguous, rename one").format(name=name),
            )
        return RoleConfig(name, tuple(dict.fromkeys(members)), escalate_to, self.channels(table, key))

    def escalation_cycles(self, roles: dict[str, RoleConfig]) -> None:
        reported: set[frozenset[str]] = set()
        for start in roles:
            path, position = [start], {start: 0}
            current = roles[start].escalate_to
            while current is not None and current in roles:
                if current in position:
                    cycle = path[position[current] :] + [current]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        self.problem(
                            _join(_join("roles", cycle[0]), "escalate_to"),
                            _("escalation cycle {names}").format(names=" -> ".join(cycle)),
                        )
                    break
                position[current] = len(path)
                path.append(current)
                current = roles[current].escalate_to

    def user(self, name: str, table: dict, known: _Names) -> UserConfig:
        key = _join("users", name)
        self.known_keys(table, ("email", *HTTP_CHANNELS), key)
        email = self.text(table, "email", key)
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", email.strip()):
            self.problem(_join(key, "email"), _("not an email address: {email!r}").format(email=email))
        channels = self.channels(table, key)
        webhook = channels.get("webhook")
        return UserConfig(name, email.strip() if email else None, webhook.url if webhook else None, channels)

    def channels(self, table: dict, key: str) -> FrozenDict:
        """The HTTP channels of a user or a role: ``dingtalk = "URL"`` or
        ``dingtalk = { url_env = "VAR", secret_env = "VAR" }`` (a URL never echoed: it holds a token)."""
        found = {}
        for channel in HTTP_CHANNELS:
            if channel in table:
                target = self.channel(channel, table[channel], _join(key, channel))
                if target is not None:
                    found[channel] = target
        return FrozenDict(found)

    def channel(self, channel: str, value: object, key: str) -> ChannelTarget | None:
        if isinstance(value, str):
            value = {"url": value}
        elif not isinstance(value, dict):
            self.problem(
                key,
                _(
                    'expected a URL in quotes or a table such as {{ url_env = "FFCTL_{upper}_URL" }}, got {value}'
                ).format(upper=channel.upper(), value=_describe_value(value)),
            )
            return None
        for secret in ("secret", "token", "password"):
            if secret in value:
                self.problem(
                    _join(key, secret),
                    _(
                        "secrets never go in the config file: put it in an environment variable and name it with "
                        'secret_env = "FFCTL_{upper}_SECRET"'
                    ).format(upper=channel.upper()),
                )
        self.known_keys(
            {k: v for k, v in value.items() if k not in ("secret", "token", "password")}, _CHANNEL_KEYS, key
        )
        url = self.text(value, "url", key)
        url_env = self.env_name(value, "url_env", key, _("the URL"))
        secret_env = self.env_name(value, "secret_env", key, _("the signing secret"))
        if url is not None and url_env is not None:
            self.problem(key, _("give url or url_env, not both"))
            return None
        if url is None and url_env is None:
            if "url" not in value and "url_env" not in value:
                self.problem(
                    key,
                    _('missing url_env (or url): the robot\'s address, e.g. url_env = "FFCTL_{upper}_URL"').format(
                        upper=channel.upper()
                    ),
                )
            return None
        if secret_env is not None and channel not in SIGNED_CHANNELS:
            self.problem(
                _join(key, "secret_env"),
                _(
                    "{channel} does not sign its requests: remove secret_env (signing works with webhook, dingtalk "
                    "and feishu)"
                ).format(channel=channel),
            )
            secret_env = None
        if url is not None:
            url = url.strip()
            problem = _http_url_problem(url)
            if problem:
                self.problem(
                    _join(key, "url"),
                    _("{mask_endpoint}: {problem}").format(mask_endpoint=mask_endpoint(url), problem=problem),
                )
                return None
        else:
            held = (record_env(url_env or "") or "").strip()
            if not held:
                self.warning(
                    _join(key, "url_env"),
                    _(
                        "the environment variable {variable} is not set here: messages on this channel wait, and are "
                        "retried, until it is"
                    ).format(variable=url_env),
                )
            elif _http_url_problem(held):
                self.warning(
                    _join(key, "url_env"),
                    _("${variable} holds {url}: {problem}").format(
                        variable=url_env, url=mask_endpoint(held), problem=_http_url_problem(held)
                    ),
                )
        if secret_env is not None and not record_env(secret_env):
            self.warning(
                _join(key, "secret_env"),
                _(
                    "the environment variable {variable} is not set here: signed messages on this channel wait, and are "
                    "retried, until it is"
                ).format(variable=secret_env),
            )
        return ChannelTarget(channel, url, url_env, secret_env)

    def env_name(self, table: dict, name: str, key: str, what: str) -> str | None:
        """The name of an environment variable (never its value, nor a URL or secret typed in its place)."""
        value = self.text(table, name, key)
        if value is not None and not _ENV_NAME.fullmatch(value.strip()):
            self.problem(
                _join(key, name),
                _(
                    "must be the name of an environment variable that holds {what} (like FFCTL_ROBOT_URL), not "
                    "{what} itself"
                ).format(what=what),
            )
            return None
        return value.strip() if value is not None else None

    def node(self, name: str, table: dict, known: _Names) -> NodeConfig:
        key = _join("nodes", name)
        self.known_keys(table, _NODE_KEYS, key)
        owner = self.text(table, "owner", key)
        if owner is not None and not self.reference(owner, known.roles, _join(key, "owner"), "role"):
            owner = None
        sla = self.duration(table, "sla", key, required=True, hint=_('; every node needs an SLA, e.g. sla = "30m"'))
        if sla == 0:
            self.problem(_join(key, "sla"), _("must be longer than 0s"))
        calendar = self.text(table, "calendar", key)
        if calendar is not None:
            self.reference(calendar, known.calendars, _join(key, "calendar"), "calendar")
        warn_at = self.get(table, "warn_at", key, "number", default=DEFAULT_WARN_AT)
        if not 0 < warn_at < 1:
            self.problem(
                _join(key, "warn_at"),
                _(
                    "must be between 0 and 1 (exclusive), got {warn_at}; e.g. 0.75 means 'at risk once 75% of the "
                    "SLA is used'"
                ).format(warn_at=warn_at),
            )
        critical = self.get(table, "critical", key, "bool", default=False)
        auto = self.choice(table, "auto", key, AUTO_KINDS)
        if (
            "owner" not in table
            and "auto" not in table
            and (key, "owner") not in self.misspelled
            and (key, "auto") not in self.misspelled
        ):
            self.problem(
                _join(key, "owner"),
                _(
                    'missing: a manual node needs an owner role (or auto = "allocate" / "ship" for a node ffctl '
                    "completes itself)"
                ),
            )
        when = self.match_spec(table.get("when", _MISSING), _join(key, "when"))
        escalation = self.escalation(table, key, known, owner="owner" in table, critical=critical, auto=auto)
        alert = self.get(table, "forecast_alert", key, "number")
        if alert is not None and not 0 < alert <= 1:
            self.problem(
                _join(key, "forecast_alert"),
                _(
                    "must be a probability above 0 and at most 1, got {alert}; e.g. 0.7 warns once a breach is 70% "
                    "likely"
                ).format(alert=alert),
            )
            alert = None
        return NodeConfig(
            name,
            owner,
            sla or 0,
            calendar,
            float(warn_at),
            critical,
            escalation,
            when,
            auto,
            None if alert is None else float(alert),
        )

    def escalation(
        self, table: dict, key: str, known: _Names, *, owner: bool, critical: bool, auto: str | None
    ) -> tuple[EscalationStep, ...]:
        ekey = _join(key, "escalation")
        value = table.get("escalation", _MISSING)
        if value is _MISSING:
            return ()
        if not isinstance(value, list):
            self.problem(
                ekey,
                _('expected a list of steps, e.g. [ {{ after = "30m", action = "escalate" }} ], got {got}').format(
                    got=_describe_value(value)
                ),
            )
            return ()
        steps: list[EscalationStep] = []
        previous: tuple[int, int] | None = None  # (index, after) of the last step with a valid after
        for index, raw in enumerate(value):
            skey = f"{ekey}[{index}]"
            step = self.table(raw, skey)
            if step is None:
                continue
            self.known_keys(step, _STEP_KEYS, skey)
            after = self.duration(
                step, "after", skey, required=True, hint=_('; the time past the deadline, e.g. after = "30m"')
            )
            action = self.choice(
                step,
                "action",
                skey,
                ESCALATION_ACTIONS,
                required=True,
                hint=_(": one of {names}").format(names=", ".join(ESCALATION_ACTIONS)),
            )
            to = self.names(step, "to", skey)
            reason = self.text(step, "reason", skey)
            if action == "notify":
                if not to:
                    self.problem(
                        _join(skey, "to"),
                        _('missing: a notify step needs recipients, e.g. to = ["warehouse_supervisor"]'),
                    )
                self.recipients(to, _join(skey, "to"), known)
            elif action is not None and to is not None:
                self.problem(
                    _join(skey, "to"),
                    _("only a notify step takes 'to'; {action} goes to the node's assignees and roles").format(
                        action=action
                    ),
                )
            if action in ("remind", "escalate") and not owner:
                self.problem(
                    _join(skey, "action"),
                    (
                        _("remind needs the node to have an owner role to remind")
                        if action == "remind"
                        else _("{action} needs the node to have an owner role to escalate from").format(action=action)
                    ),
                )
            if action == "auto_approve" and critical:
                self.problem(
                    _join(skey, "action"),
                    _("auto_approve is refused on a critical node (critical = true); use escalate or auto_reject"),
                )
            if action == "auto_approve" and auto is not None:
                self.problem(
                    _join(skey, "action"),
                    _("auto_approve cannot complete an auto = {auto!r} node; `ffctl {auto}` completes it").format(
                        auto=auto
                    ),
                )
            if after is not None:
                if previous is not None and after < previous[1]:
                    self.problem(
                        _join(skey, "after"),
                        _(
                            "steps must be in order of 'after': {format_duration} comes after {format_duration2} in "
                            "escalation[{value}]"
                        ).format(
                            format_duration=format_duration(after),
                            format_duration2=format_duration(previous[1]),
                            value=previous[0],
                        ),
                    )
                previous = (index, after)
            steps.append(
                EscalationStep(index, after or 0, action or "", to if action == "notify" and to else (), reason)
            )
        return tuple(steps)

    def workflow(self, name: str, table: dict, known: _Names, nodes: dict[str, NodeConfig]) -> WorkflowConfig:
        key = _join("workflows", name)
        self.known_keys(table, ("match", "nodes"), key)
        before = len(self.problems)
        match = self.match_spec(table.get("match", _MISSING), _join(key, "match"))
        if len(self.problems) > before or (key, "match") in self.misspelled:
            self.broken_matches.add(name)
        nkey = _join(key, "nodes")
        listed = self.names(
            table,
            "nodes",
            key,
            required=True,
            hint=_(
                '; the nodes an order goes through, in order, e.g. nodes = ["credit_review", "allocation", "dispatch"]'
            ),
        )
        if listed == ():
            self.problem(nkey, _("a workflow needs at least one node"))
        seen: set[str] = set()
        for i, node in enumerate(listed or ()):
            if node in seen:
                self.problem(
                    f"{nkey}[{i}]",
                    _("node {node!r} appears more than once; a node can be in a workflow only once").format(node=node),
                )
            seen.add(node)
            self.reference(node, known.nodes, f"{nkey}[{i}]", "node")
        autos = [(i, nodes[n].auto) for i, n in enumerate(dict.fromkeys(listed or ())) if n in nodes and nodes[n].auto]
        for kind in AUTO_KINDS:
            if sum(1 for _, a in autos if a == kind) > 1:
                self.problem(
                    nkey, _("more than one auto = {kind!r} node; a workflow has at most one").format(kind=kind)
                )
        first = {a: i for i, a in reversed(autos)}
        if "allocate" in first and "ship" in first and first["ship"] < first["allocate"]:
            self.problem(
                nkey,
                _(
                    "the auto = 'ship' node comes before the auto = 'allocate' node; stock must be allocated before "
                    "it ships"
                ),
            )
        return WorkflowConfig(name, match, tuple(dict.fromkeys(listed or ())))

    def calendar_room(
        self, calendars: dict[str, CalendarConfig], nodes: dict[str, NodeConfig], rules: tuple[RuleConfig, ...]
    ) -> None:
        """A calendar must hold, within the horizon ffctl plans deadlines in, each node's SLA plus
        its ladder (steps count from the deadline on the same clock) and each calendar dwell limit:
        otherwise every import and sweep would fail with "no deadline within 10 years"."""
        needs: list[tuple[str, str, int, str]] = []  # (key, calendar, seconds, what needs them)
        for node in nodes.values():
            if node.calendar in calendars and node.sla_seconds:
                ladder = max((step.after_seconds for step in node.escalation), default=0)
                what = _("the SLA {sla} of node {node!r}").format(sla=format_duration(node.sla_seconds), node=node.name)
                if ladder:
                    what += _(" and its escalation ladder ({after} past the deadline)").format(
                        after=format_duration(ladder)
                    )
                needs.append(
                    (_join(_join("nodes", node.name), "calendar"), node.calendar, node.sla_seconds + ladder, what)
                )
        for rule in rules:
            spec = nodes.get(str(rule.params.get("node")))
            if rule.kind == "dwell" and rule.params.get("clock") == "calendar" and spec and spec.calendar in calendars:
                needs.append(
                    (
                        _join(_join("rules", rule.name), "longer_than"),
                        spec.calendar,
                        int(cast(float, rule.params["longer_than_seconds"])),  # a duration in seconds (rule_dwell)
                        _("the dwell limit of rule {rule!r}").format(rule=rule.name),
                    )
                )
        for key, name, seconds, what in needs:
            calendar = calendars[name]
            weekly = 60 * sum(end - start for ranges in calendar.hours.values() for start, end in ranges)
            lost = 60 * sum(
                end - start for day in calendar.holidays for start, end in calendar.hours.get(day.weekday(), ())
            )
            room = weekly * (HORIZON_DAYS // 7) - lost
            if weekly and seconds > room:
                self.problem(
                    key,
                    _(
                        "calendar {calendar!r} has {weekly} of working time a week: {what} would take "
                        "about {years:.0f} years of it, and ffctl plans deadlines at most 10 years ahead; "
                        "give the calendar more hours or the node a shorter SLA"
                    ).format(calendar=name, weekly=format_duration(weekly), what=what, years=seconds / weekly / 52.18),
                )

    def workflows_without_stock(self, workflows: tuple[WorkflowConfig, ...], nodes: dict[str, NodeConfig]) -> None:
        """Allowed, but rarely meant: a workflow whose orders never reserve or ship through ffctl."""
        for wf in workflows:
            autos = {nodes[n].auto for n in wf.nodes if n in nodes}
            key = _join(_join("workflows", wf.name), "nodes")
            if wf.nodes and "allocate" not in autos:
                self.warning(
                    key,
                    _(
                        'workflow {name!r} has no auto = "allocate" node: its orders never reserve '
                        "stock, so they ship without touching stock"
                    ).format(name=wf.name),
                )
            if wf.nodes and "ship" not in autos:
                self.warning(
                    key,
                    _(
                        'workflow {name!r} has no auto = "ship" node: its orders leave the workflow '
                        "before they ship, with no SLA or owner for shipping them"
                    ).format(name=wf.name),
                )

    def roles_nobody_holds(self, roles: dict[str, RoleConfig]) -> None:
        """A role that escalations reach but that has no members: they would reach nobody."""
        for role in roles.values():
            below = sorted(r.name for r in roles.values() if r.escalate_to == role.name)
            if below and not role.members:
                top = _(" (the top of the chain)") if role.escalate_to is None else ""
                self.warning(
                    _join(_join("roles", role.name), "members"),
                    _("role {role!r}{top} has no members: escalations from {below} reach nobody").format(
                        role=role.name, top=top, below=", ".join(repr(b) for b in below)
                    ),
                )

    def unreachable_workflows(self, workflows: tuple[WorkflowConfig, ...]) -> None:
        for j, later in enumerate(workflows):
            for earlier in workflows[:j]:
                if earlier.name in self.broken_matches or later.name in self.broken_matches:
                    continue
                if _covers(earlier.match, later.match):
                    what = _("matches every order") if not earlier.match else _("matches every order this one would")
                    self.problem(
                        _join(_join("workflows", later.name), "match"),
                        _(
                            "workflow {name!r} is never used: {name2!r} comes before it and {what} (the first match wins; "
                            "move {name!r} above it)"
                        ).format(name=later.name, name2=earlier.name, what=what),
                    )
                    break

    def rule(self, name: str, table: dict, known: _Names) -> RuleConfig:
        key = _join("rules", name)
        kind = self.choice(
            table,
            "kind",
            key,
            tuple(_RULE_KINDS),
            required=True,
            hint=_(": one of {names}").format(names=", ".join(_RULE_KINDS)),
        )
        if kind is None:
            allowed = set(_RULE_COMMON_KEYS).union(*(keys for keys, _handler in _RULE_KINDS.values()))
        else:
            allowed = set(_RULE_COMMON_KEYS) | set(_RULE_KINDS[kind][0])
            for other, (keys, _handler) in _RULE_KINDS.items():
                for extra in [k for k in table if k in keys and k not in allowed]:
                    self.problem(
                        key,
                        _("key {extra!r} does not apply to kind {kind!r} (it belongs to kind {other!r})").format(
                            extra=extra, kind=kind, other=other
                        ),
                    )
                    allowed.add(extra)
        self.known_keys(table, [*_RULE_COMMON_KEYS, *(k for k in _RULE_KEY_ORDER if k in allowed)], key)
        notify = self.names(table, "notify", key) or ()
        self.recipients(notify, _join(key, "notify"), known)
        if kind in ("stock_below", "supplier"):  # these rules are about a SKU or a supplier, not an order
            for i, recipient in enumerate(notify):
                if recipient in ORDER_RECIPIENTS:
                    self.problem(
                        f"{_join(key, 'notify')}[{i}]",
                        _("{recipient} names no one here: a {kind} rule is not about an order").format(
                            recipient=recipient, kind=kind
                        ),
                    )
        priority = self.choice(table, "priority", key, RULE_PRIORITIES, default="normal") or "normal"
        params = _RULE_KINDS[kind][1](self, table, key, known) if kind else {}
        return RuleConfig(name, kind or "", notify, priority, FrozenDict(params))

    def rule_stock_below(self, table: dict, key: str, known: _Names) -> dict[str, object]:
        action = self.get(
            table,
            "action",
            key,
            "str",
            required=True,
            hint=_('; stock_below rules take action = "purchase_requisition"'),
        )
        if action is not None and action != "purchase_requisition":
            self.problem(
                _join(key, "action"),
                _('unknown action {action!r} for kind stock_below; the only one is "purchase_requisition"').format(
                    action=action
                ),
            )
        include_inbound = self.get(table, "include_inbound", key, "bool", default=False)
        return {"action": "purchase_requisition", "include_inbound": include_inbound}

    def rule_dwell(self, table: dict, key: str, known: _Names) -> dict[str, object]:
        node = self.text(
            table, "node", key, required=True, hint=_('; the node orders dwell at, e.g. node = "dispatch"')
        )
        if node is not None:
            self.reference(node, known.nodes, _join(key, "node"), "node")
        longer_than = self.duration(table, "longer_than", key, required=True, hint=_('; e.g. longer_than = "48h"'))
        if longer_than == 0:
            self.problem(_join(key, "longer_than"), _("must be longer than 0s"))
        clock = self.choice(table, "clock", key, DWELL_CLOCKS, default="wall") or "wall"
        flag = self.text(
            table,
            "flag",
            key,
            required=True,
            hint=_('; the flag set on dwelling orders, e.g. flag = "shipping_exception"'),
        )
        if flag is not None and not _FLAG_NAME.fullmatch(flag):
            self.problem(
                _join(key, "flag"),
                _("flag names are single words like shipping_exception, got {flag!r}").format(flag=flag),
            )
        return {"node": node, "longer_than_seconds": longer_than or 0, "clock": clock, "flag": flag}

    def rule_supplier(self, table: dict, key: str, known: _Names) -> dict[str, object]:
        rate = self.get(table, "qc_pass_rate_below", key, "number")
        if rate is not None and not 0 <= rate <= 1:
            self.problem(
                _join(key, "qc_pass_rate_below"),
                _("rates are fractions from 0 to 1 (0.95 means 95%), got {rate}").format(rate=rate),
            )
        delay = self.get(table, "avg_delay_days_above", key, "number")
        if delay is not None and delay < 0:
            self.problem(
                _join(key, "avg_delay_days_above"), _("must be 0 or more days, got {delay}").format(delay=delay)
            )
        consecutive = self.get(table, "consecutive_batches", key, "int", default=3)
        if consecutive < 1:
            self.problem(
                _join(key, "consecutive_batches"),
                _("must be at least 1, got {consecutive}").format(consecutive=consecutive),
            )
        window = self.get(table, "window_batches", key, "int", default=10)
        if window < 1:
            self.problem(_join(key, "window_batches"), _("must be at least 1, got {window}").format(window=window))
        if "qc_pass_rate_below" not in table and "avg_delay_days_above" not in table:
            self.problem(key, _("a supplier rule needs qc_pass_rate_below, avg_delay_days_above, or both"))
        elif "consecutive_batches" in table and "qc_pass_rate_below" not in table:
            self.problem(_join(key, "consecutive_batches"), _("only applies with qc_pass_rate_below"))
        elif "window_batches" in table and "avg_delay_days_above" not in table:
            self.problem(_join(key, "window_batches"), _("only applies with avg_delay_days_above"))
        action = self.get(table, "action", key, "str", default="freeze_inspection_exempt")
        if action != "freeze_inspection_exempt":
            self.problem(
                _join(key, "action"),
                _('unknown action {action!r} for kind supplier; the only one is "freeze_inspection_exempt"').format(
                    action=action
                ),
            )
        return {
            "qc_pass_rate_below": float(rate) if rate is not None else None,
            "consecutive_batches": consecutive,
            "avg_delay_days_above": float(delay) if delay is not None else None,
            "window_batches": window,
            "action": "freeze_inspection_exempt",
        }

    def notify(self, table: dict) -> NotifyConfig:
        self.known_keys(table, ("log", "email", "max_attempts", "webhook_timeout_seconds"), "notify")
        log = self.text(table, "log", "notify")
        if log is not None:
            path = Path(log.strip()).expanduser()
            log = str(path if path.is_absolute() else self.base_dir / path)
        email = None
        if "email" in table:
            email = self.email(table["email"])
        attempts = self.get(table, "max_attempts", "notify", "int", default=5)
        if attempts < 1:
            self.problem("notify.max_attempts", _("must be at least 1, got {attempts}").format(attempts=attempts))
        timeout = self.get(table, "webhook_timeout_seconds", "notify", "number", default=5.0)
        if timeout <= 0:
            self.problem(
                "notify.webhook_timeout_seconds", _("must be more than 0, got {timeout}").format(timeout=timeout)
            )
        return NotifyConfig(log, email, attempts, float(timeout))

    def email(self, value: object) -> EmailConfig | None:
        table = self.table(value, "notify.email")
        if table is None:
            return None
        if "password" in table:
            self.problem(
                "notify.email.password",
                _(
                    "secrets never go in the config file: put the password in an environment variable and name it "
                    'with password_env = "FFCTL_SMTP_PASSWORD"'
                ),
            )
        self.known_keys({k: v for k, v in table.items() if k != "password"}, _EMAIL_KEYS, "notify.email")
        host = self.text(
            table, "host", "notify.email", required=True, hint=_('; the SMTP server, e.g. host = "localhost"')
        )
        starttls = self.get(table, "starttls", "notify.email", "bool", default=False)
        tls = self.get(table, "tls", "notify.email", "bool", default=False)
        if starttls and tls:
            self.problem(
                "notify.email.tls",
                _(
                    "tls = true (TLS from the start, port 465) and starttls = true (port 587) "
                    "exclude each other; keep the one your server offers"
                ),
            )
        port = self.get(table, "port", "notify.email", "int", default=465 if tls else 587 if starttls else 25)
        if not 0 < port < 65536:
            self.problem("notify.email.port", _("not a TCP port: {port}").format(port=port))
        sender = self.text(
            table,
            "sender",
            "notify.email",
            required=True,
            hint=_('; the From address, e.g. sender = "ffctl@example.com"'),
        )
        if sender is not None and "@" not in sender:
            self.problem("notify.email.sender", _("not an email address: {sender!r}").format(sender=sender))
        username = self.text(table, "username", "notify.email")
        password_env = self.text(table, "password_env", "notify.email")
        if password_env is not None and not _ENV_NAME.fullmatch(password_env):
            # never echo the value: someone may have pasted the password itself here
            self.problem(
                "notify.email.password_env",
                _(
                    "must be the name of an environment variable that holds the password (like FFCTL_SMTP_PASSWORD), "
                    "not the password itself"
                ),
            )
        ca_file = self.text(table, "ca_file", "notify.email")
        if ca_file is not None:
            path = Path(ca_file.strip()).expanduser()
            ca_file = str(path if path.is_absolute() else self.base_dir / path)
            if not record_file(ca_file):
                self.problem(
                    "notify.email.ca_file",
                    _("no such file: {path} (a PEM file of the CA certificates to trust)").format(path=ca_file),
                )
        loopback_ok = self.get(table, "plain_login_on_loopback", "notify.email", "bool", default=False)
        email = EmailConfig(host or "", port, sender or "", username, password_env, starttls, tls, ca_file, loopback_ok)
        if loopback_ok and host and not is_loopback(host):
            self.problem(
                "notify.email.plain_login_on_loopback",
                _(
                    "only applies to a relay on this machine (localhost, 127.0.0.1 or ::1), not {host!r}; "
                    "use starttls = true or tls = true"
                ).format(host=host),
            )
        elif password_env is not None and host and not email.login_allowed():
            local = is_loopback(host)
            self.problem(
                "notify.email.password_env",
                _(
                    "the SMTP password would cross the network in clear text: set starttls = true (port 587) or "
                    "tls = true (port 465){local}"
                ).format(local=_(", or plain_login_on_loopback = true for a relay on this machine") if local else ""),
            )
        return email

    def import_profile(self, name: str, table: dict) -> ImportProfile | None:
        """A column mapping for ``import orders --profile NAME`` (SPEC 9.6)."""
        from ffctl.core.profiles import BUILTIN

        key = _join("import_profiles", name)
        before = len(self.problems)
        self.known_keys(table, _PROFILE_KEYS, key)
        kind = self.choice(table, "kind", key, tuple(PROFILE_TARGETS), default="orders") or "orders"
        required, optional = PROFILE_TARGETS[kind]
        targets = required + optional
        base = self.text(table, "base", key)
        if base is not None and base not in BUILTIN:
            self.problem(
                _join(key, "base"),
                _("unknown built-in profile {name!r}: use one of {names}").format(name=base, names=", ".join(BUILTIN)),
            )
            base = None
        columns = self.string_table(
            table, "columns", key, _('a table of source column = ffctl column, e.g. "订单编号" = "order_id"')
        )
        ckey = _join(key, "columns")
        seen: dict[str, str] = {}
        for source, target in columns.items():
            if target not in targets:
                self.problem(
                    _join(ckey, source),
                    _("unknown ffctl column {column!r}{hint}: orders take {columns}").format(
                        column=target, hint=_did_you_mean(target, targets), columns=", ".join(targets)
                    ),
                )
            elif target in seen:
                self.problem(
                    _join(ckey, source),
                    _("{column} is already the mapping of {other!r}").format(column=target, other=seen[target]),
                )
            seen[target] = source
        constants = self.string_table(
            table, "constants", key, _('a table of ffctl column = value, e.g. channel = "tmall"')
        )
        for target in constants:
            if target not in targets:
                self.problem(
                    _join(_join(key, "constants"), target),
                    _("unknown ffctl column {column!r}{hint}").format(
                        column=target, hint=_did_you_mean(target, targets)
                    ),
                )
            elif target in seen:
                self.problem(
                    _join(_join(key, "constants"), target),
                    _("{column} is also mapped from the source column {other!r}: give one or the other").format(
                        column=target, other=seen[target]
                    ),
                )
        formats = table.get("date_format", [])
        formats = [formats] if isinstance(formats, str) else formats
        if not isinstance(formats, list) or not all(isinstance(f, str) and "%" in f for f in formats):
            self.problem(
                _join(key, "date_format"),
                _('expected a strptime format such as "%Y-%m-%d %H:%M:%S" (or a list of them)'),
            )
            formats = []
        skip_raw = self.section(table, "skip", _join(key, "skip"))
        skip = {}
        for source, values in skip_raw.items():
            listed = [values] if isinstance(values, str) else values
            if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
                self.problem(
                    _join(_join(key, "skip"), source),
                    _('expected the values that make a row skipped, e.g. ["refunded", "voided"]'),
                )
                continue
            skip[source] = tuple(listed)
        fill = self.names(table, "fill_down", key) or ()
        if base is not None:  # a profile extends its base: its own entries win
            parent = BUILTIN[base]
            own_targets = set(columns.values()) | set(constants)
            columns = {**{s: t for s, t in parent.columns.items() if t not in own_targets}, **columns}
            constants = {**{t: v for t, v in parent.constants.items() if t not in own_targets}, **constants}
            formats = formats or list(parent.date_formats)
            skip = {**parent.skip, **skip}
            fill = tuple(dict.fromkeys((*parent.fill_down, *fill)))
        covered = set(columns.values()) | set(constants)
        missing = [t for t in required if t not in covered]
        if missing and len(self.problems) == before:
            self.problem(
                _join(key, "columns"),
                _("no source column for {columns}: map them, or give them as constants").format(
                    columns=", ".join(missing)
                ),
            )
        if len(self.problems) > before:
            return None
        return ImportProfile(
            name, FrozenDict(columns), FrozenDict(constants), tuple(formats), FrozenDict(skip), tuple(fill), kind, base
        )

    def string_table(self, table: dict, name: str, key: str, expected: str) -> dict[str, str]:
        found = self.section(table, name, _join(key, name))
        out = {}
        for k, v in found.items():
            if isinstance(v, str) and v.strip():
                out[k.strip()] = v.strip()
            else:
                self.problem(
                    _join(_join(key, name), k),
                    _("expected {what}, got {value}").format(what=expected, value=_describe_value(v)),
                )
        return out

    def schedule(self, table: dict) -> dict[str, str]:
        self.known_keys(table, SCHEDULE_JOBS, "schedule", noun="job")
        out = {}
        for job in SCHEDULE_JOBS:
            expression = self.text(table, job, "schedule")
            if expression is None:
                continue
            expression = " ".join(expression.split())
            problem = _cron_problem(expression)
            if problem is not None:
                self.problem(_join("schedule", job), problem)
                continue
            out[job] = expression
        return out

    def forecast(self, table: dict) -> ForecastConfig:
        self.known_keys(table, _FORECAST_KEYS, "forecast")
        default = ForecastConfig()
        window = self.duration(table, "window", "forecast")
        if window == 0:
            self.problem("forecast.window", _('must be longer than 0s, e.g. "30d"'))
        least = self.get(table, "min_history", "forecast", "int", default=default.min_history)
        if least < 1:
            self.problem(
                "forecast.min_history", _("must be 1 or more completed visits, got {least}").format(least=least)
            )
        sample = self.get(table, "sample", "forecast", "int", default=default.sample)
        if sample < max(least, 1):
            self.problem(
                "forecast.sample",
                _("must be at least min_history ({least}), got {sample}").format(least=least, sample=sample),
            )
        return ForecastConfig(window or default.window_seconds, least, sample)

    def kpi(self, table: dict) -> tuple[dict[str, float], dict[str, float]]:
        """``[kpi.targets]`` and ``[kpi.baseline]``: the same KPI names, checked the same way."""
        self.known_keys(table, ("targets", "baseline"), "kpi")
        return self.kpi_values(table, "targets"), self.kpi_values(table, "baseline")

    def kpi_values(self, table: dict, part: str) -> dict[str, float]:
        key = f"kpi.{part}"
        values = self.section(table, part, key)
        self.known_keys(values, KPI_TARGETS, key, noun="KPI")
        out = {}
        for name, measure in KPI_TARGETS.items():
            value = self.get(values, name, key, "number")
            if value is None:
                continue
            if measure == "rate" and not 0 <= value <= 1:
                hint = (
                    _(" ({value:g} means {value2:g}%)").format(value=value / 100, value2=value)
                    if 1 < value <= 100
                    else ""
                )
                self.problem(
                    _join(key, name),
                    _("rates are fractions from 0 to 1, got {value}{hint}").format(value=value, hint=hint),
                )
            elif measure != "rate" and value <= 0:
                self.problem(
                    _join(key, name),
                    _("must be more than 0 {measure}, got {value}").format(measure=measure, value=value),
                )
            else:
                out[name] = float(value)
        return out


#: kind -> (its keys, the checker method turning them into params). Adding a rule kind is adding a row.
_RULE_KINDS: dict[str, tuple[tuple[str, ...], Callable[..., dict[str, object]]]] = {
    "stock_below": (("action", "include_inbound"), _Checker.rule_stock_below),
    "dwell": (("node", "longer_than", "clock", "flag"), _Checker.rule_dwell),
    "supplier": (
        ("qc_pass_rate_below", "consecutive_batches", "avg_delay_days_above", "window_batches", "action"),
        _Checker.rule_supplier,
    ),
}
_RULE_KEY_ORDER = tuple(dict.fromkeys(k for keys, _ in _RULE_KINDS.values() for k in keys))


_CRON_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat"),
)


def _cron_problem(expression: str) -> str | None:
    """Why a cron expression is invalid, or None. Five fields: ffctl's scheduler ticks once a minute.

    A valid expression must also fire: its next run is computed from a fixed instant (no wall
    clock here), so "0 0 30 2 *" (February 30th) is refused now, not by `schedule tick` later."""
    from croniter import CroniterBadDateError, croniter

    form = _('expected 5 fields "minute hour day-of-month month day-of-week", e.g. "*/5 * * * *"')
    fields = expression.split()
    if not expression.startswith("@") and len(fields) != 5:
        return _("invalid cron expression {expression!r}: {form}").format(expression=expression, form=form)
    if not croniter.is_valid(expression):
        for i, (name, allowed) in enumerate(_CRON_FIELDS if len(fields) == 5 else ()):
            alone = " ".join(fields[i] if j == i else "*" for j in range(5))
            if not croniter.is_valid(alone):
                what = _("is out of range") if re.fullmatch(r"[\d,*/-]+", fields[i]) else _("is not understood")
                return _(
                    "invalid cron expression {expression!r}: the {field} field {value!r} {what} "
                    "(allowed: {allowed}, with *, lists a,b, ranges a-b and steps */n)"
                ).format(expression=expression, field=name, value=fields[i], what=what, allowed=allowed)
        return _("invalid cron expression {expression!r}: {form}").format(expression=expression, form=form)
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterBadDateError, ValueError, OverflowError):
        return _(
            "cron expression {expression!r} never fires (no such date in any year); check its day-of-month and month"
        ).format(expression=expression)
    return None


def _http_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading the port raises ValueError for a bad one)
    except ValueError:
        return _("not a URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _("not an http(s) URL")
    return None


def describe_spec(spec: Mapping[str, tuple]) -> str:
    """A match or when as the config spells it: ``channel in (web, b2b) and has_custom_items = true``."""
    parts = []
    for key, values in spec.items():
        shown = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
        if len(shown) == 1:
            parts.append(f"{key} = {shown[0]}")
        else:
            parts.append(f"{key} in ({', '.join(shown)})")
        if key in LINE_MATCH_KEYS:
            parts[-1] += _(" on any line")
    return _(" and ").join(parts)
