"""docker-compose.yml, .env.example, the Dockerfile and deploy/ checked
without Docker: the YAML parses, everything it mounts or builds from is in the
repository, every service has a health check and waits for healthy
dependencies, and the LIVEPROF_* variables it gives liveprof are settings
liveprof really takes, with the values it means."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
from pydantic import SecretStr, TypeAdapter

from ingest import config as config_module
from ingest.config import PREFIX, SECTIONS, Settings, load
from tests.corpus import REPO
from tests.deploy.compose import (
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    compose,
    copy_sources,
    defaults,
    dockerfile_instructions,
    dockerignored,
    env_file,
    interpolate,
    is_bind,
    service_env,
    split_volume,
)
from tests.grafana.yamlsubset import load as load_yaml

SERVICES = {"influxdb", "grafana", "mosquitto", "liveprof"}


def services() -> dict:
    return compose()["services"]


def test_compose_parses_and_has_the_stack():
    doc = compose()
    assert SERVICES <= set(doc["services"])
    assert doc["services"]["influxdb"]["image"].startswith("influxdb:1.8")
    assert doc["services"]["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    grafana = doc["services"]["grafana"]["image"]
    assert re.fullmatch(r"grafana/grafana(-oss)?:\d+\.\d+\.\d+", grafana), "pin a full version"
    assert doc["services"]["liveprof"]["build"] == "."


def test_every_service_has_a_health_check():
    for name, svc in services().items():
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        test = check["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        for key in ("interval", "timeout"):
            assert re.fullmatch(r"\d+(ms|s|m)", check[key]), (name, key)


def test_depends_on_waits_for_healthy_services():
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs the long form with conditions"
        for dep, spec in deps.items():
            assert dep in svcs, (name, dep)
            assert spec["condition"] == "service_healthy", (name, dep)
            assert svcs[dep].get("healthcheck"), (name, dep)
    assert set(svcs["liveprof"]["depends_on"]) == {"influxdb", "mosquitto"}
    assert "influxdb" in svcs["grafana"]["depends_on"]


def test_mounted_and_built_paths_exist():
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, svc in doc["services"].items():
        for spec in svc.get("volumes") or []:
            source, target, mode = split_volume(spec)
            assert target.startswith("/"), (name, spec)
            assert mode in ("", "ro", "rw"), (name, spec)
            if is_bind(source):
                path = (REPO / source).resolve()
                assert path.is_relative_to(REPO), (name, spec)
                assert path.exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"
        build = svc.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build["context"])
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                              "Dockerfile")
            assert (context / dockerfile).is_file(), name


def test_grafana_mounts_match_its_provisioning():
    """The dashboards directory is mounted where the provider reads, and every
    ${VAR} the provisioning files use is set in Grafana's environment."""
    grafana = services()["grafana"]
    mounts = {}
    for spec in grafana["volumes"]:
        source, target, _ = split_volume(spec)
        mounts[target] = source
    assert mounts.get("/etc/grafana/provisioning") == "./grafana/provisioning"
    provisioning = REPO / "grafana" / "provisioning"
    assert provisioning.is_dir() and (REPO / "grafana" / "dashboards").is_dir()
    providers = []
    for f in sorted((provisioning / "dashboards").glob("*.y*ml")):
        providers += load_yaml(f.read_text()).get("providers") or []
    assert providers
    for p in providers:
        path = p["options"]["path"]
        # the mount the provider's path falls in, and the repository directory it reads
        target = max((t for t in mounts if path == t or path.startswith(t + "/")), key=len,
                     default=None)
        assert target is not None, f"provider path {path} is in no mount"
        directory = REPO / mounts[target] / path[len(target):].lstrip("/")
        assert directory.resolve() == (REPO / "grafana" / "dashboards").resolve(), \
            f"provider path {path} reads {directory}, not grafana/dashboards"
        assert list(directory.glob("*.json")), "no dashboards where the provider reads"
    env = service_env(grafana, env_file())
    used = set()
    for f in provisioning.rglob("*.y*ml"):
        text = re.sub(r"^\s*#.*$", "", f.read_text(), flags=re.MULTILINE)
        used |= set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    assert used, "the datasource takes its connection from the environment"
    missing = sorted(v for v in used if not env.get(v))
    assert not missing, f"grafana's environment lacks {missing}"
    assert env["INFLUX_URL"] == "http://influxdb:8086"


def test_env_example_matches_the_compose_defaults():
    example = env_file()
    text = COMPOSE.read_text()
    seen = set()
    for name, op, default in defaults(text):
        seen.add(name)
        assert name in example, f"{name} is used by docker-compose.yml but not in .env.example"
        if op == ":-":
            assert default == example[name], f"{name}: compose default {default!r} " \
                                             f"!= .env.example {example[name]!r}"
    assert not set(example) - seen, "variables in .env.example that nothing uses"
    for secret in ("INFLUXDB_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert example[secret]


def test_influxdb_has_auth_on_and_liveprof_uses_its_admin():
    env = env_file()
    influx = service_env(services()["influxdb"], env)
    live = service_env(services()["liveprof"], env)
    grafana = service_env(services()["grafana"], env)
    assert influx["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert (live["LIVEPROF_INFLUX_USER"], live["LIVEPROF_INFLUX_PASSWORD"]) == \
        (influx["INFLUXDB_ADMIN_USER"], influx["INFLUXDB_ADMIN_PASSWORD"])
    assert (grafana["INFLUX_USER"], grafana["INFLUX_PASSWORD"]) == \
        (influx["INFLUXDB_READ_USER"], influx["INFLUXDB_READ_USER_PASSWORD"])
    assert live["LIVEPROF_INFLUX_DATABASE"] == influx["INFLUXDB_DB"] == grafana["INFLUX_DATABASE"]


def _setting_of(var: str, settings: Settings):
    """The value a LIVEPROF_* variable set in ``settings`` and its type:
    ``LIVEPROF_<FIELD>`` for a top-level field, ``LIVEPROF_<SECTION>_<FIELD>``
    for a field of a section (ingest/config.py)."""
    name = var[len(PREFIX):].lower()
    fields = type(settings).model_fields
    if var == "LIVEPROF_ADMIN_TOKEN":       # the name: read by the API section's default
        assert settings.api is not None, f"{var} is set but the API is off"
        return settings.api.admin_token, type(settings.api).model_fields["admin_token"].annotation
    for section in SECTIONS:
        if name.startswith(section + "_"):
            model = config_module._model_of(fields[section].annotation)
            leaf = name[len(section) + 1:]
            if leaf in model.model_fields:
                holder = getattr(settings, section)
                assert holder is not None, f"{var} did not turn the {section} section on"
                return getattr(holder, leaf), model.model_fields[leaf].annotation
    if name in fields and name not in SECTIONS:
        return getattr(settings, name), fields[name].annotation
    raise AssertionError(f"{var} is not a liveprof setting (no field {name!r} nor "
                         f"<section>_<field> with a section in {SECTIONS})")


def _plain(value):
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


@pytest.fixture
def clean_environ(monkeypatch):
    for key in list(os.environ):
        if key.upper().startswith(PREFIX):
            monkeypatch.delenv(key)
    return monkeypatch


def liveprof_variables(env: dict[str, str]) -> dict[str, str]:
    """What the liveprof container gets: the Dockerfile's ENV, then compose's."""
    out = {}
    for word, args in dockerfile_instructions():
        if word == "ENV":
            for item in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                out[item[0]] = item[1].strip('"')
    out.update(service_env(services()["liveprof"], env))
    return {k: v for k, v in out.items() if k.startswith(PREFIX)}


@pytest.mark.parametrize("source", ["env.example", "compose defaults"])
def test_liveprof_variables_are_settings_it_takes(source, clean_environ):
    env = env_file() if source == "env.example" else {}
    variables = liveprof_variables(env)
    assert {"LIVEPROF_INFLUX_URL", "LIVEPROF_MONITOR_UDP_PORT", "LIVEPROF_MQTT_HOST"} <= set(variables)
    for key, value in variables.items():
        clean_environ.setenv(key, value)
    settings = load()  # raises ConfigError on a bad value
    for key, text in variables.items():
        value, annotation = _setting_of(key, settings)
        if text == "":
            continue  # unset (env_ignore_empty): the default stays
        want = TypeAdapter(annotation).validate_python(config_module._maybe_json(text))
        assert _plain(value) == _plain(want), f"{key}={text!r} gave {value!r}"
    assert settings.monitor_udp is not None and settings.monitor_udp.host == "0.0.0.0"


def test_liveprof_reaches_the_other_services_by_their_names(clean_environ):
    env = env_file()
    variables = liveprof_variables(env)
    svcs = services()
    assert variables["LIVEPROF_INFLUX_URL"].split("//")[1].split(":")[0] in svcs
    assert variables["LIVEPROF_MQTT_HOST"] in svcs
    # the broker listens where liveprof dials, and the published ports are the
    # ones the services listen on
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    listeners = re.findall(r"^listener\s+(\d+)", conf, flags=re.MULTILINE)
    assert listeners == [variables["LIVEPROF_MQTT_PORT"]]
    assert f"{listeners[0]}:{listeners[0]}" in svcs["mosquitto"]["ports"]
    udp = variables["LIVEPROF_MONITOR_UDP_PORT"]
    assert f"{udp}:{udp}/udp" in svcs["liveprof"]["ports"]
    mounts = dict(split_volume(v)[1::-1] for v in svcs["mosquitto"]["volumes"])
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./deploy/mosquitto/mosquitto.conf"


def test_dockerfile_references_exist_and_reach_the_build():
    instructions = dockerfile_instructions()
    words = [w for w, _ in instructions]
    assert words.count("FROM") >= 1
    assert all(args.split()[0].startswith("python:3.11-slim")
               for w, args in instructions if w == "FROM")
    copied = []
    for word, args in instructions:
        if word in ("COPY", "ADD"):
            sources, _, from_stage = copy_sources(args)
            if from_stage:
                continue
            for src in sources:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, not in the repository"
                assert not dockerignored(src), f".dockerignore keeps {src} out of the context"
                copied.append(src)
    # what `pip wheel .` needs, and the C extension's source, are in the context
    for needed in ("pyproject.toml", "setup.py", "README.md", "protocol", "ingest"):
        assert needed in copied
    assert (REPO / "protocol" / "eventlog" / "_speedups.c").exists()
    assert not dockerignored("protocol/eventlog/_speedups.c")
    # non-root, serve by default, and a health check that is the copied script
    users = [args for w, args in instructions if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = [args for w, args in instructions if w == "CMD"][-1]
    assert cmd == '["liveprof", "serve"]'
    assert 'liveprof = "ingest.cli:main"' in (REPO / "pyproject.toml").read_text()
    health = [args for w, args in instructions if w == "HEALTHCHECK"][-1]
    script = re.search(r'"(/usr/local/bin/[^"]+)"', health)[1]
    dests = [copy_sources(a)[1] for w, a in instructions if w == "COPY"]
    assert script in dests
    compose_check = services()["liveprof"]["healthcheck"]["test"]
    assert script in compose_check


# -- the health check script, for real ------------------------------------------------

HEALTHCHECK = REPO / "deploy" / "liveprof" / "healthcheck.py"


def run_healthcheck(**env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    full.update(env)
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env=full, capture_output=True, check=False,
                          text=True, timeout=60)


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_healthcheck_sees_the_udp_listener(family, host):
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        ok = run_healthcheck(LIVEPROF_MONITOR_UDP_PORT=str(port))
        assert ok.returncode == 0, ok.stderr
    gone = run_healthcheck(LIVEPROF_MONITOR_UDP_PORT=str(port))
    assert gone.returncode == 1 and f"UDP port {port}" in gone.stderr


def test_healthcheck_checks_the_url_when_given():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        udp.bind(("127.0.0.1", 0))
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/healthz"
        res = run_healthcheck(LIVEPROF_MONITOR_UDP_PORT=str(udp.getsockname()[1]),
                              HEALTHCHECK_URL=url)
    assert res.returncode == 1 and url in res.stderr


def test_interpolation_helper():
    env = {"A": "x", "E": ""}
    assert interpolate("${A:-d} ${E:-d} ${E-d} ${U-d} $$SYS ${A}", env) == "x d  d $SYS x"
    with pytest.raises(KeyError):
        interpolate("${U:?needed}", env)
    assert ENV_EXAMPLE.exists() and DOCKERFILE.exists()


def test_commented_examples_in_env_example_are_valid(clean_environ):
    """The ``# LIVEPROF_X=...`` examples .env.example suggests load as settings."""
    examples = re.findall(r"^#\s*(LIVEPROF_[A-Z0-9_]+)=(.+)$", ENV_EXAMPLE.read_text(),
                          flags=re.MULTILINE)
    assert examples
    for key, text in examples:
        clean_environ.setenv(key, text)
        settings = load()
        value, annotation = _setting_of(key, settings)
        want = TypeAdapter(annotation).validate_python(config_module._maybe_json(text))
        assert _plain(value) == _plain(want) and _plain(value), key
        clean_environ.delenv(key)
