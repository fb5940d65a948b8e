import pytest

from protocol.eventlog import Decoder

# real InfluxDB and Mosquitto servers on loopback (tests/servers.py)
pytest_plugins = ["tests.servers_fixtures"]


class PythonDecoder(Decoder):
    """The decoder with its pure Python record loop."""

    native = False


@pytest.fixture(params=["native", "python"])
def decoder_cls(request):
    """Both record loops: the C one (when compiled) and the Python one."""
    return Decoder if request.param == "native" else PythonDecoder
