"""Real GHC programs for the live tests, built once and cached by the hash of
their sources and of ghc's version (``$XDG_CACHE_HOME/liveprof-tests``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent


def build(name: str, *sources: str) -> Path:
    """``ghc -O -threaded -rtsopts -eventlog`` of ``sources`` (files here)
    into a binary called ``name``."""
    paths = [HERE / s for s in sources]
    version = subprocess.run(["ghc", "--numeric-version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for src in paths:
        digest.update(src.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    out = cache / "liveprof-tests" / f"{name.lower()}-{digest.hexdigest()[:16]}"
    binary = out / name
    if not binary.exists():
        work = out / "build"
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ghc", "-O", "-threaded", "-rtsopts", "-eventlog", *map(str, paths),
                        "-outputdir", str(work), "-o", str(binary) + ".tmp"],
                       check=True, capture_output=True)
        os.replace(str(binary) + ".tmp", binary)
        shutil.rmtree(work, ignore_errors=True)
    return binary
