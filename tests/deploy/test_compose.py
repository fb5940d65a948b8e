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
from yaml import safe_load as load_yaml

from ingest import config as config_module
from ingest.config import PREFIX, SECTIONS, Settings, load
from tests.corpus import REPO
from tests.deploy.compose import (
    COMPOSE,
    DOCKERFILE,
    ENV_EXAMPLE,
    SECRET,
    compose,
    copy_sources,
    defaults,
    dockerfile_instructions,
    dockerignored,
    env_file,
    generated_env,
    interpolate,
    is_bind,
    published,
    service_env,
    split_volume,
)

SERVICES = {"influxdb", "grafana", "mosquitto", "liveprof-setup", "liveprof"}


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
    assert doc["services"]["liveprof-setup"]["build"] == "."


def one_shot(svc: dict) -> bool:
    return svc.get("restart") == "no"


def test_every_service_has_a_health_check():
    """Long-running services have a health check; a one-shot (restart "no")
    is waited for by exit status instead."""
    for name, svc in services().items():
        if one_shot(svc):
            assert "healthcheck" not in svc, name
            continue
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
            if one_shot(svcs[dep]):
                assert spec["condition"] == "service_completed_successfully", (name, dep)
                continue
            assert spec["condition"] == "service_healthy", (name, dep)
            assert svcs[dep].get("healthcheck"), (name, dep)
    assert set(svcs["liveprof"]["depends_on"]) == {"influxdb", "mosquitto", "liveprof-setup"}
    assert set(svcs["liveprof-setup"]["depends_on"]) == {"influxdb"}
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


def test_grafana_mounts_match_its_provisioning(tmp_path):
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
    env = service_env(grafana, generated_env(tmp_path))
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


def test_every_secret_is_required_and_has_no_known_value():
    """Each password and token: ``${VAR:?message}`` wherever compose uses it
    (no fallback to a well-known value), and empty in .env.example (a plain
    copy of it does not start either)."""
    example = env_file()
    uses = [(name, op, msg) for name, op, msg in defaults(COMPOSE.read_text())
            if SECRET.fullmatch(name)]
    names = {name for name, _, _ in uses}
    assert {"INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_USER_PASSWORD", "INFLUXDB_READ_USER_PASSWORD",
            "GRAFANA_ADMIN_PASSWORD", "MQTT_PASSWORD", "LIVEPROF_ADMIN_TOKEN"} <= names
    for name, op, msg in uses:
        assert op == ":?" and msg.strip(), f"{name} must be ${{{name}:?message}}, not {op!r}"
        assert example[name] == "", f".env.example gives {name} a value everyone knows"
    # no secret is written into the file itself either
    for name, svc in services().items():
        for key, value in (svc.get("environment") or {}).items():
            if SECRET.fullmatch(key) or key.endswith(("PASSWORD", "TOKEN")):
                assert str(value).startswith("${"), f"{name}: {key} is a literal"


def test_without_its_secrets_the_stack_refuses_to_start(tmp_path):
    text = COMPOSE.read_text()
    with pytest.raises(KeyError):
        interpolate(text, {})                  # no .env at all
    with pytest.raises(KeyError):
        interpolate(text, env_file())          # .env.example copied unchanged
    env = generated_env(tmp_path)
    interpolate(text, env)                     # deploy/make-env's output starts
    for name in {n for n, _, _ in defaults(text) if SECRET.fullmatch(n)}:
        with pytest.raises(KeyError, match=name):
            interpolate(text, {**env, name: ""})


def test_make_env_fills_every_secret_and_never_overwrites(tmp_path):
    example = env_file()
    env = generated_env(tmp_path)
    assert set(env) == set(example)
    secrets = [k for k in example if SECRET.fullmatch(k)]
    assert secrets
    for key in example:
        if key in secrets:
            assert re.fullmatch(r"[0-9a-f]{48}", env[key]), key
        else:
            assert env[key] == example[key], key
    assert len({env[k] for k in secrets}) == len(secrets), "secrets repeat"
    target = tmp_path / ".env"
    assert target.stat().st_mode & 0o777 == 0o600
    before = target.read_text()
    again = subprocess.run([str(REPO / "deploy" / "make-env"), str(target)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0 and "exists" in again.stderr
    assert target.read_text() == before
    (tmp_path / "second").mkdir()
    other = generated_env(tmp_path / "second")
    assert all(other[k] != env[k] for k in secrets), "make-env repeats its secrets"


def test_every_published_port_is_on_loopback_by_default(tmp_path):
    """Every port is published on 127.0.0.1 unless PUBLISH_ADDRESS opens it."""
    env = generated_env(tmp_path)
    specs = [(name, spec) for name, svc in services().items() for spec in svc.get("ports") or []]
    assert len(specs) >= 5
    for name, spec in specs:
        for source in ({}, env_file(), env):
            address, host_port, container = published(spec, source)
            assert address == "127.0.0.1", f"{name} publishes {spec!r} on {address or 'every interface'}"
            assert host_port and container.split("/")[0] == host_port, (name, spec)
        opened, _, _ = published(spec, {**env, "PUBLISH_ADDRESS": "0.0.0.0"})
        assert opened == "0.0.0.0", f"{name}: PUBLISH_ADDRESS does not open {spec!r}"


def test_liveprof_serves_as_a_non_admin_and_sets_up_as_the_admin(tmp_path):
    env = generated_env(tmp_path)
    influx = service_env(services()["influxdb"], env)
    setup = service_env(services()["liveprof-setup"], env)
    live = service_env(services()["liveprof"], env)
    grafana = service_env(services()["grafana"], env)
    assert influx["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    # the one-shot setup: `liveprof influx setup` with the admin
    assert services()["liveprof-setup"]["command"] == ["liveprof", "influx", "setup"]
    assert (setup["LIVEPROF_INFLUX_USER"], setup["LIVEPROF_INFLUX_PASSWORD"]) == \
        (influx["INFLUXDB_ADMIN_USER"], influx["INFLUXDB_ADMIN_PASSWORD"])
    # serve: the image's database user (GRANT ALL ON the database, no admin), no setup
    assert (live["LIVEPROF_INFLUX_USER"], live["LIVEPROF_INFLUX_PASSWORD"]) == \
        (influx["INFLUXDB_USER"], influx["INFLUXDB_USER_PASSWORD"])
    assert live["LIVEPROF_INFLUX_USER"] != influx["INFLUXDB_ADMIN_USER"]
    assert live["LIVEPROF_INFLUX_PASSWORD"] != influx["INFLUXDB_ADMIN_PASSWORD"]
    assert live["LIVEPROF_SETUP"] == "false"
    assert "LIVEPROF_INFLUX_CREATE_DATABASE" not in live
    assert (grafana["INFLUX_USER"], grafana["INFLUX_PASSWORD"]) == \
        (influx["INFLUXDB_READ_USER"], influx["INFLUXDB_READ_USER_PASSWORD"])
    assert live["LIVEPROF_INFLUX_DATABASE"] == setup["LIVEPROF_INFLUX_DATABASE"] \
        == influx["INFLUXDB_DB"] == grafana["INFLUX_DATABASE"]
    assert live["LIVEPROF_INFLUX_URL"] == setup["LIVEPROF_INFLUX_URL"]
    # MQTT: liveprof logs in with the broker's one login
    mosquitto = service_env(services()["mosquitto"], env)
    assert (live["LIVEPROF_MQTT_USERNAME"], live["LIVEPROF_MQTT_PASSWORD"]) == \
        (mosquitto["MQTT_USER"], mosquitto["MQTT_PASSWORD"])


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
            model = config_module.model_of(fields[section].annotation)
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


def liveprof_variables(env: dict[str, str], service: str = "liveprof") -> dict[str, str]:
    """What a liveprof container gets: the Dockerfile's ENV, then compose's."""
    out = {}
    for word, args in dockerfile_instructions():
        if word == "ENV":
            for item in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                out[item[0]] = item[1].strip('"')
    out.update(service_env(services()[service], env))
    return {k: v for k, v in out.items() if k.startswith(PREFIX)}


@pytest.mark.parametrize("service", ["liveprof", "liveprof-setup"])
def test_liveprof_variables_are_settings_it_takes(service, clean_environ, tmp_path):
    variables = liveprof_variables(generated_env(tmp_path), service)
    assert {"LIVEPROF_INFLUX_URL", "LIVEPROF_INFLUX_PASSWORD"} <= set(variables)
    if service == "liveprof":
        assert {"LIVEPROF_MONITOR_UDP_PORT", "LIVEPROF_MQTT_HOST", "LIVEPROF_SETUP"} <= set(variables)
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


def test_liveprof_reaches_the_other_services_by_their_names(clean_environ, tmp_path):
    env = generated_env(tmp_path)
    variables = liveprof_variables(env)
    svcs = services()
    assert variables["LIVEPROF_INFLUX_URL"].split("//")[1].split(":")[0] in svcs
    assert variables["LIVEPROF_MQTT_HOST"] in svcs
    # the broker listens where liveprof dials, and the published ports are the
    # ones the services listen on
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    listeners = re.findall(r"^listener\s+(\d+)", conf, flags=re.MULTILINE)
    assert listeners == [variables["LIVEPROF_MQTT_PORT"]]
    ports = {name: [published(p, env)[1:] for p in svc.get("ports") or []]
             for name, svc in svcs.items()}
    assert (listeners[0], listeners[0]) in ports["mosquitto"]
    udp = variables["LIVEPROF_MONITOR_UDP_PORT"]
    assert (udp, f"{udp}/udp") in ports["liveprof"]
    api = variables["LIVEPROF_API_PORT"]
    assert (api, api) in ports["liveprof"]
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
    assert 'liveprof = "ingest.cli:entry"' in (REPO / "pyproject.toml").read_text()
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


def test_the_secrets_file_stays_out_of_git_and_the_image():
    """deploy/make-env writes .env into the checkout: git and the Docker
    build context both leave it out."""
    patterns = (REPO / ".gitignore").read_text().split()
    assert ".env" in patterns or "/.env" in patterns, ".env is not in .gitignore"
    assert dockerignored(".env")
