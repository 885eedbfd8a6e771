"""Secrets never print: the one way ffctl shows a database URL and a notification endpoint.

- ``mask_url``: a database URL with its password, and any query parameter that names a
  password, secret or token, as ``***``. It reads URLs the way a person types them: a password
  holding an unescaped ``@``, ``:`` or ``/`` (``p@ss:w@rd``), no scheme, a bad port.
- ``mask_endpoint``: a webhook or group-robot URL (Slack, DingTalk, Feishu and WeCom carry their
  token in the path or the query) as its scheme and host plus a short hash of the whole URL, so
  two endpoints on one host can be told apart and none can be called from what is shown.

Both are pure string functions (stdlib only): ``config check`` and error paths call them
without loading SQLAlchemy. A test checks that ``mask_url`` agrees with SQLAlchemy's
``make_url(url).render_as_string(hide_password=True)`` on every URL SQLAlchemy can read.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

MASK = "***"

# a query parameter whose name says it holds a secret: password=, sslpassword=, api_token=, ...
_SECRET_PARAM = re.compile(r"(?i)((?:^|[?&;])[^=&;#?]*(?:pass|pwd|secret|token)[^=&;#?]*=)[^&;#]*")
# what follows the '@' ending the user info: host[:port], or libpq's host1:port1,host2:port2
_HOST = re.compile(r"[\w.\-\[\]:%,~]*(?:[/?#]|$)")


def mask_url(url: object) -> str:
    """``url`` with every password in it replaced by ``***``; safe to print anywhere."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if not rest.startswith("/"):  # sqlite:///PATH has no user info; a path may hold an '@'
        rest = _mask_userinfo(rest)
    return f"{scheme}{sep}{_SECRET_PARAM.sub(lambda m: m.group(1) + MASK, rest)}"


def _mask_userinfo(rest: str) -> str:
    """``user:password@host/db`` -> ``user:***@host/db``, splitting at the last '@' that is
    followed by a host, so an unescaped '@' or '/' in the password never shows."""
    for at in reversed([i for i, ch in enumerate(rest) if ch == "@"]):
        if _HOST.match(rest, at + 1):
            user, colon, _password = rest[:at].partition(":")
            if not colon and any(ch in user for ch in "/?#"):
                # "host/db?x=a@b": the '@' was in the path or query, not after a user name
                continue
            return f"{user}{':' + MASK if colon else ''}@{rest[at + 1:]}"
    return rest


def mask_endpoint(url: object) -> str:
    """A notification endpoint as ``scheme://host[:port]/… (#abc123)``: where it goes, not its token."""
    text = str(url).strip()
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"(unreadable URL #{digest})"
    if not parts.scheme or not host:
        return f"(unreadable URL #{digest})"
    where = f"[{host}]" if ":" in host else host
    if port is not None:
        where += f":{port}"
    more = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{where}{more} (#{digest})"
