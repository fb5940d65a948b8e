"""The service spaces the cyclic collector's runs out while serving (a live
pipeline keeps seconds of events and points: each default collection walked
them again), freezes what start-up made, and puts both back when it stops."""

import gc

from ingest import service


def test_serving_spaces_collections_out_and_puts_them_back():
    was_enabled = gc.isenabled()   # (an in-process ``liveprof derive`` turns it off)
    gc.enable()
    before = gc.get_threshold()
    try:
        tuned = service._tune_gc()
        try:
            assert gc.get_threshold() == service.GC_THRESHOLDS != before
            assert gc.get_freeze_count() > 0    # start-up's objects: no full collection walks them
        finally:
            service._restore_gc(tuned)
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    finally:
        if not was_enabled:
            gc.disable()


def test_a_disabled_collector_is_left_alone():
    was_enabled = gc.isenabled()
    before = gc.get_threshold()
    gc.disable()
    try:
        assert service._tune_gc() is None and gc.get_threshold() == before
    finally:
        if was_enabled:
            gc.enable()
