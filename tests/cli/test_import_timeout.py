"""Item 3 of issue 11: ``import --timeout`` is the command's own bound.  A
server that accepts connections and never answers made ``import --timeout 5``
take 32 s and speak of "writing to the buffer until it answers"; the command
now ends at about its timeout and says what happened to it.  Transient 5xx
answers at the start are tried again within the timeout (issue 12 item 9)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.request

from tests.corpus import DATA

from .helpers import liveprof

LOG = DATA / "hello-ghc-8.6.5.eventlog"


def test_a_server_that_never_answers(influxd):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)        # the kernel accepts connections; nobody ever reads them
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    try:
        started = time.monotonic()
        run = liveprof("import", LOG, "--influx-url", url, "--timeout", "3", timeout=60)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "--timeout 3" in run.stderr and url in run.stderr
    assert "buffer" not in run.stderr and "until it answers" not in run.stderr
    print(f"import --timeout 3 against a silent server ended after {took:.1f} s")


class _Flaky(http.server.BaseHTTPRequestHandler):
    """503 for the first ``failures`` requests, then InfluxDB's own answers."""

    failures = 0
    target = ""
    lock = threading.Lock()

    def _relay(self):
        with self.lock:
            fail = _Flaky.failures > 0
            _Flaky.failures -= fail
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fail:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("content-type", "content-encoding", "authorization")}
        req = urllib.request.Request(self.target + self.path, data=body or None,
                                     headers=headers, method=self.command)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _relay

    def log_message(self, *args):
        pass


def test_transient_5xx_at_the_start_are_tried_again(influxd):
    _Flaky.failures, _Flaky.target = 3, influxd.url
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run = liveprof("import", LOG, "--influx-url", f"http://127.0.0.1:{server.server_port}",
                       "--database", "flaky_start", "--timeout", "30", timeout=120)
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stderr
    assert _Flaky.failures == 0                     # the 503s were met, and got past
    assert influxd.series('SELECT count(*) FROM "gc"', "flaky_start")
