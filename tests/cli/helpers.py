"""Running ``liveprof`` as a user does: a subprocess of this checkout's
interpreter, its output as text."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.corpus import REPO

CLI = [sys.executable, "-m", "ingest.cli"]
# the uid/gid of "nobody": root passes every permission check, so tests that
# need "permission denied" run the command as nobody when they run as root
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any LIVEPROF_ setting of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPROF_")}
    env.update(extra)
    return env


def liveprof(*args, env: dict | None = None, as_nobody: bool = False, timeout: float = 120,
             input_: bytes | None = None) -> subprocess.CompletedProcess:
    command = CLI + [str(a) for a in args]
    if as_nobody and os.geteuid() == 0:
        command = NOBODY + command
    run = subprocess.run(command, cwd=REPO, env=env or clean_env(), input=input_,
                         capture_output=True, timeout=timeout)
    run.stdout = run.stdout.decode(errors="replace")
    run.stderr = run.stderr.decode(errors="replace")
    return run


def one_clear_line(run: subprocess.CompletedProcess, *names: str) -> None:
    """A user error: a single line on stderr naming ``names``, no traceback."""
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    for name in names:
        assert name in run.stderr, run.stderr
