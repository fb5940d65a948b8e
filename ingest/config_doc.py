"""The configuration reference, generated from the settings model.

    python -m ingest.config_doc            # (re)write docs/configuration.md
    python -m ingest.config_doc --check    # exit 1 when the file is out of date

Why generated: a hand-written list of settings drifts the day someone adds a
field.  Everything here is read from ``ingest.config.Settings`` (each key, its
type, default and description), from the environment-variable rules of
``ingest/config.py`` (``LIVEPROF_<SECTION>_<FIELD>``, ``LIVEPROF_<FIELD>``)
and from ``liveprof serve``'s own parser (which flag sets which key, found by
parsing each flag and seeing which override it makes).  Only the few
variables read outside the model are listed by hand (``OTHER_VARIABLES``);
tests/test_config_doc.py checks that list against the source.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from .config import PREFIX, SECTIONS, Settings

TARGET = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

# variables read outside the settings model: name -> what it does
OTHER_VARIABLES = {
    "LIVEPROF_CONFIG": "the TOML settings file, when `--config` is not given",
    "LIVEPROF_ADMIN_TOKEN": "default of `api.admin_token`: the first admin token of the HTTP API",
    "LIVEPROF_INFLUXD": "`serve --start-influxd`: the influxd binary to run (default: PATH)",
    "LIVEPROF_URL": "`liveprof upload`: default of `--url`",
    "LIVEPROF_TOKEN": "`liveprof upload`: default of `--token`",
    "LIVEPROF_AGENT_SECRET": "`liveprof agent`: the shared secret that signs each datagram "
                             "(HMAC), when `--secret` is not given",
    "LIVEPROF_PURE_PYTHON": "set (to anything) to decode, derive, and encode and send the "
                            "agent's messages with the pure Python loops instead of the C "
                            "extensions",
    "XDG_STATE_HOME": "where `state_dir` is by default (`$XDG_STATE_HOME/liveprof`)",
}


# -- which serve flag sets which key -----------------------------------------------------

def serve_flags() -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """``{setting key: [flag usage, ...]}`` and the serve flags that set no
    setting (``[(usage, help)]``), found by parsing each flag with a sample
    value, alone and beside ``--udp`` (flags that refine another flag)."""
    from .cli import build_parser
    from .commands import serve
    from .commands.defaults import resolve, with_defaults

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve_parser = sub.choices["serve"]
    by_key: dict[str, list[str]] = {}
    others = []
    for action in serve_parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = max(action.option_strings, key=len)
        usage = flag + (f" {action.metavar or action.dest.upper()}" if action.nargs != 0 else "")
        keys = set()
        for context in ([], ["--udp", "8242"]):
            base = _flatten(serve.overrides(resolve(parser.parse_args(["serve", *context]))))
            samples = [[]] if action.nargs == 0 else \
                [["7.25"]] if action.type is float else \
                [["sentinel-host:4321"], ["10.9.8.0/24"], ["7.25"]]
            for sample in samples:
                try:
                    changed = _flatten(serve.overrides(
                        resolve(parser.parse_args(["serve", *context, flag, *sample]))))
                except (Exception, SystemExit):
                    continue
                keys |= {k for k in changed if changed[k] != base.get(k)}
                break
        if not keys:
            others.append((usage, " ".join(with_defaults(action.help or "").split())))
        for key in sorted(keys):
            by_key.setdefault(key, []).append(usage)
    return by_key, others


def _flatten(overrides: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


# -- rendering ---------------------------------------------------------------------------

def _model_of(annotation) -> type[BaseModel] | None:
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _list_of_models(annotation) -> type[BaseModel] | None:
    if typing.get_origin(annotation) is list:
        return _model_of(typing.get_args(annotation)[0])
    return None


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"list[{_type_name(typing.get_args(annotation)[0])}]"
    if annotation is type(None):
        return "none"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return getattr(annotation, "__name__", str(annotation))


_UNSET = object()


def _default(name: str, field, value=_UNSET) -> str:
    """``value``: the default a parent's default table gives this field."""
    if value is _UNSET:
        if field.default_factory is not None:
            value = _call_factory(field.default_factory)
        elif field.default is PydanticUndefined:
            return "**required**"
        else:
            value = field.default
    return _show(value, bytes_="bytes" in name or name.endswith(("read_size", "max_hold",
                                                                    "buffer")))


def _field_default(field):
    if field.default_factory is not None:
        return _call_factory(field.default_factory)
    return None if field.default is PydanticUndefined else field.default


_HOME = "/__home__"   # shown as ~


def _call_factory(factory):
    """Defaults computed from the environment are shown for a plain one
    (HOME ``~``, no XDG_STATE_HOME, no LIVEPROF_* variables)."""
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith(PREFIX) or key == "XDG_STATE_HOME":
                del os.environ[key]
        os.environ["HOME"] = _HOME
        return factory()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _show(value, bytes_: bool = False) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, list):
        if value and not isinstance(value[0], BaseModel):
            return ", ".join(f"`{v}`" for v in value)
        return "`[]`" if not value else f"{len(value)} entries (below)"
    if bytes_ and isinstance(value, int) and value >= 1024 and value & (value - 1) == 0:
        for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if value >= 1 << shift:
                return f"`{value}` ({value >> shift} {unit})"
    if isinstance(value, (str, Path)):
        return f'`"{str(value).replace(_HOME, "~")}"`'
    return f"`{value}`"


def _text(description: str | None) -> str:
    return " ".join((description or "").split()).replace("|", "\\|")


def _env_name(path: list[str]) -> str:
    return (PREFIX + "_".join(path)).upper()


def render() -> str:
    flags, other_flags = serve_flags()
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m ingest.config_doc` from the settings model",
        "     (ingest/config.py and the models it composes). Do not edit: change the",
        "     model's descriptions and run it again; tests/test_config_doc.py fails",
        "     while this file is out of date. -->",
        "",
        "`liveprof serve` (and `import` and `influx`, which read the sections they use)",
        "takes its settings from, strongest first:",
        "",
        "1. command-line flags (the *flag* column: `liveprof serve`'s);",
        f"2. environment variables: `{PREFIX}<SECTION>_<FIELD>` for a field of a section",
        f"   (`{PREFIX}INFLUX_URL`), `{PREFIX}<FIELD>` for a top-level one; lists and tables",
        f"   as JSON (`{PREFIX}MONITORS='[{{\"host\": \"10.0.0.5\"}}]'`); empty means unset;",
        "3. a TOML file (`--config FILE` or `LIVEPROF_CONFIG`), sections as tables;",
        "4. the defaults below.",
        "",
        "A section whose default is *none* (`[mqtt]`, `[api]`, `[monitor_udp]`, `[stdin]`)",
        "is off until the TOML file has it, one of its variables is set, or its flag is",
        "given. `liveprof serve --print-config` prints the result, secrets masked.",
        "",
    ]
    top = []
    sections = []
    for name, field in Settings.model_fields.items():
        if _model_of(field.annotation) is not None or _list_of_models(field.annotation):
            sections.append((name, field))
        else:
            top.append((name, field))
    out += ["## Top level", ""]
    out += _table([(name, field, _env_name([name]), _UNSET) for name, field in top], [], flags)
    for name, field in sections:
        out += _section([name], field, flags, env_section=name in SECTIONS)
    out += ["## `liveprof serve` flags that are not settings", "",
            "| flag | meaning |", "|---|---|"]
    out += [f"| `{usage}` | {_text(help_)} |" for usage, help_ in other_flags]
    out += ["", "## Other environment variables", "", "| variable | meaning |", "|---|---|"]
    out += [f"| `{name}` | {text} |" for name, text in OTHER_VARIABLES.items()]
    return "\n".join(out) + "\n"


def _section(path: list[str], field, flags, *, env_section: bool, default=_UNSET) -> list[str]:
    """A table (or list of tables) of the model; ``default``: its value in
    the parent's default, which may differ from the model's own defaults."""
    annotation = field.annotation
    model = _list_of_models(annotation) or _model_of(annotation)
    if model is None:
        raise TypeError(f"{'.'.join(path)}: not a table nor a list of tables")
    is_list = _list_of_models(annotation) is not None
    default = _field_default(field) if default is _UNSET else default
    key = ".".join(path)
    title = f"[[{key}]]" if is_list else f"[{key}]"
    out = [f"## `{title}`", ""]
    about = _text(field.description or model.__doc__)
    if about:
        out += [about[0].upper() + about[1:], ""]
    notes = []
    if is_list and len(path) == 1:
        notes.append(f"a list of tables; environment `{_env_name(path)}` as a JSON list")
    elif len(path) == 1 and not env_section:
        notes.append(f"environment `{_env_name(path)}` as a JSON table")
    elif len(path) > 1:
        parent_env = _env_name(path[:2]) if path[0] in SECTIONS else None
        notes.append(f"environment `{parent_env}` as JSON" if parent_env
                     else "in the TOML file (or the parent's JSON)")
    if field.default is None:
        notes.append("default: off")
    if flags.get(key):
        notes.append("flag: " + ", ".join(f"`{f}`" for f in sorted(set(flags[key]))))
    if notes:
        out += ["(" + "; ".join(notes) + ")", ""]
    if is_list and default:
        out += ["Default:", ""]
        out += [f"- `{_inline(item)}`" for item in default]
        out.append("")
    instance = default if isinstance(default, BaseModel) else None
    rows, nested = [], []
    for name, sub in model.model_fields.items():
        value = getattr(instance, name) if instance is not None else _UNSET
        if _model_of(sub.annotation) is not None or _list_of_models(sub.annotation):
            nested.append((name, sub, value))
            continue
        env = _env_name([*path, name]) if env_section and len(path) == 1 else ""
        rows.append((name, sub, env, value))
    out += _table(rows, path, flags)
    for name, sub, value in nested:
        out += _section([*path, name], sub, flags, env_section=False, default=value)
    return out


def _inline(model: BaseModel) -> str:
    """A list entry as a TOML inline table, with the values that are set."""
    parts = []
    for key, value in model.model_dump(mode="json", exclude_none=True).items():
        parts.append(f"{key} = " + ("true" if value is True else "false" if value is False
                                     else f'"{value}"' if isinstance(value, str) else str(value)))
    return "{ " + ", ".join(parts) + " }"


def _table(rows, path: list[str], flags) -> list[str]:
    out = ["| key | type | default | environment | flag | meaning |",
           "|---|---|---|---|---|---|"]
    for name, field, env, value in rows:
        key = ".".join([*path, name])
        flag = ", ".join(f"`{f}`" for f in sorted(set(flags.get(key, []))))
        out.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(name, field, value)} | "
                   f"{f'`{env}`' if env else ''} | {flag} | {_text(field.description)} |")
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ingest.config_doc", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true",
                   help=f"exit 1 if {TARGET.relative_to(TARGET.parent.parent)} is out of date")
    p.add_argument("--stdout", action="store_true", help="print instead of writing the file")
    args = p.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run `python -m ingest.config_doc`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
