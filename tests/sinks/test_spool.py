"""The on-disk queue: order, acknowledgement, resume, torn tails, the bound."""

from __future__ import annotations

import os

import pytest

from ingest.sinks.spool import Spool


def batch(i: int, n: int = 3) -> list[str]:
    return [f"m,b={i} v={j}i {i * 1000 + j}" for j in range(n)]


def drain(spool: Spool) -> list[list[str]]:
    out = []
    while (rec := spool.read()) is not None:
        out.append(rec.lines)
        spool.ack(rec)
    return out


def test_records_come_back_in_order_across_segments(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=300)
    for i in range(20):
        spool.append(batch(i))
    assert len(list(tmp_path.glob("*.seg"))) > 3
    assert spool.pending_lines == 60
    assert drain(spool) == [batch(i) for i in range(20)]
    assert spool.pending_lines == 0 and spool.pending_bytes == 0
    spool.close()
    # delivered sealed segments are deleted; at most the last (now sealed, delivered) is gone too
    assert list(tmp_path.glob("*.seg")) == []


def test_a_new_spool_resumes_where_delivery_stopped(tmp_path):
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(10):
        spool.append(batch(i))
    for _ in range(4):
        spool.ack(spool.read())
    spool.read()  # handed out, never acknowledged: comes back
    spool.close()

    again = Spool(tmp_path, segment_bytes=200)
    assert again.pending_lines == 18
    assert drain(again) == [batch(i) for i in range(4, 10)]
    again.close()


def test_out_of_order_acks_survive_a_restart(tmp_path):
    spool = Spool(tmp_path)
    for i in range(4):
        spool.append(batch(i))
    recs = [spool.read() for _ in range(4)]
    spool.ack(recs[1])
    spool.ack(recs[3])
    spool.close()
    again = Spool(tmp_path)
    assert drain(again) == [batch(0), batch(2)]


def test_unacknowledged_records_are_handed_out_again_after_unread_all(tmp_path):
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append(batch(i))
    first = spool.read()
    spool.read()
    spool.ack(first)
    spool.unread_all()
    assert drain(spool) == [batch(1), batch(2)]


def test_a_torn_tail_is_cut_and_the_rest_kept(tmp_path):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(batch(i))
    spool.close()
    (seg,) = tmp_path.glob("*.seg")
    size = seg.stat().st_size
    with open(seg, "r+b") as f:  # a crash in the middle of the last record
        f.truncate(size - 7)
    again = Spool(tmp_path)
    assert again.corrupt_bytes > 0
    assert drain(again) == [batch(i) for i in range(4)]


def test_a_corrupt_record_cuts_the_segment_there(tmp_path):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(batch(i))
    spool.close()
    (seg,) = tmp_path.glob("*.seg")
    data = bytearray(seg.read_bytes())
    third = data.index(b"m,b=2")
    data[third + 2] ^= 0xFF  # flip a payload byte: its CRC no longer matches
    seg.write_bytes(bytes(data))
    again = Spool(tmp_path)
    assert drain(again) == [batch(0), batch(1)]
    assert again.corrupt_bytes > 0


def test_the_disk_bound_drops_the_oldest_segments_and_counts_them(tmp_path):
    spool = Spool(tmp_path, max_bytes=4000, segment_bytes=1000)
    record = len("\n".join(batch(0)).encode()) + 16
    dropped_total = 0
    for i in range(100):
        dropped = spool.append(batch(i))
        dropped_total += dropped.lines
        assert spool.disk_bytes <= 4000
        assert sum(f.stat().st_size for f in tmp_path.glob("*.seg")) <= 4000
    assert dropped_total == spool.dropped_lines > 0
    kept = drain(spool)
    assert kept == [batch(i) for i in range(100 - len(kept), 100)]  # the newest, in order
    assert len(kept) * 3 + dropped_total == 300
    assert len(kept) >= (4000 - 1000) // record


def test_lines_handed_out_are_not_counted_as_dropped(tmp_path):
    spool = Spool(tmp_path, max_bytes=2000, segment_bytes=500)
    for i in range(5):
        spool.append(batch(i))
    first = spool.read()  # in flight
    dropped = 0
    for i in range(5, 40):
        dropped += spool.append(batch(i)).lines
    spool.ack(first)  # its segment is gone: acknowledging is harmless
    kept = drain(spool)
    assert 3 + dropped + 3 * len(kept) == 120


def test_a_batch_larger_than_the_bound_is_dropped(tmp_path):
    spool = Spool(tmp_path, max_bytes=100)
    dropped = spool.append(["x" * 200])
    assert (dropped.lines, spool.dropped_lines) == (1, 1)
    assert spool.read() is None


def test_prepend_goes_before_everything_and_survives_restart(tmp_path):
    spool = Spool(tmp_path)
    spool.append(batch(2))
    spool.append(batch(3))
    spool.prepend([batch(0), batch(1)])
    spool.close()
    again = Spool(tmp_path)
    assert drain(again) == [batch(i) for i in range(4)]


def test_reading_while_appending_to_the_open_segment(tmp_path):
    spool = Spool(tmp_path)
    spool.append(batch(0))
    rec = spool.read()
    spool.append(batch(1))
    spool.ack(rec)
    assert drain(spool) == [batch(1)]
    spool.append(batch(2))
    assert drain(spool) == [batch(2)]


def test_bad_bounds_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path, max_bytes=0)


def test_segments_are_fsynced_when_sealed(tmp_path):
    sealed: list[int] = []

    def seal(fd: int) -> None:
        sealed.append(fd)
        os.fsync(fd)
        os.close(fd)

    spool = Spool(tmp_path, segment_bytes=100, seal=seal)
    for i in range(5):
        spool.append(batch(i))
    assert len(sealed) >= 3  # every full segment
    n = len(sealed)
    spool.close()
    assert len(sealed) == n  # the open one is synced by close() itself


def test_acknowledgements_survive_a_crash_without_close(tmp_path):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append(batch(i))
    for _ in range(2):
        spool.ack(spool.read())
    # no close(): the process dies here
    again = Spool(tmp_path)
    assert drain(again) == [batch(i) for i in range(2, 5)]
