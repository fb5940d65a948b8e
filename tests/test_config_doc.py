"""docs/configuration.md is generated from the settings model
(``python -m ingest.config_doc``) and must match it: this fails the day a
setting, default, description, flag or variable changes without the
reference being regenerated.  The other tests check the reference against the
running code, not against the generator: every settings key pydantic dumps
is there, every documented variable really sets its key, every serve flag is
listed, and every LIVEPROF_* name in the source is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ingest import config_doc
from ingest.cli import build_parser
from ingest.config import SECTIONS, Settings, load
from tests.corpus import REPO

DOC = REPO / "docs" / "configuration.md"


def doc() -> str:
    return DOC.read_text()


def test_the_reference_is_up_to_date():
    done = subprocess.run([sys.executable, "-m", "ingest.config_doc", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, (done.stderr + "\nregenerate it: python -m ingest.config_doc")


def test_check_fails_on_a_stale_reference_and_the_command_rewrites_it(tmp_path, monkeypatch):
    target = tmp_path / "configuration.md"
    target.write_text(doc().replace("LIVEPROF_INFLUX_URL", "LIVEPROF_INFLUX_URI"))
    monkeypatch.setattr(config_doc, "TARGET", target)
    assert config_doc.main(["--check"]) == 1
    assert config_doc.main([]) == 0
    assert config_doc.main(["--check"]) == 0
    assert target.read_text() == doc()


def _keys(dump: dict, prefix: str = ""):
    """``(section prefix, key, is a list of tables)`` of every leaf."""
    for key, value in dump.items():
        if isinstance(value, dict):
            yield from _keys(value, f"{prefix}{key}.")
        else:
            yield prefix, key, isinstance(value, list) and (not value or isinstance(value[0], dict))


def test_every_setting_is_in_the_reference():
    """Every key of a full settings dump (every optional section on), under
    its section's heading."""
    everything = load(None, {"mqtt.host": "127.0.0.1", "api.port": 0,
                             "monitor_udp.port": 0, "stdin.fd": 0})
    text = doc()
    sections = {m[1]: m.end() for m in re.finditer(r"^## `\[\[?([a-z_.]+)\]\]?`", text,
                                                   flags=re.MULTILINE)}
    for prefix, key, tables in _keys(everything.model_dump(mode="json")):
        if tables:
            assert f"{prefix}{key}" in sections, f"no [[{prefix}{key}]] in docs/configuration.md"
            continue
        start = sections[prefix.rstrip(".")] if prefix else text.index("## Top level")
        end = text.find("\n## ", start)
        assert f"| `{key}` |" in text[start:end], f"{prefix}{key} is not in docs/configuration.md"


def _documented_section_variables():
    for m in re.finditer(r"\| `([a-z_]+)` \| (\w+)[^|]*\| ([^|]*) \| `(LIVEPROF_[A-Z_]+)` \|",
                         doc()):
        yield m[1], m[2], m[3].strip(), m[4]


def _other_value(field, default):
    """A value of a number field other than ``default`` and within its
    bounds (``ge``/``gt``/``le``/``lt``); None when there is none."""
    low, high = float("-inf"), float("inf")
    for c in field.metadata:
        low = max(low, getattr(c, "ge", low), getattr(c, "gt", low - 1) + 1e-9)
        high = min(high, getattr(c, "le", high), getattr(c, "lt", high + 1) - 1e-9)
    steps = (1, -1) if isinstance(default, int) else (default * 0.5 or 0.5, -default * 0.5)
    for step in steps:
        if low <= default + step <= high:
            return default + step
    return None


def test_documented_variables_set_their_settings(monkeypatch):
    """Each documented LIVEPROF_<SECTION>_<FIELD> of a number or switch, set
    to another valid value, sets that field."""
    for key in [k for k in os.environ if k.startswith("LIVEPROF_")]:
        monkeypatch.delenv(key)
    tried = 0
    for name, type_, default, var in _documented_section_variables():
        section = next((s for s in SECTIONS if var == f"LIVEPROF_{s}_{name}".upper()), None)
        m = re.fullmatch(r"`([^`]+)`.*", default)
        if section is None or m is None or type_ not in ("bool", "int", "float"):
            continue
        field = config_doc._model_of(Settings.model_fields[section].annotation).model_fields[name]
        if type_ == "bool":
            want = m[1] != "true"
        else:
            want = _other_value(field, int(m[1]) if type_ == "int" else float(m[1]))
            if want is None:
                continue
        monkeypatch.setenv(var, str(want).lower() if type_ == "bool" else str(want))
        settings = load()
        assert getattr(getattr(settings, section), name) == want, var
        monkeypatch.delenv(var)
        tried += 1
    assert tried > 40


def test_every_serve_flag_is_in_the_reference():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    flags = [max(a.option_strings, key=len) for a in sub.choices["serve"]._actions
             if a.option_strings and a.dest != "help"]
    text = doc()
    assert len(flags) > 15
    for flag in flags:
        assert f"`{flag}" in text, f"serve {flag} is not in docs/configuration.md"


def test_every_liveprof_variable_in_the_source_is_documented():
    """A LIVEPROF_* name the code reads outside the settings model is listed
    under "Other environment variables", and everything listed is read."""
    source = "\n".join(p.read_text() for d in ("ingest", "protocol") for p in (REPO / d).rglob("*.py"))
    named = set(re.findall(r"[\"'](LIVEPROF_[A-Z0-9_]+)[\"']", source))
    documented = set(re.findall(r"`(LIVEPROF_[A-Z0-9_]+)`", doc()))
    missing = sorted(named - documented)
    assert not missing, f"read by the code but not in docs/configuration.md: {missing}"
    for name in config_doc.OTHER_VARIABLES:
        assert name in source or f"{name}" in (REPO / "ingest" / "config.py").read_text(), name


@pytest.mark.parametrize("var, key", [("LIVEPROF_INFLUX_URL", "url"),
                                       ("LIVEPROF_DERIVE_WINDOW", "window"),
                                       ("LIVEPROF_STATE_DIR", "state_dir")])
def test_readme_names_appear_with_their_keys(var, key):
    """Variables README relies on are in the reference, on their key's row."""
    row = next(line for line in doc().splitlines() if f"| `{var}` |" in line)
    assert row.startswith(f"| `{key}` |")
