"""The real-server fixtures (tests/servers_fixtures.py) for the rollup tests.

``pytest_plugins`` is only allowed in the top-level conftest, which other work
owns; register the plugin here unless something already did."""

PLUGIN = "tests.servers_fixtures"


def pytest_configure(config):
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)
