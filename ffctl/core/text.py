"""Text from data, made safe for where it is shown: terminals and mail headers.

Order ids, names, regions and reasons come from CSV files and chat-pasted text. On a terminal a
control character (ESC, BEL, a lone CR) is an instruction, not a letter: ``ESC]0;…BEL`` retitles
the window, ``ESC[2J`` clears it, ``ESC]8;;URL`` hides a link. In a mail header a CR/LF starts a
new header (``Bcc:``). These functions are the one place such characters are taken out.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (8-bit ESC/CSI/OSC), and the Unicode line and paragraph separators
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROLS_BUT_LAYOUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` without control characters (each becomes one space), ready for a terminal.

    ``keep_newlines`` keeps LF and TAB (a multi-line note in a panel); a CR is always dropped,
    since on its own it moves the cursor back over what was printed."""
    pattern = _CONTROLS_BUT_LAYOUT if keep_newlines else _CONTROLS
    if not pattern.search(text):
        return text
    return pattern.sub(" ", text.replace("\r\n", "\n") if keep_newlines else text)


def header_value(text: str) -> str:
    """``text`` as one line for a mail header: no CR/LF or other control can start a header."""
    return " ".join(_CONTROLS.sub(" ", text).split())


def command(*words: object) -> str:
    """An ffctl command line to copy and paste, every word quoted for the shell as needed:
    ``command("order", "show", "SO6; touch /tmp/x")`` -> ``ffctl order show 'SO6; touch /tmp/x'``."""
    import shlex

    return " ".join(shlex.quote(str(word)) for word in ("ffctl", *words))
