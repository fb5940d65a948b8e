"""``liveprof monitor`` as a user runs it, against the test monitor."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from protocol import Decoder
from tests.corpus import DATA
from tests.monitor import fake_monitor as fm
from tests.monitor.receiver import reference_without_caps

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
CLI = [sys.executable, "-m", "ingest.cli"]


def test_tcp_dump_and_save(tmp_path):
    saved = tmp_path / "live.eventlog"
    with fm.TcpMonitor(LOG, max_size=100) as monitor:
        run = subprocess.run(CLI + ["monitor", f"127.0.0.1:{monitor.port}", "--dump", "--once",
                                    "--save", str(saved)],
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == reference_without_caps(LOG)
    assert "session ended: 13827 events" in run.stderr
    # the saved stream is a standard eventlog: whole, with its end marker, same events
    data = saved.read_bytes()
    decoder = Decoder()
    events = decoder.feed(data)
    assert decoder.close().complete
    assert data.startswith(b"hdrbhetb") and data.endswith(b"\xff\xff")
    dump = subprocess.run(CLI + ["dump", str(saved)], capture_output=True, text=True, timeout=60)
    assert dump.stdout.splitlines() == run.stdout.splitlines()
    assert len(events) == 13827


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_dump(tmp_path):
    port = free_udp_port()
    # stdout to a file: a pipe nobody reads while we send would stall the listener
    with open(tmp_path / "out.jsonl", "w") as stdout:
        proc = subprocess.Popen(CLI + ["monitor", "--udp", f"127.0.0.1:{port}", "--dump", "--once",
                                       "--idle-timeout", "0.5",
                                       "--save", str(tmp_path / "u.eventlog")],
                                stdout=stdout, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 20
            while "listening" not in (line := proc.stderr.readline()):
                assert time.time() < deadline and line, "the listener did not start"
            fm.send_datagrams(LOG, ("127.0.0.1", port), reorder=30, duplicate=0.1, interval=0.002)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    out = (tmp_path / "out.jsonl").read_text()
    assert proc.returncode == 0, err
    assert sorted(out.splitlines()) == sorted(reference_without_caps(LOG))
    assert (tmp_path / "u.eventlog").read_bytes().endswith(b"\xff\xff")


def test_bad_address_is_a_clear_error():
    run = subprocess.run(CLI + ["monitor", "host:notaport"], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 2 and "bad port" in run.stderr


def test_udp_with_a_secret_file_hears_only_signed_datagrams(tmp_path):
    import hashlib
    import hmac
    secret = "the secret of the cli test"
    (tmp_path / "secret").write_text(secret + "\n")
    port = free_udp_port()
    with open(tmp_path / "out.jsonl", "w") as stdout:
        proc = subprocess.Popen(CLI + ["monitor", "--udp", f"127.0.0.1:{port}", "--dump", "--once",
                                       "--idle-timeout", "0.5", "--allow", "127.0.0.0/8",
                                       "--secret-file", str(tmp_path / "secret")],
                                stdout=stdout, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 20
            while "listening" not in (line := proc.stderr.readline()):
                assert time.time() < deadline and line, "the listener did not start"
            bodies = fm.datagram_bodies(LOG)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                stranger.bind(("127.0.0.2", 0))
                for i, body in enumerate(bodies):
                    # docs/monitor-protocol.md 3.4: body, then 16 bytes of HMAC-SHA256
                    tag = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]
                    stranger.sendto(body, ("127.0.0.1", port))
                    sender.sendto(body + tag, ("127.0.0.1", port))
                    if i % 32 == 31:
                        time.sleep(0.004)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert sorted((tmp_path / "out.jsonl").read_text().splitlines()) == \
        sorted(reference_without_caps(LOG))
    assert "unauthenticated" in err and "1 streams" in err
