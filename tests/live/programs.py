"""Real GHC programs for the live tests, built once and cached by the hash of
their sources and of ghc's version (``$XDG_CACHE_HOME/liveprof-tests``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
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


def stream_program(argv: list[str], fifo: Path, take: Callable[[bytes], None],
                   timeout: float) -> subprocess.CompletedProcess:
    """Run ``argv`` (a program writing its eventlog with ``-ol<fifo>``) and
    give ``take`` every chunk the pipe yields, as it comes, until the program
    has exited.  The pipe is made here; we hold a write end of our own, so the
    reader sees end of file only once the program is done (GHC opens the file
    read-write, so it never waits for a reader).  Killed after ``timeout``."""
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY)
    os.set_blocking(rfd, True)
    # (in the pipe's directory: a -h run writes PROGRAM.hp in its working directory)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=fifo.parent)

    def close_when_done():
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(wfd)

    closer = threading.Thread(target=close_when_done, name="program-closer")
    closer.start()
    try:
        while chunk := os.read(rfd, 65536):
            take(chunk)
    finally:
        os.close(rfd)
        closer.join()
    stderr = proc.stderr.read() if proc.stderr else ""
    return subprocess.CompletedProcess(argv, proc.returncode, "", stderr)
