"""The root of every exception the protocol package raises on bad input.

``ProtocolError`` is never raised itself: each layer raises its own subclass
(``DecodeError`` from the eventlog decoder; ``FrameError``, ``CborError``,
``MessageError`` and its ``SessionError``/``StateError``/``AuthError``, and
``HeaderChanged`` from the monitor protocol), so a caller that only wants to
know "the peer sent something unusable" catches this one class.  The monitor
errors are also ``ValueError``s, as before.  Misuse by the caller (a bad
argument) stays a plain ``ValueError``/``TypeError``.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Bad input to a protocol parser (see the subclasses)."""
