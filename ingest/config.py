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
them.  Everything is validated at start; an error names the setting and where
it came from.  Secrets are ``SecretStr``: ``describe()`` prints them masked.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .api.config import ApiConfig
from .errors import ConfigError
from .rollups import RollupConfig
from .sinks.influx import InfluxSinkConfig
from .sinks.mqtt import MqttAlertConfig
from .sources.fifo import FifoConfig
from .sources.file import FileConfig
from .sources.monitor_tcp import MonitorTcpConfig
from .sources.monitor_udp import MonitorUdpConfig
from .sources.socket import SocketConfig
from .sources.stdin import StdinConfig

PREFIX = "LIVEPROF_"


class DeriveConfig(BaseModel):
    """Which points are made, and how they are tagged (docs/schema.md)."""

    model_config = ConfigDict(extra="forbid")

    window: float = Field(1.0, gt=0, description="aggregation window, seconds")
    top: int = Field(10, ge=1, description="a label is named when among the busiest this "
                                           "many of a window, and keeps its name")
    max_labels: int = Field(100, ge=1, description="labels named per session and measurement "
                                                   "(the rest: 'other'); docs/schema.md")
    max_gap: float = Field(86400.0, gt=0, description="a longer jump in eventlog time is a "
                                                      "corrupt stream: its points end there, "
                                                      "seconds")
    measurements: list[str] | None = Field(None, description="None: all of them")
    app: str | None = Field(None, description="the app tag; None: the program's name")
    host: str | None = Field(None, description="the host tag; None: the stream's peer")
    max_lag: float = Field(10.0, gt=0, description="live streams: longest an event waits "
                                                    "for time order, seconds")

    @field_validator("measurements")
    @classmethod
    def _known(cls, value):
        if value is None:
            return value
        from .derive.registry import REGISTRY
        unknown = [m for m in value if m not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown measurement(s) {unknown}; known: {sorted(REGISTRY)}")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="forbid",
                                      env_ignore_empty=True)

    influx: InfluxSinkConfig = InfluxSinkConfig()
    rollups: RollupConfig = Field(
        RollupConfig(), description="retention policies and rollups (docs/rollups.md); "
                                    "the database is influx.database")
    setup: bool = Field(True, description="serve: apply the retention/rollup scheme at start "
                                          "and write to its raw policy (False: leave InfluxDB "
                                          "as it is and write to the database's default policy)")
    derive: DeriveConfig = DeriveConfig()
    mqtt: MqttAlertConfig | None = Field(
        None, description="live GC-pause alerts over MQTT (docs/alerts.md); None: off")
    api: ApiConfig | None = Field(None, description="the HTTP API (docs/api.md); None: off")
    monitors: list[MonitorTcpConfig] = Field(
        default_factory=list, description="monitors to dial over TCP")
    monitor_udp: MonitorUdpConfig | None = Field(
        None, description="listen for monitor datagrams (None: off)")
    sockets: list[SocketConfig] = Field(
        default_factory=list, description="programs serving their eventlog on a socket, to dial")
    fifos: list[FifoConfig] = Field(
        default_factory=list, description="named pipes programs write (+RTS -l -ol<fifo>)")
    files: list[FileConfig] = Field(
        default_factory=list, description="eventlog files to import once or follow")
    stdin: StdinConfig | None = Field(None, description="read an eventlog stream on stdin")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
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
        if self.influx.spool_dir is None:
            update["spool_dir"] = self.state_dir / "spool"
        if self.setup:
            update["create_database"] = True
            if self.influx.retention_policy is None:
                update["retention_policy"] = self.rollups.raw.name
        return self.influx.model_copy(update=update)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return (init_settings, _SectionEnv(settings_cls), env_settings, _TomlFile(settings_cls))

    def describe(self) -> str:
        """The whole configuration as JSON, secrets masked."""
        return json.dumps(self.model_dump(mode="json"), indent=2, default=str)


# sections whose fields take LIVEPROF_<SECTION>_<FIELD> variables
SECTIONS = ("influx", "rollups", "derive", "mqtt", "api", "monitor_udp")
_config_path: Path | None = None   # the TOML file of the load() in progress


class _SectionEnv(PydanticBaseSettingsSource):
    """``LIVEPROF_INFLUX_URL`` -> ``{"influx": {"url": ...}}``."""

    def get_field_value(self, field, field_name):  # required by the base class; unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, dict] = {}
        env = {k.upper(): v for k, v in os.environ.items() if v != ""}
        for section in SECTIONS:
            annotation = self.settings_cls.model_fields[section].annotation
            model = _model_of(annotation)
            for name in model.model_fields:
                key = f"{PREFIX}{section}_{name}".upper()
                if key in env:
                    out.setdefault(section, {})[name] = _maybe_json(env[key])
        return out


class _TomlFile(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if _config_path is None:
            return {}
        try:
            with open(_config_path, "rb") as f:
                return tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {_config_path}: {exc.strerror}") \
                from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {_config_path}: {exc}") from exc


def _model_of(annotation) -> type[BaseModel]:
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


def load(config_file: str | os.PathLike | None = None,
         overrides: dict[str, Any] | None = None) -> Settings:
    """Build and validate the settings; ``ConfigError`` says what is wrong."""
    global _config_path
    path = config_file or os.environ.get(f"{PREFIX}CONFIG") or None
    _config_path = Path(path) if path else None
    try:
        return Settings(**_nest(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    finally:
        _config_path = None


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


def _explain(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        env = f"{PREFIX}{where.replace('.', '_')}".upper() if where else ""
        lines.append(f"  {where}: {err['msg']} (setting {where}; environment {env})")
    return "\n".join(lines)
