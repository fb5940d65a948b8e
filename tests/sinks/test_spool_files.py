"""The spool's files: private permissions, no following of planted links,
and batches whose lines hold newlines (string fields)."""

from __future__ import annotations

import os
import stat
import struct
import zlib

import pytest

from ingest.sinks.files import private_dir, write_atomic
from ingest.sinks.spool import Spool


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_directory_and_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        spool = Spool(tmp_path / "state" / "spool", segment_bytes=100)
        for i in range(5):
            spool.append([f"m v={i}i {i}"])
        spool.ack(spool.read())
        spool.prepend([["m v=9i 9"]])
        spool.close()
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700
    assert mode(tmp_path / "state" / "spool") == 0o700
    files = list((tmp_path / "state" / "spool").iterdir())
    assert any(f.name == "cursor.json" for f in files) and len(files) > 2
    for f in files:
        assert mode(f) == 0o600, f.name


def test_files_of_an_older_version_are_made_private(tmp_path):
    spool = Spool(tmp_path)
    spool.append(["m v=1i 1"])
    spool.close()
    seg = next(tmp_path.glob("*.seg"))
    os.chmod(seg, 0o644)
    os.chmod(tmp_path, 0o755)
    again = Spool(tmp_path)
    assert mode(seg) == 0o600 and mode(tmp_path) == 0o700
    assert again.read().lines == ["m v=1i 1"]
    again.close()


def test_a_planted_cursor_temp_link_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    os.symlink(victim, spool_dir / "cursor.json.tmp")
    spool.append(["m v=1i 1"])
    spool.ack(spool.read())  # saves the cursor through the temp file
    spool.close()
    assert victim.read_text() == "precious"
    assert not (spool_dir / "cursor.json").is_symlink()


def test_a_planted_segment_link_is_neither_read_nor_written(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    spool_dir = tmp_path / "spool"
    private_dir(spool_dir)
    os.symlink(victim, spool_dir / f"{10**12:020d}.seg")
    spool = Spool(spool_dir)
    assert spool.pending_lines == 0
    spool.append(["m v=1i 1"])  # the first segment's name is taken by the link: the next one
    assert spool.read().lines == ["m v=1i 1"]
    spool.close()
    assert victim.read_bytes() == b"precious"
    assert os.path.islink(spool_dir / f"{10**12:020d}.seg")


def test_lines_holding_newlines_come_back_whole(tmp_path):
    lines = ['m s="two\nlines" 1', 'm s="plain" 2', 'm s="\n\n" 3']
    spool = Spool(tmp_path)
    spool.append(lines)
    spool.append(["m v=1i 4"])
    spool.close()
    again = Spool(tmp_path)
    assert again.pending_lines == 4
    assert again.read().lines == lines
    assert again.read().lines == ["m v=1i 4"]
    again.close()


def test_records_of_the_first_format_are_still_read(tmp_path):
    """A spool left by an earlier version (every record ``LPS1``) replays."""
    private_dir(tmp_path)
    payload = "m v=1i 1\nm v=2i 2".encode()
    record = struct.pack("<4sIII", b"LPS1", len(payload), 2, zlib.crc32(payload)) + payload
    (tmp_path / f"{10**12:020d}.seg").write_bytes(record)
    spool = Spool(tmp_path)
    assert spool.read().lines == ["m v=1i 1", "m v=2i 2"]
    spool.close()


def test_write_atomic_replaces_and_refuses_a_directory_link(tmp_path):
    target = tmp_path / "f.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and mode(target) == 0o600
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    with pytest.raises(NotADirectoryError):
        private_dir(tmp_path / "link")
