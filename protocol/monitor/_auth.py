"""Authenticated datagrams: liveprof's extension of spec section 3.3.

A sender and a receiver that share a secret append to every datagram a tag,
the first ``TAG_SIZE`` (16) bytes of HMAC-SHA256 keyed with the UTF-8 bytes
of the secret, computed over the datagram's message bytes (the CBOR
``ProfileMsg``, or all the messages of a packed datagram: everything before
the tag).  A receiver with the secret
drops any datagram whose tag does not match; one without it still decodes a
tagged datagram, as bytes after the CBOR item are ignored (spec 3.1).  See
docs/monitor-protocol.md, section 3.4.  Sans-IO: the same functions serve
the listener and any sender (``liveprof agent``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable

from ._messages import MessageError

TAG_SIZE = 16          # bytes of the HMAC-SHA256 output kept (128 bits)
# loopback and private ranges: what a sender on this host or a private network uses
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                 "fc00::/7")
MIN_SECRET = 16        # characters a secret must have at least


class AuthError(MessageError):
    """A datagram without a valid tag for the shared secret."""


def datagram_key(secret: str) -> bytes:
    """The HMAC key for a configured secret: its UTF-8 bytes."""
    if len(secret) < MIN_SECRET:
        raise ValueError(f"a datagram secret needs at least {MIN_SECRET} characters")
    return secret.encode("utf-8")


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:TAG_SIZE]


def sign_datagram(body: bytes, key: bytes) -> bytes:
    """The datagram to send for message ``body``: the body, then its tag."""
    return bytes(body) + _tag(key, body)


def verify_datagram(datagram: bytes, key: bytes) -> bytes:
    """The message bytes of a signed datagram; ``AuthError`` if its tag is
    missing or wrong (compared in constant time)."""
    if len(datagram) <= TAG_SIZE:
        raise AuthError(f"datagram of {len(datagram)} bytes is too short to carry a "
                        f"{TAG_SIZE}-byte tag")
    body, tag = datagram[:-TAG_SIZE], datagram[-TAG_SIZE:]
    if not hmac.compare_digest(_tag(key, body), tag):
        raise AuthError("datagram tag does not match the shared secret")
    return body


class AllowList:
    """Sender networks a receiver hears (``"10.0.0.0/8"``, ``"::1"``, ...);
    ``host in allow`` for an address string (an IPv4-mapped IPv6 address
    counts as its IPv4 address, a zone ``%eth0`` is ignored).  Answers are
    remembered for a few thousand addresses."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._known: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        ok = self._known.get(host)
        if ok is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                ip = None
            if ip is not None and ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            ok = ip is not None and any(ip in net for net in self.networks
                                        if net.version == ip.version)
            if len(self._known) >= 4096:
                self._known.clear()
            self._known[host] = ok
        return ok
