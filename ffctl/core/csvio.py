"""Reading CSV files as people export them, and parsing their cells.

What shops, ERPs and Excel write: UTF-8 with or without a BOM, or GBK/GB18030 (Excel in
China); commas, semicolons (Excel where the decimal mark is a comma) or tabs between cells; a
header row whose names may be capitalised or spaced; blank lines; trailing empty columns.
``open_csv`` reads a file line by line (bounded memory, stdin too): it chooses the encoding from
a sample (charset-normalizer weighs how plausible each reading is), checks every later line
against that choice, detects the delimiter on the header line, counts the bytes read (for a
progress bar) and yields ``(line, cells, flaw)`` where ``line`` is the physical line a record
starts on, as an editor shows it, and ``flaw`` says why a record cannot be taken as it is.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import cast

from ffctl.core.clock import parse_date, parse_wall_time, zone
from ffctl.core.errors import FfctlError, UsageError
from ffctl.i18n import _

SNIFF_BYTES = 1 << 16
BLOCK_BYTES = 1 << 20  # read and decoded at once
UTF8_BOM = codecs.BOM_UTF8
# What detection chooses between (charset-normalizer's names); GB18030 is a superset of GBK and GB2312.
CANDIDATES = ("utf_8", "gb18030")
REJECTS_ENCODING = "utf-8-sig"  # UTF-8 with a BOM: Excel opens it with the right characters
DELIMITERS = ",;\t"  # detected on the header line; --delimiter gives any other
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", " ": "space"}
SHOWN_CHARS = 60  # an echoed value longer than this is cut (error messages, not the rejects file)

# Chinese characters (CJK Unified Ideographs, Extension A, Compatibility): a reading that shows
# them is Chinese text; GBK bytes that happen to be valid UTF-8 read as Armenian, Greek, Latin
_HANZI = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# C0 and C1 control characters and DEL: never part of a key or a name (they reach terminals,
# mail headers and chat messages); NUL is refused in every cell (PostgreSQL cannot store it)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

csv.field_size_limit(1 << 24)


class CsvFileError(FfctlError):
    """The file as a whole cannot be read as CSV (exit 1): encoding, structure, header."""


# --- echoing values ------------------------------------------------------------------------------


def shown(value: str, limit: int = SHOWN_CHARS) -> str:
    """``value`` quoted for a message: control characters escaped, and cut with its length when
    long (a 10 MB cell must not put 10 MB on a terminal)."""
    if len(value) <= limit:
        return repr(value)
    return _("{start}... ({length} characters)").format(start=repr(value[:limit]), length=f"{len(value):,}")


def plain(value: str, limit: int = SHOWN_CHARS) -> str:
    """``value`` as it is when it is short and printable (an id in a sentence), else ``shown``."""
    if len(value) <= limit and value.isprintable():
        return value
    return shown(value, limit)


def control_name(text: str) -> str | None:
    """What the first control character in ``text`` is, for a message; None when there is none."""
    found = CONTROL.search(text)
    if found is None:
        return None
    char = found.group()
    names = {
        "\x00": _("a NUL byte"),
        "\n": _("a line break (LF)"),
        "\r": _("a carriage return (CR)"),
        "\t": _("a tab"),
        "\x1b": _("an escape character (ESC)"),
    }
    return names.get(char) or _("the control character U+{code:04X}").format(code=ord(char))


# --- encodings ---------------------------------------------------------------------------------


def check_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise UsageError(
            _("unknown encoding {name!r}").format(name=name), hint=_("Use utf-8, utf-8-sig, gbk or gb18030.")
        ) from None


def check_delimiter(text: str) -> str:
    """``--delimiter``: one character, or tab written as ``tab`` or ``\\t``."""
    value = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}.get(
        text.lower(), text
    )
    if len(value) != 1 or value in '"\r\n':
        raise UsageError(_("--delimiter {given}: give one character, for example ';' or tab").format(given=shown(text)))
    return value


def delimiter_name(delimiter: str) -> str:
    return DELIMITER_NAMES.get(delimiter, repr(delimiter))


def choose_encoding(sample: bytes) -> str | None:
    """The encoding of a sample with non-ASCII bytes: ``utf-8`` or ``gb18030``; None when neither
    reads as text.

    charset-normalizer weighs how plausible each reading is. Valid UTF-8 stays UTF-8 unless GB18030
    reads better, the UTF-8 reading shows no Chinese at all and the GB18030 one is common Chinese:
    Chinese names in GBK whose bytes happen to be valid UTF-8 (郑伟 reads as '֣ΰ') are the case to
    catch, while a UTF-8 file of odd symbols must not turn into rare characters.
    """
    import charset_normalizer  # ~50 ms: only files with non-ASCII bytes pay it

    cut = sample.rfind(b"\n")
    if 0 < cut < len(sample) - 1:
        sample = sample[: cut + 1]  # whole lines: a character cut in two reads as neither
    try:
        as_utf8 = codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        as_utf8 = None
    best = charset_normalizer.from_bytes(sample, cp_isolation=list(CANDIDATES)).best()
    if as_utf8 is None:
        if best is not None and best.encoding == "gb18030":
            return "gb18030"
        try:
            codecs.getincrementaldecoder("gb18030")().decode(sample, final=False)
            return "gb18030"
        except UnicodeDecodeError:
            return None
    if best is not None and best.encoding == "gb18030" and not _HANZI.search(as_utf8) and _common_chinese(str(best)):
        return "gb18030"
    return "utf-8"


def _common_chinese(text: str) -> bool:
    """Whether ``text`` has Chinese characters and nearly all its non-ASCII ones are in GB2312,
    the 6,763 characters of everyday use (GBK bytes misread as UTF-8 and back land elsewhere)."""
    if not _HANZI.search(text):
        return False
    wide = [c for c in text if not c.isascii()]
    common = 0
    for char in wide:
        try:
            char.encode("gb2312")
            common += 1
        except UnicodeEncodeError:
            pass
    return common >= 0.9 * len(wide)


def reads_as_utf8(raw: bytes) -> bool:
    """Whether a line of a GB18030 file that is also valid UTF-8 was written in UTF-8: its UTF-8
    reading shows Chinese, or is clearly less of a mess than its GB18030 reading (café)."""
    from charset_normalizer.md import mess_ratio

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if _HANZI.search(text):
        return True
    return mess_ratio(raw.decode("gb18030", "replace"), 1.0) > mess_ratio(text, 1.0) + 0.1


class CountingReader(io.RawIOBase):
    """A raw binary stream that counts the bytes read through it (progress without tell())."""

    def __init__(self, raw: io.RawIOBase | io.BufferedIOBase, *, owned: bool = True) -> None:
        self.raw = raw
        self.owned = owned  # stdin is read, never closed
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        n = self.raw.readinto(buffer)
        self.bytes_read += n or 0
        return n

    def close(self) -> None:
        if self.owned:
            self.raw.close()
        super().close()


class MixedEncodings(CsvFileError):
    def __init__(self, path: str, line: int, found: str, expected: str) -> None:
        super().__init__(
            _(
                "{path}: line {line} is written in {found}, while the file reads as {expected}: a file that mixes "
                "encodings would garble names, so nothing was imported"
            ).format(path=path, line=line, found=encoding_label(found), expected=encoding_label(expected)),
            hint=_(
                "Save the whole file in one encoding (Excel: Save As > 'CSV UTF-8'), or pass --encoding NAME "
                "to read every line in one."
            ),
        )


def encoding_label(codec: str) -> str:
    return {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "gb18030": "GBK/GB18030"}.get(codec, codec)


class _Lines:
    """The physical lines of a byte stream as text, in the encoding given, or detected and then
    checked line by line: a line that reads as the other candidate means a mixed file.

    Iterating yields each line's text. ``count``: the lines read before the one being decoded (for
    the slow paths, which name the line); ``taken``: the lines handed out for the current record
    (_records empties it); ``bad_lines``: the lines with bytes that did not decode (``bad_line``
    the last of them); ``ended``: whether the stream is exhausted.
    """

    def __init__(self, buffered: io.BufferedReader, path: str, encoding: str | None) -> None:
        self.buffered, self.path = buffered, path
        self.given = encoding is not None
        self.codec = encoding  # None: not decided yet (every line so far was ASCII)
        self.count = 0
        self.bad_line = 0
        self.bad_lines: set[int] = set()
        self.after = b""
        self.taken: list[str] = []
        self.ended = False
        self.bom = encoding is None and buffered.peek(3)[:3] == UTF8_BOM
        if self.bom:
            self.codec = "utf-8"  # the BOM reads as U+FEFF, which the header drops
        elif encoding is None and buffered.peek(2)[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            raise CsvFileError(
                _("the file is UTF-16 (Excel's 'Unicode text'); ffctl reads CSV in UTF-8 or GBK"),
                hint=_("In Excel use Save As > 'CSV UTF-8 (Comma delimited)'."),
            )
        self._lines = self._read()

    @property
    def encoding(self) -> str:
        if self.bom:
            return "utf-8-sig"
        return self.codec or "utf-8"  # a file of nothing but ASCII is UTF-8 as well

    def __iter__(self):
        return self._lines

    def _read(self) -> Iterator[str]:
        """The lines, decoded: a block of whole lines at a time where the block decodes in one go
        (the usual case, at the speed of a text file), else line by line. Lines end at LF, CRLF or
        a lone CR. ``count`` is kept for the slow path only (it names lines); the csv reader's
        own line count numbers the records."""
        take = self.taken.append
        n = self.count
        pending = b""
        while True:
            block = self.buffered.read1(BLOCK_BYTES)
            if not block:
                block, pending = pending, b""
                if not block:
                    break
            else:
                block = pending + block
                cut = max(block.rfind(b"\n"), block.rfind(b"\r")) + 1
                if cut == 0 or (cut == len(block) and block.endswith(b"\r")):
                    pending = block  # no line end yet, or a CR whose LF may be in the next block
                    continue
                block, pending = block[:cut], block[cut:]
            text = self._decode_block(block)
            if text is not None:
                for line in io.StringIO(text, newline=""):
                    n += 1
                    take(line)
                    yield line
                continue
            raws = block.splitlines(keepends=True)
            self.after = pending  # read, not yet in lines: part of a sample to choose the encoding from
            for i, raw in enumerate(raws):
                self.count = n
                line = self._decode(raw, raws, i)
                n += 1
                take(line)
                yield line
        self.count = n
        self.ended = True

    def _decode_block(self, block: bytes) -> str | None:
        """``block`` decoded at once, or None when its lines need looking at one by one: the
        encoding is still to choose, a GB18030 choice is being checked, or a line does not decode."""
        codec = self.codec
        if block.isascii():
            return block.decode("ascii")
        if codec is None or (codec == "gb18030" and not self.given):
            return None
        try:
            return block.decode("utf-8" if codec == "utf-8-sig" else codec)
        except UnicodeDecodeError:
            return None

    def _decode(self, raw: bytes, raws: list[bytes], i: int) -> str:
        """Line ``raws[i]`` decoded (the lines after it are the sample when it decides)."""
        codec = self.codec
        if codec is None:
            if raw.isascii():
                return raw.decode("ascii")
            sample = b"".join(raws[i : i + 2000])[:SNIFF_BYTES]
            if len(sample) < SNIFF_BYTES:
                sample += self.after + self.buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES]
            codec = self._decide(sample)
        elif codec == "utf-8-sig":  # given: the BOM, if any, reads as U+FEFF, which the header drops
            codec = "utf-8"
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            return self._undecodable(raw, codec)
        if codec == "gb18030" and not self.given and not raw.isascii() and reads_as_utf8(raw):
            raise MixedEncodings(self.path, self.count + 1, "utf-8", codec)
        return text

    def _decide(self, sample: bytes) -> str:
        """At the first line with non-ASCII bytes: choose from it and what follows it."""
        codec = choose_encoding(sample)
        if codec is None:
            raise CsvFileError(
                _("line {line}: cannot tell the file's encoding: it reads neither as UTF-8 nor as GBK/GB18030").format(
                    line=self.count + 1
                ),
                hint=_("Pass --encoding NAME (for example --encoding big5)."),
            )
        self.codec = codec
        return codec

    def _undecodable(self, raw: bytes, codec: str) -> str:
        if not self.given:
            other = "gb18030" if codec == "utf-8" else "utf-8"
            try:
                raw.decode(other)
            except UnicodeDecodeError:
                pass
            else:
                raise MixedEncodings(self.path, self.count + 1, other, codec)  # codec is self.codec when not given
        self.bad_line = self.count + 1
        self.bad_lines.add(self.bad_line)
        # surrogateescape: the bytes survive into the rejects file as they came
        return raw.decode(codec, "surrogateescape")


@dataclass(frozen=True)
class Flaw:
    """Why a record cannot be taken as it is. ``garbled``: its cells are not text (bytes that did
    not decode), so nothing in it is parsed."""

    reason: str
    garbled: bool = False


@dataclass
class CsvSource:
    """An open CSV file: its header, its records, and how far into the file the reader is."""

    path: str
    size: int | None
    header: list[str]
    rows: Iterator[tuple[int, list[str], Flaw | None]]
    counter: CountingReader
    lines: _Lines
    delimiter: str
    delimiter_detected: bool

    @property
    def encoding(self) -> str:
        return self.lines.encoding

    @property
    def detected(self) -> bool:
        """Whether the encoding was detected (not given), and the file had non-ASCII to detect from."""
        return not self.lines.given and self.lines.codec is not None

    @property
    def bytes_read(self) -> int:
        return self.counter.bytes_read

    def close(self) -> None:
        self.counter.close()


def open_csv(path: str | Path, encoding: str | None = None, delimiter: str | None = None) -> CsvSource:
    """Open ``path`` (``-`` for stdin) as CSV. Raises CsvFileError for unreadable files.

    With ``encoding=None`` the encoding is chosen from the first line with non-ASCII bytes and
    the 64 KiB after it, and every later line is checked against that choice (MixedEncodings);
    with ``delimiter=None`` it is detected on the header line (comma, semicolon or tab).
    """
    text_path = str(path)
    if text_path == "-":
        raw: io.RawIOBase | io.BufferedIOBase = cast(io.BufferedReader, sys.stdin.buffer)  # typeshed: BinaryIO
        size = None
    else:
        p = Path(text_path)
        if p.is_dir():
            raise CsvFileError(_("{text_path} is a folder, not a CSV file").format(text_path=text_path))
        try:
            raw = open(p, "rb", buffering=0)  # noqa: SIM115 - closed by CsvSource.close
        except FileNotFoundError:
            raise CsvFileError(_("no such file: {text_path}").format(text_path=text_path)) from None
        except OSError as exc:
            raise CsvFileError(
                _("cannot read {text_path}: {value}").format(text_path=text_path, value=exc.strerror or exc)
            ) from None
        size = p.stat().st_size
    counter = CountingReader(raw, owned=text_path != "-")
    try:
        lines = _Lines(io.BufferedReader(counter, buffer_size=1 << 20), text_path, encoding)
        source = _open(text_path, size, counter, lines, delimiter)
    except BaseException:
        counter.close()
        raise
    return source


def _open(text_path: str, size: int | None, counter: CountingReader, lines: _Lines, delimiter: str | None) -> CsvSource:
    detected = delimiter is None
    if delimiter is None:
        delimiter = sniff_delimiter(lines.buffered.peek(SNIFF_BYTES)[:SNIFF_BYTES])
    rows = _records(lines, iter(lines), delimiter)
    first = next(rows, None)
    if first is None:
        raise CsvFileError(_("{text_path} is empty: a header row is required").format(text_path=text_path))
    line, cells, flaw = first
    if flaw is not None and flaw.garbled:
        raise CsvFileError(
            _("line {line}: the header has bytes that are not valid {encoding}").format(
                line=line, encoding=lines.encoding
            ),
            hint=_("Pass --encoding NAME (gbk, gb18030, utf-8)."),
        )
    if flaw is not None:
        raise CsvFileError(
            _("line {line}: the header is not valid CSV: {reason}").format(line=line, reason=flaw.reason)
        )
    header = list(cells)
    if header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    return CsvSource(text_path, size, header, rows, counter, lines, delimiter, detected)


def sniff_delimiter(head: bytes) -> str:
    """The delimiter of the first non-blank line of ``head`` (csv.Sniffer: comma, semicolon or
    tab), else a comma. Read as Latin-1: delimiters are ASCII, and no byte of a GBK or UTF-8
    character is one of them."""
    for raw in head.split(b"\n"):
        text = raw.decode("latin-1")
        if text.strip():
            try:
                return csv.Sniffer().sniff(text, delimiters=DELIMITERS).delimiter
            except csv.Error:
                break  # one column, or nothing to tell by
    return ","


def _records(
    lines: _Lines, stream: Iterator[str], delimiter: str, base: int = 0
) -> Iterator[tuple[int, list[str], Flaw | None]]:
    """``(line, cells, flaw)`` per record (``base``: the lines before ``stream``'s first). A quoted
    value still open at the end of the file is a flaw of the record it starts in, and the lines
    after that record's first are read again as records of their own: one stray quote loses no row."""
    reader = csv.reader(stream, delimiter=delimiter)
    taken = lines.taken
    while True:
        start = base + reader.line_num + 1
        del taken[:]  # the same list object: _read holds its append
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvFileError(
                _("line {value}: not valid CSV: {exc}").format(value=base + reader.line_num, exc=exc)
            ) from None
        if lines.ended and taken and _opened_quote(taken[0], delimiter):
            rest = taken[1:]
            cells = next(csv.reader([taken[0].rstrip("\r\n")], delimiter=delimiter), [])
            yield (
                start,
                cells,
                _garbled(lines, start, start)
                or Flaw(
                    _(
                        'a quoted value opens on this line and is never closed (a stray " character?); '
                        "the lines after it were read on their own"
                    )
                ),
            )
            if rest:  # read them again, as the records they are
                lines.ended = False
                yield from _records(lines, iter(_Replay(lines, rest)), delimiter, base=start)
            return
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # a blank line
        yield start, cells, _garbled(lines, start, base + reader.line_num) if lines.bad_line >= start else None


def _garbled(lines: _Lines, first: int, last: int) -> Flaw | None:
    """The flaw of a record on lines ``first``..``last`` with bytes that did not decode, if any."""
    if not any(first <= bad <= last for bad in lines.bad_lines):
        return None
    return Flaw(
        _("bytes that are not valid {encoding}; pass --encoding NAME").format(encoding=lines.encoding), garbled=True
    )


class _Replay:
    """Lines already read, handed out again with ``lines``' bookkeeping."""

    def __init__(self, lines: _Lines, texts: list[str]) -> None:
        self.lines, self.texts = lines, texts

    def __iter__(self):
        lines = self.lines
        for text in self.texts:
            lines.taken.append(text)
            yield text
        lines.ended = True


def _opened_quote(line: str, delimiter: str) -> bool:
    """Whether parsing ``line`` alone ends inside a quoted value (csv's reader does not say)."""
    inside = False
    at_start = True
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if inside:
            if c == '"':
                if i + 1 < n and line[i + 1] == '"':
                    i += 1
                else:
                    inside = False
        elif c == '"' and at_start:
            inside = True
        at_start = c == delimiter
        i += 1
    return inside


def normalise_column(name: str) -> str:
    """A header cell as a column name: 'Order ID' -> 'order_id', ' SKU ' -> 'sku'."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


# A cell a spreadsheet may run as a formula when the file is opened (=, +, -, @ first; not a number)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[\d,]*\.?\d+")


def is_formula(cell: str) -> bool:
    return cell.startswith(_FORMULA_START) and _NUMBER.fullmatch(cell) is None


@dataclass
class RejectsWritten:
    rows: int = 0
    formulas: int = 0  # rows with a cell that is_formula: kept as they were, so the file imports as it is


def write_rejects(path: str | Path, header: list[str], rows: Iterator[tuple[list[str], str]]) -> RejectsWritten:
    """Write rejected rows: the original columns plus ``error`` (replaced if already there).

    UTF-8 with a BOM so that Excel shows Chinese names correctly; the file imports as it is, so
    cells are written as they came, formulas too (counted: the caller warns).
    """
    header = list(header)
    names = [normalise_column(h) for h in header]
    error_at = names.index("error") if "error" in names else None
    if error_at is None:
        header.append("error")
    written = RejectsWritten()
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
            written.rows += 1
            if any(is_formula(c) for c in cells[:width]):
                written.formulas += 1
    return written


# --- cell parsers --------------------------------------------------------------------------------
# Each takes the stripped, non-empty text of a cell and returns the value or raises ValueError.

MAX_INT = 2**31 - 1  # INTEGER columns (PostgreSQL's are 32-bit)


def positive_int(text: str) -> int:
    if text.isdigit() and text.isascii():
        value = int(text)
        if 0 < value <= MAX_INT:
            return value
        if value > MAX_INT:
            raise ValueError(_("is too large (at most {max_int})").format(max_int=MAX_INT))
    raise ValueError(_("must be a positive whole number"))


def non_negative_int(text: str) -> int:
    if text.isdigit() and text.isascii():
        value = int(text)
        if value <= MAX_INT:
            return value
        raise ValueError(_("is too large (at most {max_int})").format(max_int=MAX_INT))
    raise ValueError(_("must be a whole number, 0 or more"))


_THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+(\.\d+)?")


def non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        if not _THOUSANDS.fullmatch(text):  # 1,234.50 as Excel shows it
            raise ValueError(_("must be a number")) from None
        value = float(text.replace(",", ""))
    if not math.isfinite(value) or value < 0:
        raise ValueError(_("must be a number, 0 or more"))
    return value


_TRUE = frozenset({"true", "yes", "y", "1", "t", "是", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "否", "off"})


def boolean(text: str) -> bool:
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(_("must be true or false (yes/no, 1/0)"))


class _TextValue:
    text = True  # a text cell: control characters in it are refused (imports.pipeline._control_problems)

    def __call__(self, text: str) -> str:
        return text


text_value = _TextValue()


PRIORITY_WORDS = {"low": -1, "normal": 0, "high": 1, "urgent": 2}


def priority(text: str) -> int:
    """An integer (higher first), or low / normal / high / urgent (-1 / 0 / 1 / 2)."""
    low = text.lower()
    if low in PRIORITY_WORDS:
        return PRIORITY_WORDS[low]
    if re.fullmatch(r"[+-]?\d{1,6}", text):
        return int(text)
    raise ValueError(_("must be a whole number or one of low, normal, high, urgent"))


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    allowed = frozenset(choices)

    def parse(text: str) -> str:
        value = text.lower()
        if value in allowed:
            return value
        raise ValueError(_("must be one of {names}").format(names=", ".join(choices)))

    return parse


class _Known:
    """csvio.known's parser: ``members`` and ``reason`` let a compiled row parser inline the lookup."""

    def __init__(self, members, reason: str) -> None:
        self.members = members
        self.reason = reason

    def __call__(self, text: str) -> str:
        if text in self.members:
            return text
        raise ValueError(self.reason)


def known(names, noun: str, hint: str) -> _Known:
    """A reference to an existing thing (SKU, customer, supplier), checked against a set."""
    return _Known(names, _("unknown {noun} ({hint})").format(noun=noun, hint=hint))


_UTC = timezone.utc


def stored_time(dt: datetime) -> str:
    """An aware datetime as naive UTC text in the form the store keeps (both backends read it)."""
    if dt.tzinfo is not _UTC:
        dt = dt.astimezone(_UTC)
    return dt.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def from_stored(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=_UTC)


EARLIEST_YEAR = 2000  # a time or date before it is a typing slip or a spreadsheet's zero date (1900, 1970)


def too_early(year: int) -> str | None:
    if year < EARLIEST_YEAR:
        return _("is before {year}: not a plausible date here (a typing slip, or a spreadsheet's empty date?)").format(
            year=EARLIEST_YEAR
        )
    return None


def time_parser(tz: str, *, latest: datetime | None = None, latest_reason: str = "") -> Callable[[str], str]:
    """Times as users write them (clock.parse_time), in ``tz`` when naive, as stored text.

    A time written with a year before EARLIEST_YEAR is refused, and with ``latest`` one after it
    (``latest_reason`` says why). Cached: an order's lines repeat its created_at, and exports
    repeat timestamps. A naive time becomes UTC by subtracting its zone's offset there, which is
    what ``parse_time`` does with fewer steps (a fifth of the time: a file's created_at values
    are mostly distinct).
    """
    local = zone(tz)
    limit = stored_time(latest) if latest is not None else None

    @lru_cache(maxsize=8192)
    def parse(text: str) -> str:
        try:
            moment = parse_wall_time(text)
            if moment.year < EARLIEST_YEAR:
                raise ValueError(too_early(moment.year))
            if moment.tzinfo is None:
                offset = local.utcoffset(moment)
                assert offset is not None  # a ZoneInfo has an offset at every time
                moment = moment - offset
                stored = moment.isoformat(" ")
                if not moment.microsecond:
                    stored += ".000000"
            else:
                stored = stored_time(moment)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        except OverflowError:
            raise ValueError(_("not a real date/time: out of range")) from None
        if limit is not None and stored > limit:
            raise ValueError(latest_reason)
        return stored

    return parse


@lru_cache(maxsize=4096)
def date_value(text: str) -> str:
    """A calendar date (YYYY-MM-DD or YYYY/MM/DD, a time part ignored) as ISO text."""
    day = parse_date(text)
    early = too_early(day.year)
    if early:
        raise ValueError(early)
    return day.isoformat()


class _FirstSeen:
    text = True  # a text cell, as text_value

    def __init__(self, spellings: dict[str, str]) -> None:
        self.spellings = spellings

    def __call__(self, text: str) -> str:
        key = text.casefold()
        found = self.spellings.get(key)
        if found is None:
            found = self.spellings[key] = text
        return found


def first_seen(spellings: dict[str, str]) -> _FirstSeen:
    """Text compared without case (``WEB`` and ``web`` are one channel), kept as first seen:
    ``spellings`` maps each casefolded value to the spelling the store (or this file) had first."""
    return _FirstSeen(spellings)
