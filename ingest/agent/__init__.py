"""``liveprof agent``: the monitor side of the protocol, next to a program.

``Agent`` (core.py) is the ``Opener`` its source is given; each eventlog run
goes through ``protocol.monitor.Encoder`` and out to every output:
``TcpOut`` (tcp.py: the TCP server, a bounded queue per receiver) and
``UdpOut`` (udp.py: packed datagrams to collectors, repeated snapshot and
header, redundancy, HMAC).  The command is ingest/commands/agent.py.
"""

from .core import Agent, Counters, Run
from .tcp import TcpOut
from .udp import UdpOut

__all__ = ["Agent", "Counters", "Run", "TcpOut", "UdpOut"]
