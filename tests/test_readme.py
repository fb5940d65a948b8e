"""README.md stays usable: its quick start is `./run` (tested for real in
tests/test_run_script.py), its test command is the one .ci/run runs, and
every file, flag and variable it names exists."""

from __future__ import annotations

import re

from ingest.cli import build_parser
from tests.corpus import REPO

README = (REPO / "README.md").read_text()


def commands() -> list[str]:
    """The lines of README's fenced code blocks, continuations joined."""
    out = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL):
        out += block.replace("\\\n", " ").splitlines()
    return [line.strip() for line in out if line.strip()]


def test_the_first_command_sets_up_and_runs_the_pipeline():
    """README's first command, in its quick start, is ./run."""
    assert commands()[0].startswith("./run ")
    assert README.index("## Quick start") < README.index("```")
    assert (REPO / "run").stat().st_mode & 0o111


def test_the_test_command_is_the_one_ci_runs():
    first = next(c for c in commands() if "python -m pytest" in c)
    assert first == "python -m pytest -q"
    assert first in (REPO / ".ci" / "run").read_text().splitlines()


def test_every_path_it_names_exists():
    named = set(re.findall(r"(?<![\w/.])((?:docs|deploy|bench|grafana|tests|ingest|protocol)"
                           r"/[\w./-]+\w)", README))
    assert len(named) > 10
    # bench/data/ is made by bench/make_log.sh and git-ignored: not in a clone
    missing = sorted(p for p in named if not (REPO / p).exists() and "*" not in p
                     and not p.startswith("bench/data/"))
    assert not missing, f"README names files that are not in the repository: {missing}"


def test_every_serve_flag_it_uses_exists():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    known = {s for a in sub.choices["serve"]._actions for s in a.option_strings}
    used = set()
    for line in commands():
        m = re.match(r"(?:\./run|liveprof serve)\s+(.*)", line)
        if m:
            used |= set(re.findall(r"(?<!\S)(--[a-z-]+)", m[1]))
    assert {"--fifo", "--http"} <= used
    assert not used - known, f"README uses serve flags that do not exist: {used - known}"


def test_every_variable_it_names_is_documented():
    """In the configuration reference or .env.example (or, for the tests'
    LIVEPROF_CORPUS, read by tests/corpus.py)."""
    documented = (REPO / "docs" / "configuration.md").read_text() + \
        (REPO / ".env.example").read_text()
    tests_read = (REPO / "tests" / "corpus.py").read_text()
    for var in set(re.findall(r"\b(LIVEPROF_[A-Z0-9_]+)\b", README)):
        assert f"`{var}`" in documented or f"{var}=" in documented \
            or f'"{var}"' in tests_read, var
