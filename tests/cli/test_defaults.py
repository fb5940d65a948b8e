"""The command line takes its defaults from the settings model
(ingest/commands/defaults.py): a flag's help shows the model's default, a flag
the command uses itself gets the model's value when not given, and changing a
default in the model changes the command line with it."""

from __future__ import annotations

import argparse

from ingest.cli import build_parser
from ingest.commands import serve
from ingest.commands.defaults import placeholders, resolve, show
from ingest.config import Settings, model_of
from ingest.config_doc import serve_flags
from ingest.derive.config import DeriveConfig
from ingest.sinks import InfluxSinkConfig
from ingest.sources.monitor_udp import MonitorUdpConfig


def model_default(key: str):
    """A setting's default, found from ``Settings`` down (not as the command
    line finds it)."""
    model: type = Settings
    *parents, name = key.split(".")
    for part in parents:
        model = model_of(model.model_fields[part].annotation)
    return model.model_fields[name].get_default(call_default_factory=True)


def parsers(parser: argparse.ArgumentParser, name: str = "liveprof"):
    """Every parser of the command line, subcommands' too, with its name."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from parsers(child, f"{name} {sub}")


def command(name: str) -> argparse.ArgumentParser:
    return dict(parsers(build_parser()))[f"liveprof {name}"]


def action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def shown_help(parser: argparse.ArgumentParser, act: argparse.Action) -> str:
    return parser._get_formatter()._expand_help(act)


def test_every_default_the_help_shows_is_the_models():
    shown = 0
    for name, parser in parsers(build_parser()):
        for act in parser._actions:
            for key in placeholders(act.help or ""):
                assert show(model_default(key)) in shown_help(parser, act), (name, act.dest, key)
                shown += 1
        for key in placeholders(parser.description or ""):
            assert show(model_default(key)) in " ".join(parser.format_help().split()), (name, key)
            shown += 1
    assert shown >= 20


def test_every_flag_that_sets_a_setting_shows_its_default():
    """serve's flags (found by what each one overrides) and import's; a
    setting whose default is none (off, or found at run time) has none to show."""
    by_setting = {key: {usage.split()[0] for usage in usages}
                  for key, usages in serve_flags()[0].items()}
    cases = [("serve", by_setting), ("import", {key: {flag} for key, flag in
                                                {**serve.INFLUX_FLAGS,
                                                 **serve.DERIVE_FLAGS}.items()})]
    checked = 0
    for name, settings in cases:
        parser = command(name)
        flags = {f for a in parser._actions for f in a.option_strings}
        for key, setting_flags in settings.items():
            if key.count(".") != 1 or not isinstance(model_default(key), (str, int, float)):
                continue
            for flag in setting_flags & flags:
                assert key in placeholders(action(parser, flag).help or ""), (name, flag, key)
                checked += 1
    assert checked >= 11


def test_a_flag_not_given_gets_the_models_default():
    args = resolve(build_parser().parse_args(["derive", "some.eventlog"]))
    want = DeriveConfig()
    assert (args.window, args.top, args.max_lag) == (want.window, want.top, want.max_lag)
    args = resolve(build_parser().parse_args(["monitor", "--udp", "8242"]))
    assert args.idle_timeout == MonitorUdpConfig().idle_timeout
    args = resolve(build_parser().parse_args(["derive", "x", "--window", "2", "--top", "3"]))
    assert (args.window, args.top) == (2.0, 3)


def test_a_default_changed_in_the_model_changes_the_command_line(monkeypatch):
    monkeypatch.setattr(DeriveConfig.model_fields["window"], "default", 2.5)
    monkeypatch.setattr(MonitorUdpConfig.model_fields["host"], "default", "192.0.2.7")
    monkeypatch.setattr(InfluxSinkConfig.model_fields["url"], "default", "http://192.0.2.9:8086")

    assert resolve(build_parser().parse_args(["derive", "x"])).window == 2.5
    derive = command("derive")
    assert "(default 2.5)" in shown_help(derive, action(derive, "--window"))
    serve_ = command("serve")
    assert shown_help(serve_, action(serve_, "--influx-url")) == "default http://192.0.2.9:8086"
    assert "(default 2.5)" in shown_help(serve_, action(serve_, "--window"))
    assert serve.overrides(build_parser().parse_args(["serve", "--udp", "9000"]))[
        "monitor_udp"] == {"host": "192.0.2.7", "port": 9000}
