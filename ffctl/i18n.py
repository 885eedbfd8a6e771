"""Translation of the text people read (SPEC 9.6).

Mark every user-facing message with ``_()`` (``ngettext`` where a count decides the wording),
using named placeholders so a translation may reorder them::

    raise FfctlError(_("order {order} is on hold").format(order=order_id))

JSON and CSV keys, ids, event names and exit codes are never translated.

Catalogs: each engineer's PO fragment ``ffctl/locale/zh_CN/*.po`` is compiled at build time
(``hatch_build.py``, Babel) into one ``ffctl/locale/zh_CN/LC_MESSAGES/ffctl.mo``, which the
standard library's gettext reads here, so start-up stays light. ``use(language)`` installs a
language for the process; the CLI calls it before any command module (and its help) is loaded.

The language: ``[defaults] language`` in the config, else LC_ALL / LC_MESSAGES / LANG (the first
one set decides, as POSIX has it: ``zh_CN.UTF-8`` speaks Chinese), else English.
"""

from __future__ import annotations

import gettext as _gettext
import os
from pathlib import Path

LANGUAGES = ("zh-CN", "en")
DEFAULT = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
#: language -> (catalog folder, its compiled catalog)
CATALOGS = {"zh-CN": LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "ffctl.mo"}
_SIMPLIFIED = ("zh_cn", "zh_sg", "zh_hans", "zh")  # locale names that read Simplified Chinese

_translation: _gettext.NullTranslations = _gettext.NullTranslations()
_current = DEFAULT
missing_catalog: Path | None = None  # set when a language's catalog was not built (the CLI says so)
#: fragments edited after the catalog was compiled (a checkout: wheels ship no fragments; the CLI says so)
stale_fragments: list[str] = []


def current() -> str:
    """The language in use: "zh-CN" or "en"."""
    return _current


def use(language: str | None) -> str:
    """Speak ``language`` ("zh-CN" or "en"; None: from the environment) from now on; returns it."""
    global _translation, _current, missing_catalog, stale_fragments
    language = language if language in LANGUAGES else language_from_env()
    missing_catalog, stale_fragments = None, []
    translation: _gettext.NullTranslations = _gettext.NullTranslations()
    if language in CATALOGS:
        try:
            with open(CATALOGS[language], "rb") as fp:
                translation = _gettext.GNUTranslations(fp)
                built = os.fstat(fp.fileno()).st_mtime
        except OSError:
            missing_catalog = CATALOGS[language]
        else:
            with os.scandir(CATALOGS[language].parent.parent) as entries:  # one directory read
                stale_fragments = sorted(
                    e.name for e in entries if e.name.endswith(".po") and e.stat().st_mtime > built
                )
    _translation, _current = translation, language
    # Click and Typer mark their own words ("Usage:", "Options", usage errors) with the standard
    # library's global gettext: point it at our catalog, in our language (click.po translates them).
    _gettext.bindtextdomain("ffctl", str(LOCALE_DIR))
    _gettext.textdomain("ffctl")
    os.environ["LANGUAGE"] = "zh_CN" if language == "zh-CN" else "en"
    return language


def language_from_env(environ=None) -> str:
    """The language the locale variables ask for: the first of LC_ALL, LC_MESSAGES, LANG that is set."""
    environ = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            locale = value.split(".", 1)[0].split("@", 1)[0].replace("-", "_").lower()
            return "zh-CN" if locale in _SIMPLIFIED else "en"
    return DEFAULT


def language_from_config(path: str | os.PathLike) -> str | None:
    """``[defaults] language`` of the config at ``path``, when it reads and is one of LANGUAGES.

    A light read (TOML only) made before the CLI loads anything else; a wrong value is reported
    by the config's own validation when a command loads it."""
    if not os.path.isfile(path):
        return None
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fp:
            language = tomllib.load(fp).get("defaults", {}).get("language")
    except (OSError, ValueError, AttributeError, RecursionError):  # the config check reports a bad file
        return None
    return language if language in LANGUAGES else None


def choose(config_path: str | os.PathLike | None) -> str:
    """Install the language of the config at ``config_path`` (or of the environment); returns it."""
    found = language_from_config(config_path) if config_path is not None else None
    return use(found)


def _(message: str) -> str:
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translation.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a message for extraction without translating it: for module-level tables and column
    labels whose text is translated where it is shown (``_(label)`` at render)."""
    return message
