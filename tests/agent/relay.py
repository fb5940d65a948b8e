"""A loopback UDP relay that drops a share of the datagrams (seeded), keeping
the ones it dropped, for the agent's loss test."""

from __future__ import annotations

import random
import socket
import threading


class LossyRelay:
    """Listens on 127.0.0.1:port, forwards each datagram to ``target`` from one
    socket per sender (so the collector still sees one session per sender),
    drops each with probability ``loss``."""

    def __init__(self, target: tuple[str, int], loss: float, seed: int = 1):
        self.target = target
        self.loss = loss
        self.random = random.Random(seed)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.out: dict[tuple, socket.socket] = {}
        self.dropped: list[bytes] = []
        self.forwarded = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LossyRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        for s in self.out.values():
            s.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.random.random() < self.loss:
                self.dropped.append(data)
                continue
            out = self.out.get(sender)
            if out is None:
                out = self.out[sender] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                out.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            out.sendto(data, self.target)
            self.forwarded += 1
