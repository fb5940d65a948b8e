"""Item 3 of issue 11: a configuration error names what the user wrote (the
flag, the environment variable or the TOML key that carried the value);
InfluxDB URLs are checked; and (issue 12 item 8) credentials written into
the URL are never shown."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from tests.corpus import DATA

from .helpers import CLI, REPO, clean_env, liveprof

LOG = DATA / "hello-ghc-8.6.5.eventlog"


def serve(*args, env: dict | None = None, toml: str | None = None, tmp_path=None):
    extra = []
    if toml is not None:
        path = tmp_path / "liveprof.toml"
        path.write_text(toml)
        extra = ["--config", str(path)]
    return liveprof("serve", "--print-config", *extra, *args, env=clean_env(**(env or {})),
                    timeout=60)


def failed_naming(run, name: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    assert name in run.stderr, run.stderr


# -- the carrier of a bad value is named ----------------------------------------------

def test_a_bad_flag_is_blamed_not_its_variable():
    run = serve("--window", "-1")
    failed_naming(run, "--window")
    assert "LIVEPROF_DERIVE_WINDOW" not in run.stderr


def test_a_bad_variable_is_blamed():
    run = serve(env={"LIVEPROF_DERIVE_WINDOW": "-1"})
    failed_naming(run, "LIVEPROF_DERIVE_WINDOW")
    assert "--window" not in run.stderr


def test_a_bad_file_key_is_blamed(tmp_path):
    run = serve(toml="[derive]\nwindow = -1\n", tmp_path=tmp_path)
    failed_naming(run, "derive.window")
    assert str(tmp_path / "liveprof.toml") in run.stderr
    assert "LIVEPROF_DERIVE_WINDOW" not in run.stderr and "--window" not in run.stderr


def test_the_flag_wins_and_is_the_one_named(tmp_path):
    """Same setting three ways: the flag is used, so the flag is named."""
    run = serve("--window", "-1", env={"LIVEPROF_DERIVE_WINDOW": "2"},
                toml="[derive]\nwindow = 3\n", tmp_path=tmp_path)
    failed_naming(run, "--window")


@pytest.mark.parametrize("how, name", [
    ("flag", "--influx-password"),
    ("env", "LIVEPROF_INFLUX_PASSWORD"),
    ("toml", "influx.password"),
])
def test_a_password_without_a_user(how, name, tmp_path):
    if how == "flag":
        run = serve("--influx-password", "pw")
    elif how == "env":
        run = serve(env={"LIVEPROF_INFLUX_PASSWORD": "pw"})
    else:
        run = serve(toml='[influx]\npassword = "pw"\n', tmp_path=tmp_path)
    failed_naming(run, name)
    assert "needs a user" in run.stderr
    # the report: it named a variable LIVEPROF_INFLUX that does not exist
    assert not re.search(r"LIVEPROF_INFLUX(?!_)", run.stderr), run.stderr


def test_a_list_variable_that_is_not_json():
    run = serve(env={"LIVEPROF_MONITORS": "notjson"})
    failed_naming(run, "LIVEPROF_MONITORS")
    assert "JSON" in run.stderr
    assert "Source" not in run.stderr and "pydantic" not in run.stderr.lower()


def test_a_list_item_in_the_file_is_named(tmp_path):
    run = serve(toml="[[monitors]]\nhost = '10.0.0.5'\n[[monitors]]\nport = 99999\n",
                tmp_path=tmp_path)
    failed_naming(run, "monitors[1].port")


def test_an_unknown_key_is_named(tmp_path):
    run = serve(toml="[influx]\nurll = 'http://x:1'\n", tmp_path=tmp_path)
    failed_naming(run, "influx.urll")


# -- URLs -------------------------------------------------------------------------------

BAD_URLS = ["notaurl", "ftp://127.0.0.1:8086", "http://127.0.0.1:99999", "localhost:8086"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_flag_is_refused(url):
    run = serve("--influx-url", url)
    failed_naming(run, "--influx-url")
    assert url in run.stderr


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_url_variable_is_refused(url):
    run = serve(env={"LIVEPROF_INFLUX_URL": url})
    failed_naming(run, "LIVEPROF_INFLUX_URL")


def test_a_bad_url_in_the_file_is_refused(tmp_path):
    run = serve(toml="[influx]\nurl = 'ftp://h:1'\n", tmp_path=tmp_path)
    failed_naming(run, "influx.url")
    assert "http or https" in run.stderr


@pytest.mark.parametrize("command", [["import", str(LOG)], ["influx", "setup"]])
def test_other_commands_refuse_a_bad_url_too(command):
    run = liveprof(*command, "--influx-url", "http://127.0.0.1:99999", timeout=60)
    failed_naming(run, "--influx-url")
    assert "65535" in run.stderr


# -- credentials in the URL -------------------------------------------------------------

SECRET = "pw-s3cret-9f1"


def test_print_config_masks_credentials_in_the_url():
    run = serve("--influx-url", f"http://bob:{SECRET}@127.0.0.1:8086")
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout
    assert '"url": "http://127.0.0.1:8086"' in run.stdout
    assert '"user": "bob"' in run.stdout


def test_credentials_in_the_url_and_apart_are_refused():
    run = serve("--influx-url", f"http://bob:{SECRET}@127.0.0.1:8086", "--influx-user", "al")
    failed_naming(run, "--influx-url")
    assert SECRET not in run.stderr


def test_credentials_in_the_url_still_log_in(influxd_factory, tmp_path):
    """Taken out of the URL, they are still sent: an import into InfluxDB with
    authentication works with them, and fails without."""
    server = influxd_factory(auth=True)
    host = server.url.split("//", 1)[1]
    good = f"http://{server.admin_user}:{server.admin_password}@{host}"
    run = liveprof("import", LOG, "--influx-url", good, "--database", "url_creds",
                   "--timeout", "30")
    assert run.returncode == 0, run.stderr
    assert server.admin_password not in run.stderr
    assert server.series('SELECT count(*) FROM "gc"', "url_creds")
    bad = liveprof("import", LOG, "--influx-url", f"http://{server.admin_user}:{SECRET}@{host}",
                   "--timeout", "30")
    assert bad.returncode == 2 and "401" in bad.stderr
    assert SECRET not in bad.stderr


def test_service_logs_never_show_the_password(tmp_path):
    """InfluxDB away: the service logs the URL it cannot reach, without the password."""
    env = clean_env(LIVEPROF_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen(CLI + ["serve", "--influx-url", f"http://bob:{SECRET}@127.0.0.1:9",
                                   "--file", str(LOG)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "file " in line and "eventlog(s)" in line:   # the file was read: all said
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    text = "".join(lines) + rest
    assert "127.0.0.1:9" in text, text          # the URL is in the log...
    assert SECRET not in text                    # ...its password is not
