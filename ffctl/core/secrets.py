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
from urllib.parse import quote, unquote, urlsplit

from ffctl.i18n import _

MASK = "***"

# a query parameter whose name says it holds a secret: password=, sslpassword=, api_token=, ...
_SECRET_PARAM = re.compile(r"(?i)((?:^|[?&;])[^=&;#?]*(?:pass|pwd|secret|token)[^=&;#?]*=)[^&;#]*")
# what follows the '@' ending the user info: host[:port], libpq's host1:port1,host2:port2, or no
# host before the path (a local socket)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_HOST = re.compile(r"[\w.\-\[\]:%,~]+(?:[/?#]|$)|/")


def mask_url(url: object) -> str:
    """``url`` with every password in it replaced by ``***``; safe to print anywhere."""
    # query parameters first: an '@' in a masked value can no longer pass for the end of a user name
    text = _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, str(url))
    found = split_credentials(text)
    if found is not None:
        head, user, password, tail = found
        text = f"{head}{user}{'' if password is None else ':' + MASK}@{tail}"
    return text


def mask_urls_in(text: str) -> str:
    """A message with every URL in it masked (driver errors, unexpected exceptions)."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group()), text)


def split_credentials(url: str) -> tuple[str, str, str | None, str] | None:
    """``scheme://user:password@host/db`` -> (``scheme://``, user, password, ``host/db``), the
    password None when there is no ``:``; None when the URL names no user.

    The user info ends at the last '@' that is followed by a host (host[:port], or libpq's
    host1:port1,host2:port2), so a password with an unescaped '@', ':' or '/' stays whole; the
    scheme may be missing (``user:pw@host/db``); ``sqlite:///PATH`` has no user info.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if rest.startswith("/"):
        return None
    for at in reversed([i for i, ch in enumerate(rest) if ch == "@"]):
        if _HOST.match(rest, at + 1):
            user, colon, password = rest[:at].partition(":")
            if not colon and any(ch in user for ch in "/?#"):
                continue  # "host/db?x=a@b": that '@' is in the path or the query
            return f"{scheme}{sep}", user, password if colon else None, rest[at + 1 :]
    return None


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs, and a user name or password
    holding an unescaped ``@``, ``:`` or ``/`` (``p@ss:w@rd``), which SQLAlchemy would split at
    the wrong place and then echo in a host name."""
    url = url.strip()
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
            break
    found = split_credentials(url)
    if found is None:
        return url
    head, user, password, tail = found
    escaped = quote(unquote(user), safe="") + ("" if password is None else ":" + quote(unquote(password), safe=""))
    host, mark, query = tail.partition("?")
    if "@" in query:  # SQLAlchemy takes the first '@' anywhere for the end of the user info
        query = query.replace("@", "%40")
    return f"{head}{escaped}@{host}{mark}{query}"


def url_secrets(url: str) -> list[str]:
    """The passwords a URL holds (user info and query), as typed: for scrubbing driver messages."""
    found = split_credentials(normalise_url(url))
    secrets = [unquote(found[2])] if found and found[2] else []
    query = urlsplit(normalise_url(url)).query
    secrets += [unquote(m.group(0).split("=", 1)[1]) for m in _SECRET_PARAM.finditer("?" + query) if "=" in m.group(0)]
    return [s for s in secrets if s]


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a database URL, or None; never quotes a password."""
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        return _("not a database URL (expected e.g. sqlite:///ffctl.db or postgresql+psycopg://user@host/db)")
    parts = urlsplit(normalise_url(url))
    try:
        parts.port  # noqa: B018  reading it raises ValueError on a port that is not a number
    except ValueError:
        port = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        return _("the port {port!r} is not a number from 1 to 65535").format(port=port)
    return None


def mask_endpoint(url: object) -> str:
    """A notification endpoint as ``scheme://host[:port]/… (#abc123)``: where it goes, not its token."""
    text = str(url).strip()
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _("(unreadable URL #{digest})").format(digest=digest)
    if not parts.scheme or not host:
        return _("(unreadable URL #{digest})").format(digest=digest)
    where = f"[{host}]" if ":" in host else host
    if port is not None:
        where += f":{port}"
    more = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{where}{more} (#{digest})"
