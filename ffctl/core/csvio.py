"""Reading CSV files as people export them, and parsing their cells.

What shops, ERPs and Excel write: UTF-8 with or without a BOM, or GBK/GB18030 (Excel in
China); a header row whose names may be capitalised or spaced; blank lines; trailing empty
columns. ``open_csv`` detects the encoding, counts the bytes read (for a progress bar) and yields
``(line, cells)`` where ``line`` is the physical line a record starts on, as an editor shows it.

Cell parsers raise ``ValueError`` with a reason a person can act on; they are plain functions
(built once per import) because they run once per cell of a million-row file.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ffctl.core.clock import parse_date, parse_wall_time, zone
from ffctl.core.errors import FfctlError

SNIFF_BYTES = 1 << 16
UTF8_BOM = codecs.BOM_UTF8
# The encodings detected, in the order tried; GB18030 is a superset of GBK and GB2312.
DETECTED = ("utf-8-sig", "utf-8", "gb18030")
REJECTS_ENCODING = "utf-8-sig"  # UTF-8 with a BOM: Excel opens it with the right characters

_SURROGATE = re.compile("[\udc80-\udcff]")

csv.field_size_limit(1 << 24)


class CsvFileError(FfctlError):
    """The file as a whole cannot be read as CSV (exit 1): encoding, structure, header."""


class EncodingRetry(Exception):
    """The detected encoding failed past the sniffed part of the file: read again with ``encoding``."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


# --- encodings ---------------------------------------------------------------------------------

def detect_encoding(head: bytes) -> str:
    """The encoding of a file from its first bytes: a UTF-8 BOM, valid UTF-8, else GB18030."""
    if head.startswith(UTF8_BOM):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvFileError(
            "the file is UTF-16 (Excel's 'Unicode text'); ffctl reads CSV in UTF-8 or GBK",
            hint="In Excel use Save As > 'CSV UTF-8 (Comma delimited)'.",
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        codecs.getincrementaldecoder("gb18030")().decode(head, final=False)
        return "gb18030"
    except UnicodeDecodeError:
        raise CsvFileError(
            "cannot tell the file's encoding: it is neither UTF-8 nor GBK/GB18030",
            hint="Pass --encoding NAME (for example --encoding big5).",
        ) from None


def check_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise FfctlError(f"unknown encoding {name!r}", hint="Use utf-8, utf-8-sig, gbk or gb18030.") from None


class CountingReader(io.RawIOBase):
    """A raw binary stream that counts the bytes read through it (progress without tell())."""

    def __init__(self, raw: BinaryIO, *, owned: bool = True) -> None:
        self.raw = raw
        self.owned = owned  # stdin is read, never closed
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.bytes_read += n or 0
        return n

    def close(self) -> None:
        if self.owned:
            self.raw.close()
        super().close()


@dataclass
class CsvSource:
    """An open CSV file: its header, its records, and how far into the file the reader is."""

    path: str
    encoding: str
    detected: bool
    size: int | None
    header: list[str]
    rows: Iterator[tuple[int, list[str], bool]]  # (line, cells, has undecodable bytes)
    counter: CountingReader

    @property
    def bytes_read(self) -> int:
        return self.counter.bytes_read

    def close(self) -> None:
        self.counter.close()


def open_csv(path: str | Path, encoding: str | None = None) -> CsvSource:
    """Open ``path`` (``-`` for stdin) as CSV. Raises CsvFileError for unreadable files.

    With ``encoding=None`` the encoding is detected from the first 64 KiB; if a later part of a
    file that looked like UTF-8 turns out not to be, iterating raises ``EncodingRetry`` and the
    caller starts again with GB18030 (files only; stdin cannot be read twice).
    """
    text_path = str(path)
    if text_path == "-":
        raw: BinaryIO = sys.stdin.buffer
        size = None
    else:
        p = Path(text_path)
        if p.is_dir():
            raise CsvFileError(f"{text_path} is a folder, not a CSV file")
        try:
            raw = open(p, "rb", buffering=0)  # noqa: SIM115 - closed by CsvSource.close
        except FileNotFoundError:
            raise CsvFileError(f"no such file: {text_path}") from None
        except OSError as exc:
            raise CsvFileError(f"cannot read {text_path}: {exc.strerror or exc}") from None
        size = p.stat().st_size
    counter = CountingReader(raw, owned=text_path != "-")
    buffered = io.BufferedReader(counter, buffer_size=1 << 20)
    detected = encoding is None
    if detected:
        encoding = detect_encoding(buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES])
    # surrogateescape: undecodable bytes become lone surrogates, so the row they are on is known
    text = io.TextIOWrapper(buffered, encoding=encoding, errors="surrogateescape", newline="")
    reader = csv.reader(text)
    retry = detected and encoding == "utf-8" and text_path != "-"
    # a file that decodes as a whole has no undecodable row: no need to look in every row
    check = text_path == "-" or not decodes_cleanly(Path(text_path), encoding)

    def records() -> Iterator[tuple[int, list[str], bool]]:
        last = 0
        undecodable = False
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CsvFileError(f"line {reader.line_num}: not valid CSV: {exc}") from None
            start, last = last + 1, reader.line_num
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # a blank line
            if check:
                undecodable = _SURROGATE.search("".join(cells)) is not None
            if undecodable and retry:
                raise EncodingRetry("gb18030")
            yield start, cells, undecodable

    rows = records()
    try:
        first = next(rows, None)
    except BaseException:
        counter.close()
        raise
    if first is None:
        counter.close()
        raise CsvFileError(f"{text_path} is empty: a header row is required")
    if first[2]:
        counter.close()
        raise CsvFileError(
            f"line {first[0]}: the header has bytes that are not valid {encoding}",
            hint="Pass --encoding NAME (gbk, gb18030, utf-8).",
        )
    header = list(first[1])
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    return CsvSource(text_path, encoding, detected, size, header, rows, counter)


def decodes_cleanly(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes in ``encoding`` (a C loop over the bytes: ~0.1 s per 100 MB)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except (UnicodeDecodeError, OSError):
        return False
    return True


def normalise_column(name: str) -> str:
    """A header cell as a column name: 'Order ID' -> 'order_id', ' SKU ' -> 'sku'."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def write_rejects(path: str | Path, header: list[str], rows: Iterator[tuple[list[str], str]]) -> int:
    """Write rejected rows: the original columns plus ``error`` (replaced if already there).

    UTF-8 with a BOM so that Excel shows Chinese names correctly; the file imports as it is.
    """
    header = list(header)
    names = [normalise_column(h) for h in header]
    error_at = names.index("error") if "error" in names else None
    if error_at is None:
        header.append("error")
    count = 0
    # surrogateescape: bytes that did not decode go back out as they came in
    with open(path, "w", encoding=REJECTS_ENCODING, errors="surrogateescape", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        width = len(header) - (0 if error_at is not None else 1)
        for cells, error in rows:
            cells = list(cells[:width]) + [""] * max(0, width - len(cells))
            if error_at is not None:
                cells[error_at] = error
            else:
                cells.append(error)
            writer.writerow(cells)
            count += 1
    return count


# --- cell parsers --------------------------------------------------------------------------------
# Each takes the stripped, non-empty text of a cell and returns the value or raises ValueError.

MAX_INT = 2**31 - 1  # INTEGER columns (PostgreSQL's are 32-bit)


def positive_int(text: str) -> int:
    if text.isdigit() and text.isascii():
        value = int(text)
        if 0 < value <= MAX_INT:
            return value
        if value > MAX_INT:
            raise ValueError(f"is too large (at most {MAX_INT})")
    raise ValueError("must be a positive whole number")


def non_negative_int(text: str) -> int:
    if text.isdigit() and text.isascii():
        value = int(text)
        if value <= MAX_INT:
            return value
        raise ValueError(f"is too large (at most {MAX_INT})")
    raise ValueError("must be a whole number, 0 or more")


_THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+(\.\d+)?")


def non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        if not _THOUSANDS.fullmatch(text):  # 1,234.50 as Excel shows it
            raise ValueError("must be a number") from None
        value = float(text.replace(",", ""))
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a number, 0 or more")
    return value


_TRUE = frozenset({"true", "yes", "y", "1", "t", "是", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "否", "off"})


def boolean(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("must be true or false (yes/no, 1/0)")


def text_value(text: str) -> str:
    return text


PRIORITY_WORDS = {"low": -1, "normal": 0, "high": 1, "urgent": 2}


def priority(text: str) -> int:
    """An integer (higher first), or low / normal / high / urgent (-1 / 0 / 1 / 2)."""
    low = text.lower()
    if low in PRIORITY_WORDS:
        return PRIORITY_WORDS[low]
    if re.fullmatch(r"[+-]?\d{1,6}", text):
        return int(text)
    raise ValueError("must be a whole number or one of low, normal, high, urgent")


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    allowed = frozenset(choices)

    def parse(text: str) -> str:
        value = text.lower()
        if value in allowed:
            return value
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


def known(names, noun: str, hint: str) -> Callable[[str], str]:
    """A reference to an existing thing (SKU, customer, supplier), checked against a set.

    ``parse.members`` and ``parse.reason`` let a compiled row parser inline the lookup.
    """
    reason = f"unknown {noun} ({hint})"

    def parse(text: str) -> str:
        if text in names:
            return text
        raise ValueError(reason)

    parse.members = names
    parse.reason = reason
    return parse


_UTC = timezone.utc


def stored_time(dt: datetime) -> str:
    """An aware datetime as naive UTC text in the form the store keeps (both backends read it)."""
    if dt.tzinfo is not _UTC:
        dt = dt.astimezone(_UTC)
    return dt.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def from_stored(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=_UTC)


def time_parser(tz: str) -> Callable[[str], str]:
    """Times as users write them (clock.parse_time), in ``tz`` when naive, as stored text.

    Cached: an order's lines repeat its created_at, and exports repeat timestamps. A naive time
    becomes UTC by subtracting its zone's offset there, which is what ``parse_time`` does with
    fewer steps (a fifth of the time: a file's created_at values are mostly distinct).
    """
    local = zone(tz)

    @lru_cache(maxsize=8192)
    def parse(text: str) -> str:
        try:
            moment = parse_wall_time(text)
            if moment.tzinfo is None:
                moment = moment - local.utcoffset(moment)
                stored = moment.isoformat(" ")
                return stored if moment.microsecond else stored + ".000000"
            return stored_time(moment)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        except OverflowError:
            raise ValueError("not a real date/time: out of range") from None

    return parse


@lru_cache(maxsize=4096)
def date_value(text: str) -> str:
    """A calendar date (YYYY-MM-DD or YYYY/MM/DD, a time part ignored) as ISO text."""
    return parse_date(text).isoformat()
