"""The spool's files: private permissions, no following of planted links,
and batches whose lines hold newlines (string fields)."""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import zlib

import pytest

from ingest.files import private_dir, write_private
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


def test_a_planted_cursor_temp_link_is_not_followed(tmp_path, monkeypatch):
    """The cursor goes through a temporary file with a random name; a link
    planted at that name (here made predictable) is passed over for another."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    tried = []

    def names(n):
        tried.append("planted" if len(tried) < 2 else f"free{len(tried)}")
        return tried[-1]
    monkeypatch.setattr("ingest.files.secrets.token_hex", names)
    os.symlink(victim, spool_dir / ".cursor.json.planted.tmp")
    spool.append(["m v=1i 1"])
    spool.ack(spool.read())  # saves the cursor through the temp file
    spool.close()
    assert victim.read_text() == "precious"
    assert tried[:3] == ["planted", "planted", "free2"]  # passed over, then a free name
    assert not (spool_dir / "cursor.json").is_symlink()
    assert "segments" in json.loads((spool_dir / "cursor.json").read_text())
    assert sorted(p.name for p in spool_dir.glob(".*")) == [".cursor.json.planted.tmp"]


def test_a_planted_segment_link_is_neither_read_nor_written(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    spool_dir = tmp_path / "spool"
    private_dir(spool_dir, tighten=True)
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
    private_dir(tmp_path, tighten=True)
    payload = b"m v=1i 1\nm v=2i 2"
    record = struct.pack("<4sIII", b"LPS1", len(payload), 2, zlib.crc32(payload)) + payload
    (tmp_path / f"{10**12:020d}.seg").write_bytes(record)
    spool = Spool(tmp_path)
    assert spool.read().lines == ["m v=1i 1", "m v=2i 2"]
    spool.close()


def test_write_private_replaces_and_refuses_a_directory_link(tmp_path):
    target = tmp_path / "f.json"
    write_private(target, b"one")
    write_private(target, b"two")
    assert target.read_bytes() == b"two" and mode(target) == 0o600
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    with pytest.raises(NotADirectoryError):
        private_dir(tmp_path / "link", tighten=True)


def test_private_dir_tightens_its_own_and_warns_about_a_shared_one(tmp_path, caplog):
    own = tmp_path / "own"
    own.mkdir(mode=0o755)
    os.chmod(own, 0o755)
    private_dir(own, tighten=True)
    assert mode(own) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: not ours to change
    with caplog.at_level(logging.WARNING, logger="liveprof.files"):
        private_dir(shared, tighten=False)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    assert any(str(shared) in r.getMessage() and "open to other users" in r.getMessage()
               for r in caplog.records)
    fresh = private_dir(tmp_path / "a" / "b", tighten=False)
    assert mode(tmp_path / "a") == 0o700 and mode(fresh) == 0o700
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NotADirectoryError):
        private_dir(tmp_path / "plain", tighten=False)
