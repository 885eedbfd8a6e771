"""The one writer of benchmark sections in docs/performance.md.

Each benchmark owns the text between ``<!-- bench/NAME: begin -->`` and ``<!-- bench/NAME: end -->``;
``record_section`` replaces it (or appends it) and leaves every other section alone.
"""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench/{name}: begin -->", f"<!-- bench/{name}: end -->"


def record_section(name: str, text: str, doc: Path = DOC) -> Path:
    """Put ``text`` (markdown, starting with its ``##`` heading) in bench ``name``'s section."""
    begin, end = markers(name)
    current = doc.read_text(encoding="utf-8") if doc.exists() else "# Performance\n"
    section = f"{begin}\n{text.strip()}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + section + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + section + "\n"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(current, encoding="utf-8")
    return doc
