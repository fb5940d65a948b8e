"""``liveprof agent``: its CPU per MB of eventlog, its peak RSS, the end-to-end
delay through agent -> datagrams -> serve -> InfluxDB, and whether a stuck
receiver holds the program.

usage: python bench/agent.py [--seconds 60] [--poll S] [--stall-seconds 10] [--no-stall]
                            [--no-pack]

1. live: LiveSim (``../shared/live``, as bench/live.py) runs ``--seconds`` with
   its eventlog in a named pipe; ``liveprof agent --fifo`` reads it, sends
   datagrams to ``liveprof serve --udp`` (its defaults but for the database)
   (packed, or one message each with ``--no-pack``) and listens on TCP (no
   receiver); a private influxd stores the points.
   The script polls the ``markers`` measurement every ``--poll`` seconds:
   each ``lag N`` marker's delay is (wall time its point was first seen) - N
   (LiveSim's CLOCK_REALTIME when it emitted it).  The agent's user+system
   CPU seconds and peak RSS come from ``wait4`` once it is stopped; CPU per
   MB of eventlog, and as a share of one core per MB/s (CPU s/MB x 100 %):
   gross, net of an idle agent's start-up and stop (measured apart), and
   from ready to done (its CPU read from /proc once it is ready, before
   LiveSim, and once the markers are in, before it is stopped).
2. full speed: the same bytes written into the agent's pipe as fast as it
   reads them, one TCP receiver draining (no datagrams: they are paced):
   CPU per MB and peak RSS of the encoding at its limit.
3. stall (``--stall-seconds``, 0 skips; ``--stall-only``): LiveSim with the
   agent and no receiver, and with a receiver that never reads (A B B A);
   its run time and jobs done in each (LiveSim runs a fixed wall time: a held
   program ends late and does fewer jobs).

The machine is shared (2 cores, LiveSim uses about half of one): run it a
few times.  This script measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.live import (  # noqa: E402
    Poller,
    liveprof_command,
    livesim_binary,
    markers_in,
    summary,
    wait_for,
)
from tests.servers import InfluxServer  # noqa: E402


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """``liveprof agent`` as a subprocess; ``stop()`` returns (cpu s, max RSS MB)."""

    def __init__(self, *args: str, log: Path):
        self.log = log
        self.out = open(log, "wb")
        self.proc = subprocess.Popen(liveprof_command() + ["agent", *args],
                                     stdout=subprocess.DEVNULL, stderr=self.out, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, pattern: str, limit: float = 30.0) -> str:
        if not wait_for(lambda: re.search(pattern, self.text()), limit, 0.05):
            raise SystemExit(f"agent: no {pattern!r} in its log:\n{self.text()}")
        match = re.search(pattern, self.text())
        assert match
        return match.group(0)

    def cpu_now(self) -> float:
        """Its user+system CPU seconds so far (Linux /proc; 0.0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> tuple[float, float]:
        self.proc.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = 0
        self.out.close()
        return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def run_livesim(livesim: Path, fifo: Path, seconds: float) -> tuple[float, str]:
    started = time.monotonic()
    sim = subprocess.run([str(livesim), f"{seconds:g}", "+RTS", "-N2", "-l", f"-ol{fifo}",
                          "-RTS"], stderr=subprocess.PIPE, timeout=seconds + 300)
    return time.monotonic() - started, sim.stderr.decode(errors="replace").strip()


def startup_cpu(tmp: Path) -> tuple[float, float]:
    """CPU seconds and RSS of an agent that starts, waits and stops (Python and
    its imports: the fixed cost in every figure below)."""
    fifo = tmp / "idle.fifo"
    agent = Agent("--fifo", str(fifo), "--listen", "127.0.0.1:0", "--send", "127.0.0.1:9",
                  log=tmp / "idle.log")
    agent.wait("waiting for an eventlog")
    time.sleep(1.0)
    return agent.stop()


def live(args, livesim: Path, tmp: Path, fixed: float) -> Path:
    influx = InfluxServer(tmp / "influxd")
    db, udp_port = "liveprof_bench_agent", free_port(socket.SOCK_DGRAM)
    fifo, saved = tmp / "prog.fifo", tmp / "LiveSim.eventlog"
    os.mkfifo(fifo, 0o600)
    serve = agent = None
    try:
        influx.start()
        env = dict(os.environ, LIVEPROF_STATE_DIR=str(tmp / "state"))
        serve_log = open(tmp / "serve.log", "wb")
        serve = subprocess.Popen(liveprof_command() + [
            "serve", "--udp", f"127.0.0.1:{udp_port}", "--influx-url", influx.url,
            "--database", db], stdin=subprocess.DEVNULL, stdout=serve_log,
            stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        if not wait_for(lambda: "listening on" in (tmp / "serve.log").read_text(errors="replace"),
                        30):
            raise SystemExit(f"serve did not start:\n{(tmp / 'serve.log').read_text()}")
        agent = Agent("--fifo", str(fifo), "--listen", "127.0.0.1:0", "--tee", str(saved),
                      "--send", f"127.0.0.1:{udp_port}", *(["--no-pack"] if args.no_pack else []),
                      log=tmp / "agent.log")
        agent.wait("waiting for an eventlog")
        time.sleep(0.5)                     # (its last start-up steps)
        ready = agent.cpu_now()
        poller = Poller(influx.url, db, 'SELECT "text" FROM "markers"', args.poll)
        poller.start()
        took, said = run_livesim(livesim, fifo, args.seconds)
        print(f"live: LiveSim ran {took:.1f} s: {said}")
        agent.wait("run ended")
        want = markers_in(saved)
        wait_for(lambda: len(poller.seen) >= want, 40)
        poller.stop_flag.set()
        poller.join()
        poller.poll_once(sweep=True)
        done = agent.cpu_now()              # (before its exit's own cost)
        cpu, rss = agent.stop()
        agent = None
    finally:
        if agent is not None:
            agent.stop()
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(30)
        influx.stop()
    mb = saved.stat().st_size / 1e6
    delays = [(seen - int(text.split()[1])) / 1e9 for (_, text), seen in poller.seen.items()
              if isinstance(text, str) and text.startswith("lag ")]
    print(f"live: eventlog {mb:.2f} MB in {args.seconds:g} s ({mb / args.seconds:.3f} MB/s), "
          f"{want} lag markers, {len(delays)} marker points "
          f"({len(poller.swept)} first seen by the final sweep)")
    print("live: end to end (marker emitted -> queryable), agent -> datagrams -> serve -> influxd")
    print("      " + summary("marker", delays))
    net = cpu - fixed
    print(f"live: agent cpu {cpu:.2f} s = {cpu / mb:.3f} s/MB = {cpu / mb * 100:.1f} % of one core "
          f"per MB/s; {cpu / args.seconds * 100:.1f} % of a core over the run; "
          f"peak RSS {rss:.1f} MB")
    print(f"live: net of the start-up's {fixed:.2f} s: {net:.2f} s = {net / mb:.3f} s/MB = "
          f"{net / mb * 100:.1f} % of one core per MB/s")
    own = done - ready
    print(f"live: ready to done (its CPU read once ready, {ready:.2f} s, and before its stop): "
          f"{own:.2f} s = "
          f"{own / mb:.3f} s/MB = {own / mb * 100:.1f} % of one core per MB/s")
    return saved


def full_speed(saved: Path, tmp: Path, fixed: float) -> None:
    fifo = tmp / "fast.fifo"
    os.mkfifo(fifo, 0o600)
    agent = Agent("--fifo", str(fifo), "--listen", "127.0.0.1:0", log=tmp / "fast.log")
    port = int(agent.wait(r"listening on TCP \S+:(\d+)").rsplit(":", 1)[1])
    got = [0]
    sock = socket.create_connection(("127.0.0.1", port))

    def drain() -> None:
        while chunk := sock.recv(1 << 20):
            got[0] += len(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    agent.wait("receiver .* connected")
    started = time.monotonic()
    with open(fifo, "wb") as f, open(saved, "rb") as src:
        while data := src.read(1 << 16):
            f.write(data)
    agent.wait("run ended", 120)
    reader.join(60)
    took = time.monotonic() - started
    cpu, rss = agent.stop()
    sock.close()
    mb = saved.stat().st_size / 1e6
    print(f"full speed: {mb:.2f} MB through the agent to one TCP receiver in {took:.2f} s "
          f"({mb / took:.1f} MB/s; {got[0] / 1e6:.1f} MB of frames): agent cpu {cpu:.2f} s = "
          f"{cpu / mb:.3f} s/MB ({(cpu - fixed) / mb:.3f} s/MB net of the start-up), "
          f"peak RSS {rss:.1f} MB")


def stall(livesim: Path, tmp: Path, seconds: float) -> None:
    """LiveSim with no receiver and with a stuck one, in the order A B B A (the
    machine's load drifts), each figure the mean of its two runs."""
    results: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
    for n, stuck in enumerate((False, True, True, False)):
        fifo = tmp / f"stall-{n}.fifo"
        os.mkfifo(fifo, 0o600)
        agent = Agent("--fifo", str(fifo), "--listen", "127.0.0.1:0", log=tmp / f"stall-{n}.log")
        port = int(agent.wait(r"listening on TCP \S+:(\d+)").rsplit(":", 1)[1])
        sock = None
        if stuck:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            agent.wait("receiver .* connected")
        took, said = run_livesim(livesim, fifo, seconds)
        jobs = int(m.group(1)) if (m := re.search(r"(\d+) jobs", said)) else -1
        agent.wait("run ended")
        dropped = "dropped" in agent.text()
        _, rss = agent.stop()
        if sock is not None:
            sock.close()
        results[stuck].append((took, jobs))
        print(f"stall: {'a stuck receiver' if stuck else 'no receiver':<16} LiveSim {took:.2f} s, "
              f"{jobs} jobs, agent peak RSS {rss:.1f} MB"
              f"{', the stuck receiver was dropped' if dropped else ''}")
    (t0, j0), (t1, j1) = ((sum(x[0] for x in results[k]) / 2, sum(x[1] for x in results[k]) / 2)
                          for k in (False, True))
    print(f"stall: means: run time with a stuck receiver {100 * (t1 - t0) / t0:+.1f} %, jobs "
          f"{100 * (j1 - j0) / max(j0, 1):+.1f} %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="LiveSim run time (default 60)")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between queries")
    ap.add_argument("--stall-seconds", type=float, default=10.0,
                    help="LiveSim run time of each stall run (0: skip)")
    ap.add_argument("--stall-only", action="store_true", help="only the stall runs")
    ap.add_argument("--no-pack", action="store_true",
                    help="live: one message a datagram (the agent's --no-pack), to compare")
    args = ap.parse_args()
    livesim = livesim_binary()
    with tempfile.TemporaryDirectory(prefix="liveprof-bench-agent-") as name:
        tmp = Path(name)
        if not args.stall_only:
            fixed, idle_rss = startup_cpu(tmp)
            print(f"start-up: an idle agent costs {fixed:.2f} s of cpu, RSS {idle_rss:.1f} MB")
            saved = live(args, livesim, tmp, fixed)
            full_speed(saved, tmp, fixed)
        if args.stall_seconds > 0:
            stall(livesim, tmp, args.stall_seconds)
    print(f"(load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
