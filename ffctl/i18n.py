"""Translation of the text people read (SPEC 9.6).

Mark every user-facing message with ``_()`` (``ngettext`` where a count decides the wording),
using named placeholders so a translation may reorder them::

    raise FfctlError(_("order {order} is on hold").format(order=order_id))

JSON and CSV keys, ids, event names and exit codes are never translated. Until catalogs are
installed every call returns its message unchanged; the standard library's gettext keeps
start-up light.
"""

from __future__ import annotations

import gettext as _gettext

_translation: _gettext.NullTranslations = _gettext.NullTranslations()


def _(message: str) -> str:
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translation.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a message for extraction without translating it: for module-level tables and column
    labels whose text is translated where it is shown (``_(label)`` at render)."""
    return message
