"""``liveprof upload`` against a running service: one body, resumable chunks
(with a progress bar), and a refusal."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.api.helpers import expected_events
from tests.corpus import DATA, REPO, summary

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest.commands.upload", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_upload_command_one_body_and_resumable_chunks(api):
    await api.token("uploader", ["write"], apps=["cli"])
    token = api.tokens["uploader"]
    code, out, err = await cli(str(LOG), "--url", api.url, "--token", token, "--no-progress")
    assert code == 0, err
    once = json.loads(out)
    assert once["app"] == "cli" and once["bytes"] == LOG.stat().st_size
    assert once["events"] == expected_events(summary(LOG), LOG.read_bytes())
    puts_before = _count(api, "PUT")
    code, out, err = await cli(str(LOG), "--url", api.url, "--token", token,
                               "--chunk-size", "64k", "--progress", "--host", "laptop")
    assert code == 0, err
    chunked = json.loads(out)
    assert (chunked["session"], chunked["events"], chunked["points"]) == \
        (once["session"], once["events"], once["points"])
    assert chunked["host"] == "laptop"
    assert _count(api, "PUT") - puts_before == -(-LOG.stat().st_size // 65536)
    assert "100.0%" in err and "MB/s" in err


async def test_upload_command_reports_a_refusal(api, tmp_path):
    await api.token("reader", ["read"])
    code, out, err = await cli(str(LOG), "--url", api.url, "--token", api.tokens["reader"])
    assert code == 2 and "403" in err      # credentials: usage, not bad data
    bad = tmp_path / "bad.eventlog"
    bad.write_bytes(b"definitely not an eventlog")
    code, out, err = await cli(str(bad), "--url", api.url, "--token", api.tokens["admin"])
    assert code == 1 and "422" in err and json.loads(out)["offset"] == 0
    code, out, err = await cli(str(tmp_path / "missing"), "--url", api.url, "--token", "x")
    assert code == 2


def _count(api, method: str) -> int:
    from ingest.api.state import COUNTERS
    return sum(n for (m, route, status), n in api.runner.app[COUNTERS].requests.items()
               if m == method and route == "/api/v1/uploads/{id}" and status == 200)
