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

from dataclasses import replace
from datetime import datetime
from typing import Iterator

from ffctl.core.config import PROFILE_TARGETS, PROFILE_TIMES, FrozenDict, ImportProfile
from ffctl.core.errors import UsageError
from ffctl.i18n import _, ngettext

LINE_LEVEL = frozenset({"order_id", "line_no", "sku", "qty", "unit_price"})  # the rest is the order's

BUILTIN: dict[str, ImportProfile] = {
    # Shopify admin → Orders → Export: one row per line item; the order's own fields (Email,
    # Financial Status, Created at, ...) only on its first row. Customers are keyed by email.
    "shopify": ImportProfile(
        name="shopify",
        columns=FrozenDict({"Name": "order_id", "Email": "customer", "Lineitem sku": "sku",
                            "Lineitem quantity": "qty", "Lineitem price": "unit_price", "Created at": "created_at"}),
        constants=FrozenDict({"channel": "shopify"}),
        date_formats=("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S"),
        skip=FrozenDict({"Financial Status": ("refunded", "voided")}),
        fill_down=("Email", "Financial Status", "Created at"),
    ),
    # WooCommerce Customer/Order CSV Export, "Default - one row per item": every row repeats its order.
    "woocommerce": ImportProfile(
        name="woocommerce",
        columns=FrozenDict({"order_id": "order_id", "billing_email": "customer", "item_sku": "sku",
                            "item_quantity": "qty", "order_date": "created_at"}),
        constants=FrozenDict({"channel": "woocommerce"}),
        date_formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"),
        skip=FrozenDict({"status": ("cancelled", "refunded", "failed", "pending", "trash", "checkout-draft")}),
    ),
}


def resolve(cfg, name: str, kind: str) -> ImportProfile:
    """The profile ``--profile NAME`` means: the config's ``[import_profiles.NAME]``, else a built-in."""
    profile = cfg.import_profiles.get(name) or BUILTIN.get(name)
    if profile is None:
        names = sorted({*cfg.import_profiles, *BUILTIN})
        raise UsageError(_("unknown import profile {name!r}: use one of {names}, or define "
                           "[import_profiles.{name}] in the config").format(name=name, names=", ".join(names)))
    if kind != profile.kind:
        raise UsageError(_("--profile {name} maps {profile_kind} files, not {kind}").format(
            name=name, profile_kind=profile.kind, kind=kind))
    return profile


def _check_targets(kind: str) -> None:
    """The config's list of orders columns is the import's (the one owner: core/imports.py KINDS)."""
    from ffctl.core.imports import KINDS

    required, optional = PROFILE_TARGETS[kind]
    if set(required + optional) != set(KINDS[kind].columns):  # pragma: no cover - a programming slip
        raise AssertionError(f"config.PROFILE_TARGETS[{kind!r}] no longer matches the import's columns")


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
        at = {}
        for pos, cell in enumerate(source.header):
            at.setdefault(_key(cell), pos)
        required = PROFILE_TARGETS[profile.kind][0]
        self._mapped: list[tuple[str, int, str]] = []  # (ffctl column, position, source column)
        absent = []
        for column, target in profile.columns.items():
            pos = at.get(_key(column))
            if pos is not None:
                self._mapped.append((target, pos, source.header[pos].strip()))
            elif target in required:
                absent.append(column)
        if absent:
            raise CsvFileError(
                ngettext("the {profile} profile reads the column {columns}, which {path} does not have",
                         "the {profile} profile reads the columns {columns}, which {path} does not have",
                         len(absent)).format(profile=profile.name, columns=", ".join(shown(c) for c in absent),
                                             path=source.path),
                hint=_("The header has {header}. Is it the right file, or the right --profile?").format(
                    header=", ".join(shown(h) for h in source.header if h.strip())[:500]))
        self._fill = [at[_key(c)] for c in profile.fill_down if _key(c) in at]
        if self._fill:  # such an export writes every order-level field once: all of them fill down
            self._fill += [pos for target, pos, _s in self._mapped if target not in LINE_LEVEL and pos not in self._fill]
        self._skip = [(at[_key(c)], c, {v.strip().casefold() for v in values})
                      for c, values in profile.skip.items() if _key(c) in at]
        order_at = next((pos for target, pos, _s in self._mapped if target == "order_id"), None)
        self._order_at = order_at
        self._auto_line = "line_no" not in {t for t, _p, _s in self._mapped} and "line_no" not in profile.constants
        self.header = ([t for t, _p, _s in self._mapped] + list(profile.constants)
                       + (["line_no"] if self._auto_line else []))
        #: ffctl column -> how an error names it: the source column as the file has it
        self.source_names = {t: s for t, _p, s in self._mapped}
        self.source_names.update({t: _("{column} (the profile's constant)").format(column=t) for t in profile.constants})
        if self._auto_line:
            self.source_names["line_no"] = _("line_no (numbered by the profile)")
        self.rows = self._rows()

    def __getattr__(self, name: str):
        return getattr(self._source, name)

    def _rows(self) -> Iterator[tuple]:
        from ffctl.core.csvio import Flaw, shown

        profile = self.profile
        constants = list(profile.constants.values())
        times = {t for t in PROFILE_TIMES if profile.date_formats}
        width = len(self.header)
        previous: dict[int, str] = {}
        previous_order = None
        line_order, line_no = None, 0
        for line, cells, flaw in self._source.rows:
            if flaw is not None and flaw.garbled:
                yield line, [""] * width, flaw
                continue
            row = [c.strip() for c in cells]
            get = (lambda pos: row[pos] if pos < len(row) else "")
            order = get(self._order_at) if self._order_at is not None else ""
            if self._fill and order and order == previous_order:
                for pos in self._fill:
                    if not get(pos) and previous.get(pos):
                        while len(row) <= pos:
                            row.append("")
                        row[pos] = previous[pos]
            previous_order = order
            previous = {pos: get(pos) for pos in self._fill}
            why = next((f"{column} = {get(pos)}" for pos, column, values in self._skip
                        if get(pos).casefold() in values), None)
            if why is not None:
                self.skipped[why] = self.skipped.get(why, 0) + 1
                continue
            out, problems = [], []
            for target, pos, source_name in self._mapped:
                value = get(pos)
                if value and target in times:
                    value, problem = _read_time(value, profile.date_formats, target)
                    if problem:
                        problems.append(_("{column} {value}: {problem}").format(
                            column=source_name, value=shown(get(pos)), problem=problem))
                out.append(value)
            out.extend(constants)
            if self._auto_line:
                line_no = line_no + 1 if order and order == line_order else 1
                line_order = order
                out.append(str(line_no))
            if problems:
                reason = "; ".join(problems) if flaw is None else "; ".join([flaw.reason, *problems])
                flaw = Flaw(reason)
            yield line, out, flaw

    def name_columns(self, report) -> None:
        """Name each error's column as the file has it, and say which rows the profile skipped."""
        report.errors[:] = [replace(e, column=self.source_names.get(e.column, e.column)) for e in report.errors]
        for why, count in sorted(self.skipped.items()):
            report.notes.append(ngettext("{count} row skipped by the {profile} profile: {why}",
                                         "{count} rows skipped by the {profile} profile: {why}", count).format(
                count=f"{count:,}", profile=self.profile.name, why=why))


def _read_time(text: str, formats: tuple[str, ...], target: str) -> tuple[str, str | None]:
    """``text`` read by the first format that fits, as ISO text the import reads; or ("", why)."""
    for fmt in formats:
        try:
            moment = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if target == "promised_ship_date":
            return moment.date().isoformat(), None
        return moment.isoformat(), None
    return "", _("does not match the profile's date format {formats}").format(formats=" or ".join(formats))
