"""``./run``, README's first command, on a copy of the repository with no
environment: it creates .venv, installs liveprof without the test extras,
starts serve with its own influxd (nothing answers at the URL), the points of
a log land, and SIGTERM stops both.  The install is real (pip, the C
extension), so this is the slowest test of the suite, by design: it is the
quick start a new user runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.corpus import REPO, summary
from tests.servers import free_port, reap
from tests.service.test_local_influx import alive, gc_count, started_pid

WAIT = 600.0   # creating a venv and installing with pip on a loaded 2-core machine

LOG = "tests/data/threads-mvar.nonthreaded.l.eventlog"
# what a clone would not have: environments, build products, caches, local data
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.so", "build", "*.egg-info",
                                ".pytest_cache", ".hypothesis", ".benchmarks", "data", ".env")


def fresh_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "clone"
    shutil.copytree(REPO, dest, ignore=IGNORE)
    shutil.copytree(REPO / "tests" / "data", dest / "tests" / "data")
    return dest


def clean_env(tmp_path: Path) -> dict[str, str]:
    """No virtual environment active, no liveprof settings: a new user's shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LIVEPROF_") and k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
    venv_bin = os.environ.get("VIRTUAL_ENV")
    if venv_bin:
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if not p.startswith(venv_bin))
    env["LIVEPROF_STATE_DIR"] = str(tmp_path / "state")
    return env


def test_run_help_needs_no_environment(tmp_path):
    clone = fresh_copy(tmp_path)
    done = subprocess.run([str(clone / "run"), "--help"], env=clean_env(tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "./run [liveprof serve options...]" in done.stdout
    assert not (clone / ".venv").exists()


def test_run_sets_up_and_runs_the_pipeline_from_a_fresh_copy(tmp_path):
    clone = fresh_copy(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    env = clean_env(tmp_path)
    env["LIVEPROF_INFLUX_RETENTION_POLICY"] = "forever"   # a 2015 log: raw's 7 days drop it
    err = tmp_path / "run.err"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([str(clone / "run"), "--file", LOG, "--influx-url", url],
                                cwd=clone, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        want = summary(REPO / LOG)["gc"]["collections"]
        deadline = time.monotonic() + WAIT
        while gc_count(url) != want and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gc_count(url) == want, err.read_text(errors="replace")[-4000:]
        pid = started_pid(err)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, err.read_text(errors="replace")[-4000:]
    finally:
        reap(proc)
    assert not alive(pid)
    python = clone / ".venv" / "bin" / "python"
    # liveprof from the copy, without the test extras
    where = subprocess.run([str(python), "-c", "import ingest; print(ingest.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(clone)
    no_pytest = subprocess.run([str(python), "-c", "import pytest"], env=env,
                               capture_output=True, check=False)
    assert no_pytest.returncode != 0
    assert (tmp_path / "state" / "influxdb" / "influxd.conf").is_file()
