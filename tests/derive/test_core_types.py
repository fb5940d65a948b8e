"""``_core.types``: the set of type ids of a batch, which the pipeline takes
once per batch (in C) instead of ``set(map(itemgetter(0), events))``: the same
set on every log's decoded batches and on odd items."""

from __future__ import annotations

from operator import itemgetter

import pytest

from ingest.derive import _core  # (whatever LIVEPROF_PURE_PYTHON says: it selects)
from protocol import Decoder
from tests.corpus import log_id, logs, read


@pytest.mark.parametrize("log", logs(), ids=log_id)
def test_the_types_of_every_batch(log):
    data = read(log)
    dec = Decoder()
    for start in range(0, len(data), 65536):
        batch = dec.feed(data[start:start + 65536])
        assert _core.types(batch) == set(map(itemgetter(0), batch))


def test_ids_outside_the_map_and_other_items():
    items = [(0,), (65535, "x"), (65536,), (-1,), (1 << 70,), (True,), (2.5,), [7], (3,)]
    assert _core.types(items) == set(map(itemgetter(0), items))
    assert _core.types([]) == set()
    with pytest.raises(TypeError):
        _core.types([(1,), 5])
    with pytest.raises(IndexError):
        _core.types([()])
