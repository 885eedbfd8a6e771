"""Import profiles: another system's order export read as ffctl's orders file (SPEC 9.6).

``ffctl import orders FILE --profile NAME`` puts one row-mapping step in front of the orders
import; everything after it (parsing, checks, rejects, batches) is the one import pipeline:

    export row --fill down--> --skip by value--> --map columns, constants, dates, line_no--> orders row

- **columns**: source column (as the file spells it; case and spaces forgiven) -> ffctl column.
  Source columns not mapped are ignored.
- **constants**: an ffctl column every row gets (``channel = "tmall"``).
- **date_format**: strptime formats for created_at and promised_ship_date; a value none of them
  reads is that row's error, naming the source column.
- **fill_down**: source columns only an order's first row carries (Shopify writes the order's
  fields once, then one row per further line item); a blank cell in a later row of the same
  order takes the first row's value. With it, every column mapped to an order-level field
  (customer, channel, region, created_at, ...) fills down too. Rows of one order are
  consecutive in such exports.
- **skip**: rows whose source column holds one of the values (compared without case) are left
  out and counted (refunded, voided, test orders).
- **line_no**: when nothing maps to it, the lines of an order are numbered 1, 2, ... in file order.

Errors name the source column as the file has it; the rejects file holds the mapped rows
(ffctl's columns plus error), so it imports without ``--profile`` once fixed.

Built in: ``shopify`` (Shopify admin's orders export) and ``woocommerce`` (the Customer/Order
CSV Export's "Default - one row per item" format). ``[import_profiles.NAME] base = "shopify"``
extends one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from ffctl.core.config import PROFILE_TARGETS, PROFILE_TIMES, FrozenDict, ImportProfile
from ffctl.core.errors import UsageError
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

LINE_LEVEL = frozenset({"order_id", "line_no", "sku", "qty", "unit_price"})  # the rest is the order's

BUILTIN: dict[str, ImportProfile] = {
    # Shopify admin → Orders → Export: one row per line item; the order's own fields (Email,
    # Financial Status, Created at, ...) only on its first row. Customers are keyed by email.
    "shopify": ImportProfile(
        name="shopify",
        columns=FrozenDict(
            {
                "Name": "order_id",
                "Email": "customer",
                "Lineitem sku": "sku",
                "Lineitem quantity": "qty",
                "Lineitem price": "unit_price",
                "Created at": "created_at",
            }
        ),
        constants=FrozenDict({"channel": "shopify"}),
        date_formats=("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S"),
        skip=FrozenDict({"Financial Status": ("refunded", "voided")}),
        fill_down=("Email", "Financial Status", "Created at"),
    ),
    # WooCommerce Customer/Order CSV Export, "Default - one row per item": every row repeats its order.
    "woocommerce": ImportProfile(
        name="woocommerce",
        columns=FrozenDict(
            {
                "order_id": "order_id",
                "billing_email": "customer",
                "item_sku": "sku",
                "item_quantity": "qty",
                "order_date": "created_at",
            }
        ),
        constants=FrozenDict({"channel": "woocommerce"}),
        date_formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"),
        skip=FrozenDict({"status": ("cancelled", "refunded", "failed", "pending", "trash", "checkout-draft")}),
    ),
}


def resolve(cfg: Config, name: str, kind: str) -> ImportProfile:
    """The profile ``--profile NAME`` means: the config's ``[import_profiles.NAME]``, else a built-in."""
    profile = cfg.import_profiles.get(name) or BUILTIN.get(name)
    if profile is None:
        names = sorted({*cfg.import_profiles, *BUILTIN})
        raise UsageError(
            _(
                "unknown import profile {name!r}: use one of {names}, or define [import_profiles.{name}] in the config"
            ).format(name=name, names=", ".join(names))
        )
    if kind != profile.kind:
        raise UsageError(
            _("--profile {name} maps {profile_kind} files, not {kind}").format(
                name=name, profile_kind=profile.kind, kind=kind
            )
        )
    return profile


def _check_targets(kind: str) -> None:
    """The config's list of orders columns is the import's (the one owner: core/imports/kinds.py KINDS)."""
    from ffctl.core.imports import KINDS

    required, optional = PROFILE_TARGETS[kind]
    if set(required + optional) != set(KINDS[kind].columns):  # pragma: no cover - a programming slip
        raise AssertionError(
            _("config.PROFILE_TARGETS[{kind!r}] no longer matches the import's columns").format(kind=kind)
        )


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


class ProfileReader:
    """A CsvSource whose header and rows are the profile's mapping of the file's; the rest
    (encoding, delimiter, bytes read, close) is the file's."""

    def __init__(self, profile: ImportProfile, source) -> None:
        from ffctl.core.csvio import CsvFileError, shown

        _check_targets(profile.kind)
        self.profile, self._source = profile, source
        self.skipped: dict[str, int] = {}  # "Financial Status = refunded" -> rows
        at: dict[str, int] = {}
        for pos, cell in enumerate(source.header):
            at.setdefault(_key(cell), pos)
        required = PROFILE_TARGETS[profile.kind][0]
        self._mapped: list[tuple[str, int, str]] = []  # (ffctl column, position, source column)
        absent: list[str] = []
        for column, target in profile.columns.items():
            where = at.get(_key(column))
            if where is not None:
                self._mapped.append((target, where, source.header[where].strip()))
            elif target in required:
                absent.append(column)
        # times last: a row's cells are its plain columns, then the times the profile reads, as the header says
        self._mapped.sort(key=lambda m: bool(profile.date_formats) and m[0] in PROFILE_TIMES)
        if absent:
            raise CsvFileError(
                ngettext(
                    "the {profile} profile reads the column {columns}, which {path} does not have",
                    "the {profile} profile reads the columns {columns}, which {path} does not have",
                    len(absent),
                ).format(profile=profile.name, columns=", ".join(shown(c) for c in absent), path=source.path),
                hint=_("The header has {header}. Is it the right file, or the right --profile?").format(
                    header=", ".join(shown(h) for h in source.header if h.strip())[:500]
                ),
            )
        self._fill = [at[_key(c)] for c in profile.fill_down if _key(c) in at]
        if self._fill:  # such an export writes every order-level field once: all of them fill down
            self._fill += [
                pos for target, pos, _s in self._mapped if target not in LINE_LEVEL and pos not in self._fill
            ]
        self._skip = [
            (at[_key(c)], c, {v.strip().casefold() for v in values})
            for c, values in profile.skip.items()
            if _key(c) in at
        ]
        order_at = next((pos for target, pos, _s in self._mapped if target == "order_id"), None)
        self._order_at = order_at
        self._auto_line = "line_no" not in {t for t, _p, _s in self._mapped} and "line_no" not in profile.constants
        self.header = (
            [t for t, _p, _s in self._mapped] + list(profile.constants) + (["line_no"] if self._auto_line else [])
        )
        #: ffctl column -> how an error names it: the source column as the file has it
        self.source_names = {t: s for t, _p, s in self._mapped}
        self.source_names.update(
            {t: _("{column} (the profile's constant)").format(column=t) for t in profile.constants}
        )
        if self._auto_line:
            self.source_names["line_no"] = _("line_no (numbered by the profile)")
        self.rows = self._rows()

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    def _rows(self) -> Iterator[tuple]:
        from ffctl.core.csvio import Flaw

        profile = self.profile
        constants = list(profile.constants.values())
        timed = {t for t in PROFILE_TIMES if profile.date_formats}
        plain = [pos for target, pos, _s in self._mapped if target not in timed]
        times = [(pos, target, source) for target, pos, source in self._mapped if target in timed]
        width = len(self.header)
        need = max([pos for _t, pos, _s in self._mapped] + self._fill + [p for p, _c, _v in self._skip] + [0]) + 1
        fill, skip, order_at, auto_line = self._fill, self._skip, self._order_at, self._auto_line
        read_time = _TimeReader(profile.date_formats)
        previous: list[str] = []
        previous_order = None
        line_order, line_no = None, 0
        for line, cells, flaw in self._source.rows:
            if flaw is not None and flaw.garbled:
                yield line, [""] * width, flaw
                continue
            if len(cells) < need:
                cells = cells + [""] * (need - len(cells))
            key = cells[order_at].strip() if order_at is not None else ""
            if fill:
                if key and key == previous_order:
                    for i, pos in enumerate(fill):
                        if not cells[pos].strip():
                            cells[pos] = previous[i]
                previous = [cells[pos].strip() for pos in fill]
                previous_order = key
            if skip:
                why = next(
                    (
                        f"{column} = {cells[pos].strip()}"
                        for pos, column, values in skip
                        if cells[pos].strip().casefold() in values
                    ),
                    None,
                )
                if why is not None:
                    self.skipped[why] = self.skipped.get(why, 0) + 1
                    continue
            out = [cells[pos].strip() for pos in plain]
            problems = None
            for pos, target, source in times:
                text = cells[pos].strip()
                value, problem = read_time(text, target) if text else ("", None)
                if problem:
                    problems = (problems or []) + [
                        _("{column} {value}: {problem}").format(column=source, value=_shown(text), problem=problem)
                    ]
                out.append(value)
            out += constants
            if auto_line:
                line_no = line_no + 1 if key and key == line_order else 1
                line_order = key
                out.append(str(line_no))
            if problems:
                flaw = Flaw("; ".join(problems if flaw is None else [flaw.reason, *problems]))
            yield line, out, flaw

    def name_columns(self, report) -> None:
        """Name each error's column as the file has it, and say which rows the profile skipped."""
        report.errors[:] = [replace(e, column=self.source_names.get(e.column, e.column)) for e in report.errors]
        for why, count in sorted(self.skipped.items()):
            report.notes.append(
                ngettext(
                    "{count} row skipped by the {profile} profile: {why}",
                    "{count} rows skipped by the {profile} profile: {why}",
                    count,
                ).format(count=f"{count:,}", profile=self.profile.name, why=why)
            )


def _shown(text: str) -> str:
    from ffctl.core.csvio import shown

    return shown(text)


# formats whose every reading datetime.fromisoformat gives too (with "+0800" after a space joined on)
_ISO_FORMATS = frozenset(
    {
        "%Y-%m-%d %H:%M:%S %z",
        "%Y-%m-%d %H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    }
)


class _TimeReader:
    """Times read by the profile's formats, as ISO text the import reads; remembered per text
    (exports repeat an order's time on each of its rows), up to MEMO entries."""

    MEMO = 4096

    def __init__(self, formats: tuple[str, ...]) -> None:
        self.formats = formats
        self.memo: dict[tuple[str, str], tuple[str, str | None]] = {}

    def __call__(self, text: str, target: str) -> tuple[str, str | None]:
        found = self.memo.get((text, target))
        if found is None:
            if len(self.memo) >= self.MEMO:
                self.memo.clear()
            found = self.memo[(text, target)] = self._read(text, target)
        return found

    def _read(self, text: str, target: str) -> tuple[str, str | None]:
        for fmt in self.formats:
            try:
                if fmt in _ISO_FORMATS:  # strptime costs ten times as much; these read the same text
                    moment = datetime.fromisoformat(text.replace(" +", "+").replace(" -", "-"))
                else:
                    moment = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return (moment.date().isoformat() if target == "promised_ship_date" else moment.isoformat()), None
        return "", _("does not match the profile's date format {formats}").format(formats=_(" or ").join(self.formats))
