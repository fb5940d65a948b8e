def test_x(influxd):
    assert influxd.running
