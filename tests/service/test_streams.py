"""The host tag a stream gets from where it comes from."""

import socket

import pytest

from ingest.sources.base import StreamInfo
from ingest.streams import peer_host

HERE = socket.gethostname()


@pytest.mark.parametrize("source,peer,host", [
    ("monitor_tcp", "10.1.2.3:8242", "10.1.2.3"),
    ("monitor_udp", "[fe80::1]:8242", "fe80::1"),
    ("socket", "db-7.example:4242", "db-7.example"),
    ("monitor_tcp", "127.0.0.1:8242", HERE),        # loopback: this machine
    ("socket", "/tmp/prog.sock", HERE),              # a Unix socket is local
    ("socket", "unix:/tmp/prog.sock", HERE),
    ("fifo", "/tmp/prog.eventlog", HERE),
    ("file", "a:b.eventlog", HERE),                  # a path, whatever its characters
    ("stdin", "-", HERE),
])
def test_host_tag(source, peer, host):
    assert peer_host(StreamInfo(source, peer, 1)) == host
