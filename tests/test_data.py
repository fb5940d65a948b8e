"""The copied test data is intact and identical to the corpus."""

import hashlib

import pytest

from .corpus import CORPUS, DATA


def _sums():
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        yield name.lstrip("*"), digest


@pytest.mark.parametrize("name,digest", list(_sums()))
def test_checksum(name, digest):
    data = (DATA / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest
    for sub in ("eventlogs", "ghc-events-testdata"):
        original = CORPUS / sub / name
        if original.exists():
            assert original.read_bytes() == data


def test_size_budget():
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 2_000_000


def test_license_note_kept():
    assert "BSD-3-Clause" in (DATA / "LICENSE-NOTE.md").read_text()
    assert "Glasgow" in (DATA / "LICENSE").read_text()
