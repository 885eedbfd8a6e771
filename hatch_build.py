"""Build hook: compile the translation fragments into the catalogs ffctl ships (SPEC 9.6).

Every engineer adds their own fragment ``ffctl/locale/<lang>/<name>.po`` (no merge conflicts);
a wheel build (``pip install .``, ``pip install -e .``) merges each language's fragments with
Babel and writes ``ffctl/locale/<lang>/LC_MESSAGES/ffctl.mo``, which ``ffctl/i18n.py`` loads with
the standard library's gettext. After editing a fragment in a checkout, refresh the catalog with

    .venv/bin/python hatch_build.py

(tests/test_language.py fails with that command when the compiled catalog is stale).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script, or imported by the tests: only the catalog functions are used
    BuildHookInterface = object  # type: ignore[assignment,misc]

LOCALE = Path("ffctl") / "locale"
DOMAIN = "ffctl"


def fragments(root: Path) -> dict[str, list[Path]]:
    """language folder (``zh_CN``) -> its PO fragments, in name order."""
    found: dict[str, list[Path]] = {}
    for po in sorted((root / LOCALE).glob("*/*.po")):
        found.setdefault(po.parent.name, []).append(po)
    return found


def merge(locale: str, paths: list[Path]):
    """(one Babel catalog of every fragment's translated messages, conflicts).

    A conflict is (msgid, [(path, line, translation), ...]) for a message two fragments translate
    differently; the first fragment's translation is kept. Fuzzy and empty entries are left out."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po

    merged = Catalog(locale=locale, domain=DOMAIN, charset="utf-8")
    seen: dict[object, list[tuple[Path, int, object]]] = {}
    for path in paths:
        with open(path, "rb") as fp:
            catalog = read_po(fp, locale=locale, domain=DOMAIN)
        for message in catalog:
            if not message.id or message.fuzzy or not _translated(message.string):
                continue
            key = (message.id, message.context)
            line = message.lineno or 0
            seen.setdefault(key, []).append((path, line, message.string))
            if merged.get(message.id, message.context) is None:
                merged.add(message.id, message.string, context=message.context)
    conflicts = [(key[0], places) for key, places in seen.items()
                 if len({_normal(s) for _, _, s in places}) > 1]
    return merged, conflicts


def _translated(string) -> bool:
    if isinstance(string, (list, tuple)):
        return any(s for s in string)
    return bool(string)


def _normal(string) -> tuple:
    return tuple(string) if isinstance(string, (list, tuple)) else (string,)


def compile_catalogs(root: Path, *, say=print) -> list[Path]:
    """Write each language's ``LC_MESSAGES/ffctl.mo`` from its fragments; returns the files written."""
    from babel.messages.mofile import write_mo

    written = []
    for locale, paths in fragments(root).items():
        catalog, conflicts = merge(locale, paths)
        for msgid, places in conflicts:
            where = "; ".join(f"{p.relative_to(root)}:{line}" for p, line, _ in places)
            say(f"warning: {msgid!r} is translated differently in {where}; the first is used")
        target = root / LOCALE / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fp:
            write_mo(fp, catalog)
        written.append(target)
    return written


class CatalogBuildHook(BuildHookInterface):
    """hatchling's custom build hook (``[tool.hatch.build.targets.wheel.hooks.custom]``)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        root = Path(self.root)
        for path in compile_catalogs(root, say=self.app.display_warning):
            if version != "editable":  # an editable install reads the catalog where it was written
                # the compiled catalog is not in git (.gitignore), so it is added to the wheel by name
                build_data["force_include"][str(path)] = path.relative_to(root).as_posix()


if __name__ == "__main__":
    for written in compile_catalogs(Path(__file__).resolve().parent, say=lambda text: print(text, file=sys.stderr)):
        print(f"wrote {written}")
