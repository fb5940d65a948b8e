"""One configuration model for the service (pydantic-settings).

Sources of values, strongest first:

1. command-line flags (passed in as ``overrides``);
2. environment variables: ``LIVEPROF_<SECTION>_<FIELD>`` for a field of a
   section (``LIVEPROF_INFLUX_URL``, ``LIVEPROF_INFLUX_PASSWORD``,
   ``LIVEPROF_DERIVE_WINDOW``), ``LIVEPROF_<FIELD>`` for a top-level one
   (``LIVEPROF_MONITORS='[{"host": "10.0.0.5"}]'``, JSON for lists and tables);
3. a TOML file (``--config FILE`` or ``LIVEPROF_CONFIG``), sections as tables;
4. the defaults below.

Each component owns its section's model (``InfluxSinkConfig`` beside the
sink, ``MonitorTcpConfig`` beside its source, ...); this module only composes
them.  Everything is validated at start (``load``), and an error names what
the user wrote: the flag (``--window``), the environment variable
(``LIVEPROF_DERIVE_WINDOW``) or the key in the TOML file that carried the bad
value, never an internal name.  Secrets are ``SecretStr``: ``describe()``
prints them masked; credentials written into ``influx.url``
(``http://user:pw@host``) are moved to ``influx.user``/``influx.password``
when loaded, so the URL is safe to show anywhere (ingest/urls.py).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .api.config import ApiConfig
from .derive.config import DeriveConfig
from .errors import ConfigError
from .rollups import RollupConfig
from .sinks import InfluxSinkConfig
from .sinks.mqtt import MqttAlertConfig
from .sources.fifo import FifoConfig
from .sources.file import FileConfig
from .sources.monitor_tcp import MonitorTcpConfig
from .sources.monitor_udp import MonitorUdpConfig
from .sources.socket import SocketConfig
from .sources.stdin import StdinConfig
from .urls import mask_url, split_http_url

PREFIX = "LIVEPROF_"


Section = TypeVar("Section", bound=BaseModel)


def _defaults(model: type[Section]) -> Section:
    """A section with every field at its default.  (``model_validate({})``
    rather than ``model()``: the type checker, without pydantic's plugin,
    reads a default given positionally, ``Field(x, ...)``, as no default.)"""
    return model.model_validate({})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid",
                                      env_ignore_empty=True)

    influx: InfluxSinkConfig = Field(default_factory=lambda: _defaults(InfluxSinkConfig))
    rollups: RollupConfig = Field(
        default_factory=lambda: _defaults(RollupConfig),
        description="retention policies and rollups (docs/rollups.md); the database is "
                    "influx.database")
    setup: bool = Field(default=True, description="serve: apply the retention/rollup scheme at start "
                                          "and write to its raw policy (False: leave InfluxDB "
                                          "as it is and write to the database's default policy)")
    derive: DeriveConfig = Field(default_factory=DeriveConfig)
    mqtt: MqttAlertConfig | None = Field(
        default=None, description="live GC-pause alerts over MQTT (docs/alerts.md); None: off")
    api: ApiConfig | None = Field(default=None, description="the HTTP API (docs/api.md); None: off")
    monitors: list[MonitorTcpConfig] = Field(
        default_factory=list, description="monitors to dial over TCP")
    monitor_udp: MonitorUdpConfig | None = Field(
        default=None, description="listen for monitor datagrams (None: off)")
    sockets: list[SocketConfig] = Field(
        default_factory=list, description="programs serving their eventlog on a socket, to dial")
    fifos: list[FifoConfig] = Field(
        default_factory=list, description="named pipes programs write (+RTS -l -ol<fifo>)")
    files: list[FileConfig] = Field(
        default_factory=list, description="eventlog files to import once or follow")
    stdin: StdinConfig | None = Field(default=None, description="read an eventlog stream on stdin")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    state_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_STATE_HOME")
                                     or Path.home() / ".local" / "state") / "liveprof",
        description="where the service keeps its state (the InfluxDB spool, unless "
                    "influx.spool_dir says otherwise)")

    def setup_config(self):
        """What ``influx setup`` applies: this server, these credentials, the
        rollup scheme on ``influx.database``."""
        from .influx_setup import InfluxSetupConfig
        return InfluxSetupConfig.from_sink(self.influx, self.rollups)

    def sink_config(self) -> InfluxSinkConfig:
        """The sink's settings: the spool under ``state_dir`` by default, and,
        with ``setup``, the database created at start and writes to the raw
        policy by name (points written before the scheme exists wait for it
        instead of landing in another policy)."""
        update: dict[str, Any] = {}
        if self.influx.buffer.spool_dir is None:
            update["buffer"] = {"spool_dir": self.state_dir / "spool"}
        if self.setup:
            update["create_database"] = True
            if self.influx.retention_policy is None:
                update["retention_policy"] = self.rollups.raw.name
        return self.influx.updated(update)

    @field_validator("influx", mode="before")
    @classmethod
    def _influx_url(cls, value):
        """Check the URL; move credentials written into it to user/password."""
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not isinstance(value, dict) or not isinstance(value.get("url"), str):
            return value
        url, user, password = split_http_url(value["url"])
        value = {**value, "url": url}
        if user is not None:
            if any(value.get(k) is not None for k in ("user", "password", "token")):
                raise ValueError("the url holds a user and password, and credentials are given "
                                 "apart too: give them once")
            value.update(user=user, password=password)
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        # load() reads the environment and the file itself, to know where each value came from
        return (init_settings,)

    def describe(self) -> str:
        """The whole configuration as JSON, secrets masked."""
        return json.dumps(self.model_dump(mode="json"), indent=2, default=str)


# sections whose fields take LIVEPROF_<SECTION>_<FIELD> variables
SECTIONS = ("influx", "rollups", "derive", "mqtt", "api", "monitor_udp")

Path_ = tuple          # a place in the settings: ("derive", "window"), ("monitors", 0, "port")


class _Layer:
    """One source of values (flags, section variables, whole-field variables,
    the TOML file) and where each of its values came from."""

    def __init__(self, values: dict, label):
        self.values = values
        self.label = label              # (recorded path, error path) -> what the user wrote
        self.paths: set[Path_] = set()
        self._record(values, ())

    def _record(self, node, path: Path_) -> None:
        # leaves and lists are taken whole from the strongest layer; dicts merge
        if isinstance(node, dict) and node:
            for key, value in node.items():
                self._record(value, path + (key,))
            return
        self.paths.add(path)
        if isinstance(node, list):
            for i, value in enumerate(node):
                self._record(value, path + (i,))

    def covering(self, loc: Path_) -> Path_ | None:
        """The longest recorded path at or above ``loc``."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.paths:
                return loc[:n]
        return None


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _flag_label(flags: dict[str, str]):
    def label(path: Path_, loc: Path_) -> str:
        for n in range(len(loc), 0, -1):
            key = ".".join(str(p) for p in loc[:n])
            if key in flags:
                rest = _dotted(loc[n:])
                return flags[key] + (f" (at {rest})" if rest else "")
        return f"setting {_dotted(loc)}"
    return label


def _var_label(var_of):
    def label(path: Path_, loc: Path_) -> str:
        var, depth = var_of(path)
        rest = _dotted(loc[depth:])
        return var + (f" (at {rest})" if rest else "")
    return label


def _section_env() -> _Layer:
    """``LIVEPROF_INFLUX_URL`` -> ``{"influx": {"url": ...}}``."""
    out: dict[str, dict] = {}
    env = _environment()
    for section in SECTIONS:
        model = model_of(Settings.model_fields[section].annotation)
        for name in [*model.model_fields, *getattr(model, "OLD_KEYS", ())]:  # keys of earlier versions
            key = f"{PREFIX}{section}_{name}".upper()
            if key in env:
                out.setdefault(section, {})[name] = _maybe_json(env[key])
    return _Layer(out, _var_label(lambda p: (f"{PREFIX}{p[0]}_{p[1]}".upper(), 2)))


def _field_env() -> _Layer:
    """``LIVEPROF_MONITORS='[...]'``, ``LIVEPROF_LOG_LEVEL=DEBUG``: a whole
    field, JSON for lists and tables."""
    out: dict[str, Any] = {}
    env = _environment()
    for name, field in Settings.model_fields.items():
        key = f"{PREFIX}{name}".upper()
        if key not in env:
            continue
        text = env[key]
        if _is_complex(field.annotation):
            try:
                out[name] = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{key}: not valid JSON ({exc.msg} at character {exc.pos}); "
                                  f"a list or table is written as JSON, e.g. "
                                  f"{key}='[{{\"host\": \"10.0.0.5\"}}]'") from None
        else:
            out[name] = text
    return _Layer(out, _var_label(lambda p: (f"{PREFIX}{p[0]}".upper(), 1)))


def _toml_file(path: Path | None) -> _Layer:
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
    return _Layer(values, lambda p, loc: f"{path}: key {_dotted(loc)}")


def _environment() -> dict[str, str]:
    return {k.upper(): v for k, v in os.environ.items() if v != ""}


def _is_complex(annotation) -> bool:
    for arg in get_args(annotation) or (annotation,):
        if get_origin(arg) in (list, dict) or (isinstance(arg, type) and issubclass(arg, BaseModel)):
            return True
    return get_origin(annotation) in (list, dict)


def model_of(annotation) -> type[BaseModel]:
    for arg in getattr(annotation, "__args__", ()) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    raise TypeError(f"not a model: {annotation}")


def _maybe_json(text: str):
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def _merge(low: dict, high: dict) -> dict:
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(config_file: str | os.PathLike | None = None,
         overrides: dict[str, Any] | None = None,
         flags: dict[str, str] | None = None) -> Settings:
    """Build and validate the settings; ``ConfigError`` says what is wrong
    and where the value came from.  ``overrides`` are the command line's
    values by dotted name (``{"derive.window": 2.0}``); ``flags`` names the
    flag of each (``{"derive.window": "--window"}``) for the messages."""
    path = config_file or os.environ.get(f"{PREFIX}CONFIG") or None
    # strongest first
    layers = [_Layer(_nest(overrides or {}), _flag_label(flags or {})), _section_env(),
              _field_env(), _toml_file(Path(path) if path else None)]
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged = _merge(merged, layer.values)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, layers)) from None


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"influx.url": x}`` -> ``{"influx": {"url": x}}``; None values are left out."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


_SECRET = ("password", "token", "secret")


def _explain(exc: ValidationError, layers: list[_Layer]) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "no such setting"
        where, loc = _origin(loc, layers, msg)
        notes = []
        value = err.get("input")
        if (isinstance(value, (str, int, float)) and not isinstance(value, bool)
                and not any(s in str(loc[-1:]) for s in _SECRET)):
            shown = repr(mask_url(value)[:80]) if isinstance(value, str) else repr(value)
            if shown.strip("'") not in msg:
                notes.append(f"got {shown}")
        setting = f"setting {_dotted(loc)}"
        if loc and setting not in where:
            notes.append(setting)
        lines.append(f"  {where}: {msg}" + (f" ({'; '.join(notes)})" if notes else ""))
    return "\n".join(lines)


def _origin(loc: Path_, layers: list[_Layer], msg: str) -> tuple[str, Path_]:
    """What the user wrote that put a value at ``loc`` (or, for an error
    about a whole section, the values under it that the message is about),
    and the setting concerned."""
    for layer in layers:
        path = layer.covering(loc)
        if path is not None:
            return layer.label(path, loc), loc
    below: dict[Path_, str] = {}
    for layer in reversed(layers):
        for path in layer.paths:
            if path[:len(loc)] == loc and len(path) > len(loc):
                below[path] = layer.label(path, path)
    named = {path: label for path, label in below.items() if str(path[len(loc)]) in msg}
    if len(named) == 1:
        loc = next(iter(named))
    labels = sorted(set((named or below).values()))
    if labels:
        return " and ".join(labels), loc
    return (f"the default of {_dotted(loc)}" if loc else "the settings"), loc
