"""The C record loop is built by the install (pip compiles it); CI runs with it."""

import os

from protocol.eventlog import Decoder


def test_native_loop_is_built():
    if os.environ.get("LIVEPROF_PURE_PYTHON"):
        assert not Decoder.native
    else:
        assert Decoder.native, "protocol/eventlog/_speedups was not compiled (gcc, Python headers?)"
