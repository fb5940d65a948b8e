"""The InfluxDB URL setting: checked when the settings are loaded, and never
shown with its credentials.

``split_http_url`` refuses what cannot be an InfluxDB address (no scheme,
``ftp://``, a port out of range) with a message naming the URL, and takes a
``user:password@`` out of it: the settings keep the user and the password
apart (the password as a secret), so the URL itself is safe to log, print
and serve.  ``mask_url`` hides the credentials of any URL text that may
still hold them (an error about a raw value, a URL from elsewhere).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

_USERINFO = re.compile(r"(?<=//)[^/?#@]*@")


def mask_url(text: str) -> str:
    """``http://user:pw@host:8086`` -> ``http://***@host:8086``; anything
    else unchanged."""
    return _USERINFO.sub("***@", text)


def split_http_url(text: str) -> tuple[str, str | None, str | None]:
    """``(url without credentials, user, password)`` of an http(s) URL;
    ``ValueError`` says what is wrong (the URL in it masked)."""
    shown = mask_url(text)
    if any(c.isspace() for c in text):
        raise ValueError(f"url {shown!r} is not a URL (it holds white space)")
    parts = urlsplit(text)
    if not parts.netloc or not parts.scheme:
        raise ValueError(f"url {shown!r} is not a URL: expected http://HOST:PORT or "
                         f"https://HOST:PORT")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url {shown!r}: the scheme must be http or https, not "
                         f"{parts.scheme!r}")
    if not parts.hostname:
        raise ValueError(f"url {shown!r} has no host")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"url {shown!r}: the port must be a number from 1 to 65535")
    if parts.query or parts.fragment:
        raise ValueError(f"url {shown!r}: a query or fragment has no place in the base URL")
    hostport = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, hostport, parts.path, "", ""))
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return clean, user, password
