"""EventlogState snapshots (spec section 6) decoded and encoded."""

import cbor2
import pytest

from protocol.monitor import (
    CapsetState,
    CapState,
    EventlogState,
    StateError,
    TaskState,
    ThreadState,
    decode_state,
    encode_state,
)

H = bytes.fromhex


def test_empty_state_example():
    data = H("8700a0a0a0a08000")
    assert decode_state(data) == EventlogState()
    assert encode_state(EventlogState()) == data


def test_one_thread_example():
    data = H("8700a101880001802081008018641864a0a0a0801864")
    state = decode_state(data)
    assert state.threads == {1: ThreadState(1, None, None, "created", None, None, None, 100, 100)}
    assert state.last_update == 100 and state.gc_since is None
    assert encode_state(state) == data


def full_state() -> EventlogState:
    capset = CapsetState(
        capset=0, type="os_process", caps=[0, 1], last_change=5, created=1,
        rts_ident="GHC-9.0.2 rts_thr", args=["prog", "+RTS", "-l"], env=[], pid=4242, ppid=None,
        wall_sec=1_700_000_000, wall_nsec=12, heap_allocated=1 << 33, heap_size=1 << 20,
        heap_live=1000, generations=2, max_heap_size=0, alloc_area_size=1 << 20,
        mblock_size=1 << 20, block_size=4096, last_gc=99, gc_copied=1, gc_slop=2, gc_frag=3,
        gc_par_threads=2, gc_par_max_copied=4, gc_par_tot_copied=5)
    return EventlogState(
        threads={7: ThreadState(7, "worker", 1, "stopped", "BlockedOnBlackHoleOwnedBy", 3, None,
                                10, 20),
                 8: ThreadState(8, None, 0, "stopped", "BlockedOnMVar", None, None, 11, 21),
                 9: ThreadState(9, "x", 0, "running", None, None, None, 12, 22)},
        capsets={0: capset},
        caps={0: CapState(0, False, 1, 1), 1: CapState(1, True, 3, 2)},
        tasks={5: TaskState(5, 1, 140000000000, 2, 3)},
        gc_since=77, last_update=99)


def test_full_state_round_trips_with_haskell_list_shapes():
    state = full_state()
    data = encode_state(state)
    assert decode_state(data) == state
    # [String] is an indefinite array when non-empty, an empty definite one otherwise
    assert b"\x9f\x64prog" in data and data.count(b"\xff") >= 1
    capset = cbor2.loads(data)[2][0]
    assert len(capset) == 28 and capset[2] == [1] and capset[8] == [] and capset[10] == []


@pytest.mark.parametrize("data", [
    b"\x00", cbor2.dumps([0, {}, {}, {}, {}, []]),                 # wrong arity
    cbor2.dumps([0, {}, {}, {}, {}, [1, 2], 0]),                    # Maybe with two items
    cbor2.dumps([0, {"a": 1}, {}, {}, {}, [], 0, ]),                 # text key
    cbor2.dumps([0, {1: [0, 1, [], -1, [9], [], 1, 1]}, {}, {}, {}, [], 0]),  # bad exec state
    cbor2.dumps([0, {}, {}, {0: [0, 0, 1, 1, 1]}, {}, [], 0]),     # int for bool
    b"\x87\x00\xa0",                                                # truncated
])
def test_bad_snapshots_raise_state_error(data):
    with pytest.raises(StateError):
        decode_state(data)
