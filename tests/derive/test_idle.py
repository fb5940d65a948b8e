"""The idle rule of the live merge (docs/live.md), on hand-made streams built as
the decoder builds them: a stream (a capability, or the global buffer) more than
``idle_ns`` behind the newest event stops holding the watermark back, and holds
it again when it shows an event; decisions depend only on the sequence of
events; whole-file mode ignores the rule."""

from __future__ import annotations

import random

import pytest

from ingest.derive.order import Merge, OrderSettings
from protocol import Event, EventType

MS = 1_000_000
RUN = int(EventType.RUN_THREAD)
STARTUP = int(EventType.STARTUP)
BLOCK = int(EventType.BLOCK_MARKER)
CAPSET_CREATE = int(EventType.CAPSET_CREATE)
# a long lag bound, so that only the watermark moves the frontier in these tests
LIVE = OrderSettings(live=True, max_lag_ns=10_000 * MS, slack_ns=0, idle_ns=100 * MS)


def ev(t_ms: float, cap: int | None, ty: int = RUN, *fields) -> Event:
    return Event(ty, "x", int(t_ms * MS), cap, fields or (1,))


def block(t_ms: float, cap: int | None, end_ms: float) -> Event:
    return Event(BLOCK, "EventBlock", int(t_ms * MS), cap,
                 (1000, int(end_ms * MS), 0xFFFF if cap is None else cap))


def startup(n: int) -> list[Event]:
    """What the global buffer shows first on GHC >= 9.2: Startup names the capabilities."""
    return [block(0, None, 1), ev(0.5, None, STARTUP, n), ev(1, None, CAPSET_CREATE, 0, 1)]


def times(items) -> list[float]:
    return [Merge.unwrap(x)[0].time / MS for x in items]


def run_cap(cap: int, start_ms: int, end_ms: int, step_ms: int = 10) -> list[Event]:
    """Blocks of ``cap`` (as flushes write them), an event every step; each block
    spans at most 50 ms, shorter than the idle time (a longer block would raise
    it: test_a_long_block_raises_the_idle_time)."""
    out: list[Event] = []
    for at in range(start_ms, end_ms, 50):
        upto = min(at + 50, end_ms)
        out += [block(at, cap, upto)] + [ev(t, cap) for t in range(at, upto, step_ms)]
    return out


def test_a_quiet_capability_stops_holding_the_watermark_after_the_idle_time():
    m = Merge(LIVE)
    out = m.push(startup(2) + run_cap(0, 10, 40) + run_cap(1, 10, 40))
    assert times(out) == [0.5, 1]                   # the global buffer (1 ms) is the slowest
    out = m.push(run_cap(0, 40, 140))               # cap 1 says nothing from here on
    # the global buffer is idle once the newest passes 101 ms; cap 1 (latest 40 ms, the
    # end of its block) holds the watermark until the newest passes 140 ms
    assert times(out) == [10, 10, 20, 20, 30, 30, 40]
    out = m.push([ev(141, 0)])
    # cap 1 is idle: cap 0 alone holds the watermark, at its own latest time
    assert times(out) == [50, 60, 70, 80, 90, 100, 110, 120, 130, 141]
    assert m.late_events == 0


@pytest.mark.parametrize("idle", [True, False])
def test_a_quiet_global_buffer_stops_holding_the_watermark(idle):
    """GHC 9.0 writes no Startup: the global buffer shows its start-up events
    early and then nothing; the capabilities keep running (settled at once
    here: settling has its own test)."""
    settings = OrderSettings(live=True, max_lag_ns=10_000 * MS, slack_ns=0, settle_ns=1 * MS,
                             idle_ns=100 * MS if idle else None)
    m = Merge(settings)
    first = [block(0, None, 2), ev(1, None, CAPSET_CREATE, 0, 1)]
    out = m.push(first + run_cap(0, 5, 100, 5) + run_cap(1, 5, 100, 5))
    assert times(out) == [1]                        # the global buffer is the slowest
    out = m.push(run_cap(0, 100, 200) + run_cap(1, 100, 200))
    if idle:
        # past 102 ms the global buffer (2 ms, its block's end) is idle: everything is
        # released up to the slower capability, cap 1 at 190 ms
        assert times(out)[-1] == 190
        assert len(out) == 2 * 19 + 2 * 10
    else:
        assert out == []                            # it holds every point back
    assert m.late_events == 0


def test_with_idle_off_a_quiet_stream_holds_until_the_lag_bound():
    settings = OrderSettings(live=True, max_lag_ns=500 * MS, slack_ns=0, idle_ns=None)
    m = Merge(settings)
    out = m.push(startup(2) + run_cap(0, 10, 40) + run_cap(1, 10, 40) + run_cap(0, 40, 500))
    assert max(times(out)) == 1                     # the global buffer holds it
    out = m.push([ev(600, 0)])
    assert max(times(out)) == 100                   # only newest - max_lag moves it


def test_a_stream_that_speaks_again_holds_the_watermark_again():
    m = Merge(LIVE)
    out = m.push(startup(2) + run_cap(0, 10, 40) + run_cap(1, 10, 40) + run_cap(0, 40, 160))
    assert times(out)[-1] == 150                    # cap 1 (40 ms) went idle past 140 ms
    # cap 1 speaks: a block that began at 150 ms, within the idle time of the newest
    out = m.push([block(150, 1, 170), ev(155, 1)])
    assert times(out) == [155]
    out = m.push(run_cap(0, 160, 260))
    # cap 1 holds the watermark again, at its block's end (170 ms), until the
    # newest passes 270 ms
    assert times(out) == [160, 170]
    out = m.push([ev(271, 0)])
    assert times(out) == [180, 190, 200, 210, 220, 230, 240, 250, 271]
    assert m.late_events == 0


def test_an_event_of_an_idle_stream_below_the_frontier_is_late():
    m = Merge(LIVE)
    out = m.push(startup(2) + run_cap(0, 10, 40) + run_cap(1, 10, 40) + run_cap(0, 40, 160))
    assert times(out)[-1] == 150
    # cap 1 shows a block that began at 40 ms: still idle, its events are late
    out = m.push([block(40, 1, 60), ev(45, 1), ev(50, 1)])
    assert [(e.time / MS, late) for e, late in map(Merge.unwrap, out)] == [(45, True),
                                                                          (50, True)]
    assert m.late_events == 2


def test_an_announced_capability_holds_only_for_the_idle_time():
    """Startup names two capabilities; cap 1 never shows anything (a GHC 9.0
    capability whose buffer reaches the pipe only at exit): it holds the
    watermark at minus infinity for the idle time after it was named."""
    m = Merge(LIVE)
    assert times(m.push(startup(2) + run_cap(0, 10, 100))) == []
    out = m.push([ev(100, 0), ev(101.5, 0)])
    # named at 0.5 ms: idle once the newest passes 100.5 ms; the global buffer (1 ms)
    # once it passes 101 ms; then cap 0 alone holds it
    assert times(out) == [0.5, 1, *range(10, 100, 10), 100, 101.5]
    assert m.late_events == 0


def test_settling_without_startup_takes_the_idle_time():
    """No Startup (GHC 9.0): a capability that appears later may hold older
    events, so the watermark is trusted only once no new one appeared for the
    settle time, by default the idle time."""
    m = Merge(LIVE)
    out = m.push(run_cap(0, 0, 100))
    assert times(out) == []                          # cap 0 appeared at 0: not settled
    out = m.push(run_cap(0, 100, 110))
    assert times(out) == list(range(0, 110, 10))     # settled past 100 ms


def sequence(seed: int, caps: int = 3, blocks: int = 60) -> list[Event]:
    """A random stream of blocks as the RTS writes them: each block of a
    capability (or the global buffer) holds its events since its last block, in
    time order but for a few back-dated ones; some streams pause for a while."""
    rng = random.Random(seed)
    streams: list[int | None] = [None, *range(caps)]
    last = dict.fromkeys(streams, 0)
    now, out = 0, []
    for _ in range(blocks):
        now += rng.randrange(1, 80) * MS
        cap = rng.choice(streams)
        if rng.random() < 0.2:
            continue                                 # this stream skips its turn
        start = last[cap]
        n = rng.randrange(0, 12)
        ts = sorted(rng.randrange(start, now + 1) for _ in range(n))
        out.append(Event(BLOCK, "EventBlock", start, cap, (1000, now, 0xFFFF if cap is None else cap)))
        for t in ts:
            back = rng.randrange(0, 3 * MS) if rng.random() < 0.1 else 0
            out.append(Event(RUN, "x", max(0, t - back), cap, (rng.randrange(100),)))
        last[cap] = now
    return out


def decisions(settings: OrderSettings, events: list[Event], cuts: list[int]):
    m = Merge(settings)
    out, prev = [], 0
    for cut in [*cuts, len(events)]:
        out += m.push(events[prev:cut])
        prev = cut
    out += m.flush()
    return [Merge.unwrap(x) for x in out], m.late_events


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("idle_ms", [None, 1, 30, 100])
def test_chunking_does_not_change_the_decisions(seed, idle_ms):
    events = sequence(seed)
    settings = OrderSettings(live=True, max_lag_ns=400 * MS, slack_ns=2 * MS,
                             idle_ns=None if idle_ms is None else idle_ms * MS,
                             max_held=40, check_every=8)
    whole = decisions(settings, events, [])
    rng = random.Random(seed)
    for cuts in (list(range(1, len(events))), sorted(rng.sample(range(len(events)), 17))):
        assert decisions(settings, events, cuts) == whole
    out, late = whole
    assert sorted(e for e, _ in out) == sorted(e for e in events if e.type != BLOCK)
    in_order = [e.time for e, was_late in out if not was_late]
    assert in_order == sorted(in_order)
    assert late == sum(was_late for _, was_late in out)


@pytest.mark.parametrize("seed", range(4))
def test_a_shorter_idle_time_never_releases_later(seed):
    """Idleness only ever lets the frontier move sooner: every event is released
    (at the latest) no later in the sequence than with the rule off."""
    events = sequence(seed, blocks=80)

    def release_index(idle_ns):
        m = Merge(OrderSettings(live=True, max_lag_ns=400 * MS, idle_ns=idle_ns))
        at: dict[Event, int] = {}
        for i, e in enumerate(events):
            for x in m.push([e]):
                at.setdefault(Merge.unwrap(x)[0], i)
        return at

    off, on = release_index(None), release_index(50 * MS)
    assert all(on[e] <= i for e, i in off.items() if e in on)
    assert len(on) >= len(off)


@pytest.mark.parametrize("seed", range(4))
def test_whole_mode_ignores_the_rule(seed):
    events = sequence(seed)
    expected = sorted((e for e in events if e.type != BLOCK), key=lambda e: e.time)
    for idle in (None, 1, 100 * MS):
        out, late = decisions(OrderSettings(live=False, idle_ns=idle), events, [5, 50])
        assert [e for e, _ in out] == expected
        assert late == 0


# -- the setting, through `liveprof derive` ------------------------------------------

def derive_cli(capsys, *args: str) -> list[str]:
    from ingest.cli import main
    from tests.corpus import DATA

    log = DATA / "gc-heap-small.N2.hT.eventlog"     # written at exit: blocks 0.7 s apart
    assert main(["derive", str(log), "--host", "test", "--session", "s", *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_stream_idle_flag_reaches_the_merge(capsys, monkeypatch):
    seen = []
    init = Merge.__init__

    def spy(self, settings, *args, **kwargs):
        seen.append((settings.live, settings.idle_ns))
        init(self, settings, *args, **kwargs)
    monkeypatch.setattr(Merge, "__init__", spy)
    derive_cli(capsys, "--live", "--stream-idle", "0.5")
    assert seen[-1] == (True, 500 * MS)


def test_a_log_written_at_exit_is_not_late_live(capsys):
    """Its blocks span up to 0.7 s (the RTS wrote each buffer when it filled or at
    exit): the idle time grows to cover them, so live gives the whole file's points."""
    whole = derive_cli(capsys, "--whole")
    assert derive_cli(capsys, "--live") == whole
    assert derive_cli(capsys, "--live", "--stream-idle", "10") == whole
    assert derive_cli(capsys, "--whole", "--stream-idle", "0.001") == whole


def test_a_long_block_raises_the_idle_time():
    m = Merge(LIVE)                                 # idle 100 ms
    m.push(startup(2) + run_cap(0, 10, 40))
    # a block spanning 400 ms: the program keeps a buffer that long before writing it
    m.push([block(40, 0, 440)] + [ev(t, 0) for t in range(40, 440, 10)])
    assert m.idle == 500 * MS and m.idle_raised == 1
    # so capability 1, 400 ms behind, is not idle yet: its events are not late
    m.push(run_cap(1, 40, 80))
    assert m.late_events == 0


def test_stream_idle_must_be_positive(capsys):
    from ingest.cli import main
    from tests.corpus import DATA

    assert main(["derive", str(DATA / "testlog.eventlog"), "--stream-idle", "0"]) == 2
    assert "--stream-idle 0.0: must be more than 0 seconds" in capsys.readouterr().err


def test_a_long_block_of_the_global_buffer_does_not_raise_it():
    # the global buffer speaks now and then: its block spans whatever time passed
    # (13 s of a 20 s LiveSim run), which says nothing of how capabilities flush
    m = Merge(LIVE)
    m.push(startup(2) + run_cap(0, 10, 40) + run_cap(1, 10, 40))
    m.push([block(1, None, 400), ev(2, None)])
    assert m.idle == 100 * MS and m.idle_raised == 0
