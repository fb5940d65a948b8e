"""Flag defaults taken from the settings model, so each default is written once.

A flag that stands for a setting never repeats the setting's default:

* its help names the setting in braces, ``"aggregation window (default
  {derive.window})"``, and the help formatter puts the model's default there
  when help is shown;
* a command that uses the flag's value itself (``derive``) declares
  ``default=SettingDefault("derive.window")``: ``resolve()`` (cli.main calls
  it) puts the model's default there when the flag is not given;
* a command that hands its flags to ``config.load`` as overrides (``serve``,
  ``import``) keeps ``default=None``: not given means "not set here", so the
  environment and the TOML file still apply.

The model is read only when a default is needed (help shown, a flag not
given), not when the parser is built: every command's parser is built at each
start, and importing every component's settings costs more than most commands
take.  tests/cli/test_defaults.py checks every placeholder against the model.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:       # (pydantic is loaded only when a default is read)
    from pydantic import BaseModel

_PLACEHOLDER = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)+)\}")


def setting_model(section: str) -> type[BaseModel]:
    """The model of a top-level section of the settings (of its items, for a
    list like ``monitors``)."""
    if section == "derive":
        # (beside the derivers and light: ``liveprof derive`` needs nothing else)
        from ..derive.config import DeriveConfig
        return DeriveConfig
    from ..config import Settings, model_of
    return model_of(Settings.model_fields[section].annotation)


def setting_default(key: str) -> Any:
    """The model's default of a setting by its dotted name (``"derive.window"``,
    ``"monitors.port"``: a field of each list item)."""
    section, *parents, name = key.split(".")
    model = setting_model(section)
    for part in parents:                # a table inside a section
        from ..config import model_of
        model = model_of(model.model_fields[part].annotation)
    return model.model_fields[name].get_default(call_default_factory=True)


def show(value: Any) -> str:
    """A default as help shows it: ``1`` for 1.0, ``none`` for None."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def with_defaults(text: str) -> str:
    """Each ``{section.field}`` in ``text`` replaced by that setting's default."""
    return _PLACEHOLDER.sub(lambda m: show(setting_default(m[1])), text)


def placeholders(text: str) -> list[str]:
    """The settings a help text shows the default of."""
    return _PLACEHOLDER.findall(text)


class SettingDefault:
    """A flag's default that is a setting's: ``resolve()`` puts the model's
    value in its place when the flag is not given."""

    def __init__(self, key: str):
        self.key = key

    @property
    def value(self) -> Any:
        return setting_default(self.key)

    def __repr__(self) -> str:
        return f"SettingDefault({self.key!r})"


def resolve(namespace: argparse.Namespace) -> argparse.Namespace:
    """Put each ``SettingDefault`` left in ``namespace`` (a flag not given)
    by its value."""
    for name, value in vars(namespace).items():
        if isinstance(value, SettingDefault):
            setattr(namespace, name, value.value)
    return namespace


class HelpFormatter(argparse.HelpFormatter):
    """Help with each setting placeholder replaced by the model's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is None:
            return None
        # (argparse then expands %(default)s and the like: a % in a value is not one)
        return _PLACEHOLDER.sub(lambda m: show(setting_default(m[1])).replace("%", "%%"), text)

    def _format_text(self, text: str) -> str:
        return super()._format_text(with_defaults(text))


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows the settings' defaults (its
    subcommands' parsers are of this class too).  ``resolve()`` its result."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
