"""How every command and the service count events, so that they agree: every
event record read, whether decoded or skipped (``Decoder(only=...)`` passes
over the types no deriver uses, and counts them in ``Decoder.skipped``), and
block markers not at all (they frame events; ``dump --summary`` and GHC's
own tools do not count them either).  The decoded subset is reported apart.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Sequence

from protocol import Event, EventType

BLOCK_MARKER = int(EventType.BLOCK_MARKER)
_TYPE = operator.itemgetter(0)


def decoded_events(events: Sequence[Event], wants: Collection[int] | None) -> int:
    """Events in a batch from ``Decoder(only=wants)``, block markers left out;
    add the decoder's ``skipped`` for every event read."""
    if wants is None or BLOCK_MARKER in wants:
        return len(events) - list(map(_TYPE, events)).count(BLOCK_MARKER)
    return len(events)
